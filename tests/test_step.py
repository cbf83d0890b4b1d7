"""The sharded train step: device-count independence, schedules, weight-decay mask."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ONE_STAGE
from conftest import compare_1_and_8_devices
from conftest import make_optimizer
from conftest import one_train_step
from conftest import tiny_config
from ssl_jax import optim
from ssl_jax import step as step_lib


@pytest.mark.parametrize('task', ['rotation', 'supervised'])
def test_loss_and_gradients_equal_on_1_and_8_devices(task):
  config = tiny_config(task=task, **ONE_STAGE, **{'optimizer.warmup_steps': 0})
  rng = np.random.default_rng(0)
  batch = {'image': rng.integers(0, 256, (16, 16, 16, 3)).astype(np.uint8),
           'label': rng.integers(0, 10, (16,)).astype(np.int32)}
  state1, metrics1 = compare_1_and_8_devices(config, batch)


@pytest.mark.parametrize('group', [4, 2])
def test_bn_groups_of_images_equal_on_1_and_8_devices(group):
  """BN statistics over fixed groups of images (16 images: 4 groups spanning 2 devices
  each, or 8 groups, one per device) do not depend on the device count."""
  config = tiny_config(bn_group_images=group, **ONE_STAGE, **{'optimizer.warmup_steps': 0})
  batch = {'image': np.random.default_rng(0).integers(0, 256, (16, 16, 16, 3)).astype(np.uint8)}
  compare_1_and_8_devices(config, batch)


def test_step_schedule_follows_the_paper():
  config = tiny_config(total_steps=-1, total_epochs=35.0, batch_size=256, **{
      'optimizer.base_lr': 0.1, 'optimizer.schedule': 'step', 'optimizer.warmup_steps': -1,
      'optimizer.warmup_epochs': 5.0, 'optimizer.decay_epochs': (15.0, 25.0)})
  per_epoch = optim.steps_per_epoch(config.batch_size, 256 * 10)  # 10 steps/epoch.
  total = optim.total_steps(config.total_steps, config.total_epochs, per_epoch)
  assert total == 350
  schedule = optim.learning_rate(config.optimizer, batch_size=256, total_steps=total,
                                 steps_per_epoch=per_epoch)
  np.testing.assert_allclose(schedule(25), 0.1 * 25 / 50, rtol=1e-6)  # Warm-up.
  np.testing.assert_allclose(schedule(100), 0.1, rtol=1e-6)
  np.testing.assert_allclose(schedule(150), 0.01, rtol=1e-5)
  np.testing.assert_allclose(schedule(250), 0.001, rtol=1e-5)


def test_cosine_schedule():
  config = tiny_config(total_steps=110, batch_size=512, **{
      'optimizer.base_lr': 0.1, 'optimizer.schedule': 'cosine', 'optimizer.warmup_steps': 10})
  schedule = optim.learning_rate(config.optimizer, batch_size=512, total_steps=110,
                                 steps_per_epoch=10_000 // 512)
  peak = 0.1 * 512 / 256
  np.testing.assert_allclose(schedule(10), peak, rtol=1e-6)
  np.testing.assert_allclose(schedule(60), peak / 2, rtol=1e-5)
  np.testing.assert_allclose(schedule(110), 0.0, atol=1e-7)


def test_weight_decay_only_on_kernels():
  params = {'conv': {'kernel': jnp.ones(2)}, 'bn': {'scale': jnp.ones(2), 'bias': jnp.ones(2)},
            'root_nowd': {'kernel': jnp.ones(2)}, 'head': {'fc1_fcwd': {'kernel': jnp.ones(2)}}}
  config = tiny_config(**{'optimizer.weight_decay': 1e-4, 'optimizer.fc_weight_decay': 5e-4})
  assert optim.weight_decay_rates(params, config.optimizer) == {
      'conv': {'kernel': 1e-4}, 'bn': {'scale': 0.0, 'bias': 0.0},
      'root_nowd': {'kernel': 0.0}, 'head': {'fc1_fcwd': {'kernel': 5e-4}}}
  # The transformation adds rate * w to the gradient.
  tx = optim.add_weight_decay(config.optimizer)
  grads = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  assert float(updates['conv']['kernel'][0]) == np.float32(1e-4)


def test_constant_lr_modules_keep_the_peak_rate():
  """SimSiam's fixed predictor learning rate: the named modules follow the peak rate,
  the rest the schedule."""
  config = tiny_config(total_steps=100, **{
      'optimizer.schedule': 'cosine', 'optimizer.warmup_steps': 0, 'optimizer.momentum': 0.0,
      'optimizer.weight_decay': 0.0, 'optimizer.base_lr': 0.1, 'optimizer.lr_scaling': 'none',
      'optimizer.constant_lr_modules': ('predictor',)})
  tx, schedule = make_optimizer(config)
  params = {'head': {'predictor': {'kernel': jnp.ones(2)}, 'projector': {'kernel': jnp.ones(2)}}}
  grads = jax.tree.map(jnp.ones_like, params)
  opt_state = tx.init(params)
  for _ in range(50):
    updates, opt_state = tx.update(grads, opt_state, params)
  np.testing.assert_allclose(updates['head']['predictor']['kernel'], -0.1, rtol=1e-6)
  np.testing.assert_allclose(updates['head']['projector']['kernel'], -schedule(49), rtol=1e-5)
  assert float(schedule(49)) < 0.06


def test_abstract_state_is_the_created_states_shapes_dtypes_and_shardings():
  """What compiles the step without a state (the memory benchmark) describes the state
  that training creates: MoCo's, with its queue split over the devices and the
  parameters and key encoder over mesh.fsdp=2."""
  config = tiny_config('moco', **{'mesh.fsdp': 2, 'mesh.fsdp_min_bytes': 0})
  mesh = step_lib.make_mesh(jax.devices(), 2)
  task = step_lib.import_task(config)
  tx, _ = make_optimizer(config)
  model = step_lib.build_model(config, task, 10, mesh)
  created = step_lib.create_state(config, model, tx, task, mesh)
  abstract = step_lib.abstract_state(config, model, tx, task, mesh)
  assert jax.tree.structure(created) == jax.tree.structure(abstract)
  for x, a in zip(jax.tree.leaves(created), jax.tree.leaves(abstract)):
    assert (x.shape, x.dtype, x.sharding) == (a.shape, a.dtype, a.sharding)
  assert step_lib.shardings_of(created).task_state['queue'].spec[0] == ('data', 'fsdp')
  assert any('fsdp' in s.spec for s in jax.tree.leaves(step_lib.shardings_of(abstract).params))
