"""Features of a whole split, extracted once from the frozen representation: sharded over
the mesh, every example exactly once (padding is masked out)."""

from __future__ import annotations

from typing import Sequence

from jax.experimental import multihost_utils
import numpy as np

from ssl_jax.evaluate import context as context_lib

Extracted = dict[str, tuple[dict[str, np.ndarray], np.ndarray]]


def extract(encoder: context_lib.Encoder, data: context_lib.DataSpec, splits: Sequence[str],
            layers: Sequence[str], max_features: int | None) -> Extracted:
  """{split: ({layer: features [N, D]}, labels [N])} of every example of each split, with
  the evaluation preprocessing of ``data``; large maps max-pooled to ``max_features``
  (§4.2). The feature function is compiled once per encoder and set of layers."""
  # TensorFlow is imported where the host pipeline runs (see ssl_jax/tasks/rotation.py).
  from ssl_jax.data import input_pipeline
  features_fn = encoder.features_fn(data, layers, max_features)
  extracted = {}
  for split in splits:
    batches, _ = input_pipeline.eval_batches(data.dataset, data.input, data.builder,
                                             data.mesh, split, data.eval_batch_size)
    chunks, labels, masks = [], [], []
    for batch in batches:
      feats = features_fn(encoder.variables, batch['image'])
      chunks.append(multihost_utils.process_allgather(feats, tiled=True))
      labels.append(multihost_utils.process_allgather(batch['label'], tiled=True))
      masks.append(multihost_utils.process_allgather(batch['mask'], tiled=True))
    keep = np.concatenate(masks).astype(bool)
    features = {name: np.concatenate([c[name] for c in chunks])[keep] for name in chunks[0]}
    extracted[split] = (features, np.concatenate(labels)[keep])
  return extracted
