"""tf.data pipelines over any TFDS image dataset, delivering global ``jax.Array`` batches
sharded over the mesh.

Training: the stream is cut into ``dataset.input_shards`` shards (default one per process),
each process reading its own (``tfds.even_splits``) and giving its slice of the global
batch; every epoch of a shard reads its files in an order drawn from (seed, epoch), interleaved, then shuffles the
records in a buffer seeded by (seed, epoch), and gives every example a stateless seed from
its position in the stream. The stream is therefore a function of (seed, step): a run that
resumes at step s skips the first s batches of its epoch on the undecoded records, without
decoding them, and sees exactly what an uninterrupted run would; with a fixed
``input_shards`` also on another number of processes.

Held-out split (Revisiting §3: "50,000 random training images" for every study but Table
2): with ``dataset.holdout_examples`` > 0 the split named ``'holdout'``
(:data:`dataset_section.HOLDOUT`) is that many examples of the train split, chosen by
example id from the metadata alone, and the train split, for pretraining and every
evaluator, is the rest.

Evaluation: every example exactly once, padded to whole batches with ``mask == 0``
examples that the consumer drops.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
from typing import Any, Callable, Iterator, Sequence

import jax
import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from ssl_jax.data import dataset_section
from ssl_jax.data import image_folder
from ssl_jax.data import prefetch
from ssl_jax.data import preprocess

# Datasets that ship with ssl_jax: importing the module registers the TFDS builder.
SHIPPED = {'cifar10_5k': 'ssl_jax.data.cifar10_5k'}


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the training loop needs to know of a dataset."""
  num_classes: int
  num_train_examples: int  # In the whole train split, over all processes.
  num_test_examples: int


def get_builder(dataset: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  """The TFDS builder of ``dataset.name``; prepares shipped datasets offline."""
  name = dataset.name
  if image_folder.is_folder(name):  # Your own images, converted once to TFDS.
    return image_folder.builder(name)
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
    split = dataset.train_split if split == dataset_section.HOLDOUT else split
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
  """Class count and split sizes from the builder's metadata (with a held-out split, the
  train split counts the rest)."""
  dataset_section.validate(dataset)
  check_prepared(dataset, builder)
  features = builder.info.features  # No label (a flat image folder): 0 classes.
  num_classes = (features[dataset.label_key].num_classes
                 if dataset.label_key in features else 0)
  num_train = builder.info.splits[dataset.train_split].num_examples
  if dataset.holdout_examples >= num_train:
    raise ValueError(f'dataset.holdout_examples={dataset.holdout_examples} leaves nothing '
                     f'of the {num_train} examples of {dataset.train_split!r}: hold out fewer.')
  return DatasetInfo(
      num_classes=num_classes,
      num_train_examples=num_train - dataset.holdout_examples,
      num_test_examples=split_size(dataset, builder, dataset.test_split))


def split_size(dataset: ml_collections.ConfigDict, builder, split: str) -> int:
  """Number of examples of ``split`` as this dataset section reads it (:func:`select`)."""
  if split == dataset_section.HOLDOUT:
    return dataset.holdout_examples
  num = builder.info.splits[split].num_examples
  return num - dataset.holdout_examples if split == dataset.train_split else num


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


def split_ids(builder, split) -> np.ndarray:
  """``tfds_id`` (bytes, object array) of every example of the TFDS ``split`` in file
  order, from the metadata alone: no file is read. TFDS names an example
  '<file name>__<index in the file>' (tensorflow_datasets/core/reader.py, _make_id)."""
  ids = []
  for instruction in builder.info.splits[split].file_instructions:
    name = os.path.basename(instruction.filename)
    start = instruction.skip
    ids.extend(f'{name}__{i}'.encode() for i in range(start, start + instruction.take))
  return np.array(ids, dtype=object)


def holdout_ids(dataset: ml_collections.ConfigDict, builder) -> np.ndarray:
  """``tfds_id``s (file order) of the ``dataset.holdout_examples`` held-out examples of the
  train split: a draw of ``holdout_seed`` over the whole split ('seeded') or its last
  examples ('tail'). A function of the metadata and the section only: every run, process
  and evaluator with the same section holds out the same examples."""
  n, train = dataset.holdout_examples, dataset.train_split
  if dataset.holdout_draw == 'tail':
    return split_ids(builder, f'{train}[-{n}:]')
  ids = split_ids(builder, train)
  return ids[np.sort(np.random.default_rng(dataset.holdout_seed).choice(
      len(ids), n, replace=False))]


@dataclasses.dataclass(frozen=True)
class Selection:
  """What one process reads of a split: the TFDS split of its share, and which of its
  examples (by ``tfds_id``): all, only ``ids``, or all but ``ids`` (``drop``)."""
  split: str | Any  # A TFDS split (string or tfds.even_splits element).
  ids: np.ndarray | None
  drop: bool
  num_examples: int


def select(dataset: ml_collections.ConfigDict, builder, split: str, *,
           keep_ids: np.ndarray | None = None,
           process: tuple[int, int] | None = None) -> Selection:
  """The :class:`Selection` of ``split`` (or the held-out split,
  :data:`dataset_section.HOLDOUT`) for process ``process`` = (index, count), default this
  one, restricted to ``keep_ids`` when given. With a held-out split, the train split loses
  the held-out examples. Reads no file."""
  index, count = process or (jax.process_index(), jax.process_count())
  n, train = dataset.holdout_examples, dataset.train_split
  role = 'all'
  if split == dataset_section.HOLDOUT and not n:
    raise ValueError(f'Split {split!r} needs dataset.holdout_examples > 0.')
  if n and dataset.holdout_draw == 'tail' and split in (dataset_section.HOLDOUT, train):
    # The code's shard split: contiguous slices, so no id filter is needed.
    split = f'{train}[-{n}:]' if split == dataset_section.HOLDOUT else f'{train}[:-{n}]'
  elif n and split in (dataset_section.HOLDOUT, train):
    role, split = ('keep' if split == dataset_section.HOLDOUT else 'drop'), train
  share = tfds.even_splits(split, n=count, drop_remainder=False)[index]
  if role == 'all' and keep_ids is None:
    return Selection(share, None, False, builder.info.splits[share].num_examples)
  ids = split_ids(builder, share)
  held = set(holdout_ids(dataset, builder).tolist()) if role != 'all' else set()
  mask = np.ones(len(ids), bool)
  if role != 'all':
    is_held = np.fromiter((i in held for i in ids), bool, len(ids))
    mask = is_held if role == 'keep' else ~is_held
  if keep_ids is not None:
    kept = set(np.asarray(keep_ids, object).tolist())
    mask &= np.fromiter((i in kept for i in ids), bool, len(ids))
  if role == 'drop' and keep_ids is None:  # A small table of the held-out ids.
    return Selection(share, ids[~mask], True, int(mask.sum()))
  return Selection(share, ids[mask], False, int(mask.sum()))


def example_ids(dataset: ml_collections.ConfigDict, builder, split: str) -> np.ndarray:
  """``tfds_id``s (file order) of ``split`` as this section reads it, on all processes
  together (the train split without the held-out examples), from the metadata alone."""
  selection = select(dataset, builder, split, process=(0, 1))
  ids = split_ids(builder, selection.split)
  if selection.ids is None:
    return ids
  listed = set(selection.ids.tolist())
  return ids[np.fromiter((i in listed for i in ids), bool, len(ids)) != selection.drop]


def _id_filter(selection: Selection) -> Callable[[tf.Tensor], tf.Tensor] | None:
  """A predicate on ``tfds_id`` that keeps the selected examples (None: all); its table
  is built here, outside any dataset function."""
  if selection.ids is None:
    return None
  drop = selection.drop
  if not len(selection.ids):  # Nothing listed: keep all (drop) or nothing.
    return lambda tfds_id: tf.constant(drop)
  table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
      tf.constant(selection.ids.tolist(), tf.string),
      tf.ones(len(selection.ids), tf.int32)), default_value=0)
  return lambda tfds_id: tf.not_equal(table.lookup(tfds_id) > 0, drop)


def _raw(builder, selection: Selection, dataset: ml_collections.ConfigDict) -> tf.data.Dataset:
  """Undecoded examples of ``selection``, in file order (deterministic), filtered by id
  before the cache."""
  keep = _id_filter(selection)
  ds = builder.as_dataset(
      split=selection.split, shuffle_files=False,
      decoders={dataset.image_key: tfds.decode.SkipDecoding()},
      read_config=tfds.ReadConfig(interleave_cycle_length=1, add_tfds_id=keep is not None))
  if keep is not None:
    ds = ds.filter(lambda example: keep(example['tfds_id']))
  return ds.cache() if dataset.cache else ds


def _files_in_order(builder, selection: Selection, dataset: ml_collections.ConfigDict,
                    keep: Callable | None, order_seed: tf.Tensor) -> tf.data.Dataset:
  """Undecoded examples of ``selection`` with its files in the order of a permutation drawn
  from ``order_seed`` (int64 [2]), ``dataset.interleave_files`` of them read at once,
  deterministically (a function of the seed)."""
  if builder.info.file_format.value != 'tfrecord':
    raise ValueError(f'Dataset {dataset.name!r} is stored as {builder.info.file_format.value};'
                     ' the training stream reads tfrecord files (set dataset.cache=True to '
                     'read through TFDS).')
  instructions = builder.info.splits[selection.split].file_instructions
  paths = tf.constant([i.filename for i in instructions])
  names = tf.constant([os.path.basename(i.filename) for i in instructions])
  skips = tf.constant([i.skip for i in instructions], tf.int64)
  takes = tf.constant([i.take for i in instructions], tf.int64)
  features = builder.info.features
  decoders = {dataset.image_key: tfds.decode.SkipDecoding()}

  def read(file: tf.Tensor) -> tf.data.Dataset:
    records = tf.data.TFRecordDataset(paths[file]).skip(skips[file]).take(takes[file])
    ids = tf.data.Dataset.range(skips[file], skips[file] + takes[file]).map(
        lambda i: tf.strings.join([names[file], tf.strings.as_string(i)], separator='__'))
    return tf.data.Dataset.zip((ids, records))

  order = tf.random.experimental.stateless_shuffle(
      tf.range(len(instructions), dtype=tf.int64), seed=order_seed)
  cycle = min(dataset.interleave_files, len(instructions))
  ds = tf.data.Dataset.from_tensor_slices(order).interleave(
      read, cycle_length=cycle, num_parallel_calls=cycle, deterministic=True)
  if keep is not None:
    ds = ds.filter(lambda tfds_id, record: keep(tfds_id))
  return ds.map(lambda tfds_id, record: features.deserialize_example(record, decoders=decoders))


def check_labelled(dataset: ml_collections.ConfigDict, builder) -> None:
  """Raises ValueError, saying what to do, when the dataset has no ``dataset.label_key``
  (a flat folder of images: pretraining only)."""
  if dataset.label_key not in builder.info.features:
    raise ValueError(
        f'Dataset {dataset.name!r} has no labels ({dataset.label_key!r}; a flat folder of '
        'images) and an evaluator needs them. A finished pretraining is saved in the '
        'workdir: evaluate it on a labelled dataset with --config=configs/linear_eval.py:'
        'workdir=WORKDIR,dataset=NAME, or put the images in class subfolders.')


def split_ids_and_labels(dataset: ml_collections.ConfigDict, builder,
                         split: str) -> tuple[np.ndarray, np.ndarray]:
  """(``tfds_id`` bytes [N], labels int64 [N]) of every example of ``split`` (as
  :func:`select` reads it on one process: the train split without the held-out examples)
  in file order: one pass that parses only the label (images are neither parsed nor
  decoded), so it streams through ImageNet-sized splits."""
  check_labelled(dataset, builder)
  label_key = dataset.label_key
  selection = select(dataset, builder, split, process=(0, 1))
  ds = builder.as_dataset(
      split=selection.split, shuffle_files=False,
      decoders=tfds.decode.PartialDecoding({label_key: True}),
      read_config=tfds.ReadConfig(interleave_cycle_length=1, add_tfds_id=True))
  ids, labels = [np.zeros((0,), object)], [np.zeros((0,), np.int64)]
  for batch in ds.batch(8192).prefetch(2).as_numpy_iterator():
    ids.append(batch['tfds_id'].astype(object))
    labels.append(batch[label_key].astype(np.int64))
  ids, labels = np.concatenate(ids), np.concatenate(labels)
  if selection.ids is None:
    return ids, labels
  listed = set(selection.ids.tolist())
  mask = np.fromiter((i in listed for i in ids), bool, len(ids)) != selection.drop
  return ids[mask], labels[mask]


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


def nested_subset(ids: np.ndarray, count: int, seed: int) -> np.ndarray:
  """The first ``count`` of ``ids`` in the order of one permutation of the sorted ids drawn
  from ``seed``, in that order: static (a function of the id set, ``count`` and ``seed``,
  whatever order the ids come in) and nested (the subset of n is a prefix of that of any
  larger count). Cole et al.'s fixed pretraining subsets of 50k ... 1M images."""
  ordered = np.sort(np.asarray(ids, object))
  return ordered[np.random.default_rng(seed).permutation(len(ordered))[:count]]


def random_subset_ids(dataset: ml_collections.ConfigDict, builder, count: int,
                      seed: int) -> np.ndarray | None:
  """``count`` ``tfds_id``s of the train split, the :func:`nested_subset` of ``seed`` (so
  the draws of several counts are nested), from the split's metadata (no image is read);
  None (the whole split) when the split is no larger. The evaluators' one way to
  subsample by id (lbfgs, knn)."""
  ids = example_ids(dataset, builder, dataset.train_split)
  if count >= len(ids):
    return None
  return nested_subset(ids, count, seed)


def pretrain_ids(dataset: ml_collections.ConfigDict, builder) -> np.ndarray | None:
  """``tfds_id``s of the ``dataset.subset_examples`` pretraining examples (the
  :func:`nested_subset` of ``dataset.subset_seed`` over the train split without the
  held-out examples), in subset order; None when the run pretrains on the whole split.
  Raises ValueError when the split holds fewer examples than asked."""
  if dataset.subset_examples <= 0:
    return None
  ids = example_ids(dataset, builder, dataset.train_split)
  if dataset.subset_examples > len(ids):
    raise ValueError(f'dataset.subset_examples={dataset.subset_examples} exceeds the '
                     f'{len(ids)} examples of {dataset.name!r} split '
                     f'{dataset.train_split!r} (without the held-out ones): ask for at most '
                     f'{len(ids)}, or 0 for the whole split.')
  return nested_subset(ids, dataset.subset_examples, dataset.subset_seed)


def class_subset_ids(dataset: ml_collections.ConfigDict, builder, per_class: int,
                     fraction: float, seed: int) -> np.ndarray | None:
  """:func:`labelled_subset_ids` of the train split when ``per_class`` > 0 or ``fraction``
  < 1 asks for a subset; None (the whole split) otherwise. The evaluators' one way to
  take their labelled images (lbfgs, linear, finetune)."""
  if per_class <= 0 and fraction == 1.0:
    return None
  return labelled_subset_ids(dataset, builder, per_class, fraction, seed)


def _to_global(batch: dict, sharding: jax.sharding.NamedSharding) -> dict:
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def host_cores() -> int:
  """The cores this process may run on (its CPU affinity; a container's share)."""
  return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()


def host_options(dataset: ml_collections.ConfigDict) -> tf.data.Options:
  """tf.data options of a host pipeline, as big_vision sets them (input_pipeline.py,
  _add_tpu_host_options): a private thread pool (``dataset.threads``, 0: the host's
  cores), one thread per op (the parallelism is across examples, the map's), and no
  prefetch injected by the optimiser (big_vision: it "eats up all RAM"). Unlike
  big_vision's unordered reads, the output order is kept: the stream is a function of
  (seed, step), which resume needs."""
  options = tf.data.Options()
  options.threading.private_threadpool_size = dataset.threads or host_cores()
  options.threading.max_intra_op_parallelism = 1
  options.experimental_optimization.inject_prefetch = False
  options.deterministic = True
  return options


def input_shards(dataset: ml_collections.ConfigDict, batch_size: int) -> range:
  """The shards of the training stream this process reads (``dataset.input_shards``, or
  one per process), checking that they divide over the processes and the batch over them."""
  count = jax.process_count()
  shards = dataset.input_shards or count
  if shards % count:
    raise ValueError(f'dataset.input_shards={shards} does not divide over {count} processes: '
                     f'use a multiple of {count}, or 0 (one per process).')
  if batch_size % shards:
    raise ValueError(f'The batch of {batch_size} does not divide over dataset.input_shards='
                     f'{shards}: use a batch that is a multiple of {shards}.')
  per_process = shards // count
  return range(jax.process_index() * per_process, (jax.process_index() + 1) * per_process)


def train_batches(dataset: ml_collections.ConfigDict, builder, mesh: jax.sharding.Mesh,
                  preprocess_fn: Callable[[dict, tf.Tensor], dict], *, batch_size: int,
                  seed: int, start_step: int = 0,
                  keep_ids: np.ndarray | None = None,
                  corrupt_fn: Callable[[tf.Tensor, tf.Tensor], tf.Tensor] | None = None,
                  pooled: Sequence[Part] | None = None,
                  encoded_images: bool = False) -> Iterator[dict]:
  """Endless global training batches of ``batch_size`` (global) from ``start_step`` on,
  sharded over ``mesh``, the order drawn from ``seed``.

  ``preprocess_fn(features, example_seed)`` is the host-side preprocessing (a task's, or
  an evaluator's crops). ``features['image']`` is uint8 [H, W, 3], or with
  ``encoded_images`` the encoded image (a scalar string) for ``preprocess_fn`` to decode
  as far as it needs (:func:`preprocess.train_crop` decodes only a JPEG's crop window,
  the same pixels). ``keep_ids`` (``tfds_id``s, e.g. from
  :func:`labelled_subset_ids` or :func:`pretrain_ids`) restricts the train split to those
  examples; an epoch is then one pass over the kept examples of a shard. ``corrupt_fn(
  image, example_seed)`` (ssl_jax/data/corruption.py) alters each decoded image before
  ``preprocess_fn`` (the image is then decoded whole). ``pooled`` (:func:`mixture_parts`)
  reads several datasets instead of (``builder``, ``keep_ids``), each pooled example once
  an epoch; ``dataset`` then sets only the shuffle buffer, the files read at once and the
  input shards. The held-out examples (``dataset.holdout_examples``) are never in the
  stream.

  Each process reads its shards (:func:`input_shards`) and its slice of the global batch
  is theirs, in shard order: the global batch of a step is the same on any number of
  processes that divides ``dataset.input_shards``. The batches are put on the devices
  ``dataset.prefetch`` steps ahead by a background thread (:mod:`prefetch`).
  """
  local_batch = per_process_batch(batch_size, mesh)
  shards = input_shards(dataset, batch_size)
  parts = pooled or [Part(dataset, builder, keep_ids)]
  streams = [_shard_batches(dataset, parts, preprocess_fn, shard=shard,
                            num_shards=len(shards) * jax.process_count(),
                            batch=local_batch // len(shards), seed=seed,
                            start_step=start_step, corrupt_fn=corrupt_fn,
                            encoded_images=encoded_images)
             for shard in shards]
  ds = streams[0]
  if len(streams) > 1:
    ds = tf.data.Dataset.zip(tuple(streams)).map(
        lambda *parts: {k: tf.concat([p[k] for p in parts], 0) for k in parts[0]})
  ds = ds.prefetch(tf.data.AUTOTUNE).with_options(host_options(dataset))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(mesh.axis_names))
  yield from prefetch.to_devices(ds.as_numpy_iterator(), lambda b: _to_global(b, sharding),
                                 dataset.prefetch)


def mixture_counts(weights: Sequence[float], total: int) -> list[int]:
  """Integer counts in the proportions ``weights`` summing to ``total`` exactly (largest
  remainders)."""
  exact = np.asarray(weights, float) / np.sum(weights) * total
  counts = np.floor(exact).astype(int)
  order = np.argsort(-(exact - counts), kind='stable')
  counts[order[:total - counts.sum()]] += 1
  return counts.tolist()


def mixture_parts(dataset: ml_collections.ConfigDict) -> list[Part]:
  """The :class:`Part` of each dataset of ``dataset.mixture_names``: its
  :func:`mixture_counts` share of ``dataset.subset_examples``, the nested subset of
  ``subset_seed`` of its train split (so a pooled set of n is inside one of 2n with the
  same proportions), its labels after the previous datasets' classes."""
  dataset_section.validate(dataset)
  parts, offset = [], 0
  counts = mixture_counts(dataset.mixture_weights, dataset.subset_examples)
  if min(counts) == 0:
    raise ValueError(f'dataset.mixture_weights={tuple(dataset.mixture_weights)} gives '
                     f'{dict(zip(dataset.mixture_names, counts))} of subset_examples='
                     f'{dataset.subset_examples}: raise the weight or the total.')
  for name, count in zip(dataset.mixture_names, counts):
    section = ml_collections.ConfigDict(dataset.to_dict())
    section.name, section.mixture_names, section.mixture_weights = name, (), ()
    section.subset_examples = count
    builder = get_builder(section)
    check_prepared(section, builder, section.train_split)
    parts.append(Part(section, builder, pretrain_ids(section, builder), offset))
    offset += builder.info.features[section.label_key].num_classes
  return parts


@dataclasses.dataclass(frozen=True)
class Part:
  """One dataset of a pooled pretraining set (:func:`mixture_parts`): its section, builder,
  the ``tfds_id``s it contributes and the offset of its labels in the joint label space."""
  dataset: ml_collections.ConfigDict
  builder: Any
  keep_ids: np.ndarray | None
  label_offset: int = 0


def _part_records(part: Part, shard: int, num_shards: int, seed: int
                  ) -> tuple[Callable[[tf.Tensor], tf.data.Dataset], int]:
  """(epoch index -> undecoded examples of ``part`` in shard ``shard``, their count):
  the files in an order drawn from (seed, epoch), or the cache in file order."""
  dataset, builder = part.dataset, part.builder
  selection = select(dataset, builder, dataset.train_split, keep_ids=part.keep_ids,
                     process=(shard, num_shards))
  if dataset.cache:
    raw = _raw(builder, selection, dataset)
    return (lambda index: raw), selection.num_examples
  keep = _id_filter(selection)
  return (lambda index: _files_in_order(
      builder, selection, dataset, keep, tf.stack([tf.constant(seed, tf.int64), index]))
          ), selection.num_examples


def _pooled_records(parts: Sequence[Part], shard: int, num_shards: int, seed: int
                    ) -> tuple[Callable[[tf.Tensor], tf.data.Dataset], int]:
  """As :func:`_part_records` for several datasets: each epoch interleaves every part's
  examples of the shard in an order drawn from (seed, epoch) (a shuffled sequence with
  each part's exact count), each example reduced to its image and its label shifted by
  the part's offset, so every epoch holds each pooled example once."""
  readers, counts = zip(*(_part_records(p, shard, num_shards, seed) for p in parts))

  def common(part: Part) -> Callable[[dict], dict]:
    keys, offset = (part.dataset.image_key, part.dataset.label_key), part.label_offset
    return lambda ex: {'image': ex[keys[0]], 'label': tf.cast(ex[keys[1]], tf.int64) + offset}

  choices = tf.concat([tf.fill([n], tf.constant(i, tf.int64)) for i, n in enumerate(counts)], 0)

  def records(index: tf.Tensor) -> tf.data.Dataset:
    order = tf.random.experimental.stateless_shuffle(
        choices, seed=tf.stack([tf.constant(seed, tf.int64), index + 104729]))
    streams = [reader(index).map(common(part)) for reader, part in zip(readers, parts)]
    return tf.data.Dataset.choose_from_datasets(
        streams, tf.data.Dataset.from_tensor_slices(order), stop_on_empty_dataset=False)

  return records, int(sum(counts))


def corruption_seed(encoded_image: tf.Tensor) -> tf.Tensor:
  """int64 [2], a function of the image's encoded bytes alone: a corrupted dataset (Cole et
  al. §4.3) holds one corrupted copy of each image, so its noise is the same in every
  epoch, on any number of hosts and after a resume."""
  return tf.stack([tf.strings.to_hash_bucket_fast(encoded_image, 2**62),
                   tf.constant(0, tf.int64)])


def _shard_batches(dataset: ml_collections.ConfigDict, parts: Sequence[Part],
                   preprocess_fn: Callable[[dict, tf.Tensor], dict], *, shard: int,
                   num_shards: int, batch: int, seed: int, start_step: int,
                   corrupt_fn: Callable[[tf.Tensor, tf.Tensor], tf.Tensor] | None,
                   encoded_images: bool) -> tf.data.Dataset:
  """Shard ``shard`` of ``num_shards`` of the training stream: its share of the split (of
  the pooled ``parts`` when there are several) in batches of ``batch``, from
  ``start_step`` on.

  Every epoch reads the files in a new order drawn from (seed, shard, epoch) (Revisiting
  datasets.py:87-90, MoCo's per-epoch permutation, SimCLR's shuffle_files), then shuffles
  records in a buffer; with ``dataset.cache`` the cached records are read in file order
  and only the buffer shuffles (small datasets, where the buffer spans the split).
  """
  seed = seed * 1_000_003 + shard
  if len(parts) == 1:
    records, num_local = _part_records(parts[0], shard, num_shards, seed)
    image_key, label_key = dataset.image_key, dataset.label_key
  else:
    records, num_local = _pooled_records(parts, shard, num_shards, seed)
    image_key, label_key = 'image', 'label'
  if num_local < batch:
    raise ValueError(f'The train split holds {num_local} examples in input shard {shard} '
                     f'of {num_shards}, fewer than its part of a batch, {batch}.')
  buffer = min(dataset.shuffle_buffer, num_local)

  def epoch(index: tf.Tensor) -> tf.data.Dataset:
    return records(index).shuffle(buffer, seed=seed + index * 7919,
                                  reshuffle_each_iteration=False)

  first_example = start_step * batch
  ds = tf.data.Dataset.range(first_example // num_local, 2**40).flat_map(epoch)
  ds = ds.skip(first_example % num_local).enumerate(start=first_example)

  def prepare(position: tf.Tensor, example: dict) -> dict:
    example_seed = tf.stack([tf.cast(seed, tf.int64), position])
    image = example[image_key]
    if corrupt_fn:  # Corruptions act on the whole decoded image, the same every epoch.
      image = corrupt_fn(preprocess.decode(image), corruption_seed(image))
    elif not encoded_images:
      image = preprocess.decode(image)
    features = {'image': image}
    if label_key in example:
      features['label'] = tf.cast(example[label_key], tf.int32)
    return preprocess_fn(features, example_seed)

  ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.batch(batch, drop_remainder=True)


def eval_batches(dataset: ml_collections.ConfigDict, inp: ml_collections.ConfigDict,
                 builder, mesh: jax.sharding.Mesh, split: str, batch_size: int,
                 keep_ids: np.ndarray | None = None) -> tuple[Iterator[dict], int]:
  """Global batches of ``batch_size`` holding every example of ``split`` (or
  :data:`dataset_section.HOLDOUT`; only those of ``keep_ids`` when given, chosen before any image is
  decoded) once: the central crop of the ``input`` section ``inp``, uint8 ``image``,
  ``label`` and ``mask`` (0 on padding). Returns (iterator, number of batches); every
  process yields the same number of batches."""
  check_labelled(dataset, builder)
  local_batch = per_process_batch(batch_size, mesh)
  count = jax.process_count()  # Each process pads to the largest share.
  selections = [select(dataset, builder, split, keep_ids=keep_ids, process=(i, count))
                for i in range(count)]
  largest = max(s.num_examples for s in selections)
  num_batches = max(1, math.ceil(largest / local_batch))
  selection = selections[jax.process_index()]
  num_local = selection.num_examples
  image_key, label_key = dataset.image_key, dataset.label_key

  def prepare(example: dict) -> dict:
    image = preprocess.eval_image(example[image_key], inp)  # Decodes a JPEG's crop alone.
    return {'image': image, 'label': tf.cast(example[label_key], tf.int32),
            'mask': tf.constant(1, tf.int32)}

  ds = _raw(builder, selection, dataset).map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
  size = inp.image_size
  padding = {'image': tf.zeros((size, size, 3), tf.uint8),
             'label': tf.constant(0, tf.int32), 'mask': tf.constant(0, tf.int32)}
  ds = ds.concatenate(tf.data.Dataset.from_tensors(padding).repeat(
      num_batches * local_batch - num_local))
  ds = ds.batch(local_batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  ds = ds.with_options(host_options(dataset))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(mesh.axis_names))
  return prefetch.to_devices(ds.as_numpy_iterator(), lambda b: _to_global(b, sharding),
                             dataset.prefetch), num_batches


def eval_array_images(images: np.ndarray, inp: ml_collections.ConfigDict) -> np.ndarray:
  """The evaluation preprocessing of :func:`eval_batches`, on uint8 arrays [N, H, W, 3]."""
  return tf.map_fn(lambda im: preprocess.eval_image(im, inp), tf.convert_to_tensor(images),
                   fn_output_signature=tf.uint8).numpy()
