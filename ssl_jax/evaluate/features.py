"""Features of a whole split, extracted once from the frozen representation: sharded over
the mesh, every example exactly once (padding is masked out).

:func:`extract` restores the encoder of a workdir; :func:`extract_variables` takes encoder
variables already in memory (the kNN monitor of a running pretraining), with a feature
function from :func:`features_function` that is compiled once and reused across calls.
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np

from ssl_jax import encoder as encoder_lib
from ssl_jax import step as step_lib

Extracted = dict[str, tuple[dict[str, np.ndarray], np.ndarray]]


def features_function(config: ml_collections.ConfigDict, encoder: nn.Module,
                      layers: Sequence[str]) -> Callable:
  """The jitted ``(variables, uint8 images) -> {layer: features [N, D]}`` of the frozen
  encoder with the config's evaluation preprocessing. Keep and reuse it: each new one
  compiles again."""
  return jax.jit(encoder_lib.representation(config, encoder, tuple(layers),
                                            config.max_features))


def extract_variables(config: ml_collections.ConfigDict, features_fn: Callable,
                      variables: dict, splits: Sequence[str], mesh: jax.sharding.Mesh,
                      builder=None) -> Extracted:
  """{split: ({layer: features [N, D]}, labels [N])} of every example of each split, by
  ``features_fn`` (see :func:`features_function`) applied to encoder ``variables``
  (replicated on ``mesh``); the layers are those ``features_fn`` returns."""
  # TensorFlow is imported where the host pipeline runs (see ssl_jax/tasks/rotation.py).
  from ssl_jax.data import input_pipeline
  builder = builder or input_pipeline.get_builder(config)
  extracted = {}
  for split in splits:
    batches, _ = input_pipeline.eval_batches(config, builder, mesh, split)
    chunks, labels, masks = [], [], []
    for batch in batches:
      feats = features_fn(variables, batch['image'])
      chunks.append(multihost_utils.process_allgather(feats, tiled=True))
      labels.append(multihost_utils.process_allgather(batch['label'], tiled=True))
      masks.append(multihost_utils.process_allgather(batch['mask'], tiled=True))
    keep = np.concatenate(masks).astype(bool)
    features = {name: np.concatenate([c[name] for c in chunks])[keep] for name in chunks[0]}
    extracted[split] = (features, np.concatenate(labels)[keep])
  return extracted


def extract(config: ml_collections.ConfigDict, workdir: str, splits: Sequence[str],
            layers: Sequence[str], devices=None) -> Extracted:
  """{split: ({layer: features [N, D]}, labels [N])} of every example of each split; the
  encoder of ``workdir`` is restored and the feature function compiled once for all of
  them."""
  mesh = step_lib.make_mesh(devices)
  _, encoder, variables, _ = encoder_lib.restore_encoder(workdir)
  variables = jax.device_put(variables, step_lib.replicated(mesh))
  return extract_variables(config, features_function(config, encoder, layers), variables,
                           splits, mesh)
