"""End to end: the training loop, resume after SIGTERM, non-finite loss, load_encoder."""

import gc
import json
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ssl_jax
from conftest import ONE_STAGE
from conftest import tiny_config
from ssl_jax import checkpoint
from ssl_jax import main as main_lib
from ssl_jax import step as step_lib
from ssl_jax import train


def _params(workdir):
  _, state = checkpoint.restore_raw(workdir)
  return state['params']


def test_end_to_end_run_writes_everything(tmp_path):
  workdir = str(tmp_path / 'run')
  results = main_lib.run(tiny_config(), workdir)
  assert 0.0 <= results['lbfgs/pre_logits/top1'] <= 1.0
  with open(os.path.join(workdir, 'results.json')) as f:
    assert json.load(f)['lbfgs/pre_logits/top1'] == results['lbfgs/pre_logits/top1']
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f]
  assert all('step' in r for r in rows) and any('loss' in r for r in rows)
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['task'] == 'rotation'
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints')))[-1] == '4'


def test_resume_after_sigterm_matches_uninterrupted(tmp_path, monkeypatch):
  config = tiny_config(total_steps=6, **ONE_STAGE)
  straight = str(tmp_path / 'straight')
  assert train.train(config, straight)

  # Deliver SIGTERM right after the checkpoint of step 2 starts, as a preemption would.
  interrupted = str(tmp_path / 'interrupted')
  original_save = checkpoint.Checkpointer.save

  def save_then_sigterm(self, step, state):
    original_save(self, step, state)
    if step == 2:
      os.kill(os.getpid(), signal.SIGTERM)

  monkeypatch.setattr(checkpoint.Checkpointer, 'save', save_then_sigterm)
  assert not train.train(config, interrupted)
  assert checkpoint.Checkpointer(interrupted).latest_step() == 3  # Saved on SIGTERM.
  monkeypatch.setattr(checkpoint.Checkpointer, 'save', original_save)
  assert train.train(config, interrupted)
  for a, b in zip(jax.tree.leaves(_params(straight)), jax.tree.leaves(_params(interrupted))):
    np.testing.assert_array_equal(a, b)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  workdir = str(tmp_path / 'nan')
  assert train.train(tiny_config(total_steps=2, **ONE_STAGE), workdir)
  good = _params(workdir)
  exploding = tiny_config(total_steps=6, **ONE_STAGE, **{'optimizer.base_lr': 1e30,
                                             'optimizer.schedule': 'constant',
                                             'optimizer.warmup_steps': 0})
  with pytest.raises(train.NonFiniteLossError, match='last good checkpoint \\(step 2\\)'):
    train.train(exploding, workdir)
  assert checkpoint.Checkpointer(workdir).latest_step() == 2
  for a, b in zip(jax.tree.leaves(good), jax.tree.leaves(_params(workdir))):
    np.testing.assert_array_equal(a, b)


def test_non_finite_weights_stop_before_they_are_saved(tmp_path, monkeypatch):
  """The loss can stay finite while the weights are not (a huge learning rate): the
  parameters are checked before every save."""
  workdir = str(tmp_path / 'nan_weights')
  assert train.train(tiny_config(total_steps=2, **ONE_STAGE), workdir)
  good = _params(workdir)
  make_train_step = step_lib.make_train_step

  def poisoned(*args, **kwargs):
    train_step = make_train_step(*args, **kwargs)

    def run(state, batch):
      state, metrics = train_step(state, batch)  # Metrics of the finite parameters.
      nan = jnp.where(state.step == 4, jnp.nan, 1.0)
      return state.replace(params=jax.tree.map(lambda x: x * nan, state.params)), metrics

    return run

  monkeypatch.setattr(step_lib, 'make_train_step', poisoned)
  with pytest.raises(train.NonFiniteLossError,
                     match='parameters .* at step 4; .*last good checkpoint \\(step 2\\)'):
    train.train(tiny_config(total_steps=6, **ONE_STAGE), workdir)
  assert checkpoint.Checkpointer(workdir).latest_step() == 2
  for a, b in zip(jax.tree.leaves(good), jax.tree.leaves(_params(workdir))):
    np.testing.assert_array_equal(a, b)


def test_load_encoder_of_random_init(tmp_path):
  workdir = str(tmp_path / 'init')
  assert train.train(tiny_config(total_steps=0), workdir)
  encode = ssl_jax.load_encoder(workdir)
  images = np.random.default_rng(0).integers(0, 256, (3, 40, 48, 3)).astype(np.uint8)
  end_points = encode(images)
  assert end_points['pre_logits'].shape == (3, 64)  # 512 * k, k = 1/8.
  assert set(end_points) == {'after_root', 'block1', 'block2', 'block3', 'block4',
                             'pre_logits'}
  with pytest.raises(ValueError, match='uint8 images'):
    encode(images.astype(np.float32))


PATCH_GEOMETRY = {'task.resize': 54, 'task.crop': 48, 'task.size': 12,
                  'task.hidden': 32, 'task.embedding': 16,
                  'model.stage_strides': (1, 2, 2, 1)}


@pytest.mark.parametrize('task,model', [('rotation', 'revnet'), ('rotation', 'vgg'),
                                        ('jigsaw', 'revnet'), ('exemplar', 'resnet')])
def test_every_architecture_and_task_trains_on_8_devices(tmp_path, task, model):
  """With the 1-vs-8-device tests of each task, every task and every architecture
  trains through the real loop and pipeline on 8 devices."""
  overrides = {'task': task, 'model.name': model, 'total_steps': 2}
  if model == 'vgg':
    overrides['input.image_size'] = 32  # Five 2x2 pools.
  if task == 'jigsaw':
    overrides.update(PATCH_GEOMETRY)
  if task == 'exemplar':
    overrides.update({'task.copies': 2, 'task.embedding': 16})
  workdir = str(tmp_path / f'{task}_{model}')
  assert train.train(tiny_config(**overrides), workdir)
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    losses = [json.loads(line)['loss'] for line in f if 'loss' in line]
  assert losses and all(np.isfinite(losses))
  assert all(np.isfinite(p).all() for p in jax.tree.leaves(_params(workdir)))


def test_a_resumed_run_frees_its_fresh_state(tmp_path, monkeypatch):
  """A resumed run restores the checkpoint in place of the freshly initialised state and
  frees that one (loop.run): after a step the devices hold as many bytes as after a step
  of the uninterrupted first run, not a second copy of the state."""
  live, state_bytes = {}, []
  make_train_step = step_lib.make_train_step

  def measured(*args, **kwargs):
    train_step = make_train_step(*args, **kwargs)

    def run(state, batch):
      state, metrics = train_step(state, batch)
      gc.collect()
      live[int(state.step)] = sum(x.nbytes for x in jax.live_arrays())
      state_bytes.append(sum(x.nbytes for x in jax.tree.leaves(state)))
      return state, metrics

    return run

  monkeypatch.setattr(step_lib, 'make_train_step', measured)
  workdir = str(tmp_path / 'run')
  assert train.train(tiny_config(total_steps=2, evals=()), workdir)
  assert train.train(tiny_config(total_steps=4, evals=()), workdir)
  assert abs(live[3] - live[1]) < state_bytes[0] / 2, (live, state_bytes[0])
