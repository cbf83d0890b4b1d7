"""Weighted kNN (Wu et al. 2018): against brute-force numpy, on separable clusters, with
the memory bank split over 8 devices, on a seeded subsample of the training split, as an
evaluator of a workdir, and as the monitor of the training loop."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ONE_STAGE
from conftest import random_encoder
from conftest import tiny_config
from ssl_jax import main as main_lib
from ssl_jax import step as step_lib
from ssl_jax.data import input_pipeline
from ssl_jax.evaluate import context as context_lib
from ssl_jax.evaluate import features as features_lib
from ssl_jax.evaluate import knn


def brute_force_votes(train_x, train_y, test_x, num_classes, k, temperature):
  """Per test row: cosine similarities to every training row, the k largest, votes
  exp(s / T) summed per class."""
  train_x = train_x / np.linalg.norm(train_x, axis=1, keepdims=True)
  test_x = test_x / np.linalg.norm(test_x, axis=1, keepdims=True)
  votes = np.zeros((len(test_x), num_classes))
  for i, query in enumerate(test_x):
    similarity = train_x @ query
    for j in np.argsort(-similarity)[:k]:
      votes[i, train_y[j]] += np.exp(similarity[j] / temperature)
  return votes


@pytest.fixture(scope='module')
def random_problem():
  rng = np.random.default_rng(0)
  train_x = rng.normal(size=(120, 16)).astype(np.float32)
  test_x = rng.normal(size=(37, 16)).astype(np.float32)
  return train_x, rng.integers(0, 7, 120), test_x, rng.integers(0, 7, 37)


@pytest.mark.parametrize('k,chunk', [(1, 10), (5, 8), (20, 37), (200, 64)])
def test_knn_predict_matches_brute_force(random_problem, k, chunk):
  train_x, train_y, test_x, _ = random_problem
  got = jax.jit(knn.knn_predict, static_argnums=(3, 4, 6))(
      jnp.asarray(train_x), jnp.asarray(train_y), jnp.asarray(test_x), 7, k, 0.1, chunk)
  expected = brute_force_votes(train_x, train_y, test_x, 7, k, 0.1)  # k=200 > 120: all.
  np.testing.assert_allclose(got, expected, rtol=1e-4)
  np.testing.assert_array_equal(np.argmax(got, 1), np.argmax(expected, 1))


def test_evaluate_features_on_8_devices_matches_brute_force(random_problem):
  train_x, train_y, test_x, test_y = random_problem
  assert len(jax.devices()) == 8
  scores = knn.evaluate_features(train_x, train_y, test_x, test_y, 7, k=9, temperature=0.07,
                                 mesh=step_lib.make_mesh(), chunk=12)  # 37 rows: 4 chunks.
  votes = brute_force_votes(train_x, train_y, test_x, 7, 9, 0.07)
  assert scores['top1'] == pytest.approx(np.mean(votes.argmax(1) == test_y))
  top5 = np.argsort(-votes, 1, kind='stable')[:, :5]  # Ties (zero votes): lower class.
  assert scores['top5'] == pytest.approx(np.mean(np.any(top5 == test_y[:, None], 1)))


def test_bank_rows_are_split_over_the_devices():
  """123 rows on 8 devices: 16 rows per device (5 of them padding), not 123 on each."""
  features = np.arange(123 * 4, dtype=np.float32).reshape(123, 4)
  bank, labels, valid = knn.shard_bank(features, np.arange(123) % 7, step_lib.make_mesh())
  assert bank.shape == (128, 4) and int(valid.sum()) == 123
  for array in (bank, labels, valid):
    assert array.sharding.spec == jax.sharding.PartitionSpec(('data',))
    assert {shard.data.shape[0] for shard in array.addressable_shards} == {16}
  np.testing.assert_array_equal(np.asarray(bank)[:123], features)


@pytest.mark.parametrize('k', [1, 9, 20, 200])
def test_sharded_votes_match_brute_force(random_problem, k):
  """The bank's 120 rows split 15 per device: k=20 takes more than a device's rows, and
  k=200 more than the bank (all of it)."""
  train_x, train_y, test_x, _ = random_problem
  mesh = step_lib.make_mesh()
  bank, labels, valid = knn.shard_bank(train_x, train_y, mesh)
  votes = knn._knn_predict_jit(bank, labels, valid, jnp.asarray(test_x), jnp.float32(0.1),
                               num_classes=7, k=min(k, 120), chunk=16, mesh=mesh)
  expected = brute_force_votes(train_x, train_y, test_x, 7, k, 0.1)
  np.testing.assert_allclose(votes, expected, rtol=1e-4)


def test_memory_bank_is_a_seeded_subsample_scored_as_brute_force(tmp_path, monkeypatch):
  """max_train_examples=300 of the shipped 4,085 training images: the same draw at every
  call, another with another seed; run() scores exactly those (their features extracted
  independently, then brute-force numpy kNN) on 8 devices."""
  config = tiny_config(evals=('knn',), **{'evals.knn.max_train_examples': 300,
                                          'evals.knn.k': 10})
  section = config.evals.knn
  mesh = step_lib.make_mesh()
  data = context_lib.data_spec(config, input_pipeline.get_builder(config.dataset), mesh)
  ids = knn.bank_ids(section, data)
  train_ids = input_pipeline.example_ids(data.dataset, data.builder, 'train')
  assert len(set(ids.tolist())) == 300 and set(ids.tolist()) <= set(train_ids.tolist())
  np.testing.assert_array_equal(ids, knn.bank_ids(section, data))
  assert set(knn.bank_ids(section, dataclasses.replace(data, seed=data.seed + 1)).tolist()
             ) != set(ids.tolist())
  encoder = random_encoder(config.model, mesh)
  bank_sizes = []  # Rows of the memory bank that run() extracts.
  extract = features_lib.extract

  def recording_extract(*args, **kwargs):
    extracted = extract(*args, **kwargs)
    bank_sizes.append(len(extracted['train'][1]))
    return extracted

  monkeypatch.setattr(features_lib, 'extract', recording_extract)
  results = knn.run(section, encoder, data, str(tmp_path))
  monkeypatch.undo()
  assert bank_sizes == [300]
  extracted = features_lib.extract(encoder, data, ('train', 'test'), ('pre_logits',), None,
                                   keep_ids={'train': ids})
  (train_x, train_y), (test_x, test_y) = extracted['train'], extracted['test']
  assert len(train_y) == 300
  votes = brute_force_votes(train_x['pre_logits'], train_y, test_x['pre_logits'], 10, 10,
                            section.temperature)
  assert results['pre_logits/top1'] == pytest.approx(np.mean(votes.argmax(1) == test_y))
  top5 = np.argsort(-votes, 1, kind='stable')[:, :5]
  assert results['pre_logits/top5'] == pytest.approx(np.mean(np.any(top5 == test_y[:, None], 1)))


def test_max_train_examples_is_validated():
  section = tiny_config(evals=('knn',), **{'evals.knn.max_train_examples': -5}).evals.knn
  with pytest.raises(ValueError, match='max_train_examples=-5'):
    knn.validate(section)


def test_well_separated_clusters_are_classified_perfectly():
  rng = np.random.default_rng(1)
  centres = rng.normal(size=(4, 32)) * 10
  train_y, test_y = rng.integers(0, 4, 200), rng.integers(0, 4, 50)
  train_x = centres[train_y] + rng.normal(size=(200, 32))
  test_x = centres[test_y] + rng.normal(size=(50, 32))
  scores = knn.evaluate_features(train_x, train_y, test_x, test_y, 4, k=20, temperature=0.1)
  assert scores == {'top1': 1.0}  # No top-5 with fewer than 5 classes.


def test_run_on_a_trained_workdir(tmp_path):
  workdir = str(tmp_path / 'run')
  config = tiny_config(total_steps=3, evals=('knn',), **ONE_STAGE, **{
      'evals.knn.every': 2, 'evals.knn.k': 20})
  results = main_lib.run(config, workdir)
  assert set(results) == {'knn/pre_logits/top1', 'knn/pre_logits/top5'}
  assert 0.0 <= results['knn/pre_logits/top1'] <= results['knn/pre_logits/top5'] <= 1.0
  # The monitor ran every `every` steps of pretraining (step 2); the instance ran again
  # after training (step 3), on the checkpoint, as an evaluator.
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f if 'knn/' in line]
  assert [r['step'] for r in rows] == [2, 3]
  for key, value in results.items():
    assert rows[-1][key] == pytest.approx(value, abs=1e-6)
