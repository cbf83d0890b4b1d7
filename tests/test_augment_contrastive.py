"""Contrastive device augmentation (SimCLR, MoCo, BYOL) against tf.image and its
definitions; views are independent of how the batch is sharded."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from ssl_jax.data import augment


def _images(n=4, size=8, seed=0):
  return np.random.default_rng(seed).uniform(size=(n, size, size, 3)).astype(np.float32)


# SimCLR v2's device augmentation at strength 1 (reference §1.3), set explicitly so the
# tests do not follow later changes of the augment section's defaults.
_SIMCLR = dict(jitter_prob=0.8, brightness=0.8, brightness_mode='multiplicative',
               contrast=0.8, saturation=0.8, hue=0.2, grayscale_prob=0.2,
               grayscale_first=False, blur_prob=(0.5, 0.5), blur_sigma=(0.1, 2.0),
               blur_per='image', solarize_prob=(0.0, 0.0), normalize='unit')


def _config(**augment_overrides):
  """The augment section (what the augmentation functions take)."""
  section = augment.config()
  for name, value in {**_SIMCLR, **augment_overrides}.items():
    section[name] = value
  section.lock()
  return section


def _views(n, size, seed=0):
  """uint8 [n, 2, size, size, 3]: both views the same crop, so only the device ops
  differ between them."""
  x = np.random.default_rng(seed).integers(0, 256, (n, 1, size, size, 3), np.uint8)
  return np.repeat(x, 2, axis=1)


def _in_unit_range(y):
  return float(jnp.min(y)) >= 0.0 and float(jnp.max(y)) <= 1.0


def test_contrast_and_hue_match_tf():
  x = _images()
  for factor in (0.2, 1.0, 1.8):
    np.testing.assert_allclose(augment.adjust_contrast(x, factor),
                               tf.image.adjust_contrast(x, factor), atol=1e-5)
  for delta in (-0.7, -0.1, 0.0, 0.25, 0.9):
    np.testing.assert_allclose(augment.adjust_hue(x, delta), tf.image.adjust_hue(x, delta),
                               atol=1e-5)


def test_ops_keep_shape_and_range():
  x = jnp.asarray(_images(n=1)[0])

  def all_ops(x, key):
    return {
        'hue': augment.adjust_hue(x, 0.3),
        'brightness_mul': augment.random_brightness(x, key, 0.8, 'multiplicative'),
        'brightness_add': augment.random_brightness(x, key, 0.8, 'additive'),
        'jitter': augment.color_jitter(x, key, 0.8, 0.8, 0.8, 0.2),
        'jitter_add': augment.color_jitter(x, key, 0.4, 0.4, 0.2, 0.1, 'additive'),
        'grayscale': augment.random_grayscale(x, key, 1.0),
        'blur': augment.gaussian_blur(x, 1.5, 5),
        'solarize': augment.solarize(x),
        # A contrast factor > 1 leaves [0, 1] (as in TF); the jitter clips after it.
        'contrast_clipped': jnp.clip(augment.adjust_contrast(x, 1.8), 0, 1),
    }
  outputs = jax.jit(all_ops)(x, jax.random.key(0))
  for name, y in outputs.items():
    assert y.shape == x.shape and y.dtype == jnp.float32, name
    assert _in_unit_range(y), name
    assert not np.allclose(y, x), name


def test_ops_identity_at_strength_zero():
  x = jnp.asarray(_images(n=1)[0])
  key = jax.random.key(1)
  np.testing.assert_allclose(augment.adjust_contrast(x, 1.0), x, atol=1e-6)
  np.testing.assert_allclose(augment.adjust_hue(x, 0.0), x, atol=1e-5)
  for mode in ('multiplicative', 'additive'):
    np.testing.assert_array_equal(augment.random_brightness(x, key, 0.0, mode), x)
  np.testing.assert_array_equal(augment.color_jitter(x, key, 0.0, 0.0, 0.0, 0.0), x)
  np.testing.assert_array_equal(augment.random_grayscale(x, key, 0.0), x)
  np.testing.assert_array_equal(augment.solarize(x, threshold=1.01), x)


def test_jitter_skips_zero_strength_ops_and_is_jittable():
  x = jnp.asarray(_images(n=3))
  keys = jax.random.split(jax.random.key(2), 3)
  # Only contrast on: the random order cannot bring in another op.
  y = jax.jit(jax.vmap(lambda im, k: augment.color_jitter(im, k, 0.0, 0.5, 0.0, 0.0)))(
      x, keys)
  mean = x.mean((1, 2), keepdims=True)
  factor = ((y - mean) * (x - mean)).sum((1, 2, 3)) / jnp.square(x - mean).sum((1, 2, 3))
  for i in range(3):  # Unclipped pixels: a single contrast factor in [0.5, 1.5] per image.
    assert 0.5 <= float(factor[i]) <= 1.5
  # All four ops on: vmapped (switch -> select) equals the per-image jitted (switch) path.
  full = jax.jit(jax.vmap(lambda im, k: augment.color_jitter(im, k, 0.8, 0.8, 0.8, 0.2)))(
      x, keys)
  single = jax.jit(lambda im, k: augment.color_jitter(im, k, 0.8, 0.8, 0.8, 0.2))
  for i in range(3):
    np.testing.assert_allclose(full[i], single(x[i], keys[i]), atol=1e-6)


def test_grayscale_hue_turn_solarize():
  x = jnp.asarray(_images())
  gray = augment.random_grayscale(x[0], jax.random.key(0), 1.0)
  np.testing.assert_array_equal(gray[..., 0], gray[..., 1])
  np.testing.assert_array_equal(gray[..., 0], gray[..., 2])
  np.testing.assert_allclose(augment.adjust_hue(x, 1.0), x, atol=1e-5)
  np.testing.assert_allclose(augment.adjust_hue(x, -1.0), x, atol=1e-5)
  for threshold in (0.3, 0.5):
    np.testing.assert_array_equal(augment.solarize(x, threshold),
                                  np.where(x < threshold, x, 1.0 - x))


def test_blur_kernel_constant_impulse_and_tiny_sigma():
  assert augment.blur_kernel_size(224) == 23  # SimCLR: 224 // 10 = 22 -> radius 11.
  assert augment.blur_kernel_size(32) == 3 and augment.blur_kernel_size(16) == 1
  blur = jax.jit(augment.gaussian_blur, static_argnums=2)  # One compile per shape.
  const = jnp.full((12, 12, 3), 0.37, jnp.float32)
  for sigma in (0.1, 2.0, 10.0):
    np.testing.assert_allclose(blur(const, sigma, 7), const, atol=1e-6)
  x = jnp.asarray(_images(n=1, size=16)[0])
  np.testing.assert_allclose(blur(x, 1e-3, 7), x, atol=1e-6)
  np.testing.assert_allclose(blur(x, 0.0, 7), x, atol=1e-6)
  np.testing.assert_array_equal(blur(x, 2.0, 1), x)
  impulse = jnp.zeros((32, 32, 3), jnp.float32).at[16, 16].set(1.0)
  for sigma in (0.5, 1.0, 2.0):
    out = blur(impulse, sigma, 9)
    np.testing.assert_allclose(out.sum((0, 1)), 1.0, atol=1e-5)
    np.testing.assert_allclose(out[16, 16], out.max((0, 1)))  # Peak stays put.
    np.testing.assert_allclose(out[14, 16], out[18, 16], atol=1e-7)  # Symmetric.
    np.testing.assert_allclose(out[16, 13], out[16, 19], atol=1e-7)
  # sigma may be traced (one per image under vmap).
  blurred = jax.jit(jax.vmap(lambda im, s: blur(im, s, 5)))(
      jnp.stack([x, x]), jnp.asarray([0.5, 2.0]))
  assert not np.allclose(blurred[0], blurred[1])
  # 1-D blur of a ramp with reflect padding, against a direct numpy convolution.
  ramp = np.tile(np.arange(8, dtype=np.float32)[None, :, None] / 7, (1, 1, 3))
  taps = np.exp(-np.arange(-2, 3) ** 2 / (2 * 1.3 ** 2))
  taps /= taps.sum()
  padded = np.pad(ramp, ((0, 0), (2, 2), (0, 0)), mode='reflect')
  want = sum(taps[k] * padded[:, k:k + 8] for k in range(5))
  np.testing.assert_allclose(blur(jnp.asarray(ramp), 1.3, 5), want, atol=1e-6)


def test_normalize_modes():
  x = jnp.asarray(_images(n=1)[0])
  np.testing.assert_array_equal(augment.normalize(x, 'unit'), x)
  np.testing.assert_allclose(augment.normalize(x, 'symmetric'), 2 * x - 1, atol=1e-7)
  mean = np.asarray([0.485, 0.456, 0.406], np.float32)
  std = np.asarray([0.229, 0.224, 0.225], np.float32)
  np.testing.assert_allclose(augment.normalize(x, 'imagenet'), (x - mean) / std, atol=1e-6)
  with pytest.raises(ValueError):
    augment.normalize(x, 'bogus')


def test_contrastive_views_shape_determinism_and_sharding():
  config = _config(blur_prob=(1.0, 0.5), solarize_prob=(0.0, 0.2), normalize='imagenet')
  images = _views(16, 24)
  key = jax.random.key(3)
  fn = jax.jit(lambda x, k: augment.contrastive_views(x, k, config))
  out = fn(images, key)
  assert out.shape == (16, 2, 24, 24, 3) and out.dtype == jnp.float32
  assert np.all(np.isfinite(out))
  # Both views came from the same crop: the device ops alone make them differ.
  differ = np.abs(np.asarray(out[:, 0] - out[:, 1])).max((1, 2, 3)) > 1e-3
  assert differ.mean() >= 0.9, differ
  np.testing.assert_array_equal(fn(images, key), out)
  assert not np.allclose(fn(images, jax.random.key(4)), out)
  mesh = jax.make_mesh((8,), ('data',), axis_types=(jax.sharding.AxisType.Auto,))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  sharded = jax.device_put(images, sharding)
  out_sharded = fn(sharded, key)
  assert len(out_sharded.sharding.device_set) == 8
  np.testing.assert_allclose(out_sharded, out, atol=1e-5)


def test_contrastive_views_more_views_and_grayscale_first():
  config = _config(grayscale_first=True, grayscale_prob=1.0, jitter_prob=1.0,
                   blur_prob=(0.0, 0.0), brightness_mode='additive', normalize='unit')
  images = np.repeat(_views(4, 8), 2, axis=1)  # V = 4.
  out = jax.jit(lambda x, k: augment.contrastive_views(x, k, config))(
      images, jax.random.key(5))
  assert out.shape == (4, 4, 8, 8, 3)
  # Grayscale first (MoCo v1): every jitter op keeps a gray image gray.
  np.testing.assert_allclose(out[..., 0], out[..., 1], atol=1e-5)
  np.testing.assert_allclose(out[..., 0], out[..., 2], atol=1e-5)
  for v in range(1, 4):
    assert not np.allclose(out[:, 0], out[:, v])


def test_single_view_is_the_first_view():
  # One view per image (a supervised baseline's augmentation) gets the first view's keys.
  config = _config(normalize='unit')
  images = _views(8, 20)
  fn = jax.jit(lambda x, k: augment.contrastive_views(x, k, config))
  both = fn(images, jax.random.key(9))
  np.testing.assert_allclose(fn(images[:, :1], jax.random.key(9))[:, 0], both[:, 0],
                             atol=1e-6)


def test_blur_per_batch_shares_sigma():
  images = np.repeat(_views(8, 20)[:1], 8, axis=0)  # One crop, 8 times.
  key = jax.random.key(6)
  common = dict(jitter_prob=0.0, grayscale_prob=0.0, blur_prob=(1.0, 1.0),
                solarize_prob=(0.0, 0.0), normalize='unit')
  def views(config):
    return jax.jit(lambda x, k: augment.contrastive_views(x, k, config))(images, key)
  per_batch = views(_config(blur_per='batch', **common))
  per_image = views(_config(blur_per='image', **common))
  for v in range(2):
    np.testing.assert_allclose(per_batch[:, v], np.broadcast_to(per_batch[:1, v],
                                                                per_batch[:, v].shape),
                               atol=1e-6)
    assert not np.allclose(per_image[:, v], per_image[:1, v])
  assert not np.allclose(per_batch[0, 0], per_batch[0, 1])  # One sigma per view.
  with pytest.raises(ValueError):
    augment.contrastive_view(jnp.zeros((20, 20, 3)), key, _config(blur_per='batch'), 0)


def test_byol_solarize_rates():
  # BYOL's asymmetric blur and solarisation (reference §3) on constant gray images >= 0.6:
  # grayscale and the (reflect-padded) blur keep them constant and >= 0.5, so a view is
  # solarised exactly when its mean is < 0.5. The jitter (which could darken) is off; at
  # 20 px the blur has 3 taps (blur_kernel_size), so it runs.
  config = _config(jitter_prob=0.0, grayscale_prob=0.2, blur_prob=(1.0, 0.1),
                   solarize_prob=(0.0, 0.2), blur_per='image', normalize='unit')
  values = np.random.default_rng(7).integers(153, 256, 256).astype(np.uint8)
  images = np.broadcast_to(values[:, None, None, None, None], (256, 2, 20, 20, 3)).copy()
  out = jax.jit(lambda x, k: augment.contrastive_views(x, k, config))(
      images, jax.random.key(8))
  solarized = np.asarray(out.mean((2, 3, 4)) < 0.5)
  assert solarized[:, 0].sum() == 0
  assert abs(solarized[:, 1].mean() - 0.2) < 0.08, solarized[:, 1].mean()
  expected = np.where(solarized, 1 - values[:, None] / 255, values[:, None] / 255 * 0.9999)
  np.testing.assert_allclose(out.mean((2, 3, 4)), expected, atol=2e-4)
