"""Fine-tuning: the labelled subset (exact counts, deterministic, nested, the training
stream filtered to it) and the whole encoder trained with a new head."""

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from conftest import tiny_config
from ssl_jax import encoder as encoder_lib
from ssl_jax import step as step_lib
from ssl_jax import train
from ssl_jax.data import input_pipeline
from ssl_jax.evaluate import context
from ssl_jax.evaluate import finetune


@pytest.fixture(scope='module')
def builder():
  return input_pipeline.get_builder(tiny_config().dataset)


@pytest.fixture(scope='module')
def labels_by_id(builder):
  ids, labels = input_pipeline.split_ids_and_labels(tiny_config().dataset, builder, 'train')
  assert len(ids) == len(set(ids)) == 4085
  return dict(zip(ids, labels))


@pytest.fixture(scope='module')
def random_init(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('init'))
  assert train.train(tiny_config(total_steps=0), workdir)
  return workdir


def _subset(builder, labels_per_class=-1, label_fraction=1.0, seed=0):
  return input_pipeline.labelled_subset_ids(tiny_config().dataset, builder, labels_per_class,
                                            label_fraction, seed)


def test_subset_has_n_per_class_is_deterministic_and_nested(builder, labels_by_id):
  five, ten = _subset(builder, 5), _subset(builder, 10)
  for ids, n in ((five, 5), (ten, 10)):
    assert len(set(ids)) == len(ids) == 10 * n
    assert np.array_equal(np.bincount([labels_by_id[i] for i in ids], minlength=10),
                          np.full(10, n))
  assert set(five) <= set(ten)
  assert np.array_equal(five, _subset(builder, 5))  # Deterministic.
  assert set(five) != set(_subset(builder, 5, seed=1))  # A function of the seed.


def test_subset_keeps_a_fraction_of_each_class(builder, labels_by_id):
  per_class = np.bincount(list(labels_by_id.values()), minlength=10)
  tenth = _subset(builder, label_fraction=0.1)
  counts = np.bincount([labels_by_id[i] for i in tenth], minlength=10)
  np.testing.assert_array_equal(counts, np.round(0.1 * per_class).astype(int))
  assert set(tenth) <= set(_subset(builder, label_fraction=0.2))
  with pytest.raises(ValueError, match='not both'):
    _subset(builder, 5, 0.5)


def test_train_stream_holds_only_the_subset(builder):
  keep = _subset(builder, 5)  # 50 images: three batches of 16 from one epoch.
  config = tiny_config(batch_size=16)
  read = tfds.ReadConfig(add_tfds_id=True)
  images = {ex['tfds_id']: ex['image'] for ex in builder.as_dataset(
      split='train', read_config=read).as_numpy_iterator() if ex['tfds_id'] in set(keep)}
  stream = input_pipeline.train_batches(config.dataset, builder, step_lib.make_mesh(),
                                        lambda features, seed: features, batch_size=16,
                                        seed=0, keep_ids=keep)
  seen = np.concatenate([np.asarray(next(stream)['image']) for _ in range(3)])
  expected = {image.tobytes() for image in images.values()}
  got = [image.tobytes() for image in seen]
  assert len(set(got)) == 48 and set(got) <= expected


def _finetune(random_init, tmp_path, **fields):
  """(config, encoder, data, workdir) for a fine-tuning instance on the random encoder."""
  config = tiny_config(evals=('finetune',), **{f'evals.finetune.{k}': v
                                              for k, v in fields.items()})
  encoder, data = context.from_workdir(random_init, config)
  return config, encoder, data, str(tmp_path / 'finetune')


def test_fine_tune_trains_the_whole_encoder(random_init, tmp_path):
  config, encoder, data, workdir = _finetune(
      random_init, tmp_path, labels_per_class=10, batch_size=16, total_steps=3,
      **{'optimizer.base_lr': 1.0})
  variables, results = finetune.fine_tune(config.evals.finetune, encoder, data, workdir)
  assert set(results) == {'top1', 'top5', 'num_labelled'}
  assert results['num_labelled'] == 100
  assert 0.0 <= results['top1'] <= results['top5'] <= 1.0
  _, _, initial, _ = encoder_lib.restore_encoder(random_init)
  for name in ('params', 'batch_stats'):
    before = jax.tree.leaves(initial[name])
    after = jax.tree.leaves(variables[name]['encoder'])
    assert len(before) == len(after)
    unchanged = [np.shape(a) for a, b in zip(before, after) if np.array_equal(a, b)]
    assert not unchanged, (name, unchanged)
  assert np.any(np.asarray(variables['params']['head']['kernel']) != 0)


def test_fine_tuning_beats_chance(random_init, tmp_path):
  # A random tiny encoder fine-tuned for 200 steps on the 4,085 images (about 20 s on a
  # CPU) reaches about 0.28 top-1 of 10 classes; a zero head predicts one class (0.1).
  config, encoder, data, workdir = _finetune(
      random_init, tmp_path, batch_size=64, total_steps=200, **{'optimizer.base_lr': 1.0})
  results = context.run_evaluator('finetune_all', config.evals.finetune, encoder, data,
                                  workdir)
  assert results['finetune_all/num_labelled'] == 4085
  assert results['finetune_all/top1'] > 0.2


def test_patch_representations_are_refused(random_init, tmp_path):
  config = tiny_config(evals=('finetune',), **{'input.eval_patch_grid': 3})
  encoder, data = context.from_workdir(random_init, config)
  with pytest.raises(ValueError, match='eval_patch_grid'):
    finetune.run(config.evals.finetune, encoder, data, str(tmp_path))


@pytest.fixture(scope='module')
def simclr_init(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('simclr'))
  assert train.train(tiny_config('simclr', evals=(), total_steps=0,
                                 **{'task.proj_hidden': 32, 'task.proj_dim': 8}), workdir)
  return workdir


def test_simclr_v2_fine_tunes_from_the_first_projection_layer(simclr_init):
  # SimCLR v2 (tf2/model.py ProjectionHead): the fine-tuning input is hiddens_list[1],
  # relu(BN(pre_logits @ W0)) with the pretrained W0 and BN; checked against numpy.
  config = tiny_config('simclr', evals=('finetune',), **{
      'evals.finetune.from_projection_layers': 1, 'task.proj_hidden': 32,
      'task.proj_dim': 8})
  encoder, data = context.from_workdir(simclr_init, config)
  projection, variables = finetune.projection_layers(config.evals.finetune, encoder)
  assert set(variables['params']) == {'hidden0', 'hidden0_bn'}
  rng = np.random.default_rng(0)
  features = rng.normal(size=(5, encoder.head_variables['params']['proj']['hidden0']
                              ['kernel'].shape[0])).astype(np.float32)
  params, stats = variables['params'], variables['batch_stats']['hidden0_bn']
  bn = params['hidden0_bn']
  x = features @ np.asarray(params['hidden0']['kernel'])
  x = ((x - np.asarray(stats['mean']))
       / np.sqrt(np.asarray(stats['var']) + config.model.bn_epsilon))
  expected = np.maximum(x * np.asarray(bn['scale']) + np.asarray(bn['bias']), 0)
  got = projection.apply(variables, features, train=False)
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_simclr_v2_fine_tuning_trains_the_projection_layer(simclr_init, tmp_path):
  config = tiny_config('simclr', evals=('finetune',), **{
      'evals.finetune.from_projection_layers': 1, 'evals.finetune.batch_size': 16,
      'evals.finetune.total_steps': 2, 'evals.finetune.labels_per_class': 4,
      'task.proj_hidden': 32, 'task.proj_dim': 8})
  encoder, data = context.from_workdir(simclr_init, config)
  variables, results = finetune.fine_tune(config.evals.finetune, encoder, data,
                                          str(tmp_path / 'ft'))
  assert results['num_labelled'] == 40
  before = encoder.head_variables['params']['proj']['hidden0']['kernel']
  after = variables['params']['projection']['hidden0']['kernel']
  assert before.shape == after.shape and not np.array_equal(before, after)
  assert variables['params']['head']['kernel'].shape == (32, 10)


def test_projection_layers_need_a_projection_head(random_init, tmp_path):
  config = tiny_config(evals=('finetune',), **{'evals.finetune.from_projection_layers': 1})
  encoder, data = context.from_workdir(random_init, config)
  with pytest.raises(ValueError, match='hidden projection layers'):
    finetune.run(config.evals.finetune, encoder, data, str(tmp_path))
