"""Loading a trained (or randomly initialised) encoder from a workdir."""

from __future__ import annotations

import os
from typing import Callable

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from ssl_jax import checkpoint
from ssl_jax import config_lib
from ssl_jax import step as step_lib
from ssl_jax.data import augment


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run saved as ``WORKDIR/config.json``."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} does not exist: is {workdir!r} the workdir of a run?')
  with open(path) as f:
    return config_lib.from_json(f.read())


def restore_encoder(workdir: str) -> tuple[ml_collections.ConfigDict, nn.Module, dict, int]:
  """(config, encoder module, encoder variables, step) of the newest checkpoint."""
  config = read_config(workdir)
  step, state = checkpoint.restore_raw(workdir)
  variables = {'params': state['params']['encoder'],
               'batch_stats': state['batch_stats']['encoder']}
  return config, step_lib.build_encoder(config), variables, step


def encoder_apply(encoder: nn.Module) -> Callable:
  """Jitted ``(variables, uint8 images) -> end points`` in inference mode."""
  return jax.jit(lambda variables, images: encoder.apply(
      variables, augment.to_model_input(augment.to_unit(images)), train=False))


def load_encoder(workdir: str) -> Callable[[np.ndarray], dict]:
  """A function from uint8 images [N, H, W, 3] to the dict of end points of the encoder
  in ``workdir``, with the config's evaluation preprocessing (central crop and resize).
  A workdir trained with ``total_steps=0`` holds the random initialisation."""
  from ssl_jax.data import input_pipeline  # tf.data is only needed for the preprocessing.
  config, encoder, variables, _ = restore_encoder(workdir)
  apply = encoder_apply(encoder)

  def fn(images: np.ndarray) -> dict:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
      raise ValueError(f'Expected uint8 images [N, H, W, 3], got {images.dtype} '
                       f'{images.shape}.')
    return apply(variables, input_pipeline.eval_array_images(images, config))

  return fn
