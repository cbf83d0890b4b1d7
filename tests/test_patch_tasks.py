"""Jigsaw and Relative Patch Location: the permutation set, puzzles and pairs, host patch
extraction, device augmentation, and device-count independence of the train step."""

import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from conftest import compare_1_and_8_devices
from conftest import progress
from conftest import sections
from conftest import tiny_config
from ssl_jax import optim
from ssl_jax.models import layers
from ssl_jax.tasks import jigsaw
from ssl_jax.tasks import patches
from ssl_jax.tasks import relative_patch

# Small patch geometry: 54-px resize, 48-px crop, cells of 16 px, 12-px patches (jitter 4).
GEOMETRY = {'task.resize': 54, 'task.crop': 48, 'task.size': 12,
            'task.embedding': 16, 'task.hidden': 32}


def _config(task='jigsaw', **overrides):
  return tiny_config(task, **GEOMETRY, **overrides)


def _hamming(perms: np.ndarray) -> np.ndarray:
  """Pairwise Hamming distances of distinct rows (upper triangle)."""
  distances = (perms[:, None, :] != perms[None, :, :]).sum(-1)
  return distances[np.triu_indices(len(perms), 1)]


def test_maximal_hamming_permutations():
  perms = jigsaw.maximal_hamming_permutations()
  assert perms.shape == (100, 9) and perms.dtype == np.int32
  np.testing.assert_array_equal(np.sort(perms, 1), np.tile(np.arange(9), (100, 1)))
  assert len({tuple(p) for p in perms}) == 100
  distances = _hamming(perms)
  print(f'Hamming distances: min {distances.min()}, mean {distances.mean():.4f}, '
        f'max {distances.max()}')
  assert distances.min() >= 2 and distances.mean() >= 8.0
  # Noroozi & Favaro's Algorithm 1 gives the statistics of the published set.
  assert (distances.min(), round(float(distances.mean()), 2), distances.max()) == (2, 8.08, 9)
  # Deterministic and cached.
  assert jigsaw.maximal_hamming_permutations() is perms
  np.testing.assert_array_equal(jigsaw._maximal_hamming.__wrapped__(100, 0), perms)
  assert not np.array_equal(jigsaw.maximal_hamming_permutations(100, 1), perms)


def test_jigsaw_puzzles_are_undone_by_the_inverse_permutation():
  config = _config(task='jigsaw')
  num_images, subset, width = 3, config.jigsaw.permutation_subset, 4
  batch = {'image': jnp.zeros((num_images, 9, 4, 4, 3), jnp.uint8)}
  views = jigsaw.views(batch, jax.random.key(3), sections(config))
  table = jigsaw.permutation_table(config.jigsaw)
  labels = np.asarray(views['labels'])
  assert views['inputs'].shape == (num_images * 9, 4, 4, 3)
  assert labels.shape == (num_images * subset,)
  assert len(set(labels[:subset])) == subset  # Distinct permutations per step...
  np.testing.assert_array_equal(labels, np.tile(labels[:subset], num_images))  # ...shared.
  np.testing.assert_array_equal(views['permutations'], table[labels[:subset]])
  # Recognisable embeddings: image b, piece i, channel e holds 100 b + 10 i + e.
  b, i, e = np.meshgrid(np.arange(num_images), np.arange(9), np.arange(width), indexing='ij')
  embeddings = (100 * b + 10 * i + e).astype(np.float32)
  rows = np.asarray(jigsaw._puzzles(jnp.asarray(embeddings), views))
  assert rows.shape == (num_images * subset, 9 * width)
  for row, label in enumerate(labels):
    puzzle = rows[row].reshape(9, width)
    perm = np.asarray(table[label])
    np.testing.assert_array_equal(puzzle, embeddings[row // subset][perm])
    np.testing.assert_array_equal(puzzle[np.argsort(perm)], embeddings[row // subset])


def test_relative_patch_labels_point_the_right_way():
  config = _config(task='relative_patch')
  assert relative_patch.DIRECTIONS[0] == 'up-left'
  np.testing.assert_array_equal(relative_patch.pair_offsets(), relative_patch.OFFSETS)
  for (rows, cols), name in zip(relative_patch.OFFSETS, relative_patch.DIRECTIONS):
    vertical = {-1: 'up', 0: '', 1: 'down'}[rows]
    horizontal = {-1: 'left', 0: '', 1: 'right'}[cols]
    assert name == '-'.join(filter(None, (vertical, horizontal)))
  # An image whose 3x3 cells carry their (row, column) in the red and green channels,
  # through the host extraction (central patches) and the head's pairing.
  cell = config.relative_patch.resize // 3
  image = np.zeros((3 * cell, 3 * cell, 3), np.uint8)
  for row in range(3):
    for col in range(3):
      image[row * cell:(row + 1) * cell, col * cell:(col + 1) * cell, :2] = (row, col)
  pieces = patches.extract_patches(tf.constant(image), tf.constant([0, 0], tf.int64),
                                   config.relative_patch, train=False).numpy()
  positions = pieces[:, 0, 0, :2].astype(int)
  np.testing.assert_array_equal(positions, [divmod(i, 3) for i in range(9)])
  pairs = np.asarray(relative_patch.pairs(jnp.asarray(positions[None])))[0]
  views = relative_patch.views({'image': jnp.asarray(pieces[None])}, jax.random.key(0),
                               sections(config))
  labels = np.asarray(views['labels'])
  np.testing.assert_array_equal(labels, np.arange(8))
  for label in labels:
    neighbour, centre = pairs[label]
    assert tuple(neighbour - centre) == relative_patch.OFFSETS[label]
  # The head's rows: neighbour's embedding, then the centre's.
  rows = np.asarray(relative_patch._pair_rows(jnp.asarray(positions[None], jnp.float32), views))
  np.testing.assert_array_equal(rows, pairs.reshape(8, 4))


def _find(patch: np.ndarray, image: np.ndarray) -> list[tuple[int, int]]:
  """Every (top, left) where ``patch`` is a sub-image of ``image``."""
  windows = np.lib.stride_tricks.sliding_window_view(image, patch.shape)[..., 0, :, :, :]
  return list(zip(*np.nonzero((windows == patch).all((-3, -2, -1)))))


def test_host_patches_are_sub_images_of_the_crop():
  config = _config(task='jigsaw')
  p = config.jigsaw
  cell, jitter = p.crop // p.grid, p.crop // p.grid - p.size
  image = tf.constant(np.random.default_rng(0).integers(0, 256, (70, 60, 3)), tf.uint8)
  resized = patches.resize_squashed(image, p.resize).numpy()
  seen_offsets = set()
  for example in range(4):
    seed = tf.constant([7, example], tf.int64)
    pieces = patches.extract_patches(image, seed, p).numpy()
    assert pieces.shape == (9, 12, 12, 3) and pieces.dtype == np.uint8
    np.testing.assert_array_equal(patches.extract_patches(image, seed, p), pieces)
    # Graph mode (inside tf.data) gives the same patches.
    mapped = tf.data.Dataset.from_tensors(image).map(
        lambda im, seed=seed: patches.preprocess({'image': im}, seed, sections(config))['image'])
    np.testing.assert_array_equal(next(iter(mapped)).numpy(), pieces)
    # Patch r * 3 + c lies at crop + cell (r, c) + an offset in [0, jitter]; one crop.
    low, high = 0, p.resize - p.crop
    for index, piece in enumerate(pieces):
      (top, left), = _find(piece, resized)
      row, col = divmod(index, p.grid)
      corner = np.array([top - row * cell, left - col * cell])
      low, high = np.maximum(low, corner - jitter), np.minimum(high, corner)
      seen_offsets.add((example, index, top, left))
    assert (low <= high).all()
  assert len({(top, left) for _, _, top, left in seen_offsets}) > 9  # Random, per seed.
  # Evaluation: central crop and central patches (gaps of the jitter).
  pieces = patches.extract_patches(image, tf.constant([7, 0], tf.int64), p,
                                   train=False).numpy()
  start = (p.resize - p.crop) // 2 + jitter // 2
  for index, piece in enumerate(pieces):
    row, col = divmod(index, p.grid)
    top, left = start + row * cell, start + col * cell
    np.testing.assert_array_equal(piece, resized[top:top + p.size, left:left + p.size])


def _augmented(batch: np.ndarray, seed: int = 1, **overrides) -> np.ndarray:
  config = _config(**{f'task.{k}': v for k, v in overrides.items()})
  out = patches.augment_patches(jnp.asarray(batch), jax.random.key(seed), config.jigsaw)
  return np.asarray(out).reshape(batch.shape)


def _standardized(x: np.ndarray) -> np.ndarray:
  """tf.image.per_image_standardization's formula per patch, in float64."""
  mean = x.mean((-3, -2, -1), keepdims=True)
  std = x.std((-3, -2, -1), keepdims=True)
  n = np.prod(x.shape[-3:])
  return (x - mean) / np.maximum(std, 1 / np.sqrt(n))


def test_grayscale_is_one_coin_per_image_and_the_rgb_mean():
  config = _config()
  assert (config.jigsaw.grayscale, config.jigsaw.grayscale_per,
          config.jigsaw.grayscale_weights) == (0.66, 'image', 'mean')  # The code's.
  num_images = 3000
  batch = np.random.default_rng(0).integers(0, 256, (num_images, 9, 2, 2, 3), np.uint8)
  out = _augmented(batch)
  grey = (np.abs(out - out[..., :1]) < 1e-6).all((2, 3, 4))  # [images, 9]
  assert (grey.all(1) | ~grey.any(1)).all()  # All 9 patches grey, or none.
  frequency = grey[:, 0].mean()
  assert abs(frequency - 0.66) < 0.03, frequency  # 3.5 sigma at 3,000 images.
  mean = np.repeat(batch.astype(np.float64).mean(-1, keepdims=True), 3, -1)
  np.testing.assert_allclose(out[grey[:, 0]], _standardized(mean)[grey[:, 0]], atol=1e-4)
  np.testing.assert_allclose(out[~grey[:, 0]], _standardized(batch.astype(np.float64))[
      ~grey[:, 0]], atol=1e-4)
  # The former form: per patch, with tf.image.rgb_to_grayscale's luma.
  luma = _augmented(batch[:200], grayscale_per='patch', grayscale_weights='luma',
                    grayscale=2 / 3)
  grey = (np.abs(luma - luma[..., :1]) < 1e-6).all((2, 3, 4))
  assert (grey.any(1) & ~grey.all(1)).any()  # Mixed images.
  tf_luma = tf.image.rgb_to_grayscale(batch[:200].astype(np.float32)).numpy()
  np.testing.assert_allclose(luma[grey][..., :1], _standardized(tf_luma.astype(np.float64))[
      grey], atol=1e-3)
  with pytest.raises(ValueError, match='grayscale_weights'):
    _augmented(batch[:2], grayscale_weights='bt709')


def test_patches_are_standardised_on_the_0_255_scale():
  # Low contrast (std 0.5 grey levels): on [0, 1] values the floor 1/sqrt(N) (2.3 grey
  # levels here: N = 12 * 12 * 3) would bite; on 0-255 values, as the code, it does not.
  rng = np.random.default_rng(0)
  batch = (100 + rng.integers(0, 2, (2, 9, 12, 12, 3))).astype(np.uint8)
  out = _augmented(batch, grayscale=0.0)
  expected = tf.image.per_image_standardization(
      batch.reshape(18, 12, 12, 3).astype(np.float32)).numpy().reshape(batch.shape)
  np.testing.assert_allclose(out, expected, atol=1e-4)
  np.testing.assert_allclose(out, _standardized(batch.astype(np.float64)), atol=1e-4)
  np.testing.assert_allclose(out.std((2, 3, 4)), 1.0, atol=1e-4)


def _write_permutations(path, perms: np.ndarray, header=None) -> str:
  """A file in the format of permutations_100_max.bin: int32 header (count, 9), then the
  1-based indices, little-endian (the code's reader: struct.unpack('<ll') and '<l')."""
  count, width = header or perms.shape
  with open(path, 'wb') as f:
    f.write(struct.pack('<ll', count, width))
    f.write(struct.pack(f'<{perms.size}l', *(perms.reshape(-1) + 1)))
  return str(path)


def test_permutations_file_round_trip_and_bad_files(tmp_path):
  perms = np.stack([np.random.default_rng(i).permutation(9) for i in range(5)])
  path = _write_permutations(tmp_path / 'perms.bin', perms)
  config = _config(**{'task.permutations_file': path, 'task.num_permutations': 5,
                      'task.permutation_subset': 3})
  jigsaw.validate(config.jigsaw, batch_size=16)
  np.testing.assert_array_equal(jigsaw.permutation_table(config.jigsaw), perms)
  views = jigsaw.views({'image': jnp.zeros((2, 9, 4, 4, 3), jnp.uint8)}, jax.random.key(0),
                       sections(config))
  np.testing.assert_array_equal(views['permutations'], perms[np.asarray(views['labels'][:3])])
  with pytest.raises(ValueError, match='num_permutations=5'):
    jigsaw.validate(_config(**{'task.permutations_file': path}).jigsaw, batch_size=16)
  bad = {'does not exist': None,
         'must be a permutation': _write_permutations(tmp_path / 'a.bin', perms.clip(0, 7)),
         'repeats': _write_permutations(tmp_path / 'b.bin', perms[[0, 1, 0]]),
         'needs': _write_permutations(tmp_path / 'c.bin', perms, header=(6, 9)),
         'must start': _write_permutations(tmp_path / 'd.bin', perms.reshape(-1, 3),
                                           header=(15, 3))}
  for message, bad_path in bad.items():
    bad_path = bad_path or str(tmp_path / 'absent.bin')
    with pytest.raises(ValueError, match=f'jigsaw.permutations_file=.*{message}'):
      jigsaw.read_permutations(bad_path)


def test_losses_are_the_mean_cross_entropy():
  for task, num in ((jigsaw, 100), (relative_patch, 8)):
    labels = jnp.arange(16) % num
    views = {'labels': labels}
    perfect = jax.nn.one_hot(labels, num) * 100.0
    s = sections(_config(task.__name__.split('.')[-1]))
    assert float(task.loss(perfect, views, None, s, progress())[0]) < 1e-6
    np.testing.assert_allclose(task.loss(jnp.zeros((16, num)), views, None, s, progress())[0],
                               np.log(num), rtol=1e-6)


@pytest.mark.parametrize('task', ['jigsaw', 'relative_patch'])
def test_loss_and_params_equal_on_1_and_8_devices(task):
  config = _config(task=task, **{
      'optimizer.warmup_steps': 0, 'optimizer.fc_weight_decay': 5e-4,
      'model.root_stride': 1, 'model.stage_strides': (1, 2, 2, 1)})
  assert config[task].dropout == 0.5
  rng = np.random.default_rng(0)
  batch = {'image': rng.integers(0, 256, (16, 9, 12, 12, 3)).astype(np.uint8)}
  state1, metrics1 = compare_1_and_8_devices(config, batch)
  # The head: the embedding keeps the normal weight decay, the FC kernels 5e-4.
  head = state1.params['head']
  assert head['embedding']['kernel'].shape == (layers.channels(512, config.model.k), 16)
  rates = optim.weight_decay_rates(head, config.optimizer)
  assert rates['embedding']['kernel'] == config.optimizer.weight_decay
  assert rates['fc']['fc1_fcwd']['kernel'] == rates['fc']['fc2_fcwd']['kernel'] == 5e-4
  assert rates['fc']['fc1_fcwd']['bias'] == rates['fc']['bn']['scale'] == 0.0
  num_outputs = 100 if task == 'jigsaw' else 8
  pieces = 9 if task == 'jigsaw' else 2
  assert head['fc']['fc1_fcwd']['kernel'].shape == (pieces * 16, 32)
  assert head['fc']['fc2_fcwd']['kernel'].shape == (32, num_outputs)
  assert np.isfinite(float(metrics1['loss']))
