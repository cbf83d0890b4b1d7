"""Weighted k-nearest-neighbour classification of frozen features (Wu et al. 2018,
"Unsupervised Feature Learning via Non-Parametric Instance Discrimination", §3.4), the
monitor of InstDisc and MoCo and an evaluator here (an instance of type 'knn' in
``config.evals``; with ``every`` > 0 it also runs on the live encoder during pretraining).

Features are L2-normalised; each test example takes the k training examples of highest
cosine similarity s_i, each votes for its class with weight exp(s_i / T), and the class
with the largest summed vote is the prediction. The training split (or a seeded draw of
``max_train_examples`` of it) is the memory bank, split by rows over the devices; the
test split is scored (top-1, and top-5 with at least 5 classes).

    scores = knn.evaluate_features(train_x, train_y, test_x, test_y, num_classes,
                                   k=200, temperature=0.1)   # {'top1': ..., 'top5': ...}
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ssl_jax import losses
from ssl_jax import step as step_lib
from ssl_jax.evaluate import context as context_lib
from ssl_jax.evaluate import features as features_lib

# Test examples scored at once: memory is chunk x N_train / devices similarities per
# device (1.3 GB in float32 for ImageNet's 1.28M training images on one device).
CHUNK = 256

P = jax.sharding.PartitionSpec


def _chunk_votes(queries: jax.Array, bank: jax.Array, labels: jax.Array, valid: jax.Array,
                 num_classes: int, k: int, temperature: jax.Array,
                 axis_names: tuple[str, ...] = ()) -> jax.Array:
  """Votes [chunk, num_classes] of the k nearest rows of the memory bank for each query.

  ``bank`` is the bank, or inside ``shard_map`` over ``axis_names`` this device's rows of
  it: the k nearest of its own rows, then the candidates of every device gathered and
  the k nearest of them kept (the global k nearest are among the devices' k nearest).
  Rows where ``valid`` is False (padding) never win a place with a vote."""
  similarity = jnp.where(valid, queries @ bank.T, -jnp.inf)
  similarity, index = jax.lax.top_k(similarity, min(k, bank.shape[0]))
  neighbour_labels = labels[index]
  if axis_names:
    # 'invarying': the gathered candidates, and so the votes, are the same on every device.
    similarity, neighbour_labels = jax.lax.all_gather(
        (similarity, neighbour_labels), axis_names, axis=1, tiled=True, to='invarying')
    similarity, index = jax.lax.top_k(similarity, k)
    neighbour_labels = jnp.take_along_axis(neighbour_labels, index, axis=1)
  # Wu et al. §3.4: neighbour i votes for its class with weight exp(s_i / tau); padding
  # (similarity -inf) votes 0.
  weights = jnp.exp(similarity / temperature)
  one_hot = jax.nn.one_hot(neighbour_labels, num_classes, dtype=jnp.float32)
  return jnp.einsum('nk,nkc->nc', weights, one_hot)


def knn_predict(train_features: jax.Array, train_labels: jax.Array,
                test_features: jax.Array, num_classes: int, k: int, temperature: float,
                chunk: int, mesh: jax.sharding.Mesh | None = None,
                train_valid: jax.Array | None = None) -> jax.Array:
  """Summed weighted votes [N_test, num_classes] of the k nearest training examples.

  Pure and jittable (all but the arrays and ``temperature`` static). Test examples are
  scored ``chunk`` at a time (``jax.lax.map``) so that only chunk x N_train
  similarities exist at once; the last chunk is zero-padded and its rows dropped. With
  ``mesh``, the memory bank (training features and labels) is split by rows over all
  of its axes (``shard_map``): each device scores every query against its own rows and
  keeps their k nearest, and the devices' candidates are merged; the votes come out
  replicated. ``train_valid`` marks the real rows of a padded bank (default: all);
  ``k`` larger than the memory bank uses all of it.
  """
  if train_valid is None:
    train_valid = jnp.ones(train_features.shape[:1], bool)
  num_train = train_features.shape[0]
  k = min(k, num_train)
  bank = losses.l2_normalize(train_features)
  queries = losses.l2_normalize(test_features)
  num_test = queries.shape[0]
  num_chunks = -(-num_test // chunk)
  queries = jnp.pad(queries, ((0, num_chunks * chunk - num_test), (0, 0)))
  queries = queries.reshape(num_chunks, chunk, queries.shape[-1])
  axes = tuple(mesh.axis_names) if mesh is not None else ()

  def all_votes(queries, bank, labels, valid, temperature):
    return jax.lax.map(lambda rows: _chunk_votes(rows, bank, labels, valid, num_classes, k,
                                                 temperature, axes), queries)

  if mesh is not None:
    if num_train % mesh.size:
      raise ValueError(f'The memory bank of {num_train} rows does not divide over '
                       f'{mesh.size} devices: pad it (see shard_bank).')
    all_votes = jax.shard_map(all_votes, mesh=mesh,
                              in_specs=(P(), P(axes), P(axes), P(axes), P()), out_specs=P())
  votes = all_votes(queries, bank, train_labels, train_valid, jnp.asarray(temperature))
  return votes.reshape(num_chunks * chunk, num_classes)[:num_test]


@functools.partial(jax.jit, static_argnames=('num_classes', 'k', 'chunk', 'mesh'))
def _knn_predict_jit(train_features, train_labels, train_valid, test_features, temperature,
                     *, num_classes: int, k: int, chunk: int, mesh: jax.sharding.Mesh):
  # One jitted function at module level, so repeated monitor calls hit the compile cache.
  return knn_predict(train_features, train_labels, test_features, num_classes, k,
                     temperature, chunk, mesh, train_valid)


def _put(array: np.ndarray, sharding: jax.sharding.NamedSharding) -> jax.Array:
  """A global array from the same host array on every process."""
  return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def shard_bank(features: np.ndarray, labels: np.ndarray, mesh: jax.sharding.Mesh
               ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(features, labels, valid) of the memory bank as global arrays whose rows are split
  over all axes of ``mesh`` (NamedSharding over the bank's batch axis): each device
  holds N / devices rows, not the whole bank. Padded with zero rows (valid False) to a
  multiple of the devices."""
  num_rows = len(features)
  padded = -(-num_rows // mesh.size) * mesh.size
  valid = np.arange(padded) < num_rows
  features = np.pad(np.asarray(features, np.float32), ((0, padded - num_rows), (0, 0)))
  labels = np.pad(np.asarray(labels, np.int32), (0, padded - num_rows))
  sharding = jax.sharding.NamedSharding(mesh, P(tuple(mesh.axis_names)))
  return _put(features, sharding), _put(labels, sharding), _put(valid, sharding)


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
  features, the training features as memory bank, split by rows over ``mesh`` (default:
  all devices; :func:`shard_bank`); the test features are on every device."""
  mesh = mesh or step_lib.make_mesh()
  bank, labels, valid = shard_bank(train_features, train_labels, mesh)
  queries = _put(np.asarray(test_features, np.float32), step_lib.replicated(mesh))
  scores = _knn_predict_jit(bank, labels, valid, queries, jnp.float32(temperature),
                            num_classes=num_classes, k=min(k, len(train_features)),
                            chunk=chunk, mesh=mesh)
  # Replicated: every process reads its own copy.
  scores = np.asarray(scores.addressable_data(0))
  results = {'top1': topk_accuracy(scores, test_labels, 1)}
  if num_classes >= 5:
    results['top5'] = topk_accuracy(scores, test_labels, 5)
  return results


def bank_ids(section: ml_collections.ConfigDict, data: context_lib.DataSpec
             ) -> np.ndarray | None:
  """``tfds_id``s of the memory bank: ``section.max_train_examples`` training examples
  drawn without replacement from the run's seed (file order), the same on every process
  and at every call; None (the whole train split) when it is 0 or the split is no
  larger. Drawn from the split's metadata: no image is read."""
  from ssl_jax.data import input_pipeline  # TensorFlow only where the host pipeline runs.
  if section.max_train_examples <= 0:
    return None
  return input_pipeline.random_subset_ids(data.dataset, data.builder,
                                          section.max_train_examples, data.seed)


def config() -> ml_collections.ConfigDict:
  """An evaluator instance of type 'knn' (Wu et al. 2018's protocol)."""
  c = ml_collections.ConfigDict()
  c.every = 0  # > 0: also every N pretraining steps, on the live encoder (the monitor).
  c.k = 200
  c.temperature = 0.1
  c.layer = 'pre_logits'
  c.max_features = 9000  # A larger end point is max-pooled to at most this (§4.2).
  # > 0: the memory bank is this many training examples, a draw of the run's seed (the
  # same at every call), e.g. 100,000 of ImageNet's 1.28M for a monitor that extracts
  # a twelfth of the split; 0: the whole train split (Wu et al.'s protocol).
  c.max_train_examples = 0
  # '': the dataset's labels; else a map to coarser ones (ssl_jax/data/label_map.py).
  c.label_map = ''
  return c


def validate(section: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the field and the fix."""
  if section.k <= 0 or section.temperature <= 0:
    raise ValueError(f'knn: k={section.k} and temperature={section.temperature} must be '
                     'positive.')
  if section.max_train_examples < 0:
    raise ValueError(f'knn: max_train_examples={section.max_train_examples} must be 0 '
                     '(the whole train split) or a number of examples.')


def run(section: ml_collections.ConfigDict, encoder: context_lib.Encoder,
        data: context_lib.DataSpec, workdir: str) -> dict[str, float]:
  """kNN accuracy on ``section.layer``: features of the train split (of its
  :func:`bank_ids` subsample) as memory bank, the test split scored; ``{layer}/top1``
  (and ``top5``); with ``section.label_map``, on the coarse labels."""
  from ssl_jax.data import label_map  # TensorFlow only where the host pipeline runs.
  del workdir  # Nothing to checkpoint: the features are extracted in one pass.
  splits = (data.dataset.train_split, data.dataset.test_split)
  extracted = features_lib.extract(encoder, data, splits, (section.layer,),
                                   section.max_features,
                                   keep_ids={splits[0]: bank_ids(section, data)})
  (train_feats, train_y), (test_feats, test_y) = (extracted[splits[0]], extracted[splits[1]])
  table = label_map.load(section.label_map, data.dataset, data.builder)
  train_y, num_classes = label_map.mapped(table, train_y, data.num_classes)
  test_y, _ = label_map.mapped(table, test_y, data.num_classes)
  scores = evaluate_features(train_feats[section.layer], train_y, test_feats[section.layer],
                             test_y, num_classes, section.k, section.temperature,
                             data.mesh)
  return {f'{section.layer}/{metric}': value for metric, value in scores.items()}
