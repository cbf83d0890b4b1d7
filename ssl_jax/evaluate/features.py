"""Features of a whole split, extracted once from the frozen representation: sharded over
the mesh, every example exactly once (padding is masked out)."""

from __future__ import annotations

from typing import Sequence

import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np

from ssl_jax import encoder as encoder_lib
from ssl_jax import step as step_lib


def extract(config: ml_collections.ConfigDict, workdir: str, splits: Sequence[str],
            layers: Sequence[str], devices=None
            ) -> dict[str, tuple[dict[str, np.ndarray], np.ndarray]]:
  """{split: ({layer: features [N, D]}, labels [N])} of every example of each split; the
  encoder is restored and the feature function compiled once for all of them."""
  # TensorFlow is imported where the host pipeline runs (see ssl_jax/tasks/rotation.py).
  from ssl_jax.data import input_pipeline
  mesh = step_lib.make_mesh(devices)
  _, encoder, variables, _ = encoder_lib.restore_encoder(workdir)
  variables = jax.device_put(variables, step_lib.replicated(mesh))
  features_fn = jax.jit(encoder_lib.representation(config, encoder, layers,
                                                   config.max_features))
  builder = input_pipeline.get_builder(config)
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
    features = {name: np.concatenate([c[name] for c in chunks])[keep] for name in layers}
    extracted[split] = (features, np.concatenate(labels)[keep])
  return extracted
