"""Few-shot episodes (Zhao et al. §3.2): disjoint support and query, the drawn classes and
counts, seeded; the interval against scipy; the per-episode classifier against
scikit-learn's LogisticRegression; separable features; run() on the shipped test split."""

import numpy as np
import pytest
import scipy.stats
from sklearn.linear_model import LogisticRegression

from conftest import random_encoder
from conftest import tiny_config
from ssl_jax import config_lib
from ssl_jax import step as step_lib
from ssl_jax.data import input_pipeline
from ssl_jax.evaluate import context as context_lib
from ssl_jax.evaluate import features as features_lib
from ssl_jax.evaluate import fewshot


def _labels(num_classes=12, per_class=30, seed=0):
  return np.random.default_rng(seed).permutation(np.repeat(np.arange(num_classes), per_class))


def test_episodes_are_disjoint_with_the_right_classes_and_counts():
  labels = _labels()
  novel = (1, 3, 4, 6, 8, 9, 11)
  episodes = fewshot.sample_episodes(labels, novel, ways=5, shots=5, queries=15,
                                     episodes=40, seed=3)
  assert episodes.support.shape == (40, 25) and episodes.query.shape == (40, 75)
  assert episodes.classes.shape == (40, 5)
  for support, query, classes in zip(*episodes):
    assert not set(support) & set(query)  # Disjoint.
    assert len(set(support)) == 25 and len(set(query)) == 75  # No repeats.
    assert len(set(classes)) == 5 and set(classes) <= set(novel)
    # Class-major: episode label j is the j-th drawn class.
    np.testing.assert_array_equal(labels[support], np.repeat(classes, 5))
    np.testing.assert_array_equal(labels[query], np.repeat(classes, 15))
  # Every novel class is drawn somewhere, no other.
  assert set(episodes.classes.ravel()) == set(novel)


def test_episodes_are_deterministic_for_a_seed():
  labels = _labels()

  def draw(seed, shots=1):
    return fewshot.sample_episodes(labels, (), 5, shots, 15, 10, seed)

  for a, b in zip(draw(0), draw(0)):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(draw(0).support, draw(1).support)
  assert not np.array_equal(draw(0, 1).classes, draw(0, 5).classes)


def test_too_few_examples_or_classes_name_the_fix():
  labels = np.concatenate([_labels(num_classes=6, per_class=10), [0, 1, 3, 4, 5] * 10])
  with pytest.raises(ValueError, match=r'class\(es\) \[2\] have fewer than 16'):
    fewshot.sample_episodes(labels, (0, 1, 2, 3, 4), 5, 1, 15, 1, 0)
  with pytest.raises(ValueError, match=r'class\(es\) \[99\] have fewer'):  # Absent.
    fewshot.sample_episodes(labels, (0, 1, 3, 4, 99), 5, 1, 15, 1, 0)
  with pytest.raises(ValueError, match='need 5 classes .* 0 have'):
    fewshot.sample_episodes(_labels(num_classes=6, per_class=10), (), 5, 5, 15, 1, 0)
  section = config_lib.evaluator('fewshot', classes=(0, 1, 2))
  with pytest.raises(ValueError, match='fewer than ways=5'):
    fewshot.validate(section)
  with pytest.raises(ValueError, match='shots=.*positive integers'):
    fewshot.validate(config_lib.evaluator('fewshot', shots=(0, 5)))


def test_confidence_interval_is_the_normal_95_interval():
  accuracies = np.random.default_rng(0).uniform(0.3, 0.9, 600)
  expected = (scipy.stats.norm.ppf(0.975) * scipy.stats.sem(accuracies, ddof=0))
  assert fewshot.confidence_95(accuracies) == pytest.approx(expected, rel=1e-3)  # 1.96 ~ z
  assert fewshot.confidence_95(accuracies) == pytest.approx(
      1.96 * np.std(accuracies) / np.sqrt(600), rel=1e-12)


# Every classifier below runs on 64-d features in chunks of 10 episodes (the tiny
# encoder's pre_logits): one compilation per shot count for the whole file.
DIM, CHUNK = 64, 10


def test_episode_classifier_equals_scikit_learn():
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(5), 20)
  features = rng.normal(size=(100, DIM)) + 0.3 * rng.normal(size=(5, DIM))[labels]
  episodes = fewshot.sample_episodes(labels, (), 5, 5, 15, CHUNK, seed=0)
  normalized = fewshot.l2_normalize(features)
  ours = fewshot.evaluate_episodes(features, episodes, 5, logreg_c=2.0, chunk=CHUNK, tol=1e-7)
  y = np.repeat(np.arange(5), 5)  # Episode labels: the drawn classes' positions.
  for e in range(CHUNK):
    reference = LogisticRegression(C=2.0, tol=1e-10, max_iter=10_000).fit(
        normalized[episodes.support[e]], y)
    expected = np.mean(reference.predict(normalized[episodes.query[e]]) ==
                       np.repeat(np.arange(5), 15))
    assert ours[e] == pytest.approx(expected)
  assert 0.3 < ours.mean() < 1.0  # Neither chance nor trivial: the comparison means something.


def test_separable_features_score_one():
  rng = np.random.default_rng(1)
  labels = np.repeat(np.arange(10), 25)
  features = 10 * rng.normal(size=(10, DIM))[labels] + rng.normal(size=(250, DIM))
  section = config_lib.evaluator('fewshot', episodes=5 * CHUNK, chunk=CHUNK)
  results = fewshot.evaluate_features(features, labels, section, seed=0)
  assert set(results) == {'5way1shot/accuracy', '5way1shot/ci95', '5way5shot/accuracy',
                          '5way5shot/ci95'}
  assert results['5way1shot/accuracy'] == 1.0 and results['5way5shot/accuracy'] == 1.0
  assert results['5way1shot/ci95'] == 0.0
  # Random features: chance (0.2) within a few intervals.
  noise = fewshot.evaluate_features(rng.normal(size=(250, DIM)), labels, section, seed=0)
  assert abs(noise['5way5shot/accuracy'] - 0.2) < 4 * noise['5way5shot/ci95'] + 0.02


def test_run_on_the_shipped_test_split():
  """An instance named 'fewshot' on the random tiny encoder: keys 'fewshot/5way1shot/...',
  and the numbers of evaluate_features on independently extracted features."""
  config = tiny_config(evals=('fewshot',), **{'evals.fewshot.episodes': 2 * CHUNK,
                                              'evals.fewshot.chunk': CHUNK,
                                              'evals.fewshot.classes': (0, 2, 4, 6, 8, 9)})
  mesh = step_lib.make_mesh()
  data = context_lib.data_spec(config, input_pipeline.get_builder(config.dataset), mesh)
  encoder = random_encoder(config.model, mesh)
  section = config.evals.fewshot
  results = context_lib.run_evaluator('fewshot', section, encoder, data, '')
  assert set(results) == {f'fewshot/5way{k}shot/{m}' for k in (1, 5) for m in ('accuracy', 'ci95')}
  (features, labels), = features_lib.extract(encoder, data, ('test',), ('pre_logits',),
                                             None).values()
  assert features['pre_logits'].shape == (1000, DIM)
  assert set(labels[np.isin(labels, section.classes)]) == set(section.classes)
  expected = fewshot.evaluate_features(features['pre_logits'], labels, section, section.seed)
  for key, value in expected.items():
    assert results[f'fewshot/{key}'] == pytest.approx(value)
