"""Label granularity (Cole et al. 2022, §4.4 and Fig. 6): an evaluator's ``label_map``
relabels the dataset's fine classes at a coarser level of a hierarchy, and the evaluator
then fits and scores on the coarse labels.

A map is a table ``coarse = table[fine]`` over the dataset's ``label_key`` classes, named
by ``label_map``:

* a shipped name: ``cifar10_vehicle_animal`` (2 classes) and ``cifar10_five_groups``
  (air or water vehicle, road vehicle, bird, amphibian, mammal), the JSON files of
  ssl_jax/data/files/label_maps/, for granularity studies on the shipped data;
* ``feature:KEY``: the dataset's own coarser feature, read beside the label from the train
  split: ``feature:coarse_label`` for TFDS cifar100 (20 superclasses),
  ``feature:supercategory`` for i_naturalist2021 (11);
* ``taxonomy:LEVEL:PATH``: iNat21's taxonomy from its metadata file (the competition's
  train.json or val.json; TFDS keeps only the species and the supercategory): LEVEL is
  kingdom, phylum, class, order, family or genus;
* a path to a JSON file ``{fine: coarse}``, fine classes by name (the dataset's class
  names) or index, coarse classes by name (numbered in sorted order) or index.
"""

from __future__ import annotations

import json
import os

import ml_collections
import numpy as np

SHIPPED_DIR = os.path.join(os.path.dirname(__file__), 'files', 'label_maps')
TAXONOMY_LEVELS = ('kingdom', 'phylum', 'class', 'order', 'family', 'genus')


def shipped_names() -> list[str]:
  """Names of the maps in ssl_jax/data/files/label_maps/."""
  return sorted(f[:-5] for f in os.listdir(SHIPPED_DIR) if f.endswith('.json'))


def from_pairs(fine_names: list[str], mapping: dict) -> np.ndarray:
  """The table [len(fine_names)] of ``mapping`` {fine name or index: coarse name or
  index}; coarse names are numbered in sorted order. Raises ValueError naming the fine
  classes it leaves out or the keys it does not know."""
  index = {name: i for i, name in enumerate(fine_names)}
  table = {}
  for fine, coarse in mapping.items():
    i = int(fine) if str(fine).lstrip('-').isdigit() else index.get(fine)
    if i is None or not 0 <= i < len(fine_names):
      raise ValueError(f'label_map: {fine!r} is not a class of the dataset (classes: '
                       f'{fine_names[:5]}... or indices 0..{len(fine_names) - 1}).')
    table[i] = coarse
  missing = [fine_names[i] for i in range(len(fine_names)) if i not in table]
  if missing:
    raise ValueError(f'label_map maps {len(table)} of {len(fine_names)} classes; add '
                     f'{missing[:10]}{"..." if len(missing) > 10 else ""}.')
  values = [table[i] for i in range(len(fine_names))]
  if all(isinstance(v, int) for v in values):
    return np.asarray(values, np.int32)
  numbers = {name: n for n, name in enumerate(sorted(set(map(str, values))))}
  return np.asarray([numbers[str(v)] for v in values], np.int32)


def from_taxonomy(categories: list[dict], fine_names: list[str], level: str) -> np.ndarray:
  """The table of iNat21 metadata ``categories`` (each with ``name`` and the taxonomy
  levels) at ``level``. TFDS names a class by the category's name, lowercased, spaces as
  underscores (i_naturalist2021.py _format)."""
  if level not in TAXONOMY_LEVELS:
    raise ValueError(f'label_map taxonomy level {level!r}: use one of {TAXONOMY_LEVELS}.')
  return from_pairs(fine_names, {c['name'].lower().replace(' ', '_'): c[level]
                                 for c in categories})


def from_feature(fine: np.ndarray, coarse: np.ndarray, num_fine: int) -> np.ndarray:
  """The table of paired label arrays (every example's fine and coarse label); raises
  ValueError if a fine class has two coarse labels or none."""
  table = np.full((num_fine,), -1, np.int64)
  for f, c in set(zip(np.asarray(fine).tolist(), np.asarray(coarse).tolist())):
    if table[f] not in (-1, c):
      raise ValueError(f'label_map: class {f} has two coarse labels ({table[f]} and {c}); '
                       'the feature is not a coarser level of the label.')
    table[f] = c
  if (table < 0).any():
    raise ValueError(f'label_map: classes {np.flatnonzero(table < 0)[:10].tolist()} have no '
                     'example in the train split to read their coarse label from.')
  return table.astype(np.int32)


def mapped(table: np.ndarray | None, labels: np.ndarray, num_classes: int
           ) -> tuple[np.ndarray, int]:
  """(labels, class count) at the level of ``table`` (None: unchanged)."""
  if table is None:
    return labels, num_classes
  return table[labels], int(table.max()) + 1


def load(spec: str, dataset: ml_collections.ConfigDict, builder) -> np.ndarray | None:
  """The table [num fine classes] of ``spec`` (see the module docstring) for the dataset
  section ``dataset``; None for ''."""
  if not spec:
    return None
  fine_names = list(builder.info.features[dataset.label_key].names)
  if spec.startswith('feature:'):
    return _feature_table(dataset, builder, spec[len('feature:'):], len(fine_names))
  if spec.startswith('taxonomy:'):
    level, _, path = spec[len('taxonomy:'):].partition(':')
    return from_taxonomy(_read_json(path, spec)['categories'], fine_names, level)
  path = os.path.join(SHIPPED_DIR, f'{spec}.json') if spec in shipped_names() else spec
  return from_pairs(fine_names, _read_json(path, spec))


def _read_json(path: str, spec: str):
  from ssl_jax import files
  text = files.read_text(path) if path.endswith('.json') else None
  if text is None:
    raise ValueError(f'label_map={spec!r} is neither a shipped map ({shipped_names()}), '
                     "'feature:KEY', 'taxonomy:LEVEL:PATH' nor an existing .json file.")
  return json.loads(text)


def _feature_table(dataset: ml_collections.ConfigDict, builder, key: str,
                   num_fine: int) -> np.ndarray:
  """The table of the dataset's feature ``key``, read with the label from the train split
  (only the two labels are parsed)."""
  import tensorflow_datasets as tfds  # TensorFlow only where the host pipeline runs.
  if key not in builder.info.features:
    raise ValueError(f'label_map=feature:{key}: {dataset.name!r} has no feature {key!r} '
                     f'(features: {sorted(builder.info.features.keys())}).')
  ds = builder.as_dataset(split=dataset.train_split, shuffle_files=False,
                          decoders=tfds.decode.PartialDecoding({dataset.label_key: True,
                                                                key: True}))
  fine, coarse = [], []
  for batch in ds.batch(8192).as_numpy_iterator():
    fine.append(batch[dataset.label_key])
    coarse.append(batch[key])
  return from_feature(np.concatenate(fine), np.concatenate(coarse), num_fine)

