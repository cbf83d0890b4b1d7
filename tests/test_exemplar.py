"""Exemplar task: the semi-hard triplet loss against brute force, the views, the host
crops, and device-count independence of the loss and of a train step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ONE_STAGE
from conftest import compare_1_and_8_devices
from conftest import progress
from conftest import sections
from conftest import tiny_config
from ssl_jax import config_lib
from ssl_jax.tasks import exemplar


def _brute_force_loss(embeddings: np.ndarray, copies: int, margin: float, mode: str):
  """TF's triplet_semihard_loss by explicit loops (float64); also counts how often each
  branch of the negative choice was taken."""
  x = embeddings.astype(np.float64)
  if mode == 'vector':
    x = x / np.maximum(np.sqrt((x**2).sum(1, keepdims=True)), 1e-6)
  else:
    x = x / np.maximum(np.sqrt((x**2).sum(0, keepdims=True)), 1e-6)
  n = len(x)
  labels = np.arange(n) // copies

  def dist(i: int, j: int) -> float:
    return float(((x[i] - x[j])**2).sum())

  hinges, branches = [], {'semihard': 0, 'farthest': 0}
  for a in range(n):
    negatives = [dist(a, k) for k in range(n) if labels[k] != labels[a]]
    for p in range(n):
      if p == a or labels[p] != labels[a]:
        continue
      d_ap = dist(a, p)
      farther = [d for d in negatives if d > d_ap]
      if farther:
        d_an = min(farther)
        branches['semihard'] += 1
      else:
        d_an = max(negatives)
        branches['farthest'] += 1
      hinges.append(max(margin + d_ap - d_an, 0.0))
  return float(np.mean(hinges)), branches


@pytest.mark.parametrize('mode', ['vector', 'batch'])
@pytest.mark.parametrize('margin', [0.2, 0.5, 2.0])
def test_triplet_loss_matches_brute_force(mode, margin):
  rng = np.random.default_rng(0)
  copies, num_images, dim = 4, 5, 8
  # Copies scattered around a per-image centre, and one antipodal pair: some positives
  # have a farther negative, some none, so both branches of the negative choice run.
  centres = np.repeat(rng.normal(size=(num_images, dim)), copies, axis=0)
  embeddings = centres + 1.2 * rng.normal(size=centres.shape)
  embeddings[1] = -embeddings[0]  # A positive pair farther apart than any negative.
  embeddings = embeddings.astype(np.float32)
  config = tiny_config(task='exemplar', **{'exemplar.copies': copies,
                                           'exemplar.normalize': mode,
                                           'exemplar.margin': margin,
                                           'exemplar.group_images': 0})
  value, metrics = jax.jit(lambda e: exemplar.loss(e, {}, None, sections(config),
                                                   progress()))(embeddings)
  expected, branches = _brute_force_loss(embeddings, copies, margin, mode)
  assert branches['semihard'] > 0 and branches['farthest'] > 0, branches
  np.testing.assert_allclose(value, expected, rtol=1e-5)
  assert 0.0 < float(metrics['triplet_accuracy']) < 1.0
  assert 0.0 < float(metrics['active_triplets']) <= 1.0


def test_grouped_loss_is_the_mean_of_each_groups_normalised_loss():
  """The released code's form: each group of 8 images x 8 copies ([64, D], one TPU
  core's share) L2-normalised along its batch axis and mined on its own; the loss is the
  mean over the groups. Two groups of different scale: a global normalisation or mining
  would mix them."""
  rng = np.random.default_rng(2)
  copies, group_images, dim = 8, 8, 6
  centres = np.repeat(rng.normal(size=(2 * group_images, dim)), copies, axis=0)
  embeddings = centres + 0.8 * rng.normal(size=centres.shape)
  embeddings[64:] *= 5.0
  embeddings = embeddings.astype(np.float32)
  config = tiny_config(task='exemplar', batch_size=2 * group_images, **{
      'exemplar.copies': copies, 'exemplar.group_images': group_images})
  assert config.exemplar.normalize == 'batch' and config.exemplar.margin == 0.5
  value, _ = jax.jit(lambda e: exemplar.loss(e, {}, None, sections(config), progress()))(
      embeddings)
  per_group = [_brute_force_loss(embeddings[i:i + 64], copies, 0.5, 'batch')
               for i in (0, 64)]
  assert all(b['semihard'] > 0 for _, b in per_group)
  np.testing.assert_allclose(value, np.mean([loss for loss, _ in per_group]), rtol=1e-5)
  whole, _ = _brute_force_loss(embeddings, copies, 0.5, 'batch')
  assert abs(float(value) - whole) > 1e-3
  with pytest.raises(ValueError, match='exemplar.group_images=8'):
    exemplar.loss(embeddings[:96], {}, None, sections(config), progress())


def test_group_images_must_divide_the_batch():
  config = config_lib.run_config('exemplar')
  config.batch_size = 12
  with pytest.raises(ValueError, match='exemplar.group_images=8 does not divide batch_size'):
    config_lib.validate(config)
  config.exemplar.group_images = 1
  with pytest.raises(ValueError, match='exemplar.group_images=1'):
    config_lib.validate(config)


def test_triplet_loss_gradient_is_finite_and_normalisation_is_per_vector_or_dimension():
  x = jnp.asarray(np.random.default_rng(1).normal(size=(12, 6)), jnp.float32)
  np.testing.assert_allclose(jnp.linalg.norm(exemplar.normalize(x, 'vector'), axis=1), 1.0,
                             rtol=1e-6)
  np.testing.assert_allclose(jnp.linalg.norm(exemplar.normalize(x, 'batch'), axis=0), 1.0,
                             rtol=1e-6)
  with pytest.raises(ValueError, match='exemplar.normalize'):
    exemplar.normalize(x, 'layer')
  grads = jax.jit(jax.grad(lambda e: exemplar.semihard_triplet_loss(
      exemplar.normalize(e, 'vector'), 3, 0.5)[0]))(x)
  assert np.all(np.isfinite(grads)) and float(jnp.abs(grads).max()) > 0


def test_views_shapes_labels_gray_and_standardisation():
  copies, num_images = 4, 8
  rng = np.random.default_rng(0)
  # Every copy of an image is the same crop: only the device jitter tells them apart.
  crops = rng.integers(0, 256, (num_images, 1, 16, 16, 3)).astype(np.uint8)
  batch = {'image': jnp.asarray(np.repeat(crops, copies, axis=1))}
  config = tiny_config(task='exemplar', **{'exemplar.copies': copies,
                                           'exemplar.grayscale': 0.5})
  views = jax.jit(lambda b, k: exemplar.views(b, k, sections(config)))(batch,
                                                                      jax.random.key(3))
  inputs = np.asarray(views['inputs']).reshape(num_images, copies, 16, 16, 3)
  assert views['inputs'].shape == (num_images * copies, 16, 16, 3)
  np.testing.assert_array_equal(views['labels'], np.repeat(np.arange(num_images), copies))
  gray = np.all(inputs[..., :1] == inputs, axis=(2, 3, 4))  # [images, copies]
  # The coin is per image: all copies grey or all colour, and both occur for this key.
  assert np.all(gray.all(1) | ~gray.any(1)), gray
  assert 0 < gray[:, 0].sum() < num_images
  np.testing.assert_allclose(inputs.mean((2, 3, 4)), 0.0, atol=1e-5)
  np.testing.assert_allclose(inputs.std((2, 3, 4)), 1.0, rtol=1e-4)
  # The jitter is per copy: colour copies of one crop differ. (On a grey copy the
  # standardisation undoes the brightness shift, up to clipping, and saturation is void.)
  for i in np.flatnonzero(~gray[:, 0]):
    assert not np.allclose(inputs[i, 0], inputs[i, 1])


def test_views_all_gray_and_shape_checks():
  config = tiny_config(task='exemplar', **{'exemplar.copies': 2, 'exemplar.grayscale': 1.0})
  assert exemplar.input_shapes(sections(config)) == {'image': (2, 16, 16, 3)}
  image = np.random.default_rng(1).integers(0, 256, (3, 2, 16, 16, 3)).astype(np.uint8)
  views = jax.jit(lambda b: exemplar.views(b, jax.random.key(0), sections(config)))(
      {'image': jnp.asarray(image)})
  assert views['inputs'].shape == (6, 16, 16, 3)
  np.testing.assert_array_equal(views['inputs'][..., 1], views['inputs'][..., 0])
  np.testing.assert_array_equal(views['inputs'][..., 2], views['inputs'][..., 0])
  with pytest.raises(ValueError, match='exemplar.copies=2'):
    exemplar.views({'image': jnp.asarray(image[:, 0])}, jax.random.key(0), sections(config))


def test_host_preprocess_gives_different_deterministic_crops():
  tf = pytest.importorskip('tensorflow')
  config = tiny_config(task='exemplar', **{'exemplar.copies': 4, 'input.crop': 'inception'})
  image = tf.constant(np.random.default_rng(0).integers(0, 256, (48, 64, 3)), tf.uint8)
  seed = tf.constant([7, 11], tf.int64)
  out = exemplar.preprocess({'image': image, 'label': tf.constant(3)}, seed, sections(config))
  copies = out['image'].numpy()
  assert copies.shape == (4, 16, 16, 3) and copies.dtype == np.uint8
  for i in range(4):
    for j in range(i):
      assert not np.array_equal(copies[i], copies[j])
  again = exemplar.preprocess({'image': image}, seed, sections(config))['image'].numpy()
  np.testing.assert_array_equal(again, copies)
  other = exemplar.preprocess({'image': image}, tf.constant([7, 12], tf.int64), sections(config))
  assert not np.array_equal(other['image'].numpy(), copies)


@pytest.mark.parametrize('copies,mode,group', [(2, 'batch', 4), (4, 'vector', 2),
                                               (4, 'vector', 0)])
def test_loss_and_step_equal_on_1_and_8_devices(copies, mode, group):
  # Groups of 4 images span 2 of the 8 devices, groups of 2 lie on one. A small learning
  # rate: normalising over a few embeddings makes gradients 4x larger, and so their
  # float32 rounding, which the parameter comparison's atol reads after the update.
  config = tiny_config(task='exemplar', **ONE_STAGE, **{
      'exemplar.copies': copies, 'exemplar.embedding': 16, 'exemplar.normalize': mode,
      'exemplar.group_images': group, 'optimizer.warmup_steps': 0,
      'optimizer.base_lr': 0.04})
  batch = {'image': np.random.default_rng(0).integers(
      0, 256, (16, copies, 16, 16, 3)).astype(np.uint8)}
  state1, metrics1 = compare_1_and_8_devices(
      config, batch, ('loss', 'grad_norm', 'triplet_accuracy', 'active_triplets'))
  assert np.isfinite(metrics1['loss']) and float(metrics1['loss']) > 0
  assert state1.params['head']['embedding']['kernel'].shape[-1] == 16
