"""Multi-task pretext (Rotation + Exemplar on one trunk): the loss is the weighted sum of
each task's loss computed alone (same parameters, batch and keys); each task's host
preprocessing is its own; one train step on 8 devices; bad names and weights refused."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from conftest import one_train_step
from conftest import sections
from conftest import tiny_config
from ssl_jax import config_lib
from ssl_jax import step as step_lib
from ssl_jax.tasks import exemplar
from ssl_jax.tasks import multitask
from ssl_jax.tasks import rotation

WEIGHTS = (0.7, 1.3)


def _config(**overrides):
  return tiny_config('multitask', batch_size=8, **{
      'task.weights': WEIGHTS, 'task.exemplar.copies': 2, 'task.exemplar.embedding': 8,
      'task.exemplar.group_images': 4, 'optimizer.warmup_steps': 0}, **overrides)


def _batch(seed=0, n=8):
  rng = np.random.default_rng(seed)
  return {'rotation/image': rng.integers(0, 256, (n, 16, 16, 3)).astype(np.uint8),
          'exemplar/image': rng.integers(0, 256, (n, 2, 16, 16, 3)).astype(np.uint8),
          'label': rng.integers(0, 10, (n,)).astype(np.int32)}


def test_loss_is_the_weighted_sum_of_each_task_alone():
  config = _config()
  s = sections(config)
  model = step_lib.build_model(config, multitask, 10, step_lib.make_mesh(jax.devices()[:1]))
  batch, rng = _batch(), jax.random.key(5)
  variables = jax.jit(lambda: model.init(jax.random.key(0), multitask.views(batch, rng, s),
                                        train=False))()
  tasks = (('rotation', rotation), ('exemplar', exemplar))

  @jax.jit  # Both computations in one program (op by op, flax is slow on the CPU).
  def losses(variables, batch):
    views = multitask.views(batch, rng, s)
    outputs, _ = model.apply(variables, views, train=True, mutable=['batch_stats'])
    combined = multitask.loss(outputs, views, None, s, None)
    alone = {}
    for i, (name, task) in enumerate(tasks):
      own_s = multitask.sub_sections(s, name)
      own_model = step_lib.Model(step_lib.build_encoder(config.model),
                                 task.make_head(own_s, 10))
      own_views = task.views({'image': batch[f'{name}/image'], 'label': batch['label']},
                             jax.random.fold_in(rng, i), own_s)
      own_variables = {'params': {'encoder': variables['params']['encoder'],
                                  'head': variables['params']['head'][f'heads_{name}']},
                       'batch_stats': variables['batch_stats']}
      own_outputs, _ = own_model.apply(own_variables, own_views, train=True,
                                       mutable=['batch_stats'])
      alone[name] = task.loss(own_outputs, own_views, None, own_s, None)
    return combined, alone

  (total, metrics), alone = losses(variables, batch)
  for name, (value, own_metrics) in alone.items():
    np.testing.assert_allclose(metrics[f'{name}/loss'], value, rtol=2e-5)
    for key, metric in own_metrics.items():
      np.testing.assert_allclose(metrics[f'{name}/{key}'], metric, rtol=2e-5)
  values = [float(alone[name][0]) for name, _ in tasks]
  assert min(values) > 0.1  # Both losses count: neither is trivially zero.
  np.testing.assert_allclose(total, WEIGHTS[0] * values[0] + WEIGHTS[1] * values[1],
                             rtol=2e-5)
  assert set(variables['params']['head']) == {'heads_rotation', 'heads_exemplar'}


def test_each_task_has_its_own_host_preprocessing():
  config = _config()
  s = sections(config)
  image = tf.constant(np.random.default_rng(0).integers(0, 256, (40, 50, 3)), tf.uint8)
  features, seed = {'image': image, 'label': tf.constant(3)}, tf.constant([1, 2], tf.int64)
  example = multitask.preprocess(features, seed, s)
  seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  for (name, task), own_seed in zip((('rotation', rotation), ('exemplar', exemplar)), seeds):
    expected = task.preprocess(features, own_seed, multitask.sub_sections(s, name))
    np.testing.assert_array_equal(example[f'{name}/image'], expected['image'])
  assert example['exemplar/image'].shape == (2, 16, 16, 3)  # multitask.exemplar.copies.


def test_one_train_step_on_8_devices():
  config = _config()
  state, metrics = one_train_step(config, jax.devices(), _batch())
  assert int(state.step) == 1
  expected = WEIGHTS[0] * metrics['rotation/loss'] + WEIGHTS[1] * metrics['exemplar/loss']
  np.testing.assert_allclose(metrics['loss'], expected, rtol=1e-6)
  assert {'rotation/rotation_accuracy', 'exemplar/triplet_accuracy'} <= set(metrics)
  assert np.isfinite(float(metrics['grad_norm'])) and float(metrics['grad_norm']) > 0
  # Both heads were trained by the step.
  for name in ('heads_rotation', 'heads_exemplar'):
    assert float(jnp.abs(jax.tree.leaves(state.params['head'][name])[0]).sum()) > 0


@pytest.mark.parametrize('field,value,message', [
    ('tasks', ('rotation', 'rotaton'), "No task 'rotaton' in ssl_jax/tasks/; valid names"),
    ('tasks', ('rotation', 'patches'), 'helper module, not a task'),
    ('tasks', ('rotation', 'moco'), "task 'moco' has TARGET"),
    ('weights', (1.0,), 'has 1 weights for 2 tasks .* one weight per task'),
    ('weights', (1.0, -1.0), 'must be >= 0'),
])
def test_bad_tasks_and_weights_are_refused_naming_the_fix(field, value, message):
  config = config_lib.run_config('multitask')
  config.multitask[field] = value
  with pytest.raises(ValueError, match=message):
    config_lib.lock(config)


def test_a_task_without_its_section_names_the_fix():
  config = config_lib.run_config('multitask')
  config.multitask.tasks = ('rotation', 'jigsaw')
  with pytest.raises(ValueError,
                     match=r'section multitask.jigsaw is missing.*tasks=rotation\+jigsaw'):
    config_lib.lock(config)
  config.multitask = multitask.section(('rotation', 'jigsaw'), (1.0, 0.5))
  config_lib.lock(config)
  assert config.multitask.jigsaw.to_dict() == config_lib.run_config('jigsaw').jigsaw.to_dict()


def test_config_json_round_trip_keeps_the_chosen_tasks():
  """config.json of a run on other tasks reads back (resume, load_encoder): the section's
  fields depend on multitask.tasks (tasks.multitask.config_from)."""
  config = config_lib.run_config('multitask')
  config.multitask = multitask.section(('jigsaw', 'rotation'), (0.5, 2.0))
  config.multitask.jigsaw.num_permutations = 10
  config_lib.lock(config)
  again = config_lib.from_json(config_lib.to_json(config))
  assert again.to_dict() == config.to_dict() and again.multitask.weights == (0.5, 2.0)
