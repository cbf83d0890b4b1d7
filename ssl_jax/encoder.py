"""The frozen representation: a trained (or randomly initialised) encoder loaded from a
workdir, applied with the evaluation preprocessing of its config."""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ssl_jax import checkpoint
from ssl_jax import config_lib
from ssl_jax import files
from ssl_jax import step as step_lib
from ssl_jax.data import augment


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run saved as ``WORKDIR/config.json``."""
  path = files.Path(workdir) / 'config.json'
  text = files.read_text(path)
  if text is None:
    raise FileNotFoundError(f'{path} does not exist: is {workdir!r} the workdir of a run?')
  return config_lib.from_json(text)


class Restored(NamedTuple):
  """A trained run's newest checkpoint, split into what the evaluators use."""
  config: ml_collections.ConfigDict
  encoder: nn.Module
  variables: dict  # The encoder's {'params', 'batch_stats'}.
  head_variables: dict  # The task head's (SimCLR v2 fine-tunes from them).
  step: int


def restore(workdir: str) -> Restored:
  """The newest checkpoint of ``workdir``: its encoder (a global-BN module) and the
  variables of encoder and task head."""
  config = read_config(workdir)
  step, state = checkpoint.restore_raw(workdir)
  part = lambda name: {'params': state['params'].get(name, {}),  # noqa: E731
                       'batch_stats': state['batch_stats'].get(name, {})}
  return Restored(config, step_lib.build_encoder(config.model), part('encoder'),
                  part('head'), step)


def build_head(config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
  """The task head of a run config (``num_classes``: its dataset's)."""
  return step_lib.import_task(config).make_head(step_lib.task_sections(config), num_classes)


def restore_encoder(workdir: str) -> tuple[ml_collections.ConfigDict, nn.Module, dict, int]:
  """(config, encoder module, encoder variables, step) of the newest checkpoint."""
  restored = restore(workdir)
  return restored.config, restored.encoder, restored.variables, restored.step


def pool_to_size(x: jax.Array, max_features: int) -> jax.Array:
  """Flattens an end point to [N, D]. Maps of more than ``max_features`` values are first
  max-pooled with window = stride = ceil(sqrt(h*w*c / max_features)) (VALID), the rule of
  the Revisiting linear-evaluation code (reference §4)."""
  if x.ndim == 4:
    _, h, w, c = x.shape
    if h * w * c > max_features:
      window = min(h, w, math.ceil(math.sqrt(h * w * c / max_features)))
      x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, window, window, 1),
                                (1, window, window, 1), 'VALID')
  return x.reshape(x.shape[0], -1).astype(jnp.float32)


def split_into_patches(images: jax.Array, grid: int) -> jax.Array:
  """[N, S, S, C] -> the grid x grid contiguous patches, row-major, [N * grid^2, S/grid,
  S/grid, C] (the patch tasks' evaluation input, Revisiting §2.3)."""
  n, size, _, c = images.shape
  side = size // grid
  patches = images[:, :grid * side, :grid * side].reshape(n, grid, side, grid, side, c)
  return patches.transpose(0, 1, 3, 2, 4, 5).reshape(n * grid * grid, side, side, c)


def model_input(inp: ml_collections.ConfigDict, normalize: str,
                images: jax.Array) -> jax.Array:
  """Float images in [0, 1] -> the network input the run's pretraining used:
  per-image standardisation with ``inp.eval_standardize`` (Exemplar, patch tasks), else
  ``normalize`` (augment.normalize: [-1, 1] for the Revisiting models, [0, 1] for
  SimCLR, ImageNet mean/std for MoCo and BYOL)."""
  if inp.eval_standardize:
    # On 0-255 values, as the patch tasks' pretext (ssl_jax/tasks/patches.py) and the
    # code's evaluation (tf.image.per_image_standardization after an area resize_small of
    # uint8 images; config/evaluation/jigsaw_or_relative_patch_location.sh:31): the floor
    # 1/sqrt(N) of the standard deviation depends on the scale.
    return augment.standardize(images * 255.0)
  return augment.normalize(images, normalize)


def representation(inp: ml_collections.ConfigDict, normalize: str, encoder: nn.Module,
                   layers: Sequence[str] | None, max_features: int | None) -> Callable:
  """``(variables, uint8 images) -> {layer: features}`` of the frozen encoder.

  Inputs are scaled as in pretraining (:func:`model_input`). With
  ``inp.eval_patch_grid`` > 0 every end point is taken per patch, pooled (§4.2) and
  averaged over the patches (Revisiting §2.3). ``max_features=None`` keeps the maps
  unpooled and unflattened (averaged over patches elementwise).
  """
  grid = inp.eval_patch_grid

  def fn(variables: dict, images: jax.Array) -> dict:
    x = augment.to_unit(images)
    if grid:
      x = split_into_patches(x, grid)
    x = model_input(inp, normalize, x)
    end_points = encoder.apply(variables, x, train=False)
    missing = set(layers or ()) - set(end_points)
    if missing:
      raise ValueError(f'Unknown layers {sorted(missing)}; this encoder has '
                       f'{sorted(end_points)}.')
    out = {}
    for name in layers or end_points:
      y = end_points[name]
      if max_features is not None:
        y = pool_to_size(y, max_features)
      if grid:
        y = y.reshape((images.shape[0], grid * grid) + y.shape[1:]).mean(1)
      out[name] = y.astype(jnp.float32)
    return out

  return fn


def load_encoder(workdir: str) -> Callable[[np.ndarray], dict]:
  """A function from uint8 images [N, H, W, 3] to the dict of end points of the encoder
  in ``workdir``, with the config's evaluation preprocessing (central crop and resize;
  for patch tasks the end points are averaged over the patches).
  A workdir trained with ``total_steps=0`` holds the random initialisation."""
  from ssl_jax.data import input_pipeline  # tf.data is only needed for the preprocessing.
  config, encoder, variables, _ = restore_encoder(workdir)
  apply = jax.jit(representation(config.input, config.augment.normalize, encoder,
                                 layers=None, max_features=None))

  def fn(images: np.ndarray) -> dict:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
      raise ValueError(f'Expected uint8 images [N, H, W, 3], got {images.dtype} '
                       f'{images.shape}.')
    if not images.shape[0]:
      raise ValueError('Expected at least one image, got an empty batch [0, H, W, 3].')
    return apply(variables, input_pipeline.eval_array_images(images, config.input))

  return fn
