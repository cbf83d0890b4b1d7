"""tf.data pipelines over any TFDS image dataset, delivering global ``jax.Array`` batches
sharded over the mesh.

Training: each process reads its own slice of the split (``tfds.even_splits``), shuffles
it per epoch with a seed derived from (seed, epoch), and gives every example a stateless
seed from its position in the stream. The stream is therefore a function of (seed, step):
a run that resumes at step s skips the first s batches of its epoch on the undecoded
records, without decoding them, and sees exactly what an uninterrupted run would.

Evaluation: every example exactly once, padded to whole batches with ``mask == 0``
examples that the consumer drops.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from typing import Callable, Iterator

import jax
import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from ssl_jax.data import preprocess

# Datasets that ship with ssl_jax: importing the module registers the TFDS builder.
SHIPPED = {'cifar10_5k': 'ssl_jax.data.cifar10_5k'}


def config() -> ml_collections.ConfigDict:
  """The ``dataset`` section."""
  c = ml_collections.ConfigDict()
  c.name = 'cifar10_5k'  # Any TFDS image dataset; cifar10_5k ships with ssl_jax.
  c.data_dir = ''  # '' is the TFDS default; gs://... works too.
  c.train_split = 'train'
  c.test_split = 'test'
  c.image_key = 'image'
  c.label_key = 'label'
  c.shuffle_buffer = 10_000
  c.cache = False  # Cache encoded examples in memory (small datasets).
  c.prefetch = 2  # Batches prefetched to the devices.
  return c


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the training loop needs to know of a dataset."""
  num_classes: int
  num_train_examples: int  # In the whole train split, over all processes.
  num_test_examples: int


def get_builder(dataset: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  """The TFDS builder of ``dataset.name``; prepares shipped datasets offline."""
  name = dataset.name
  if name.split(':')[0] in SHIPPED:
    importlib.import_module(SHIPPED[name.split(':')[0]])
  builder = tfds.builder(name, data_dir=dataset.data_dir or None)
  if name.split(':')[0] in SHIPPED:
    builder.download_and_prepare()
  return builder


def check_prepared(dataset: ml_collections.ConfigDict, builder: tfds.core.DatasetBuilder,
                   *splits: str) -> None:
  """Raises ValueError naming the dataset, the folder searched and the ways to prepare it
  when a split of ``splits`` (default: train and test) is not prepared."""
  for split in splits or (dataset.train_split, dataset.test_split):
    try:
      builder.info.splits[split]
    except (KeyError, ValueError):
      raise ValueError(
          f'Dataset {dataset.name!r} has no prepared split {split!r} in {builder.data_dir} '
          f'(dataset.data_dir={dataset.data_dir!r}; prepared splits: '
          f'{sorted(builder.info.splits.keys()) or "none"}). Prepare it with `tfds build '
          f'{dataset.name} --data_dir=DIR` (ImageNet needs its manual download in '
          'DIR/downloads/manual; see the TFDS catalog), point --config.dataset.data_dir at a '
          'prepared copy, or try the shipped data first with the runlocal argument '
          '(--config=configs/NAME.py:runlocal).') from None


def dataset_info(dataset: ml_collections.ConfigDict,
                 builder: tfds.core.DatasetBuilder) -> DatasetInfo:
  """Class count and split sizes from the builder's metadata."""
  check_prepared(dataset, builder)
  label = builder.info.features[dataset.label_key]
  return DatasetInfo(
      num_classes=label.num_classes,
      num_train_examples=builder.info.splits[dataset.train_split].num_examples,
      num_test_examples=builder.info.splits[dataset.test_split].num_examples)


def process_split(split: str) -> str:
  """This process's share of ``split`` (all of it on one host)."""
  return tfds.even_splits(split, n=jax.process_count(), drop_remainder=False)[
      jax.process_index()]


def per_process_batch(global_batch: int, mesh: jax.sharding.Mesh) -> int:
  """global_batch / process_count, checking that it divides over the devices."""
  if global_batch % mesh.size:
    raise ValueError(
        f'The batch of {global_batch} does not divide over {mesh.size} devices: use a '
        f'multiple of {mesh.size} (e.g. --config.batch_size={mesh.size * max(1, global_batch // mesh.size)}).')
  return global_batch // jax.process_count()


def _raw(builder, split: str, dataset: ml_collections.ConfigDict,
         keep_ids: np.ndarray | None = None) -> tf.data.Dataset:
  """Undecoded examples of ``split``, in file order (deterministic); with ``keep_ids``
  only the examples whose ``tfds_id`` is among them (filtered before the cache)."""
  ds = builder.as_dataset(
      split=split, shuffle_files=False,
      decoders={dataset.image_key: tfds.decode.SkipDecoding()},
      read_config=tfds.ReadConfig(interleave_cycle_length=1,
                                  add_tfds_id=keep_ids is not None))
  if keep_ids is not None:
    table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant(keep_ids, tf.string), tf.ones(len(keep_ids), tf.int32)), default_value=0)
    ds = ds.filter(lambda example: table.lookup(example['tfds_id']) > 0)
  return ds.cache() if dataset.cache else ds


def split_ids_and_labels(dataset: ml_collections.ConfigDict, builder,
                         split: str) -> tuple[np.ndarray, np.ndarray]:
  """(``tfds_id`` bytes [N], labels int64 [N]) of every example of ``split`` in file order:
  one pass that parses only the label (images are neither parsed nor decoded), so it
  streams through ImageNet-sized splits."""
  label_key = dataset.label_key
  ds = builder.as_dataset(
      split=split, shuffle_files=False,
      decoders=tfds.decode.PartialDecoding({label_key: True}),
      read_config=tfds.ReadConfig(interleave_cycle_length=1, add_tfds_id=True))
  ids, labels = [np.zeros((0,), object)], [np.zeros((0,), np.int64)]
  for batch in ds.batch(8192).prefetch(2).as_numpy_iterator():
    ids.append(batch['tfds_id'].astype(object))
    labels.append(batch[label_key].astype(np.int64))
  return np.concatenate(ids), np.concatenate(labels)


def labelled_subset_ids(dataset: ml_collections.ConfigDict, builder, labels_per_class: int,
                        label_fraction: float, seed: int,
                        split: str | None = None) -> np.ndarray:
  """``tfds_id`` (bytes, file order) of the labelled subset of ``split`` (default the train
  split): the first ``labels_per_class`` examples of each class (all of a smaller class)
  when > 0, else the first round(``label_fraction`` x class size) of each class (at least
  one), in the order of a permutation of the split drawn from ``seed``.

  Semi-supervised fine-tuning on 10k / 50k labelled images (Cole et al. 2022) or 1% / 10%
  of the labels (SimCLR §6). Deterministic (a function of the dataset, the counts and
  ``seed``), the same on every process (each reads the labels of the whole split), and
  nested: for one seed a smaller subset is contained in a larger one, as the class
  orders are shared.
  """
  if labels_per_class > 0 and label_fraction < 1.0:
    raise ValueError('Set either labels_per_class > 0 or label_fraction < 1, not both.')
  if not 0.0 < label_fraction <= 1.0:
    raise ValueError(f'label_fraction={label_fraction} must lie in (0, 1].')
  ids, labels = split_ids_and_labels(dataset, builder, split or dataset.train_split)
  order = np.random.default_rng(seed).permutation(len(ids))
  kept = []
  for label in np.unique(labels):
    members = order[labels[order] == label]  # This class, in the seeded order.
    count = (labels_per_class if labels_per_class > 0
             else max(1, int(round(label_fraction * len(members)))))
    kept.append(members[:count])
  return ids[np.sort(np.concatenate(kept))] if kept else ids[:0]


def _to_global(batch: dict, sharding: jax.sharding.NamedSharding) -> dict:
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def train_batches(dataset: ml_collections.ConfigDict, builder, mesh: jax.sharding.Mesh,
                  preprocess_fn: Callable[[dict, tf.Tensor], dict], *, batch_size: int,
                  seed: int, start_step: int = 0,
                  keep_ids: np.ndarray | None = None) -> Iterator[dict]:
  """Endless global training batches of ``batch_size`` (global) from ``start_step`` on,
  sharded over ``mesh``, the order drawn from ``seed``.

  ``preprocess_fn(features, example_seed)`` is the host-side preprocessing (a task's, or
  an evaluator's crops). ``keep_ids`` (``tfds_id``s,
  e.g. from :func:`labelled_subset_ids`) restricts the split to those examples; an epoch
  is then one pass over the kept examples of this process's slice.
  """
  split = process_split(dataset.train_split)
  local_batch = per_process_batch(batch_size, mesh)
  num_local = builder.info.splits[split].num_examples
  if keep_ids is not None:
    # The epoch length (and the resume position) needs the number kept on this process.
    kept = set(np.asarray(keep_ids, object).tolist())
    num_local = sum(i in kept for i in split_ids_and_labels(dataset, builder, split)[0])
  if num_local < local_batch:
    raise ValueError(f'Split {split!r} holds {num_local} examples on this process, fewer '
                     f'than one batch of {local_batch}.')
  raw = _raw(builder, split, dataset, keep_ids)
  seed = seed * 1_000_003 + jax.process_index()

  def epoch(index: tf.Tensor) -> tf.data.Dataset:
    return raw.shuffle(min(dataset.shuffle_buffer, num_local), seed=seed + index * 7919,
                       reshuffle_each_iteration=False)

  first_example = start_step * local_batch
  ds = tf.data.Dataset.range(first_example // num_local, 2**40).flat_map(epoch)
  ds = ds.skip(first_example % num_local).enumerate(start=first_example)
  image_key, label_key = dataset.image_key, dataset.label_key

  def prepare(position: tf.Tensor, example: dict) -> dict:
    features = {'image': preprocess.decode(example[image_key])}
    if label_key in example:
      features['label'] = tf.cast(example[label_key], tf.int32)
    example_seed = tf.stack([tf.cast(seed, tf.int64), position])
    return preprocess_fn(features, example_seed)

  ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(local_batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  for batch in ds.as_numpy_iterator():
    yield _to_global(batch, sharding)


def eval_batches(dataset: ml_collections.ConfigDict, inp: ml_collections.ConfigDict,
                 builder, mesh: jax.sharding.Mesh, split: str,
                 batch_size: int) -> tuple[Iterator[dict], int]:
  """Global batches of ``batch_size`` holding every example of ``split`` once: the
  central crop of the ``input`` section ``inp``, uint8 ``image``, ``label`` and ``mask``
  (0 on padding). Returns (iterator, number of batches); every process yields the same
  number of batches."""
  local_batch = per_process_batch(batch_size, mesh)
  all_splits = tfds.even_splits(split, n=jax.process_count(), drop_remainder=False)
  largest = max(builder.info.splits[s].num_examples for s in all_splits)
  num_batches = max(1, math.ceil(largest / local_batch))
  local_split = all_splits[jax.process_index()]
  num_local = builder.info.splits[local_split].num_examples
  image_key, label_key = dataset.image_key, dataset.label_key

  def prepare(example: dict) -> dict:
    image = preprocess.eval_image(preprocess.decode(example[image_key]), inp)
    return {'image': image, 'label': tf.cast(example[label_key], tf.int32),
            'mask': tf.constant(1, tf.int32)}

  ds = _raw(builder, local_split, dataset).map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
  size = inp.image_size
  padding = {'image': tf.zeros((size, size, 3), tf.uint8),
             'label': tf.constant(0, tf.int32), 'mask': tf.constant(0, tf.int32)}
  ds = ds.concatenate(tf.data.Dataset.from_tensors(padding).repeat(
      num_batches * local_batch - num_local))
  ds = ds.batch(local_batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  return (_to_global(b, sharding) for b in ds.as_numpy_iterator()), num_batches


def eval_array_images(images: np.ndarray, inp: ml_collections.ConfigDict) -> np.ndarray:
  """The evaluation preprocessing of :func:`eval_batches`, on uint8 arrays [N, H, W, 3]."""
  return tf.map_fn(lambda im: preprocess.eval_image(im, inp), tf.convert_to_tensor(images),
                   fn_output_signature=tf.uint8).numpy()
