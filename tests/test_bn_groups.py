"""BatchNorm over fixed groups of images (bn_group_images): each task's inputs keep an
image's rows together, grouped BN is each group's own BN, and the recipes' group sizes."""

import functools
import importlib
import json
import os

import jax
import numpy as np
import pytest

from conftest import init_variables
from conftest import sections
from conftest import tiny_config
from ssl_jax import config_lib
from ssl_jax import step as step_lib

TASKS = ['rotation', 'exemplar', 'jigsaw', 'relative_patch', 'supervised', 'simclr', 'moco',
         'byol', 'simsiam', 'multitask']


def _load_config(name: str, arg: str | None = None):
  path = os.path.join(os.path.dirname(__file__), '..', 'configs', f'{name}.py')
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def _random_batch(config, task, num_images: int, seed: int) -> dict:
  rng = np.random.default_rng(seed)
  batch = {key: rng.integers(0, 256, (num_images,) + shape).astype(np.uint8)
           for key, shape in step_lib.input_shapes(config, task).items()}
  batch['label'] = np.arange(num_images, dtype=np.int32)
  return batch


@pytest.mark.parametrize('name', TASKS)
def test_an_images_inputs_are_adjacent_rows(name):
  """The contract BN groups rely on: changing image j changes exactly the rows
  [j * r, (j + 1) * r) of each inputs array (r inputs per image), under the same
  augmentation key."""
  overrides = ({'task.resize': 54, 'task.crop': 48, 'task.size': 12}
               if name in ('jigsaw', 'relative_patch') else {})
  config = tiny_config(name, **overrides)
  task = step_lib.import_task(config)
  num_images, changed = 4, 2
  batch = _random_batch(config, task, num_images, 0)
  other = {key: value.copy() for key, value in batch.items()}
  for key, value in _random_batch(config, task, num_images, 1).items():
    other[key][changed] = value[changed]
  views = [task.views(b, jax.random.key(0), sections(config)) for b in (batch, other)]
  inputs = [v['inputs'] if isinstance(v['inputs'], tuple) else (v['inputs'],) for v in views]
  for a, b in zip(*inputs):
    per_image = a.shape[0] // num_images
    differs = np.any(np.asarray(a) != np.asarray(b), axis=tuple(range(1, a.ndim)))
    expected = np.arange(a.shape[0]) // per_image == changed
    np.testing.assert_array_equal(differs, expected)


def test_grouped_bn_is_each_groups_own_bn():
  """Rotation, 8 images (32 inputs) in groups of 2: the train-mode outputs are those of
  global BN applied to each group's 8 inputs alone, and the running statistics move by
  the mean of the groups' statistics."""
  grouped_config = tiny_config('rotation', batch_size=8, bn_group_images=2)
  global_config = tiny_config('rotation', batch_size=8)
  task = step_lib.import_task(grouped_config)
  mesh = step_lib.make_mesh(jax.devices()[:1])
  grouped = step_lib.build_model(grouped_config, task, 10, mesh)
  plain = step_lib.build_model(global_config, task, 10, mesh)
  views = task.views(_random_batch(grouped_config, task, 8, 0), jax.random.key(0),
                     sections(grouped_config))
  variables = init_variables(grouped, views, seed=1)
  outputs, stats = jax.jit(functools.partial(grouped.apply, train=True, mutable=['batch_stats']))(
      variables, views)
  rows = 4 * 2  # 4 rotations x 2 images.
  alone, alone_stats = [], []
  apply_plain = jax.jit(functools.partial(plain.apply, train=True, mutable=['batch_stats']))
  for start in range(0, 32, rows):
    out, new = apply_plain(variables, {'inputs': views['inputs'][start:start + rows]})
    alone.append(out)
    alone_stats.append(new['batch_stats'])
  np.testing.assert_allclose(outputs, np.concatenate(alone), rtol=1e-4, atol=1e-5)
  mean_stats = jax.tree.map(lambda *s: np.mean(s, 0), *alone_stats)
  for a, b in zip(jax.tree.leaves(stats['batch_stats']), jax.tree.leaves(mean_stats)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  # And not global BN over all 8 images.
  whole, _ = plain.apply(variables, views, train=True, mutable=['batch_stats'])
  assert not np.allclose(outputs, whole, atol=1e-3)


def test_bn_group_images_is_validated():
  config = config_lib.run_config('rotation')
  config.batch_size = 12
  config.bn_group_images = 8
  with pytest.raises(ValueError, match='bn_group_images=8 does not divide batch_size=12'):
    config_lib.validate(config)
  config.batch_size = 16
  config_lib.validate(config)
  moco = config_lib.run_config('moco')
  moco.bn_group_images = 8
  with pytest.raises(ValueError, match="task 'moco' chooses its own BN groups"):
    config_lib.validate(moco)


def test_a_config_json_with_per_device_bn():
  """config.json written before bn_group_images: per_device_bn=False is global BN; True
  cannot be translated without the device count, and says how to fix the file."""
  saved = json.loads(config_lib.to_json(config_lib.lock(config_lib.run_config('rotation'))))
  del saved['bn_group_images']
  saved['per_device_bn'] = False
  assert config_lib.from_json(json.dumps(saved)).bn_group_images == 0
  saved['per_device_bn'] = True
  with pytest.raises(ValueError, match='"bn_group_images": <batch_size'):
    config_lib.from_json(json.dumps(saved))


@pytest.mark.parametrize('name,group', [('rotation_resnet50', 8), ('rotation_revnet50', 8),
                                        ('exemplar_resnet50', 8), ('jigsaw_resnet50', 16),
                                        ('jigsaw_revnet', 16),
                                        ('relative_patch_resnet50', 16),
                                        ('supervised_resnet50', 32)])
def test_revisiting_configs_take_bn_statistics_per_core(name, group):
  """The released 8-core configs' per-core batch (config/*/imagenet.sh --batch_size / 8),
  whatever the batch a run asks for; a batch it does not divide is refused."""
  config = _load_config(name)
  assert config.bn_group_images == group
  assert _load_config(name, f'batch={4 * group}').bn_group_images == group
  with pytest.raises(ValueError, match='bn_group_images'):
    _load_config(name, f'batch={group + group // 2}')
