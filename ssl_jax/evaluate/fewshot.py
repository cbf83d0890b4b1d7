"""N-way K-shot few-shot classification on frozen features (Zhao et al. 2021, §3.2), an
evaluator instance of type 'fewshot'.

Each episode draws ``ways`` classes from ``classes`` (the novel classes; empty: every class
of the split), then ``shots`` support and ``queries`` query examples of each class,
support and query disjoint; a linear classifier is fitted on the support features alone
and scored on the queries. The result is the mean query accuracy over ``episodes``
episodes and its 95 % confidence interval, 1.96 x std / sqrt(episodes) (the normal
interval of the few-shot literature, as Chen et al. 2019's code; std over episodes with
ddof 0), for each shot count:

    fewshot/<ways>way<shots>shot/accuracy, fewshot/<ways>way<shots>shot/ci95

(the instance's name, here 'fewshot', then the metric; one ``layer`` per instance, as knn).

The classifier. Zhao et al. train "a linear classifier for 100 rounds" on the frozen
support features; neither their optimiser, learning rate nor normalisation is published
(reference contrastive.md §4, all unverified) and they released no few-shot code. Here it
is L2-regularised multinomial logistic regression solved to convergence by L-BFGS
(:func:`ssl_jax.evaluate.lbfgs.solve`, vmapped over a chunk of episodes in one jitted
call) on L2-normalised features: the frozen-feature protocol of Tian et al. 2020 ("Rethinking
Few-Shot Image Classification", scikit-learn's LogisticRegression at C=1), which has no
learning rate or round count to choose and equals scikit-learn's fit (tested). ``logreg_c``
is scikit-learn's C: the objective is mean cross-entropy + 0.5 / (C n) ||W||^2 over the
n = ways x shots support examples.

Episodes are drawn on the host from ``seed`` (numpy), the same on every process; the
features of the split are extracted once for all shot counts.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ssl_jax.evaluate import context as context_lib
from ssl_jax.evaluate import features as features_lib
from ssl_jax.evaluate import lbfgs


class Episodes(NamedTuple):
  """Indices into the split's examples, one row per episode; within an episode the support
  rows are class-major (``shots`` of the first drawn class, then the next) and so are the
  queries; episode label j is the j-th drawn class (``classes[e, j]``)."""
  support: np.ndarray  # int [E, ways * shots]
  query: np.ndarray  # int [E, ways * queries]
  classes: np.ndarray  # int [E, ways]: the dataset labels of the episode's classes.


def eligible_classes(labels: np.ndarray, classes: Sequence[int], per_class: int) -> np.ndarray:
  """The classes of ``classes`` (empty: every label present) with at least ``per_class``
  examples in ``labels``, sorted. Raises ValueError for a chosen class that is absent or
  too small (the message names it and the fix)."""
  counts = np.bincount(labels, minlength=max([int(labels.max()) + 1] + [c + 1 for c in classes]))
  if len(classes):
    chosen = np.asarray(sorted(classes), np.int64)
    short = [int(c) for c in chosen if counts[c] < per_class]
    if short:
      raise ValueError(f'fewshot.classes: class(es) {short} have fewer than {per_class} '
                       'examples (shots + queries) in the split; choose other classes or '
                       'fewer shots or queries.')
    return chosen
  return np.flatnonzero(counts >= per_class)


def sample_episodes(labels: np.ndarray, classes: Sequence[int], ways: int, shots: int,
                    queries: int, episodes: int, seed: int) -> Episodes:
  """``episodes`` seeded N-way K-shot episodes on ``labels`` [N] (see :class:`Episodes`):
  ``ways`` distinct classes of ``classes`` (empty: all), and for each ``shots + queries``
  distinct examples, the first ``shots`` the support. The draw depends only on (seed,
  shots) and the arguments, so each shot count has its own fixed episodes."""
  labels = np.asarray(labels, np.int64)
  pool = eligible_classes(labels, classes, shots + queries)
  if len(pool) < ways:
    raise ValueError(f'fewshot: {ways}-way episodes need {ways} classes with at least '
                     f'{shots + queries} examples (shots + queries) in the split; '
                     f'{len(pool)} have. Lower ways, shots or queries, or choose classes.')
  members = {int(c): np.flatnonzero(labels == c) for c in pool}
  rng = np.random.default_rng([seed, shots])
  support = np.zeros((episodes, ways, shots), np.int64)
  query = np.zeros((episodes, ways, queries), np.int64)
  drawn = np.zeros((episodes, ways), np.int64)
  for e in range(episodes):
    drawn[e] = rng.choice(pool, ways, replace=False)
    for j, c in enumerate(drawn[e]):
      picked = rng.choice(members[int(c)], shots + queries, replace=False)
      support[e, j], query[e, j] = picked[:shots], picked[shots:]
  return Episodes(support.reshape(episodes, -1), query.reshape(episodes, -1), drawn)


def confidence_95(accuracies: np.ndarray) -> float:
  """Half-width of the normal 95 % interval of the mean: 1.96 * std / sqrt(episodes)."""
  accuracies = np.asarray(accuracies, np.float64)
  return float(1.96 * accuracies.std() / np.sqrt(len(accuracies)))


@functools.partial(jax.jit, static_argnames=('ways', 'max_iter'))
def episode_accuracies(support_x: jax.Array, query_x: jax.Array, l2: jax.Array,
                       tol: jax.Array, ways: int, max_iter: int) -> jax.Array:
  """Query accuracy [E] of a logistic regression fitted on each episode's support.

  ``support_x`` [E, ways * shots, D] and ``query_x`` [E, ways * queries, D] are class-major
  (:class:`Episodes`), so their labels are the same in every episode and not passed."""
  shots = support_x.shape[1] // ways
  queries = query_x.shape[1] // ways
  support_y = jnp.repeat(jnp.arange(ways), shots)
  query_y = jnp.repeat(jnp.arange(ways), queries)

  def one(sx, qx):
    (w, b), _ = lbfgs.solve(sx, support_y, l2, tol, ways, max_iter)
    return jnp.mean(jnp.argmax(qx @ w + b, -1) == query_y)

  return jax.vmap(one)(support_x, query_x)


def l2_normalize(x: np.ndarray) -> np.ndarray:
  """Rows scaled to unit Euclidean norm (zero rows stay zero)."""
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def evaluate_episodes(features: np.ndarray, episodes: Episodes, ways: int, logreg_c: float,
                      *, normalize: bool = True, chunk: int = 100, max_iter: int = 1000,
                      tol: float = 1e-5) -> np.ndarray:
  """Query accuracy [E] of each episode's classifier on ``features`` [N, D], ``chunk``
  episodes per jitted call (the last chunk padded by repeating its first episode, so
  each shot count compiles once)."""
  features = np.asarray(features, np.float32)
  if normalize:
    features = l2_normalize(features)
  num = len(episodes.support)
  chunk = min(chunk, num)
  l2 = jnp.float32(1.0 / (logreg_c * episodes.support.shape[1]))
  results = []
  for start in range(0, num, chunk):
    rows = np.arange(start, start + chunk)
    rows = np.where(rows < num, rows, start)
    accuracies = episode_accuracies(features[episodes.support[rows]],
                                    features[episodes.query[rows]], l2, jnp.float32(tol),
                                    ways, max_iter)
    results.append(np.asarray(accuracies)[:min(chunk, num - start)])
  return np.concatenate(results)


def evaluate_features(features: np.ndarray, labels: np.ndarray,
                      section: ml_collections.ConfigDict, seed: int) -> dict[str, float]:
  """``{'<ways>way<shots>shot/accuracy', '.../ci95'}`` for each of ``section.shots``."""
  results = {}
  for shots in section.shots:
    episodes = sample_episodes(labels, section.classes, section.ways, shots, section.queries,
                               section.episodes, seed)
    accuracies = evaluate_episodes(features, episodes, section.ways, section.logreg_c,
                                   normalize=section.l2_normalize, chunk=section.chunk,
                                   max_iter=section.max_iter, tol=section.tol)
    name = f'{section.ways}way{shots}shot'
    results[f'{name}/accuracy'] = float(accuracies.mean())
    results[f'{name}/ci95'] = confidence_95(accuracies)
  return results


def config() -> ml_collections.ConfigDict:
  """An evaluator instance of type 'fewshot' (Zhao et al. §3.2: 5-way 1- and 5-shot)."""
  c = ml_collections.ConfigDict()
  c.every = 0  # > 0: also every N pretraining steps.
  c.layer = 'pre_logits'
  c.max_features = 9000  # A larger end point is max-pooled to at most this (§4.2).
  c.split = ''  # '': the dataset's test_split.
  # The novel classes, as label ids of the split; empty: every class of the split.
  c.classes = ()
  c.ways = 5
  c.shots = (1, 5)
  c.queries = 15  # Per class and episode.
  c.episodes = 600
  c.seed = 0  # Of the episodes; the same episodes at every call.
  c.logreg_c = 1.0  # scikit-learn's C (Tian et al. 2020's default).
  c.l2_normalize = True  # Unit-norm features before the classifier (Tian et al. 2020).
  c.chunk = 100  # Episodes per jitted call (memory: chunk x (ways x (shots + queries)) x D).
  c.max_iter = 1000
  c.tol = 1e-5  # On the largest absolute gradient entry.
  return c


def validate(section: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the field and the fix."""
  if section.ways < 2:
    raise ValueError(f'fewshot.ways={section.ways}: an episode needs at least 2 classes.')
  shots = tuple(section.shots)
  if not shots or any(not isinstance(k, int) or k < 1 for k in shots):
    raise ValueError(f'fewshot.shots={shots}: give one or more positive integers, e.g. '
                     '(1, 5).')
  for field in ('queries', 'episodes', 'chunk', 'max_iter'):
    if section[field] < 1:
      raise ValueError(f'fewshot.{field}={section[field]} must be a positive integer.')
  if section.logreg_c <= 0 or section.tol <= 0:
    raise ValueError(f'fewshot: logreg_c={section.logreg_c} and tol={section.tol} must be '
                     'positive.')
  classes = tuple(section.classes)
  if any(not isinstance(c, int) or c < 0 for c in classes) or len(set(classes)) != len(classes):
    raise ValueError(f'fewshot.classes={classes}: give distinct label ids (>= 0), or () for '
                     'every class of the split.')
  if classes and len(classes) < section.ways:
    raise ValueError(f'fewshot.classes holds {len(classes)} classes, fewer than ways='
                     f'{section.ways}: add classes or lower ways.')


def run(section: ml_collections.ConfigDict, encoder: context_lib.Encoder,
        data: context_lib.DataSpec, workdir: str) -> dict[str, float]:
  """Few-shot accuracy and interval of ``section.layer`` on ``section.split`` (default the
  dataset's test split), for each shot count."""
  del workdir  # Nothing to checkpoint: the features are extracted in one pass.
  split = section.split or data.dataset.test_split
  extracted = features_lib.extract(encoder, data, (split,), (section.layer,),
                                   section.max_features)
  features, labels = extracted[split]
  return evaluate_features(features[section.layer], labels, section, section.seed)
