"""dataset.name=folder:PATH: a folder of image files, converted once to TFDS, trains
through the main command; corrupt files are skipped and named; bad layouts are refused."""

import io
import os
import subprocess
import sys

from absl import logging
import ml_collections
import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

import conftest
from ssl_jax.data import dataset_section
from ssl_jax.data import image_folder
from ssl_jax.data import input_pipeline

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(REPO, 'ssl_jax', 'data', 'files', 'cifar10_5k.npz')


def _write_images(folder, per_class=30, classes=(0, 1, 2), flat=False):
  """The shipped CIFAR-10 images as PNG and JPEG files, in class subfolders named by
  the shipped label names (or all in ``folder``), plus one corrupt file. Returns
  {relative file name: label name}."""
  with np.load(SHIPPED) as data:
    images, labels, names = data['image'], data['label'], data['label_names']
  written = {}
  for label in classes:
    sub = folder if flat else folder / str(names[label])
    sub.mkdir(parents=True, exist_ok=True)
    for i in np.flatnonzero(labels == label)[:per_class]:
      file = sub / (f'{i}.png' if i % 2 else f'{i}.jpg')
      buffer = io.BytesIO()
      Image.fromarray(images[i]).save(buffer, format='PNG' if i % 2 else 'JPEG')
      file.write_bytes(buffer.getvalue())
      written[str(file.relative_to(folder))] = str(names[label])
  (sub / 'broken.jpg').write_bytes(b'\xff\xd8\xff not a jpeg at all')
  (sub / 'notes.txt').write_text('not an image: ignored')
  return written


def _section(folder):
  section = dataset_section.config()
  section.name = f'folder:{folder}'
  return ml_collections.FrozenConfigDict(section)


def test_folder_trains_through_main_command_and_evaluates(tmp_path):
  folder = tmp_path / 'images'
  _write_images(folder)
  workdir = tmp_path / 'run'
  result = subprocess.run(
      [sys.executable, '-m', 'ssl_jax.main', f'--config={REPO}/tests/tiny.py:evals=lbfgs+knn',
       f'--config.dataset.name=folder:{folder}', '--config.total_steps=3',
       f'--workdir={workdir}'],
      cwd=REPO, capture_output=True, text=True, timeout=600,
      # One device: the folder is under test, not the sharding (compiles in half the time).
      env=dict(os.environ, XLA_FLAGS=conftest.xla_flags(1)))
  assert result.returncode == 0, result.stderr[-3000:]
  # Skipped, counted and named, not a crash.
  assert '1 of the 91 image files' in result.stderr and 'broken.jpg' in result.stderr
  for key in ('lbfgs/pre_logits/top1', 'knn/pre_logits/top1'):
    assert f'{key} = ' in result.stdout
  assert (workdir / 'checkpoints' / '3').is_dir()


def test_conversion_labels_splits_and_reuse(tmp_path, caplog):
  folder = tmp_path / 'images'
  written = _write_images(folder, per_class=20)
  with caplog.at_level(logging.WARNING):
    builder = image_folder.builder(f'folder:{folder}')
  assert 'broken.jpg' in caplog.text
  info = builder.info
  assert info.features['label'].names == sorted(set(written.values()))
  assert info.splits['train'].num_examples + info.splits['test'].num_examples == 60
  assert info.splits['test'].num_examples == 6  # 10 % of each class.
  # Every example is a file of the folder with its subfolder's label, each exactly once.
  seen = {}
  for split in ('train', 'test'):
    # The file's bytes as they are (no re-encoding), as the pipeline reads them.
    for ex in builder.as_dataset(split=split, decoders={
        'image': tfds.decode.SkipDecoding()}).as_numpy_iterator():
      name = ex['file_name'].decode()
      assert name not in seen
      seen[name] = info.features['label'].int2str(ex['label'])
      assert ex['image'] == (folder / name).read_bytes()
  assert seen == written
  # The next run reads the finished conversion; nothing is converted again.
  prepared = sorted(os.listdir(folder / '.tfds'))
  again = image_folder.builder(f'folder:{folder}')
  assert again.data_dir == builder.data_dir and sorted(os.listdir(folder / '.tfds')) == prepared
  # An interrupted conversion (no READY) is not used: the next run converts again.
  (folder / '.tfds' / 'READY').unlink()
  assert image_folder.builder(f'folder:{folder}').data_dir != builder.data_dir


def test_flat_folder_pretrains_without_labels_and_evaluation_says_so(tmp_path):
  folder = tmp_path / 'flat'
  _write_images(folder, per_class=5, flat=True)
  section = _section(folder)
  builder = input_pipeline.get_builder(section)
  assert 'label' not in builder.info.features
  info = input_pipeline.dataset_info(section, builder)
  assert (info.num_classes, info.num_train_examples + info.num_test_examples) == (0, 15)
  with pytest.raises(ValueError, match='has no labels .* put the images in class subfolders'):
    input_pipeline.check_labelled(section, builder)


@pytest.mark.parametrize('layout, message', [
    ({}, 'holds no image files'),
    ({'cats/a.txt': b'x', 'dogs/b.txt': b'x'}, 'subfolders of .* hold no image files'),
    ({'cats/a.png': None}, 'single class subfolder'),
    ({'a.png': None, 'dogs/b.png': None}, 'both images .* and subfolders'),
    ({'cats/a.png': None, 'dogs/b.jpg': b'corrupt'}, '1 readable image'),
])
def test_bad_folders_are_refused_naming_the_fix(tmp_path, layout, message):
  folder = tmp_path / 'images'
  folder.mkdir()
  png = io.BytesIO()
  Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(png, format='PNG')
  for name, data in layout.items():
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(png.getvalue() if data is None else data)
  with pytest.raises(ValueError, match=message):
    image_folder.builder(f'folder:{folder}')
  assert not (folder / '.tfds' / 'READY').exists()


def test_missing_folder_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match='no such folder'):
    image_folder.builder(f'folder:{tmp_path}/nowhere')


def test_unwritable_conversion_folder_is_a_clear_error(tmp_path):
  """Where PATH/.tfds cannot be made (here a file is in the way; a read-only folder
  fails the same way), the error names it and the fix."""
  folder = tmp_path / 'images'
  _write_images(folder, per_class=2)
  (folder / '.tfds').write_text('in the way')
  with pytest.raises(ValueError, match=r'Cannot write .*\.tfds .* writable'):
    image_folder.builder(f'folder:{folder}')
