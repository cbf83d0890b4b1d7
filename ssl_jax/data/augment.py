"""Pixel augmentation on the accelerator, inside the jitted step.

Every op takes one float image [H, W, 3] in [0, 1] and its own PRNG key, so a batch is
augmented with ``jax.vmap`` over per-image keys; the result does not depend on how the
batch is sharded (threefry keys are partitionable).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def to_unit(images: jax.Array) -> jax.Array:
  """uint8 [0, 255] -> float32 [0, 1]."""
  return images.astype(jnp.float32) / 255.0


def to_model_input(images: jax.Array) -> jax.Array:
  """float [0, 1] -> [-1, 1], the input range of the Revisiting models."""
  return images * 2.0 - 1.0


def rgb_to_hsv(rgb: jax.Array) -> jax.Array:
  """RGB in [0, 1] to HSV in [0, 1] (hue as a fraction of a turn), as tf.image does."""
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  value = rgb.max(-1)
  delta = value - rgb.min(-1)
  safe_delta = jnp.where(delta > 0, delta, 1.0)
  saturation = jnp.where(value > 0, delta / jnp.where(value > 0, value, 1.0), 0.0)
  hue = jnp.where(value == r, (g - b) / safe_delta,
                  jnp.where(value == g, 2.0 + (b - r) / safe_delta, 4.0 + (r - g) / safe_delta))
  hue = jnp.where(delta > 0, (hue / 6.0) % 1.0, 0.0)
  return jnp.stack([hue, saturation, value], -1)


def hsv_to_rgb(hsv: jax.Array) -> jax.Array:
  """Inverse of :func:`rgb_to_hsv`."""
  h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
  # Standard piecewise-linear form: channel n takes v - v*s*clip(min(k, 4-k), 0, 1).
  def channel(n):
    k = (n + h * 6.0) % 6.0
    return v - v * s * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)
  return jnp.stack([channel(5.0), channel(3.0), channel(1.0)], -1)


def adjust_brightness(image: jax.Array, delta: jax.Array) -> jax.Array:
  """Adds ``delta`` to every pixel (tf.image.adjust_brightness)."""
  return image + delta


def adjust_saturation(image: jax.Array, factor: jax.Array) -> jax.Array:
  """Scales HSV saturation by ``factor`` (tf.image.adjust_saturation)."""
  hsv = rgb_to_hsv(jnp.clip(image, 0.0, 1.0))
  hsv = hsv.at[..., 1].set(jnp.clip(hsv[..., 1] * factor, 0.0, 1.0))
  return hsv_to_rgb(hsv)


def brightness_saturation(image: jax.Array, key: jax.Array, brightness: float,
                          saturation: tuple[float, float]) -> jax.Array:
  """The Revisiting colour jitter (slim Inception, fast mode; reference §2.1): brightness
  +-``brightness`` and saturation in ``saturation``, brightness first with probability
  1/4 (selector 0 of 4), then clipped to [0, 1]."""
  k_order, k_bright, k_sat = jax.random.split(key, 3)
  delta = jax.random.uniform(k_bright, (), minval=-brightness, maxval=brightness)
  factor = jax.random.uniform(k_sat, (), minval=saturation[0], maxval=saturation[1])
  brightness_first = jax.random.randint(k_order, (), 0, 4) == 0
  a = adjust_saturation(jnp.clip(adjust_brightness(image, delta), 0, 1), factor)
  b = adjust_brightness(adjust_saturation(image, factor), delta)
  return jnp.clip(jnp.where(brightness_first, a, b), 0.0, 1.0)


def batch_brightness_saturation(images: jax.Array, key: jax.Array, brightness: float,
                                saturation: tuple[float, float]) -> jax.Array:
  """:func:`brightness_saturation` on a batch [N, H, W, 3], one key per image."""
  keys = jax.random.split(key, images.shape[0])
  return jax.vmap(brightness_saturation, in_axes=(0, 0, None, None))(
      images, keys, brightness, tuple(saturation))


def rgb_to_grayscale(image: jax.Array) -> jax.Array:
  """Luma with tf.image.rgb_to_grayscale's weights, tiled back to 3 channels."""
  luma = image @ jnp.asarray([0.2989, 0.5870, 0.1140], image.dtype)
  return jnp.repeat(luma[..., None], 3, axis=-1)


def standardize(x: jax.Array, axes: tuple[int, ...] = (-3, -2, -1)) -> jax.Array:
  """tf.image.per_image_standardization over ``axes``: (x - mean) / max(std, 1/sqrt(N)),
  N the number of values standardised together (Revisiting §2: per image or patch)."""
  n = 1
  for a in axes:
    n *= x.shape[a]
  mean = x.mean(axes, keepdims=True)
  std = jnp.sqrt(jnp.square(x - mean).mean(axes, keepdims=True))
  return (x - mean) / jnp.maximum(std, 1.0 / jnp.sqrt(float(n)))
