"""Every task module against the contract of ssl_jax/tasks/__init__.py; SimSiam and
multi-crop, the two additions made through the contract alone."""

import functools
import importlib
import inspect
import os
import pkgutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from conftest import ONE_STAGE
from conftest import compare_1_and_8_devices
from conftest import init_variables
from conftest import sections
from conftest import tiny_config
import ssl_jax.tasks
from ssl_jax import config_lib
from ssl_jax import step as step_lib
from ssl_jax.tasks import byol
from ssl_jax.tasks import contrastive
from ssl_jax.tasks import simsiam

MODULES = sorted(m.name for m in pkgutil.iter_modules(ssl_jax.tasks.__path__))
TASKS = [name for name in MODULES
         if hasattr(importlib.import_module(f'ssl_jax.tasks.{name}'), 'loss')]
REQUIRED = {'preprocess': ['features', 'seed', 's'], 'views': ['batch', 'rng', 's'],
            'make_head': ['s', 'num_classes'],
            'loss': ['outputs', 'views', 'task_state', 's', 'progress']}
OPTIONAL = {'config': [], 'config_from': ['values'], 'validate': ['task_config', 'batch_size'], 'input_shapes': ['s'],
            'bn_groups': ['s', 'num_devices'], 'init_task_state': ['s', 'params', 'rng'],
            'targets': ['task_state', 'views', 'rng', 's', 'apply_target'],
            'update_task_state': ['task_state', 'params', 'views', 's', 'progress']}


def test_the_tasks_are_found():
  assert set(TASKS) == {'rotation', 'supervised', 'exemplar', 'jigsaw', 'relative_patch',
                        'simclr', 'moco', 'byol', 'simsiam', 'multitask'}
  # The helpers are not half tasks.
  assert set(MODULES) - set(TASKS) == {'contrastive', 'patches'}


@pytest.mark.parametrize('name', TASKS)
def test_task_follows_the_contract(name):
  task = importlib.import_module(f'ssl_jax.tasks.{name}')
  for function, params in {**REQUIRED, **OPTIONAL}.items():
    if function not in REQUIRED and not hasattr(task, function):
      continue
    got = list(inspect.signature(getattr(task, function)).parameters)
    assert got == params, (name, function, got)
  assert getattr(task, 'TARGET', 'copy') in ('copy', 'fresh')
  assert getattr(task, 'MULTICROP', False) in (True, False)
  if hasattr(task, 'TARGET'):  # A second network needs outputs to compare with.
    assert hasattr(task, 'targets')
  assert isinstance(getattr(task, 'SHARDED_STATE', ()), tuple)
  config = config_lib.lock(config_lib.run_config(name))
  if hasattr(task, 'config'):
    assert isinstance(task.config(), ml_collections.ConfigDict)
    assert config[name].to_dict() == task.config().to_dict()
  else:
    assert name not in config


@pytest.mark.parametrize('name', TASKS)
def test_host_preprocess_makes_the_declared_shapes(name):
  task = importlib.import_module(f'ssl_jax.tasks.{name}')
  overrides = ({'input.local_crops': 3, 'input.local_size': 8}
               if getattr(task, 'MULTICROP', False) else {})
  if name in ('jigsaw', 'relative_patch'):
    overrides.update({'task.resize': 54, 'task.crop': 48, 'task.size': 12})
  config = tiny_config(name, **overrides)
  image = tf.constant(np.random.default_rng(0).integers(0, 256, (40, 50, 3)), tf.uint8)
  example = task.preprocess({'image': image, 'label': tf.constant(3)},
                            tf.constant([1, 2], tf.int64), sections(config))
  shapes = step_lib.input_shapes(config, task)
  assert {k: tuple(example[k].shape) for k in shapes} == shapes
  if overrides.get('input.local_crops'):
    assert shapes['local_image'] == (3, 8, 8, 3)


def test_an_unknown_task_lists_the_valid_ones():
  with pytest.raises(ValueError, match='valid names: .*simsiam'):
    config_lib.run_config('simsaim')


def test_multicrop_is_refused_where_the_task_ignores_it():
  config = config_lib.run_config('simclr')
  config.input.local_crops = 6
  with pytest.raises(ValueError, match="'simclr' does not use multi-crop"):
    config_lib.validate(config)


def _views_batch(n=8, size=16, local=0, seed=0):
  rng = np.random.default_rng(seed)
  batch = {'image': rng.integers(0, 256, (n, 2, size, size, 3)).astype(np.uint8),
           'label': rng.integers(0, 10, (n,)).astype(np.int32)}
  if local:
    batch['local_image'] = rng.integers(0, 256, (n, local, 8, 8, 3)).astype(np.uint8)
  return batch


def _cosine(a, b):
  return a @ b / np.linalg.norm(a) / np.linalg.norm(b)


def test_simsiam_loss_is_the_symmetrised_negative_cosine():
  rng = np.random.default_rng(0)
  p = rng.normal(size=(3, 2, 5))
  z = rng.normal(size=(3, 2, 5))
  expected = np.mean([-0.5 * _cosine(p[i, 0], z[i, 1]) - 0.5 * _cosine(p[i, 1], z[i, 0])
                      for i in range(3)])
  got = simsiam.negative_cosine_loss(jnp.asarray(p, jnp.float32), jnp.asarray(z, jnp.float32))
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  # The projections get no gradient (stop-gradient); the predictions do.
  grad_p, grad_z = jax.grad(simsiam.negative_cosine_loss, argnums=(0, 1))(
      jnp.asarray(p, jnp.float32), jnp.asarray(z, jnp.float32))
  assert np.abs(grad_p).sum() > 0 and np.abs(grad_z).sum() == 0


def test_multicrop_pairs_every_view_with_the_other_large_views():
  rng = np.random.default_rng(1)
  p, z = rng.normal(size=(2, 5, 4)), rng.normal(size=(2, 2, 4))  # 2 large + 3 small views.
  pairs = [(v, g) for v in range(5) for g in range(2) if v != g]
  expected = np.mean([_cosine(p[b, v], z[b, g]) for b in range(2) for v, g in pairs])
  np.testing.assert_allclose(
      contrastive.cross_view_cosine(jnp.asarray(p), jnp.asarray(z)), expected, rtol=1e-5)
  # BYOL's loss without small views is unchanged by the generalisation: 4 - 4 cos.
  flat_p = rng.normal(size=(6, 4)).astype(np.float32)
  flat_z = rng.normal(size=(6, 4)).astype(np.float32)
  pairs2 = np.mean([_cosine(flat_p[2 * i + a], flat_z[2 * i + 1 - a])
                    for i in range(3) for a in (0, 1)])
  np.testing.assert_allclose(byol.regression_loss(flat_p, flat_z), 4 - 4 * pairs2, rtol=1e-5)


def test_multicrop_model_encodes_each_resolution_and_concatenates():
  # BYOL's head is row by row in eval mode (SimSiam's output BN is not).
  config = tiny_config('byol', **{'input.local_crops': 3, 'input.local_size': 8,
                                  'task.proj_hidden': 8, 'task.proj_dim': 16,
                                  'task.per_view_bn': False})
  task = step_lib.import_task(config)
  views = task.views(_views_batch(n=4, local=3), jax.random.key(0), sections(config))
  large, small = views['inputs']
  assert large.shape == (8, 16, 16, 3) and small.shape == (12, 8, 8, 3)
  model = step_lib.build_model(config, task, 10, step_lib.make_mesh())
  variables = init_variables(model, views)
  apply = jax.jit(functools.partial(model.apply, train=False))
  outputs = apply(variables, views)
  assert outputs['prediction'].shape == (20, 16)
  # The small views' rows are the encoder and head applied to them alone (eval mode).
  alone = apply(variables, {'inputs': small})
  np.testing.assert_allclose(outputs['projection'][8:], alone['projection'], rtol=1e-4,
                             atol=1e-5)


@pytest.mark.parametrize('task,local', [('simsiam', 0), ('simsiam', 2), ('byol', 2)])
def test_simsiam_and_multicrop_equal_on_1_and_8_devices(task, local):
  sizes = ({'task.proj_dim': 16, 'task.pred_hidden': 8} if task == 'simsiam'
           else {'task.proj_hidden': 16, 'task.proj_dim': 8})
  config = tiny_config(task, batch_size=8, **sizes, **ONE_STAGE, **{
      'optimizer.warmup_steps': 0, 'optimizer.base_lr': 0.001, 'input.local_crops': local,
      'input.local_size': 8})
  # The loss of a random net is a mean cosine near 0: its rounding is relative to 1.
  state, metrics = compare_1_and_8_devices(config, _views_batch(local=local), rtol=2e-3)
  assert -1.0 <= float(metrics['mean_cosine']) <= 1.0


def test_simsiam_config_is_the_papers_recipe():
  spec = importlib.util.spec_from_file_location(
      'simsiam_resnet50', os.path.join(os.path.dirname(__file__), '..', 'configs',
                                       'simsiam_resnet50.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()
  assert (c.batch_size, c.total_epochs, c.optimizer.base_lr * c.batch_size / 256) == (
      512, 100.0, 0.1)
  assert (c.simsiam.proj_dim, c.simsiam.pred_hidden) == (2048, 512)
  assert c.optimizer.schedule == 'cosine' and c.optimizer.weight_decay == 1e-4
  multicrop = module.get_config('multicrop')
  assert (multicrop.input.local_crops, multicrop.input.local_size) == (6, 96)
  # The official code: --fix-pred-lr, zero_init_residual=True, PyTorch's BN.
  assert c.optimizer.constant_lr_modules == ('predictor',)
  assert c.model.zero_init_last_bn and (c.model.bn_momentum, c.model.bn_epsilon) == (0.9, 1e-5)
