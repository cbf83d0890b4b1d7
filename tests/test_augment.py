"""Device-side pixel ops against tf.image (the original pipeline's library)."""

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf

from ssl_jax.data import augment


def _images(n=6, size=8, seed=0):
  return np.random.default_rng(seed).uniform(size=(n, size, size, 3)).astype(np.float32)


def test_hsv_matches_tf_and_round_trips():
  x = _images()
  np.testing.assert_allclose(augment.rgb_to_hsv(x), tf.image.rgb_to_hsv(x), atol=1e-5)
  np.testing.assert_allclose(augment.hsv_to_rgb(augment.rgb_to_hsv(x)), x, atol=1e-5)


def test_saturation_matches_tf():
  x = _images()
  for factor in (0.5, 1.3):
    np.testing.assert_allclose(augment.adjust_saturation(x, factor),
                               tf.image.adjust_saturation(x, factor), atol=1e-5)


def test_brightness_saturation_range_and_identity():
  x = jnp.asarray(_images())
  y = augment.batch_brightness_saturation(x, jax.random.key(0), 32 / 255, (0.5, 1.5))
  assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
  assert not np.allclose(y, x)
  same = augment.batch_brightness_saturation(x, jax.random.key(0), 0.0, (1.0, 1.0))
  np.testing.assert_allclose(same, x, atol=1e-5)


def test_standardize_and_grayscale_match_tf():
  x = _images(n=3, size=5) * 255
  np.testing.assert_allclose(augment.standardize(x), tf.image.per_image_standardization(x),
                             rtol=1e-4, atol=1e-4)
  flat = np.full((1, 4, 4, 3), 7.0, np.float32)  # std 0: divided by 1/sqrt(N), not 0.
  np.testing.assert_allclose(augment.standardize(flat), 0.0)
  np.testing.assert_allclose(augment.rgb_to_grayscale(x)[..., :1],
                             tf.image.rgb_to_grayscale(x), rtol=1e-4, atol=1e-3)
