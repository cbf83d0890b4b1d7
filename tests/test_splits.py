"""The held-out split (exact size, disjoint from the training stream, deterministic), the
fit examples chosen by id, L-BFGS tested on the held-out split, and the training file order
redrawn every epoch from the seed."""

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from conftest import tiny_config
from ssl_jax import step as step_lib
from ssl_jax import train
from ssl_jax.data import dataset_section
from ssl_jax.data import input_pipeline
from ssl_jax.evaluate import context
from ssl_jax.evaluate import lbfgs


def _config(**overrides):
  return tiny_config(**{'input.image_size': 32, 'dataset.holdout_examples': 500, **overrides})


def _stream_images(config, builder, num_batches, seed=0, start_step=0):
  stream = input_pipeline.train_batches(config.dataset, builder, step_lib.make_mesh(),
                                        lambda features, example_seed: features,
                                        batch_size=16, seed=seed, start_step=start_step)
  return [bytes(image.tobytes()) for _ in range(num_batches)
          for image in np.asarray(next(stream)['image'])]


def _eval_images(config, builder, split, keep_ids=None):
  batches, _ = input_pipeline.eval_batches(config.dataset, config.input, builder,
                                           step_lib.make_mesh(), split, 64, keep_ids=keep_ids)
  images, labels = [], []
  for batch in batches:
    mask = np.asarray(batch['mask']).astype(bool)
    images += [bytes(i.tobytes()) for i in np.asarray(batch['image'])[mask]]
    labels += list(np.asarray(batch['label'])[mask])
  return images, np.array(labels)


@pytest.fixture(scope='module')
def builder():
  return input_pipeline.get_builder(tiny_config().dataset)


@pytest.fixture(scope='module')
def sharded(tmp_path_factory):
  """cifar10_5k written as 8 files (the shipped one is a single file)."""
  input_pipeline.get_builder(tiny_config().dataset)  # Registers the shipped builder.
  sharded = tfds.builder('cifar10_5k', data_dir=str(tmp_path_factory.mktemp('tfds8')))
  sharded.download_and_prepare(download_config=tfds.download.DownloadConfig(num_shards=8))
  return sharded


def test_ids_from_metadata_are_tfds_own_ids(sharded):
  read = sharded.as_dataset(split='train[300:2000]', shuffle_files=False,
                            read_config=tfds.ReadConfig(add_tfds_id=True,
                                                        interleave_cycle_length=1))
  expected = [ex['tfds_id'] for ex in read.as_numpy_iterator()]
  assert list(input_pipeline.split_ids(sharded, 'train[300:2000]')) == expected


@pytest.mark.parametrize('draw', ['seeded', 'tail'])
def test_holdout_is_exact_disjoint_from_the_stream_and_deterministic(builder, draw):
  config = _config(**{'dataset.holdout_draw': draw})
  info = input_pipeline.dataset_info(config.dataset, builder)
  assert (info.num_train_examples, info.num_test_examples) == (3585, 1000)
  held = input_pipeline.holdout_ids(config.dataset, builder)
  assert len(set(held)) == 500
  again = input_pipeline.holdout_ids(config.dataset, input_pipeline.get_builder(config.dataset))
  assert list(held) == list(again)  # The same ids from a second build.
  held_images, _ = _eval_images(config, builder, dataset_section.HOLDOUT)
  assert len(held_images) == 500
  train_images = _stream_images(config, builder, 3585 // 16)  # One epoch but 1 example.
  assert not set(train_images) & set(held_images)
  everything, _ = _eval_images(tiny_config(**{'input.image_size': 32}), builder, 'train')
  assert len(set(train_images) | set(held_images)) >= len(set(everything)) - 1
  if draw == 'seeded':
    other = _config(**{'dataset.holdout_seed': 1})
    assert set(held) != set(input_pipeline.holdout_ids(other.dataset, builder))


def test_per_class_subsets_avoid_the_holdout_and_are_nested(builder):
  config = _config()
  held = set(input_pipeline.holdout_ids(config.dataset, builder))
  ten, twenty = (input_pipeline.labelled_subset_ids(config.dataset, builder, n, 1.0, seed=0)
                 for n in (10, 20))
  assert not held & set(twenty) and set(ten) <= set(twenty)
  _, labels = _eval_images(config, builder, 'train', keep_ids=ten)
  np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.full(10, 10))


def test_lbfgs_fits_per_class_subset_and_tests_on_holdout(builder, tmp_path):
  config = _config(**{'evals.lbfgs.examples_per_class': 20,
                      'evals.lbfgs.test_split': dataset_section.HOLDOUT, 'total_steps': 0})
  assert train.train(config, str(tmp_path))  # The random initialisation.
  encoder, data = context.from_workdir(str(tmp_path), config)
  section = config.evals.lbfgs
  ids = lbfgs.fit_ids(section, data)
  assert len(ids) == 200
  results = lbfgs.run(section, encoder, data, str(tmp_path))
  assert 0.0 <= results['pre_logits/top1'] <= 1.0
  # Refit by hand on the same features: the same score (fit rows = 200, test rows = 500).
  from ssl_jax.evaluate import features as features_lib
  extracted = features_lib.extract(encoder, data, ('train', 'holdout'), ('pre_logits',),
                                   section.max_features, keep_ids={'train': ids})
  (fx, fy), (tx, ty) = extracted['train'], extracted['holdout']
  assert fx['pre_logits'].dtype == np.float32 and len(fy) == 200 and len(ty) == 500
  scores = lbfgs.evaluate_features(fx['pre_logits'], fy, tx['pre_logits'], ty, section, 10,
                                   data.seed)
  assert scores['top1'] == results['pre_logits/top1']


def _file_blocks(sharded):
  """The images of each file of the train split, in order (read by TFDS)."""
  bounds = np.cumsum([0] + sharded.info.splits['train'].shard_lengths)
  return [[bytes(ex['image'].tobytes()) for ex in sharded.as_dataset(
      split=f'train[{a}:{b}]', shuffle_files=False).as_numpy_iterator()]
          for a, b in zip(bounds[:-1], bounds[1:])]


def test_file_order_is_redrawn_each_epoch_from_the_seed(sharded):
  config = tiny_config(**{'input.image_size': 32, 'dataset.cache': False,
                          'dataset.shuffle_buffer': 1, 'dataset.interleave_files': 1})
  blocks = _file_blocks(sharded)
  num = sum(map(len, blocks))
  images = _stream_images(config, sharded, -(-2 * num // 16))
  orders = []
  for epoch in (images[:num], images[num:2 * num]):
    # With a buffer of 1 and one file at a time, an epoch is the files end to end.
    order, position = [], 0
    while position < num:
      file = next(i for i, b in enumerate(blocks) if epoch[position:position + len(b)] == b)
      order.append(file)
      position += len(blocks[file])
    orders.append(order)
  assert sorted(orders[0]) == sorted(orders[1]) == list(range(8))
  assert orders[0] != orders[1]
  assert images[:256] == _stream_images(config, sharded, 16)  # Equal seeds, equal stream.
  assert images[:256] != _stream_images(config, sharded, 16, seed=1)
  resumed = _stream_images(config, sharded, 4, start_step=300)  # Inside epoch 1.
  assert resumed == images[300 * 16:304 * 16]
