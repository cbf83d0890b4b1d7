"""Features of a split, extracted once from the frozen representation: sharded over the
mesh, every (selected) example exactly once (padding is masked out), collected on the
host as float32 numpy arrays."""

from __future__ import annotations

from typing import Mapping, Sequence

from jax.experimental import multihost_utils
import numpy as np

from ssl_jax.evaluate import context as context_lib

Extracted = dict[str, tuple[dict[str, np.ndarray], np.ndarray]]


def extract(encoder: context_lib.Encoder, data: context_lib.DataSpec, splits: Sequence[str],
            layers: Sequence[str], max_features: int | None,
            keep_ids: Mapping[str, np.ndarray | None] | None = None) -> Extracted:
  """{split: ({layer: float32 features [N, D]}, labels [N])} of every example of each
  split (of those of ``keep_ids[split]`` when given: chosen by ``tfds_id`` before any
  image is decoded), with the evaluation preprocessing of ``data``; large maps max-pooled
  to ``max_features`` (§4.2). The feature function is compiled once per encoder and set
  of layers. Each batch is copied to host memory as it comes, into arrays allocated once,
  so the devices never hold more than one batch of features."""
  # TensorFlow is imported where the host pipeline runs (see ssl_jax/tasks/rotation.py).
  from ssl_jax.data import input_pipeline
  features_fn = encoder.features_fn(data, layers, max_features)
  keep_ids = keep_ids or {}
  extracted = {}
  for split in splits:
    batches, num_batches = input_pipeline.eval_batches(
        data.dataset, data.input, data.builder, data.mesh, split, data.eval_batch_size,
        keep_ids=keep_ids.get(split))
    size = num_batches * data.eval_batch_size
    features: dict[str, np.ndarray] = {}
    labels, mask = np.zeros((size,), np.int64), np.zeros((size,), bool)
    for i, batch in enumerate(batches):
      rows = slice(i * data.eval_batch_size, (i + 1) * data.eval_batch_size)
      for name, value in features_fn(encoder.variables, batch['image']).items():
        value = np.asarray(multihost_utils.process_allgather(value, tiled=True), np.float32)
        if name not in features:
          features[name] = np.zeros((size, value.shape[1]), np.float32)
        features[name][rows] = value
      labels[rows] = multihost_utils.process_allgather(batch['label'], tiled=True)
      mask[rows] = multihost_utils.process_allgather(batch['mask'], tiled=True)
    # One process pads only its last batch: the examples are then a prefix, taken without
    # a copy; several processes interleave their padding.
    n = int(mask.sum())
    take = (lambda a: a[:n]) if mask[:n].all() else (lambda a: a[mask])  # noqa: E731
    extracted[split] = ({name: take(f) for name, f in features.items()}, take(labels))
  return extracted
