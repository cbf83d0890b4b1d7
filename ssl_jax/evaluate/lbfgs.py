"""Multinomial logistic regression by L-BFGS on frozen features (Revisiting Table 1).

Minimises  mean_i CE(x_i W + b, y_i) + 0.5 * l2 * ||W||^2  (the bias is not regularised)
with optax's L-BFGS and zoom line search, jitted on the accelerator, until the largest
absolute gradient entry falls below ``tol`` or ``max_iter`` iterations. In scikit-learn's
terms this is LogisticRegression(C=1 / (n * l2)), which the tests check it against.

    w, b = lbfgs.fit(features, labels, l2=1e-4)
    top1 = lbfgs.accuracy(w, b, test_features, test_labels)

Table 1's protocol: pretrain with ``dataset.holdout_examples=50000``, fit on training
images and test on ``test_split='holdout'``. The fit examples (``num_train_examples`` of
them, or ``examples_per_class`` / ``label_fraction`` of each class for §4.6's low-data
regime) are chosen by id before extraction, so only their images are decoded and only
their features, float32 on the host, are kept: 100k-300k images of 8k features fit in
host memory where the whole ImageNet train split (1.28M x 8k, 42 GB) does not.
"""

from __future__ import annotations

import functools
from typing import Sequence

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ssl_jax import config_lib
from ssl_jax.evaluate import context as context_lib
from ssl_jax.evaluate import features as features_lib


def objective(params: tuple[jax.Array, jax.Array], x: jax.Array, y: jax.Array,
              l2: jax.Array) -> jax.Array:
  """Mean cross-entropy + 0.5 * l2 * ||W||^2."""
  w, b = params
  logits = x @ w + b
  xent = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  return xent + 0.5 * l2 * jnp.sum(w * w)


@functools.partial(jax.jit, static_argnames=('num_classes', 'max_iter'))
def solve(x: jax.Array, y: jax.Array, l2: jax.Array, tol: jax.Array, num_classes: int,
          max_iter: int) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
  """((w [D, C], b [C]), iterations) minimising :func:`objective` from zero: pure and
  jitted, so it also runs vmapped over many small problems (few-shot episodes)."""
  params = (jnp.zeros((x.shape[1], num_classes), jnp.float32),
            jnp.zeros((num_classes,), jnp.float32))
  fun = functools.partial(objective, x=x, y=y, l2=l2)
  solver = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(fun)

  def step(carry):
    params, state = carry
    value, grad = value_and_grad(params, state=state)
    updates, state = solver.update(grad, state, params, value=value, grad=grad, value_fn=fun)
    return optax.apply_updates(params, updates), state

  def not_done(carry):
    _, state = carry
    count = optax.tree.get(state, 'count')
    grad = optax.tree.get(state, 'grad')
    largest = jnp.max(jnp.stack([jnp.max(jnp.abs(g)) for g in jax.tree.leaves(grad)]))
    return (count == 0) | ((count < max_iter) & (largest > tol))

  params, state = jax.lax.while_loop(not_done, step, (params, solver.init(params)))
  return params, optax.tree.get(state, 'count')


def fit(features, labels, l2: float, *, num_classes: int | None = None,
        max_iter: int = 1000, tol: float = 1e-5) -> tuple[jax.Array, jax.Array]:
  """Fits weights [D, C] and bias [C] on ``features`` [N, D] and int ``labels`` [N]."""
  x = jnp.asarray(features, jnp.float32)
  y = jnp.asarray(labels, jnp.int32)
  if x.ndim != 2 or y.shape != (x.shape[0],):
    raise ValueError(f'Expected features [N, D] and labels [N], got {x.shape} and {y.shape}.')
  num_classes = num_classes or int(np.max(np.asarray(labels))) + 1
  (w, b), _ = solve(x, y, jnp.float32(l2), jnp.float32(tol), num_classes, max_iter)
  return w, b


def predict(w: jax.Array, b: jax.Array, features) -> np.ndarray:
  """Class scores [N, C]."""
  return np.asarray(jnp.asarray(features, jnp.float32) @ w + b)


def accuracy(w: jax.Array, b: jax.Array, features, labels) -> float:
  """Top-1 accuracy of the classifier (w, b) on (features, labels)."""
  return float(np.mean(predict(w, b, features).argmax(-1) == np.asarray(labels)))


def standardize(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
  """Zero mean and unit variance with the statistics of ``train``, applied to all."""
  mean, std = train.mean(0), train.std(0) + 1e-6
  return [(a - mean) / std for a in (train,) + others]


def select_l2(features: np.ndarray, labels: np.ndarray, grid: Sequence[float],
              holdout_fraction: float, *, seed: int = 0, num_classes: int | None = None,
              max_iter: int = 1000, tol: float = 1e-5) -> tuple[float, dict[float, float]]:
  """The l2 of ``grid`` with the best accuracy on a random held-out part of the training
  features (ties go to the stronger l2); returns (l2, {l2: held-out accuracy})."""
  order = np.random.default_rng(seed).permutation(len(labels))
  num_holdout = max(1, int(round(holdout_fraction * len(labels))))
  held, kept = order[:num_holdout], order[num_holdout:]
  num_classes = num_classes or int(labels.max()) + 1
  scores = {}
  for l2 in grid:
    w, b = fit(features[kept], labels[kept], l2, num_classes=num_classes,
               max_iter=max_iter, tol=tol)
    scores[float(l2)] = accuracy(w, b, features[held], labels[held])
  best = max(scores, key=lambda l2: (scores[l2], l2))
  return best, scores


def config() -> ml_collections.ConfigDict:
  """An evaluator instance of type 'lbfgs': logistic regression on frozen features
  (Revisiting Table 1)."""
  c = ml_collections.ConfigDict()
  c.every = 0  # > 0: also every N pretraining steps.
  c.layers = ('pre_logits',)  # End points to evaluate.
  c.max_features = 9000  # Larger end points are max-pooled to at most this (§4.2).
  c.l2_grid = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
  c.holdout_fraction = 0.2  # Part of the train split that picks l2.
  c.num_train_examples = -1  # -1: the whole train split; else a seeded draw by id.
  # > 0: a fixed subset of this many train examples per class (Revisiting §4.6, Fig. 7's
  # low-data regime), drawn from the run's seed, nested across sizes.
  c.examples_per_class = 0
  c.label_fraction = 1.0  # < 1: this fraction of each class (Fig. 7: 0.1 and 0.05).
  c.test_split = ''  # '': the dataset's test_split; 'holdout': Table 1's own 50k split.
  # '': the dataset's labels; else a map to coarser ones (ssl_jax/data/label_map.py).
  c.label_map = ''
  c.standardize = True  # Zero mean, unit variance features (train statistics).
  c.max_iter = 1000
  c.tol = 1e-5  # On the largest absolute gradient entry.
  return c


def validate(section: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the field and the fix."""
  if not 0.0 < section.holdout_fraction < 1.0:
    raise ValueError('lbfgs.holdout_fraction must lie strictly between 0 and 1.')
  config_lib.check_class_subset('lbfgs', section.examples_per_class, section.label_fraction)
  subsets = section.examples_per_class > 0 or section.label_fraction < 1.0
  if subsets and section.num_train_examples > 0:
    raise ValueError('lbfgs: set num_train_examples=-1 with examples_per_class or '
                     'label_fraction (the per-class subset fixes the count).')
  if section.num_train_examples == 0 or section.num_train_examples < -1:
    raise ValueError(f'lbfgs.num_train_examples={section.num_train_examples}: use -1 (all) '
                     'or a positive count.')


def evaluate_features(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                      test_y: np.ndarray, section: ml_collections.ConfigDict,
                      num_classes: int, seed: int = 0) -> dict[str, float]:
  """Chooses l2 on held-out training data (split by ``seed``), refits on all of it,
  scores the test set."""
  if section.standardize:
    train_x, test_x = standardize(train_x, test_x)
  kwargs = dict(num_classes=num_classes, max_iter=section.max_iter, tol=section.tol)
  l2, scores = select_l2(train_x, train_y, section.l2_grid, section.holdout_fraction,
                         seed=seed, **kwargs)
  w, b = fit(train_x, train_y, l2, **kwargs)
  return {'top1': accuracy(w, b, test_x, test_y), 'train_top1': accuracy(w, b, train_x, train_y),
          'l2': l2, 'holdout_top1': scores[l2]}


def fit_ids(section: ml_collections.ConfigDict, data: context_lib.DataSpec
            ) -> np.ndarray | None:
  """``tfds_id``s of the training examples the classifier is fitted on, drawn from the run's
  seed (None: the whole train split): the per-class subset of ``examples_per_class`` /
  ``label_fraction``, or ``num_train_examples`` drawn from the split's ids (no image read)."""
  from ssl_jax.data import input_pipeline  # TensorFlow only where the host pipeline runs.
  dataset, builder = data.dataset, data.builder
  subset = input_pipeline.class_subset_ids(dataset, builder, section.examples_per_class,
                                           section.label_fraction, data.seed)
  if subset is not None:
    return subset
  if section.num_train_examples < 0:
    return None
  return input_pipeline.random_subset_ids(dataset, builder, section.num_train_examples,
                                          data.seed)


def run(section: ml_collections.ConfigDict, encoder: context_lib.Encoder,
        data: context_lib.DataSpec, workdir: str) -> dict[str, float]:
  """Evaluates ``section.layers``: features of the fit examples of the train split
  (:func:`fit_ids`) and of the test split (``section.test_split``, default the dataset's);
  ``{layer}/top1`` and the chosen l2; with ``section.label_map``, on the coarse labels."""
  from ssl_jax.data import label_map  # TensorFlow only where the host pipeline runs.
  del workdir  # Nothing to checkpoint: the features are extracted in one pass.
  layers = tuple(section.layers)
  train_split = data.dataset.train_split
  test_split = section.test_split or data.dataset.test_split
  extracted = features_lib.extract(encoder, data, (train_split, test_split), layers,
                                   section.max_features,
                                   keep_ids={train_split: fit_ids(section, data)})
  (train_feats, train_y), (test_feats, test_y) = extracted[train_split], extracted[test_split]
  table = label_map.load(section.label_map, data.dataset, data.builder)
  train_y, num_classes = label_map.mapped(table, train_y, data.num_classes)
  test_y, _ = label_map.mapped(table, test_y, data.num_classes)
  results = {}
  for layer in layers:
    scores = evaluate_features(train_feats[layer], train_y, test_feats[layer], test_y,
                               section, num_classes, data.seed)
    logging.info('L-BFGS %s: top-1 %.4f on %s (l2 %g, %d features, %d fit examples)',
                 layer, scores['top1'], test_split, scores['l2'],
                 train_feats[layer].shape[1], len(train_y))
    results.update({f'{layer}/{k}': v for k, v in scores.items()})
  return results
