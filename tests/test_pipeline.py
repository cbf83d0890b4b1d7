"""Input pipeline: exact evaluation, resumable training stream, any TFDS dataset."""

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from conftest import sections
from conftest import tiny_config
from ssl_jax import step as step_lib
from ssl_jax.data import cifar10_5k
from ssl_jax.data import input_pipeline
from ssl_jax.tasks import supervised


@pytest.fixture(scope='module')
def builder():
  return input_pipeline.get_builder(tiny_config().dataset)


def test_shipped_dataset_is_the_shared_data(builder):
  info = input_pipeline.dataset_info(tiny_config().dataset, builder)
  assert (info.num_classes, info.num_train_examples, info.num_test_examples) == (10, 4085, 1000)


def test_eval_sees_every_example_once_on_8_devices(builder):
  config = tiny_config(eval_batch_size=64, **{'input.image_size': 32})
  mesh = step_lib.make_mesh()
  batches, num_batches = input_pipeline.eval_batches(config.dataset, config.input, builder,
                                                     mesh, 'test', config.eval_batch_size)
  batches = list(batches)
  assert num_batches == len(batches) == 16  # ceil(1000 / 64)
  assert batches[0]['image'].sharding.spec == jax.sharding.PartitionSpec('data')
  mask = np.concatenate([b['mask'] for b in batches]).astype(bool)
  labels = np.concatenate([b['label'] for b in batches])[mask]
  images = np.concatenate([b['image'] for b in batches])[mask]
  with np.load(cifar10_5k.FILE) as data:
    expected = zip(data['image'][cifar10_5k.NUM_TRAIN:], data['label'][cifar10_5k.NUM_TRAIN:])
  # TFDS stores examples in its own order: compare (image, label) multisets.
  key = lambda pair: pair[0].tobytes() + bytes([int(pair[1])])
  assert sorted(map(key, zip(images, labels))) == sorted(map(key, expected))


def test_train_stream_resumes_exactly_across_an_epoch(builder):
  config = tiny_config('supervised', batch_size=16)
  mesh = step_lib.make_mesh()
  stream = _supervised_batches(config, builder, mesh)
  first = [next(stream) for _ in range(257)]  # 256 * 16 > 4085: crosses into epoch 1.
  resumed = _supervised_batches(config, builder, mesh, start_step=255)
  for expected in first[255:]:
    got = next(resumed)
    np.testing.assert_array_equal(got['image'], expected['image'])
    np.testing.assert_array_equal(got['label'], expected['label'])
  # Epochs are reshuffled: epoch 1 does not start like epoch 0.
  epoch0 = np.concatenate([b['label'] for b in first[:2]])
  assert not np.array_equal(epoch0[:11], first[255]['label'][5:])


def _supervised_batches(config, builder, mesh, start_step=0):
  s = sections(config)
  return input_pipeline.train_batches(
      config.dataset, builder, mesh, lambda f, seed: supervised.preprocess(f, seed, s),
      batch_size=config.batch_size, seed=config.seed, start_step=start_step)


def test_batch_that_does_not_divide_over_devices_says_so():
  with pytest.raises(ValueError, match='does not divide over 8 devices'):
    input_pipeline.per_process_batch(12, step_lib.make_mesh())


def test_any_tfds_dataset_by_name_mock_imagenet():
  # Mocked builders have no files: the cached stream reads through TFDS's as_dataset (the
  # uncached one reads the files in a per-epoch order, tests/test_splits.py).
  config = tiny_config('supervised', **{'dataset.name': 'imagenet2012',
                                        'dataset.test_split': 'validation',
                                        'dataset.cache': True})
  mesh = step_lib.make_mesh()
  with tfds.testing.mock_data(num_examples=64):
    builder = input_pipeline.get_builder(config.dataset)
    # Mocked builders carry no split sizes; give them those of the 64 mock examples.
    builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name=name, shard_lengths=[64], num_bytes=0)
        for name in ('train', 'validation')]))
    assert input_pipeline.dataset_info(config.dataset, builder).num_classes == 1000
    batch = next(_supervised_batches(config, builder, mesh))
  assert batch['image'].shape == (16, 16, 16, 3) and batch['image'].dtype == np.uint8
  assert batch['label'].shape == (16,)
