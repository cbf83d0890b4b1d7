"""Frozen features of a split, extracted once: sharded over the mesh, every example
exactly once (padding is masked out)."""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils
import ml_collections
import numpy as np

from ssl_jax import encoder as encoder_lib
from ssl_jax import step as step_lib


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


def extract(config: ml_collections.ConfigDict, workdir: str, split: str,
            layers: Sequence[str], devices=None) -> tuple[dict[str, np.ndarray], np.ndarray]:
  """({layer: features [N, D]}, labels [N]) of every example of ``split``."""
  mesh = step_lib.make_mesh(devices)
  _, encoder, variables, _ = encoder_lib.restore_encoder(workdir)
  variables = jax.device_put(variables, step_lib.replicated(mesh))
  apply = encoder_lib.encoder_apply(encoder)

  @jax.jit
  def features_fn(variables, images):
    end_points = apply(variables, images)
    missing = set(layers) - set(end_points)
    if missing:
      raise ValueError(f'Unknown layers {sorted(missing)}; this encoder has '
                       f'{sorted(end_points)}.')
    return {name: pool_to_size(end_points[name], config.lbfgs.max_features)
            for name in layers}

  # TensorFlow is imported where the host pipeline runs (see ssl_jax/tasks/rotation.py).
  from ssl_jax.data import input_pipeline
  builder = input_pipeline.get_builder(config)
  batches, _ = input_pipeline.eval_batches(config, builder, mesh, split)
  chunks, labels, masks = [], [], []
  for batch in batches:
    feats = features_fn(variables, batch['image'])
    chunks.append(multihost_utils.process_allgather(feats, tiled=True))
    labels.append(multihost_utils.process_allgather(batch['label'], tiled=True))
    masks.append(multihost_utils.process_allgather(batch['mask'], tiled=True))
  keep = np.concatenate(masks).astype(bool)
  features = {name: np.concatenate([c[name] for c in chunks])[keep] for name in layers}
  return features, np.concatenate(labels)[keep]
