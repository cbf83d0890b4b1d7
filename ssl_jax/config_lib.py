"""Every configuration field and its default, in one place.

A config file (``configs/*.py``) starts from :func:`base_config`, overrides the fields of
its recipe and returns :func:`lock`-ed result, so that a misspelt key fails instead of
being silently added. Arguments after the colon (``configs/x.py:k=16,runlocal``) are
parsed by :func:`parse_arg` against the defaults the config file declares.
"""

from __future__ import annotations

import json
from typing import Any

import ml_collections

ConfigDict = ml_collections.ConfigDict


def base_config() -> ConfigDict:
  """Returns the default value of every field; config files override some of them."""
  c = ConfigDict()
  c.seed = 0
  c.task = 'rotation'  # Module in ssl_jax/tasks/.
  c.batch_size = 64  # Global, in images (not network inputs).
  c.eval_batch_size = 256  # Global, for feature extraction.
  c.total_epochs = 35.0  # Used when total_steps < 0.
  c.total_steps = -1  # >= 0 overrides total_epochs; 0 saves the random initialisation.
  c.per_device_bn = False  # True: BN statistics per device, as the original TPU code.
  c.log_every = 100
  c.checkpoint_every = 1000
  c.keep_checkpoints = 3
  c.image_summary_every = 1000  # 0 disables the image summary of augmented inputs.
  c.evals = ('lbfgs',)  # Modules in ssl_jax/evaluate/, run after training.

  c.dataset = ConfigDict()
  c.dataset.name = 'cifar10_5k'  # Any TFDS image dataset; cifar10_5k ships with ssl_jax.
  c.dataset.data_dir = ''  # '' is the TFDS default; gs://... works too.
  c.dataset.train_split = 'train'
  c.dataset.test_split = 'test'
  c.dataset.image_key = 'image'
  c.dataset.label_key = 'label'
  c.dataset.shuffle_buffer = 10_000
  c.dataset.cache = False  # Cache encoded examples in memory (small datasets).
  c.dataset.prefetch = 2  # Batches prefetched to the devices.

  # Host-side crops (tf.data) and device-side pixel augmentation (jitted).
  c.input = ConfigDict()
  c.input.image_size = 224
  c.input.crop = 'inception'  # 'inception' (distorted bounding box) or 'resize'.
  c.input.crop_area = (0.05, 1.0)  # Revisiting §2.1: slim Inception crop, fast mode.
  c.input.crop_aspect = (0.75, 1.333)
  c.input.flip = True
  c.input.eval_crop_fraction = 0.875  # Central crop for evaluation.
  c.input.brightness = 32.0 / 255.0  # Max additive delta; 0 disables.
  c.input.saturation = (0.5, 1.5)  # Multiplicative range; (1, 1) disables.

  c.model = ConfigDict()
  c.model.name = 'resnet'  # Module in ssl_jax/models/.
  c.model.variant = 'v2'  # 'v1' or 'v2'.
  c.model.k = 4.0  # Widening factor: k=4 is the standard ResNet50.
  c.model.units = (3, 4, 6, 3)  # Bottleneck units per stage (ResNet50).
  c.model.last_relu = True  # False is the paper's "(-)" variant (v2 only).
  c.model.root_stride = 2  # 1 with stage_strides (1, 2, 2, 1): patch mode (§1.4).
  c.model.stage_strides = (1, 2, 2, 2)
  c.model.dtype = 'float32'  # 'bfloat16' on accelerators.
  c.model.bn_momentum = 0.99
  c.model.bn_epsilon = 1e-3

  c.optimizer = ConfigDict()
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = False
  c.optimizer.weight_decay = 1e-4  # On kernels only (Revisiting §3).
  c.optimizer.base_lr = 0.1
  c.optimizer.lr_scaling = 'linear'  # lr = base_lr * batch_size / 256; or 'none'.
  c.optimizer.schedule = 'step'  # 'step', 'cosine' or 'constant'.
  c.optimizer.warmup_epochs = 5.0  # Used when warmup_steps < 0.
  c.optimizer.warmup_steps = -1
  c.optimizer.decay_epochs = (15.0, 25.0)  # For 'step'; used when decay_steps is empty.
  c.optimizer.decay_steps = ()
  c.optimizer.decay_factor = 0.1

  # L-BFGS logistic regression on frozen features (Revisiting Table 1).
  c.lbfgs = ConfigDict()
  c.lbfgs.layers = ('pre_logits',)  # End points to evaluate.
  c.lbfgs.l2_grid = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
  c.lbfgs.holdout_fraction = 0.2  # Part of the train split that picks l2.
  c.lbfgs.num_train_examples = -1  # -1: the whole train split.
  c.lbfgs.standardize = True  # Zero mean, unit variance features (train statistics).
  c.lbfgs.max_iter = 1000
  c.lbfgs.tol = 1e-5  # On the largest absolute gradient entry.
  c.lbfgs.max_features = 9000  # Spatial maps are max-pooled to at most this (§4.2).
  return c


def lock(config: ConfigDict) -> ConfigDict:
  """Validates and locks ``config``; returns it."""
  validate(config)
  config.lock()
  return config


def validate(config: ConfigDict) -> None:
  """Raises ValueError naming the field and the fix for values that cannot work."""
  if config.batch_size <= 0 or config.eval_batch_size <= 0:
    raise ValueError('batch_size and eval_batch_size must be positive.')
  if config.model.variant not in ('v1', 'v2'):
    raise ValueError(f"model.variant={config.model.variant!r}: use 'v1' or 'v2'.")
  if config.model.variant == 'v1' and not config.model.last_relu:
    raise ValueError('model.last_relu=False (the "(-)" variant) exists only for v2 and '
                     'RevNet: ResNet50 v1 ends in a ReLU after every unit.')
  if config.optimizer.schedule not in ('step', 'cosine', 'constant'):
    raise ValueError(f'optimizer.schedule={config.optimizer.schedule!r}: use step, '
                     'cosine or constant.')
  if config.optimizer.lr_scaling not in ('linear', 'none'):
    raise ValueError(f'optimizer.lr_scaling={config.optimizer.lr_scaling!r}: use linear '
                     'or none.')
  if config.input.crop not in ('inception', 'resize'):
    raise ValueError(f"input.crop={config.input.crop!r}: use 'inception' or 'resize'.")
  if not 0.0 < config.lbfgs.holdout_fraction < 1.0:
    raise ValueError('lbfgs.holdout_fraction must lie strictly between 0 and 1.')


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


def apply_runlocal(config: ConfigDict) -> None:
  """Shrinks ``config`` in place to a CPU run of a few minutes on the shipped data."""
  config.dataset.name = 'cifar10_5k'
  config.dataset.data_dir = ''
  config.dataset.train_split = 'train'
  config.dataset.test_split = 'test'
  config.dataset.shuffle_buffer = 5_000
  config.dataset.cache = True
  config.input.image_size = 32
  config.input.eval_crop_fraction = 1.0
  config.model.k = 0.5
  config.model.dtype = 'float32'
  config.batch_size = 64
  config.eval_batch_size = 512
  config.total_steps = 300
  config.optimizer.warmup_steps = 20
  config.optimizer.schedule = 'cosine'
  config.log_every = 25
  config.checkpoint_every = 100
  config.image_summary_every = 100


def to_json(config: ConfigDict) -> str:
  """Serialises ``config`` (tuples become lists)."""
  return json.dumps(config.to_dict(), indent=2, sort_keys=True)


def from_json(text: str) -> ConfigDict:
  """Reads a config saved by :func:`to_json`, restoring tuples where the base has them."""
  loaded = json.loads(text)
  config = base_config()
  _merge(config, loaded, path='')
  config.lock()
  return config


def _merge(config: ConfigDict, values: dict, path: str) -> None:
  for key, value in values.items():
    if key not in config:
      raise KeyError(f'Unknown config key {path + key!r}; valid keys here: '
                     f'{", ".join(sorted(config.keys()))}.')
    if isinstance(config[key], ConfigDict):
      _merge(config[key], value, path + key + '.')
    elif isinstance(config[key], tuple):
      config[key] = tuple(value)
    else:
      config[key] = value
