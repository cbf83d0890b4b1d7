"""Jigsaw and Relative Patch Location: the permutation set, puzzles and pairs, host patch
extraction, device augmentation, and device-count independence of the train step."""

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


def test_standardisation_and_grayscale():
  rng = np.random.default_rng(0)
  batch = jnp.asarray(rng.integers(0, 256, (16, 9, 6, 6, 3)), jnp.uint8)

  def augmented(**overrides):
    config = _config(**{f'task.{k}': v for k, v in overrides.items()})
    out = np.asarray(patches.augment_patches(batch, jax.random.key(1), config.jigsaw))
    assert out.shape == (16 * 9, 6, 6, 3)
    np.testing.assert_allclose(out.mean((1, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std((1, 2, 3)), 1.0, atol=1e-4)
    return (out == out[..., :1]).all((1, 2, 3)).reshape(16, 9)  # Grey patches.

  assert augmented(grayscale=1.0).all()
  assert not augmented(grayscale=0.0).any()
  per_patch = augmented(grayscale=2 / 3, grayscale_per='patch')
  assert 0.5 < per_patch.mean() < 0.8
  assert (per_patch.any(1) & ~per_patch.all(1)).any()  # Mixed images.
  per_image = augmented(grayscale=0.66, grayscale_per='image')
  assert (per_image.all(1) | ~per_image.any(1)).all()  # All grey or all colour.
  assert 0 < per_image.all(1).sum() < 16
  with pytest.raises(ValueError, match='grayscale_per'):
    augmented(grayscale_per='pixel')


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
