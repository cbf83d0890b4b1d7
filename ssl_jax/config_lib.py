"""The run config, assembled from the sections that components declare next to their code.

Every component owns a section and its defaults: ``dataset``
(ssl_jax/data/dataset_section.py, read by the tf.data pipeline), ``input``
(ssl_jax/data/preprocess.py), ``augment`` (ssl_jax/data/augment.py), ``model``
(ssl_jax/models/__init__.py), ``optimizer`` (ssl_jax/optim.py), the task's own section
``config.<task>`` (``config()`` of ssl_jax/tasks/<task>.py, if it has fields), and one
section per named evaluator instance in ``config.evals`` (``config()`` of
ssl_jax/evaluate/<type>.py). This module only adds the run-level fields (seed, batch,
duration, logging), assembles, validates, parses config-file arguments and reads and
writes config.json. It knows no task, model or evaluator by name; the recipes (Revisiting,
SimCLR, MoCo, BYOL, runlocal) live with the config files, in configs/common.py. The
sections load without TensorFlow (the host pipeline's modules import it where they run
it), so that the step's benchmarks run on an accelerator host without TensorFlow.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Any, Sequence

import ml_collections

ConfigDict = ml_collections.ConfigDict


def import_component(package: str, name: str):
  """The module ``ssl_jax.<package>.<name>``; an unknown name fails listing the valid ones."""
  try:
    return importlib.import_module(f'ssl_jax.{package}.{name}')
  except ModuleNotFoundError as e:
    if e.name != f'ssl_jax.{package}.{name}':
      raise
    folder = os.path.join(os.path.dirname(__file__), package)
    valid = sorted(f[:-3] for f in os.listdir(folder) if f.endswith('.py') and f[0] != '_')
    raise ValueError(f'No {package[:-1] if package.endswith("s") else package} {name!r} in '
                     f'ssl_jax/{package}/; valid names: {", ".join(valid)}.') from None


def _section(module) -> ConfigDict:
  return module.config() if hasattr(module, 'config') else ConfigDict()


def run_config(task: str) -> ConfigDict:
  """Every field of a run of ``task`` with its default (unlocked); config files override
  what their recipe changes and add evaluator instances with :func:`evaluator`."""
  from ssl_jax import optim
  from ssl_jax import models
  from ssl_jax import sharding
  from ssl_jax import writers
  from ssl_jax.data import augment
  from ssl_jax.data import corruption
  from ssl_jax.data import dataset_section
  from ssl_jax.data import preprocess
  c = ConfigDict()
  c.seed = 0
  c.task = task  # Module in ssl_jax/tasks/; its fields are in the section of that name.
  c.batch_size = 64  # Global, in images (not network inputs).
  c.eval_batch_size = 256  # Global, for feature extraction.
  c.total_epochs = 35.0  # Used when total_steps < 0.
  c.total_steps = -1  # >= 0 overrides total_epochs; 0 saves the random initialisation.
  # > 0: BatchNorm statistics over fixed groups of this many images (with all their
  # inputs: 4 rotations, 8 copies, 9 patches), whatever the number of devices, as each
  # TPU core of the original code; 0: over the global batch.
  c.bn_group_images = 0
  c.log_every = 100
  c.checkpoint_every = 1000
  c.keep_checkpoints = 3
  c.image_summary_every = 1000  # 0 disables the image summary of augmented inputs.
  # Non-empty: do not train; evaluate the encoder of this workdir (configs/linear_eval.py).
  c.encoder_workdir = ''
  # Non-empty: the evaluators see this workdir's encoder's features concatenated after
  # those of the evaluated one (Cole et al. §4.2); lbfgs, linear, mlp and knn only.
  c.concat_encoder_workdir = ''
  c.dataset = dataset_section.config()
  c.input = preprocess.config()
  c.augment = augment.config()
  c.corruption = corruption.config()  # Of the pretraining images only.
  c.model = models.config()
  c.optimizer = optim.config()
  c.writers = writers.config()  # Optional writers beside TensorBoard (W&B).
  c.mesh = sharding.config()  # FSDP: parameters and optimiser state split over devices.
  task_section = _section(import_component('tasks', task))
  if task_section:
    c[task] = task_section
  c.evals = ConfigDict()  # Named evaluator instances: evals.<name> = evaluator(type).
  return c


def evaluator(type_name: str, **overrides: Any) -> ConfigDict:
  """A section for one evaluator instance of ``type_name`` (a module of ssl_jax/evaluate/
  with its ``config()``): ``type``, ``every`` (> 0: also every N pretraining steps) and the
  type's fields, with ``overrides`` applied."""
  section = import_component('evaluate', type_name).config()
  section.type = type_name
  for key, value in overrides.items():
    if key not in section:
      raise KeyError(f'Evaluator {type_name!r} has no field {key!r}; valid fields: '
                     f'{", ".join(sorted(section.keys()))}.')
    section[key] = value
  return section


def lock(config: ConfigDict) -> ConfigDict:
  """Validates and locks ``config``; returns it."""
  validate(config)
  config.lock()
  return config


def validate(config: ConfigDict) -> None:
  """Raises ValueError naming the field and the fix for values that cannot work: the
  run-level fields here, each section by its owner's ``validate``."""
  from ssl_jax import optim
  from ssl_jax import models
  from ssl_jax import sharding
  from ssl_jax import writers
  from ssl_jax.data import augment
  from ssl_jax.data import corruption
  from ssl_jax.data import dataset_section
  from ssl_jax.data import preprocess
  if config.batch_size <= 0 or config.eval_batch_size <= 0:
    raise ValueError('batch_size and eval_batch_size must be positive.')
  task = import_component('tasks', config.task)
  validate_bn_groups(config.bn_group_images, config.batch_size, config.task,
                     hasattr(task, 'bn_groups'))
  models.validate(config.model)
  optim.validate(config.optimizer)
  sharding.validate(config.mesh)
  dataset_section.validate(config.dataset)
  augment.validate(config.augment)
  corruption.validate(config.corruption)
  preprocess.validate(config.input)
  writers.validate(config.writers)
  if hasattr(task, 'validate'):
    task.validate(config[config.task], batch_size=config.batch_size)
  if config.input.local_crops and not getattr(task, 'MULTICROP', False):
    raise ValueError(f'input.local_crops={config.input.local_crops}: task {config.task!r} '
                     'does not use multi-crop views; set --config.input.local_crops=0.')
  for name, section in config.evals.items():
    module = import_component('evaluate', section.type)
    if config.concat_encoder_workdir and section.every > 0:
      raise ValueError(f'evals.{name}.every={section.every}: concatenated encoders '
                       '(concat_encoder_workdir) are evaluated after training only; set '
                       'every=0.')
    if section.every < 0:
      raise ValueError(f'evals.{name}.every={section.every} must be >= 0 (0: only after '
                       'training).')
    if hasattr(module, 'validate'):
      module.validate(section)


def validate_bn_groups(group_images: int, batch_size: int, task: str,
                       task_has_groups: bool) -> None:
  """Raises ValueError unless ``bn_group_images`` splits the batch into whole groups of
  images, and only for a task that does not choose its own BN groups (MoCo's shuffled BN)."""
  if group_images < 0:
    raise ValueError(f'bn_group_images={group_images} must be >= 0 (0: global BN).')
  if group_images and batch_size % group_images:
    raise ValueError(f'bn_group_images={group_images} does not divide batch_size='
                     f'{batch_size}: BN groups are whole groups of images; choose a '
                     'batch_size that is a multiple of bn_group_images, or another '
                     'bn_group_images.')
  if group_images and task_has_groups:
    raise ValueError(f'bn_group_images={group_images}: task {task!r} chooses its own BN '
                     f'groups (bn_groups in ssl_jax/tasks/{task}.py); set bn_group_images=0.')


def check_choice(section: ConfigDict, name: str, field: str,
                 choices: tuple[str, ...]) -> None:
  """Raises ValueError unless ``section[field]`` is one of ``choices`` (``name`` is the
  section's name in the run config, for the message)."""
  if section[field] not in choices:
    raise ValueError(f'{name}.{field}={section[field]!r}: use one of {", ".join(choices)}.')


def check_class_subset(name: str, per_class: int, fraction: float) -> None:
  """Raises ValueError unless at most one of ``per_class`` > 0 and ``fraction`` < 1 asks for
  a per-class subset and the fraction lies in (0, 1] (``name``: the evaluator, for the
  message); see input_pipeline.class_subset_ids."""
  if per_class > 0 and fraction < 1.0:
    raise ValueError(f'{name}: set a count per class or label_fraction < 1, not both.')
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f'{name}.label_fraction={fraction} must lie in (0, 1].')


def parse_arg(arg: str | None, **defaults: Any) -> ConfigDict:
  """Parses ``'k=16,runlocal'`` into a ConfigDict, typed by ``defaults``.

  A bare name sets a boolean to True. Unknown names fail with the list of valid ones.
  """
  result = ConfigDict(defaults)
  for item in filter(None, (arg or '').split(',')):
    name, _, value = item.partition('=')
    if name not in defaults:
      raise ValueError(f'Unknown config argument {name!r}; valid arguments: '
                       f'{", ".join(sorted(defaults))}.')
    default = defaults[name]
    if not value:
      if not isinstance(default, bool):
        raise ValueError(f'Config argument {name!r} needs a value: {name}=...')
      result[name] = True
    elif isinstance(default, bool):
      result[name] = value.lower() in ('1', 'true', 'yes')
    else:
      result[name] = type(default)(value)
  return result


def add_config_root_to_path(argv: Sequence[str]) -> None:
  """Puts the folder above the ``--config=`` file on sys.path, so that config files import
  ``configs.common`` from any working directory."""
  for arg in argv:
    if arg.startswith('--config='):
      path = arg.split('=', 1)[1].split(':')[0]
      root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
      if root not in sys.path:
        sys.path.insert(0, root)


def flatten(config: ConfigDict, prefix: str = '') -> dict[str, Any]:
  """{'model.k': 4.0, ...}: every field by its dotted name (tuples as lists)."""
  values = {}
  for key, value in config.items():
    if isinstance(value, ConfigDict):
      values.update(flatten(value, prefix + key + '.'))
    else:
      values[prefix + key] = list(value) if isinstance(value, tuple) else value
  return values


def field_names(config: ConfigDict, prefix: str = '') -> set[str]:
  """Every field as a dotted name ('model.k'), sections included ('model')."""
  names = set()
  for key, value in config.items():
    names.add(prefix + key)
    if isinstance(value, ConfigDict):
      names |= field_names(value, prefix + key + '.')
  return names


def to_json(config: ConfigDict) -> str:
  """Serialises ``config`` (tuples become lists)."""
  return json.dumps(config.to_dict(), indent=2, sort_keys=True)


def from_json(text: str) -> ConfigDict:
  """Reads a config saved by :func:`to_json` (locked), restoring tuples where the
  defaults have them; a key the defaults lack fails naming it."""
  loaded = json.loads(text)
  if not isinstance(loaded.get('evals'), dict):
    raise ValueError('This config.json was written before components owned their config '
                     'sections (its evals is a list of names, not named instances): '
                     'retrain with this version, or evaluate it with the ssl_jax commit '
                     '7ea9506 that wrote it.')
  _drop_per_device_bn(loaded)
  config = run_config(loaded['task'])
  task = import_component('tasks', loaded['task'])
  if hasattr(task, 'config_from') and loaded['task'] in loaded:
    # A section whose fields depend on its values (multitask: its tasks' own sections).
    config[loaded['task']] = task.config_from(loaded[loaded['task']])
  for name, section in loaded.get('evals', {}).items():
    config.evals[name] = evaluator(section['type'])
  merge(config, loaded, path='')
  config.lock()
  return config


def _drop_per_device_bn(loaded: dict) -> None:
  """Reads a config.json written before ``bn_group_images``: its ``per_device_bn=False``
  is global BN, ``bn_group_images=0``; True depended on the device count it ran on, which
  the file does not record."""
  if loaded.pop('per_device_bn', False):
    raise ValueError('This config.json trained with per_device_bn=True (BN statistics per '
                     'device, which bn_group_images replaced): in the file, replace '
                     '"per_device_bn": true by "bn_group_images": <batch_size / the number '
                     'of devices it trained on>.')


def merge(config: ConfigDict, values: dict, path: str = '') -> None:
  """Sets the fields of ``values`` (nested dicts) in ``config``, converting lists to
  tuples where the default is a tuple; an unknown key fails listing the valid ones."""
  for key, value in values.items():
    if key not in config:
      raise KeyError(f'Unknown config key {path + key!r}; valid keys here: '
                     f'{", ".join(sorted(config.keys()))}.')
    if isinstance(config[key], ConfigDict):
      merge(config[key], value, path + key + '.')
    elif isinstance(config[key], tuple):
      config[key] = tuple(value)
    else:
      config[key] = value
