"""Your own images as a TFDS dataset: ``--config.dataset.name=folder:/path/to/images``.

Two layouts:

- class subfolders, ``PATH/<class>/<image>``: the subfolder names, sorted, are the labels
  (at least two classes); pretraining and every evaluator;
- one flat folder, ``PATH/<image>``: no labels; pretraining only (an evaluator that needs
  labels stops with an error saying so).

The first run converts the folder once into a TFDS dataset in ``PATH/.tfds/`` (the image
files' bytes as they are, JPEG, PNG, GIF or BMP; their file names kept as ``file_name``),
and every later run reads that: the same tf.data pipeline as ImageNet's reads it. Files
that TensorFlow cannot decode are skipped and counted, with a warning naming them; other
files (no image extension) and hidden ones are ignored. The ``test`` split holds a fixed
draw of :data:`TEST_FRACTION` of each class (of the folder, unlabelled), the ``train``
split the rest. To convert again after changing the images, delete ``PATH/.tfds``.

The conversion is atomic on any file system, gs:// included: it is written into a fresh
folder ``PATH/.tfds/<unique>/``, and the one-line file ``PATH/.tfds/READY``, naming that
folder, is written last (one object write); a run killed while converting leaves no
READY, and the next run converts again. On several processes only process 0 converts; the
others wait for it at a barrier (every process calls :func:`builder` at the same points of
the program) and then read READY.
"""

from __future__ import annotations

import os
import uuid

from absl import logging
import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from ssl_jax import files

PREFIX = 'folder:'
EXTENSIONS = ('.jpg', '.jpeg', '.png', '.gif', '.bmp')  # What tf.io.decode_image reads.
TEST_FRACTION = 0.1  # Of each class (at least one image of a class of two or more).
TEST_SEED = 0  # The draw of the test images; fixed, so every run holds out the same.
PREPARED = '.tfds'  # Hidden, so that scanning the folder never sees it.
READY = 'READY'
NAMES_SHOWN = 20  # Skipped files named in the warning (all are counted).


def is_folder(name: str) -> bool:
  """Whether a ``dataset.name`` names a folder of images."""
  return name.startswith(PREFIX)


def _visible(path: files.Path) -> bool:
  return not path.name.startswith('.')


def _is_image(path: files.Path) -> bool:
  return path.is_file() and path.suffix.lower() in EXTENSIONS


def scan(root: files.Path) -> tuple[list[str] | None, list[tuple[files.Path, int]]]:
  """(class names or None for a flat folder, [(image path, label index or -1)]) of the
  images under ``root``, sorted; raises ValueError for a folder that is neither layout."""
  if not root.is_dir():
    raise FileNotFoundError(f'dataset.name={PREFIX}{root}: no such folder.')
  entries = sorted((p for p in root.iterdir() if _visible(p)), key=lambda p: p.name)
  subfolders = [p for p in entries if p.is_dir()]
  images = [p for p in entries if _is_image(p)]
  if subfolders and images:
    raise ValueError(f'{root} holds both images ({images[0].name}, ...) and subfolders '
                     f'({subfolders[0].name}, ...): put every image in a class subfolder '
                     '(labels), or all of them directly in the folder (no labels).')
  if not subfolders:
    if not images:
      raise ValueError(f'{root} holds no image files ({", ".join(EXTENSIONS)}) and no class '
                       'subfolders: point dataset.name=folder:PATH at a folder of images.')
    return None, [(p, -1) for p in images]
  if len(subfolders) == 1:
    raise ValueError(f'{root} holds a single class subfolder, {subfolders[0].name!r}: a '
                     'classifier needs two or more; add class subfolders, or move the images '
                     'directly into the folder to pretrain without labels.')
  classes = [p.name for p in subfolders]
  listed = [(p, label) for label, folder in enumerate(subfolders)
            for p in sorted(folder.iterdir(), key=lambda p: p.name)
            if _visible(p) and _is_image(p)]
  if not listed:
    raise ValueError(f'The class subfolders of {root} hold no image files '
                     f'({", ".join(EXTENSIONS)}).')
  return classes, listed


def readable(path: files.Path) -> bytes | None:
  """The file's bytes if TensorFlow decodes them as an image (as the pipeline will),
  else None."""
  try:
    data = path.read_bytes()
    tf.io.decode_image(data, channels=3, expand_animations=False)
    return data
  except (tf.errors.InvalidArgumentError, OSError):
    return None


def test_mask(labels: np.ndarray) -> np.ndarray:
  """Which examples go to the test split: a draw of :data:`TEST_SEED` of
  round(TEST_FRACTION x size) of each label (at least one where the label has two or
  more examples, none of a single one)."""
  rng = np.random.default_rng(TEST_SEED)
  mask = np.zeros(len(labels), bool)
  for label in np.unique(labels):
    members = np.flatnonzero(labels == label)
    count = max(1, round(TEST_FRACTION * len(members))) if len(members) > 1 else 0
    mask[rng.choice(members, count, replace=False)] = True
  return mask


def convert(root: files.Path, target: files.Path) -> None:
  """Writes the TFDS dataset of the images under ``root`` into ``target`` (a new folder),
  skipping and naming the files that do not decode."""
  classes, listed = scan(root)
  kept, skipped = [], []
  for path, label in listed:
    data = readable(path)
    if data is None:
      skipped.append(str(path.relative_to(root)))
    else:
      kept.append((str(path.relative_to(root)), data, label))
  if skipped:
    logging.warning('%d of the %d image files in %s do not decode and are skipped: %s%s',
                    len(skipped), len(listed), root, ', '.join(skipped[:NAMES_SHOWN]),
                    ', ...' if len(skipped) > NAMES_SHOWN else '')
  if len(kept) < 2:
    raise ValueError(f'{root} holds {len(kept)} readable image(s) ({len(skipped)} skipped): '
                     'a train and a test split need at least two.')
  features = {'image': tfds.features.Image(shape=(None, None, 3)),
              'file_name': tfds.features.Text()}
  if classes is not None:
    features['label'] = tfds.features.ClassLabel(names=classes)
  mask = test_mask(np.array([label for _, _, label in kept]))

  def examples(in_test: bool):
    for (name, data, label), test in zip(kept, mask):
      if test == in_test:
        example = {'image': data, 'file_name': name}
        if classes is not None:
          example['label'] = label
        yield name, example

  tfds.dataset_builders.store_as_tfds_dataset(
      name='image_folder', version='1.0.0', features=tfds.features.FeaturesDict(features),
      split_datasets={'train': examples(False), 'test': examples(True)},
      data_dir=os.fspath(target), description=f'The images of {root}.')
  logging.info('Converted %s: %d images (%d train, %d test), %s; %d skipped.', root,
               len(kept), int((~mask).sum()), int(mask.sum()),
               f'{len(classes)} classes' if classes else 'no labels', len(skipped))


def prepared_dir(root: files.Path) -> files.Path | None:
  """The folder of the finished conversion of ``root``, None if there is none."""
  name = files.read_text(root / PREPARED / READY)
  return root / PREPARED / name.strip() if name else None


def prepare(root: files.Path) -> files.Path:
  """Converts ``root`` unless a finished conversion exists; returns its folder."""
  done = prepared_dir(root)
  if done is not None:
    return done
  scan(root)  # A bad layout is reported as such, before anything is written.
  try:
    (root / PREPARED).mkdir(exist_ok=True)
  except OSError as e:
    raise ValueError(f'Cannot write the converted dataset into {root / PREPARED} '
                     f'({e.strerror or e}): make {root} writable, or copy the images to a '
                     'writable folder.') from None
  unique = uuid.uuid4().hex
  convert(root, root / PREPARED / unique)
  # The TFDS dataset lies in <data_dir>/<name>/<version>.
  files.write_text(root / PREPARED / READY, f'{unique}/image_folder/1.0.0\n')
  return root / PREPARED / unique / 'image_folder' / '1.0.0'


def builder(name: str) -> tfds.core.DatasetBuilder:
  """The TFDS builder of ``folder:PATH``, converting the folder on the first call (on
  process 0; the others wait at a barrier)."""
  root = files.absolute(name[len(PREFIX):])
  if jax.process_count() == 1:
    return tfds.builder_from_directory(os.fspath(prepare(root)))
  from jax.experimental import multihost_utils
  if jax.process_index() == 0:
    prepare(root)
  multihost_utils.sync_global_devices(f'ssl_jax image folder {root}')
  done = prepared_dir(root)
  if done is None:
    raise FileNotFoundError(f'Process 0 did not convert {root} (no {PREPARED}/{READY}); '
                            'see its log.')
  return tfds.builder_from_directory(os.fspath(done))
