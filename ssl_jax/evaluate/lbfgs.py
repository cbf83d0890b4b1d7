"""Multinomial logistic regression by L-BFGS on frozen features (Revisiting Table 1).

Minimises  mean_i CE(x_i W + b, y_i) + 0.5 * l2 * ||W||^2  (the bias is not regularised)
with optax's L-BFGS and zoom line search, jitted on the accelerator, until the largest
absolute gradient entry falls below ``tol`` or ``max_iter`` iterations. In scikit-learn's
terms this is LogisticRegression(C=1 / (n * l2)), which the tests check it against.

    w, b = lbfgs.fit(features, labels, l2=1e-4)
    top1 = lbfgs.accuracy(w, b, test_features, test_labels)
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
def _fit(x, y, l2, tol, num_classes: int, max_iter: int):
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
  (w, b), _ = _fit(x, y, jnp.float32(l2), jnp.float32(tol), num_classes, max_iter)
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
  c.num_train_examples = -1  # -1: the whole train split.
  c.standardize = True  # Zero mean, unit variance features (train statistics).
  c.max_iter = 1000
  c.tol = 1e-5  # On the largest absolute gradient entry.
  return c


def validate(section: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the field and the fix."""
  if not 0.0 < section.holdout_fraction < 1.0:
    raise ValueError('lbfgs.holdout_fraction must lie strictly between 0 and 1.')


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


def run(section: ml_collections.ConfigDict, encoder: context_lib.Encoder,
        data: context_lib.DataSpec, workdir: str) -> dict[str, float]:
  """Evaluates ``section.layers``: features of the train split (``num_train_examples``
  of them, -1 for all) and the test split; ``{layer}/top1`` and the chosen l2."""
  del workdir  # Nothing to checkpoint: the features are extracted in one pass.
  layers = tuple(section.layers)
  train_split, test_split = data.dataset.train_split, data.dataset.test_split
  extracted = features_lib.extract(encoder, data, (train_split, test_split), layers,
                                   section.max_features)
  (train_feats, train_y), (test_feats, test_y) = extracted[train_split], extracted[test_split]
  if section.num_train_examples > 0:
    keep = np.random.default_rng(data.seed).permutation(len(train_y))[
        :section.num_train_examples]
    train_feats = {k: v[keep] for k, v in train_feats.items()}
    train_y = train_y[keep]
  num_classes = int(max(train_y.max(), test_y.max())) + 1
  results = {}
  for layer in layers:
    scores = evaluate_features(train_feats[layer], train_y, test_feats[layer], test_y,
                               section, num_classes, data.seed)
    logging.info('L-BFGS %s: top-1 %.4f (l2 %g, %d features)', layer, scores['top1'],
                 scores['l2'], train_feats[layer].shape[1])
    results.update({f'{layer}/{k}': v for k, v in scores.items()})
  return results
