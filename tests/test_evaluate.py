"""Evaluation of frozen encoders: SGD linear and MLP probes, L-BFGS on every end point,
the linear_eval config, and the patch-averaged representation."""

import importlib.util
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_config
from ssl_jax import encoder as encoder_lib
from ssl_jax import main as main_lib
from ssl_jax import train
from ssl_jax.evaluate import linear

LAYERS = ('after_root', 'block1', 'block2', 'block3', 'block4', 'pre_logits')


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('trained'))
  assert train.train(tiny_config(total_steps=2), workdir)
  return workdir


def _linear_eval_module():
  """configs/linear_eval.py, loaded from its file."""
  path = os.path.join(os.path.dirname(__file__), '..', 'configs', 'linear_eval.py')
  spec = importlib.util.spec_from_file_location('linear_eval', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _linear_eval_config(workdir, arg):
  config = _linear_eval_module().get_config(f'workdir={workdir},{arg}')
  config.unlock()
  for name in ('linear', 'mlp'):
    config.evals[name].total_steps = 3
    config.evals[name].batch_size = 64
  config.evals.lbfgs.max_iter = 50
  config.evals.lbfgs.num_train_examples = 500  # As the notebook's tiny run.
  config.lock()
  return config


def test_linear_mlp_and_lbfgs_on_every_layer(trained, tmp_path):
  config = _linear_eval_config(trained, 'protocol=linear+mlp+lbfgs,layers=' + '+'.join(LAYERS))
  results = main_lib.run(config, str(tmp_path))
  for protocol in ('linear', 'mlp'):
    for layer in LAYERS:
      top1, top5 = results[f'{protocol}/{layer}/top1'], results[f'{protocol}/{layer}/top5']
      assert 0.0 <= top1 <= top5 <= 1.0
  assert all(f'lbfgs/{layer}/top1' in results for layer in LAYERS)
  with open(tmp_path / 'results.json') as f:
    assert json.load(f)['linear/pre_logits/top1'] == results['linear/pre_logits/top1']
  assert not os.path.exists(tmp_path / 'checkpoints')  # Evaluation only: nothing trained.
  # The probes trained through the one loop: checkpoints and metrics per instance.
  for name in ('linear', 'mlp'):
    assert os.listdir(tmp_path / 'evals' / name / 'checkpoints') == ['3']
    assert (tmp_path / 'evals' / name / 'metrics.jsonl').exists()


def test_topk_correct_matches_numpy():
  rng = np.random.default_rng(0)
  logits, labels = rng.normal(size=(50, 10)), rng.integers(0, 10, 50)
  mask = (rng.uniform(size=50) > 0.2).astype(np.float32)
  for k in (1, 5):
    expected = sum(m for l, y, m in zip(logits, labels, mask) if y in np.argsort(-l)[:k])
    np.testing.assert_allclose(linear.topk_correct(jnp.asarray(logits), jnp.asarray(labels),
                                                    jnp.asarray(mask), k), expected)


def test_patches_reassemble_into_the_image():
  images = jnp.arange(2 * 6 * 6 * 1, dtype=jnp.float32).reshape(2, 6, 6, 1)
  patches = encoder_lib.split_into_patches(images, 3)
  assert patches.shape == (18, 2, 2, 1)
  rebuilt = patches.reshape(2, 3, 3, 2, 2, 1).transpose(0, 1, 3, 2, 4, 5).reshape(2, 6, 6, 1)
  np.testing.assert_array_equal(rebuilt, images)
  np.testing.assert_array_equal(patches[1], images[0, 0:2, 2:4])  # Row-major.


def test_patch_representation_is_the_mean_over_patches(trained):
  config, encoder, variables, _ = encoder_lib.restore_encoder(trained)
  config.unlock()
  config.input.eval_patch_grid = 2
  config.input.eval_standardize = True
  images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3)), jnp.uint8)
  got = encoder_lib.representation(config.input, config.augment.normalize, encoder,
                                   ('block4', 'pre_logits'), 9000)(variables, images)
  for i in range(3):
    patches = [images[i:i + 1, r:r + 16, c:c + 16] for r in (0, 16) for c in (0, 16)]
    from ssl_jax.data import augment
    per_patch = [encoder.apply(variables, augment.standardize(augment.to_unit(p)),
                               train=False) for p in patches]
    for layer in ('block4', 'pre_logits'):
      expected = np.mean([encoder_lib.pool_to_size(e[layer], 9000)[0] for e in per_patch], 0)
      np.testing.assert_allclose(got[layer][i], expected, rtol=1e-4, atol=1e-5)


def test_paper_probe_presets_run_by_name(trained, tmp_path):
  """protocol=simclr+moco: the presets' random resized crops, zero and N(0, 0.01) heads,
  Nesterov cosine and step schedules train through the loop."""
  config = _linear_eval_module().get_config(f'workdir={trained},protocol=simclr+moco')
  config.unlock()
  for name in ('linear_simclr', 'linear_moco'):
    assert config.evals[name].crop == 'inception'
    config.evals[name].total_steps = 2
    config.evals[name].batch_size = 64
  config.lock()
  results = main_lib.run(config, str(tmp_path))
  for name in ('linear_simclr', 'linear_moco'):
    assert 0.0 <= results[f'{name}/pre_logits/top1'] <= 1.0


def test_probe_on_a_per_class_subset_trains_on_its_epoch(trained, tmp_path):
  """examples_per_class=5 (Revisiting §4.6's low-data probes): one epoch of the 50
  labelled images at batch 16 is floor(50 / 16) = 3 steps, not an epoch of 4,085."""
  config = _linear_eval_module().get_config(
      f'workdir={trained},protocol=linear,layers=pre_logits')
  config.unlock()
  config.evals.linear.update(examples_per_class=5, batch_size=16, total_epochs=1.0)
  config.lock()
  results = main_lib.run(config, str(tmp_path))
  assert 0.0 <= results['linear/pre_logits/top1'] <= 1.0
  assert os.listdir(tmp_path / 'evals' / 'linear' / 'checkpoints') == ['3']
