"""Weighted k-nearest-neighbour classification of frozen features (Wu et al. 2018,
"Unsupervised Feature Learning via Non-Parametric Instance Discrimination", §3.4), the
monitor of InstDisc and MoCo and an evaluator here (an instance of type 'knn' in
``config.evals``; with ``every`` > 0 it also runs on the live encoder during pretraining).

Features are L2-normalised; each test example takes the k training examples of highest
cosine similarity s_i, each votes for its class with weight exp(s_i / T), and the class
with the largest summed vote is the prediction. The training split is the memory bank,
the test split is scored (top-1, and top-5 with at least 5 classes).

    scores = knn.evaluate_features(train_x, train_y, test_x, test_y, num_classes,
                                   k=200, temperature=0.1)   # {'top1': ..., 'top5': ...}
"""

from __future__ import annotations

import functools

import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np

from ssl_jax import losses
from ssl_jax import step as step_lib
from ssl_jax.evaluate import context as context_lib
from ssl_jax.evaluate import features as features_lib

# Test examples scored at once: memory is chunk x N_train similarities, split over the
# mesh (1.3 GB in float32 for ImageNet's 1.28M training images).
CHUNK = 256


def knn_predict(train_features: jax.Array, train_labels: jax.Array,
                test_features: jax.Array, num_classes: int, k: int, temperature: float,
                chunk: int, chunk_sharding: jax.sharding.Sharding | None = None
                ) -> jax.Array:
  """Summed weighted votes [N_test, num_classes] of the k nearest training examples.

  Pure and jittable (all but the arrays and ``temperature`` static). Test examples are
  scored ``chunk`` at a time (``jax.lax.map``) so that only chunk x N_train
  similarities exist at once; the last chunk is zero-padded and its rows dropped.
  ``chunk_sharding``, if given, constrains each chunk's rows (e.g. over the data axis).
  ``k`` larger than the memory bank uses all of it.
  """
  k = min(k, train_features.shape[0])
  bank = losses.l2_normalize(train_features)
  queries = losses.l2_normalize(test_features)
  num_test = queries.shape[0]
  num_chunks = -(-num_test // chunk)
  queries = jnp.pad(queries, ((0, num_chunks * chunk - num_test), (0, 0)))
  queries = queries.reshape(num_chunks, chunk, queries.shape[-1])

  def votes(rows: jax.Array) -> jax.Array:
    if chunk_sharding is not None:
      rows = jax.lax.with_sharding_constraint(rows, chunk_sharding)
    similarity, index = jax.lax.top_k(rows @ bank.T, k)
    # Wu et al. §3.4: neighbour i votes for its class with weight exp(s_i / tau).
    weights = jnp.exp(similarity / temperature)
    one_hot = jax.nn.one_hot(train_labels[index], num_classes, dtype=jnp.float32)
    return jnp.einsum('nk,nkc->nc', weights, one_hot)

  return jax.lax.map(votes, queries).reshape(num_chunks * chunk, num_classes)[:num_test]


@functools.partial(jax.jit, static_argnames=('num_classes', 'k', 'chunk', 'chunk_sharding'))
def _knn_predict_jit(train_features, train_labels, test_features, temperature, *,
                     num_classes: int, k: int, chunk: int, chunk_sharding):
  # One jitted function at module level, so repeated monitor calls hit the compile cache.
  return knn_predict(train_features, train_labels, test_features, num_classes, k,
                     temperature, chunk, chunk_sharding)


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
  """Fraction of rows whose label is among the k highest scores (ties go to the lower
  class index, as argmax)."""
  top = np.argsort(-scores, axis=1, kind='stable')[:, :k]
  return float(np.mean(np.any(top == np.asarray(labels)[:, None], axis=1)))


def evaluate_features(train_features: np.ndarray, train_labels: np.ndarray,
                      test_features: np.ndarray, test_labels: np.ndarray, num_classes: int,
                      k: int, temperature: float, mesh: jax.sharding.Mesh | None = None,
                      chunk: int = CHUNK) -> dict[str, float]:
  """{'top1', 'top5' (with >= 5 classes)} of the weighted kNN classifier on the test
  features, the training features as memory bank; each chunk of test rows is split over
  ``mesh`` (default: all devices), the memory bank replicated."""
  mesh = mesh or step_lib.make_mesh()
  chunk = -(-chunk // mesh.size) * mesh.size  # Rows divide over the devices.
  put = lambda x: jax.device_put(x, step_lib.replicated(mesh))  # noqa: E731
  scores = _knn_predict_jit(
      put(np.asarray(train_features, np.float32)), put(np.asarray(train_labels, np.int32)),
      put(np.asarray(test_features, np.float32)), jnp.float32(temperature),
      num_classes=num_classes, k=k, chunk=chunk, chunk_sharding=step_lib.batch_sharding(mesh))
  # The rows come back split over the mesh: gather them on every process.
  scores = np.asarray(multihost_utils.process_allgather(scores, tiled=True))
  results = {'top1': topk_accuracy(scores, test_labels, 1)}
  if num_classes >= 5:
    results['top5'] = topk_accuracy(scores, test_labels, 5)
  return results


def config() -> ml_collections.ConfigDict:
  """An evaluator instance of type 'knn' (Wu et al. 2018's protocol)."""
  c = ml_collections.ConfigDict()
  c.every = 0  # > 0: also every N pretraining steps, on the live encoder (the monitor).
  c.k = 200
  c.temperature = 0.1
  c.layer = 'pre_logits'
  c.max_features = 9000  # A larger end point is max-pooled to at most this (§4.2).
  return c


def validate(section: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the field and the fix."""
  if section.k <= 0 or section.temperature <= 0:
    raise ValueError(f'knn: k={section.k} and temperature={section.temperature} must be '
                     'positive.')


def run(section: ml_collections.ConfigDict, encoder: context_lib.Encoder,
        data: context_lib.DataSpec, workdir: str) -> dict[str, float]:
  """kNN accuracy on ``section.layer``: features of the train split as memory bank, the
  test split scored; ``{layer}/top1`` (and ``top5``)."""
  del workdir  # Nothing to checkpoint: the features are extracted in one pass.
  splits = (data.dataset.train_split, data.dataset.test_split)
  extracted = features_lib.extract(encoder, data, splits, (section.layer,),
                                   section.max_features)
  (train_feats, train_y), (test_feats, test_y) = (extracted[splits[0]], extracted[splits[1]])
  scores = evaluate_features(train_feats[section.layer], train_y, test_feats[section.layer],
                             test_y, data.num_classes, section.k, section.temperature,
                             data.mesh)
  return {f'{section.layer}/{metric}': value for metric, value in scores.items()}
