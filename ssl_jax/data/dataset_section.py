"""The ``dataset`` section: which TFDS dataset the run reads, its splits, a held-out part,
nested subsets, pooled datasets, and how the host pipeline reads it
(ssl_jax/data/input_pipeline.py, which reads this section).

Apart from the pipeline, so that a config loads without TensorFlow: the step, profile and
memory benchmarks (``python -m ssl_jax.benchmark``) run on an accelerator host that has
JAX and its libraries but not TensorFlow.
"""

from __future__ import annotations

import ml_collections


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
  # Files read at once by the training stream; their order is redrawn every epoch.
  # Revisiting datasets.py:87-101 lists the files with shuffle=True before repeat (a new
  # order each epoch) and interleaves 64 of them; SimCLR reads with shuffle_files.
  c.interleave_files = 16
  # > 0: hold out this many train examples as the split 'holdout' (test_split='holdout');
  # the train split is then the rest. Revisiting: 50,000 (paper §3); the released code
  # used the last 40 of 1024 shards, 50,046, pretraining on 1,231,121 (datasets.py:178-181,
  # 220-221).
  c.holdout_examples = 0
  # 'seeded': a draw of holdout_seed over the whole split (the paper's random 50,000);
  # 'tail': the last holdout_examples in file order (the code's shard split; reads no
  # other file, and TFDS's ImageNet files are already in a shuffled order).
  c.holdout_draw = 'seeded'
  c.holdout_seed = 0
  # > 0: pretrain on this many train examples only (Cole et al.: 50k ... 1M), the first
  # subset_examples of one permutation of the split's ids drawn from subset_seed, so a
  # smaller subset lies inside a larger one and a size always gives the same images.
  c.subset_examples = 0
  c.subset_seed = 0
  # Pooled pretraining data (Cole et al. Table 2): non-empty, pretrain on subset_examples
  # images drawn from these TFDS datasets in the proportions mixture_weights, each part
  # the nested subset of subset_seed of its train split; labels are joined (each
  # dataset's classes after the previous ones'). name stays the evaluation dataset.
  c.mixture_names = ()
  c.mixture_weights = ()
  c.cache = False  # Cache encoded examples in memory (small datasets).
  # Shards of the training stream, each a slice of every global batch; 0: one per process.
  # A fixed count (a multiple of the process count) keeps the stream when a run resumes
  # on another number of hosts; each process reads input_shards / process_count of them.
  c.input_shards = 0
  # Batches put on the devices ahead of the step by a background thread (0: none).
  c.prefetch = 2
  # tf.data's private thread pool for this pipeline's map and interleave (0: this host's
  # cores); its ops run one thread each (big_vision's tf.data options).
  c.threads = 0
  return c


HOLDOUT = 'holdout'  # The held-out part of the train split (dataset.holdout_examples).
HOLDOUT_DRAWS = ('seeded', 'tail')


def validate(section: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the field and the fix."""
  if section.holdout_examples < 0:
    raise ValueError(f'dataset.holdout_examples={section.holdout_examples} must be >= 0 '
                     '(0: no held-out split).')
  if section.holdout_draw not in HOLDOUT_DRAWS:
    raise ValueError(f'dataset.holdout_draw={section.holdout_draw!r}: use one of '
                     f'{HOLDOUT_DRAWS}.')
  if section.interleave_files < 1:
    raise ValueError(f'dataset.interleave_files={section.interleave_files} must be >= 1.')
  if section.subset_examples < 0:
    raise ValueError(f'dataset.subset_examples={section.subset_examples} must be >= 0 (0: '
                     'the whole train split).')
  if section.mixture_names:
    if len(section.mixture_weights) != len(section.mixture_names) or min(
        section.mixture_weights) <= 0:
      raise ValueError(f'dataset.mixture_weights={tuple(section.mixture_weights)} needs one '
                       f'positive weight per dataset of mixture_names='
                       f'{tuple(section.mixture_names)}.')
    if section.subset_examples <= 0:
      raise ValueError('dataset.mixture_names needs the total size of the pooled set: set '
                       'dataset.subset_examples > 0.')
    if section.holdout_examples:
      raise ValueError('dataset.mixture_names pools whole train splits: set '
                       'dataset.holdout_examples=0.')
  if section.prefetch < 0 or section.threads < 0:
    raise ValueError(f'dataset.prefetch={section.prefetch} and dataset.threads='
                     f'{section.threads} must be >= 0 (0: no device prefetch; 0 threads: '
                     'one per host core).')
  if section.input_shards < 0:
    raise ValueError(f'dataset.input_shards={section.input_shards} must be >= 0 (0: one '
                     'per process).')
  for field in ('train_split', 'test_split'):
    if section[field] == HOLDOUT and not section.holdout_examples:
      raise ValueError(f'dataset.{field}={HOLDOUT!r} needs dataset.holdout_examples > 0 '
                       '(e.g. --config.dataset.holdout_examples=50000).')
  if section.train_split == HOLDOUT:
    raise ValueError(f'dataset.train_split cannot be {HOLDOUT!r}: name the split it is '
                     'held out from.')
