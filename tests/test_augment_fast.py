"""The colour jitters of augment.py against their earlier forms, which computed every op
of a random order (a vmapped ``lax.switch`` over the four ops) and both orders of the
Revisiting jitter: the same outputs for the same keys, with half the HSV work."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.data import augment


def switch_color_jitter(image, key, brightness, contrast, saturation, hue,
                        brightness_mode='multiplicative'):
  """The jitter as it was (commit 89d6928): step i of a fori_loop applies op order[i] with
  lax.switch over the four ops, a select over all four under vmap."""
  k_perm, k_bright, k_contrast, k_sat, k_hue = jax.random.split(key, 5)
  c_factor = jax.random.uniform(k_contrast, (), minval=max(1.0 - contrast, 0.0),
                                maxval=1.0 + contrast)
  s_factor = jax.random.uniform(k_sat, (), minval=max(1.0 - saturation, 0.0),
                                maxval=1.0 + saturation)
  h_delta = jax.random.uniform(k_hue, (), minval=-hue, maxval=hue)
  identity = lambda x: x  # noqa: E731
  branches = [
      (lambda x: augment.random_brightness(x, k_bright, brightness, brightness_mode))
      if brightness else identity,
      (lambda x: augment.adjust_contrast(x, c_factor)) if contrast else identity,
      (lambda x: augment.adjust_saturation(x, s_factor)) if saturation else identity,
      (lambda x: augment.adjust_hue(x, h_delta)) if hue else identity,
  ]
  if all(b is identity for b in branches):
    return jnp.clip(image, 0.0, 1.0)
  order = jax.random.permutation(k_perm, 4)
  return jax.lax.fori_loop(
      0, 4, lambda i, x: jnp.clip(jax.lax.switch(order[i], branches, x), 0.0, 1.0), image)


def two_branch_brightness_saturation(image, key, brightness, saturation):
  """The Revisiting jitter as it was: both orders computed, one selected."""
  k_order, k_bright, k_sat = jax.random.split(key, 3)
  delta = jax.random.uniform(k_bright, (), minval=-brightness, maxval=brightness)
  factor = jax.random.uniform(k_sat, (), minval=saturation[0], maxval=saturation[1])
  brightness_first = jax.random.randint(k_order, (), 0, 4) == 0
  a = augment.adjust_saturation(
      jnp.clip(augment.adjust_brightness(image, delta), 0, 1), factor)
  b = augment.adjust_brightness(augment.adjust_saturation(image, factor), delta)
  return jnp.clip(jnp.where(brightness_first, a, b), 0.0, 1.0)


def _images(n, low=0.0, high=1.0, seed=0):
  return np.random.default_rng(seed).uniform(low, high, (n, 12, 12, 3)).astype(np.float32)


def _both(new_fn, old_fn, images, keys):
  """(new, old) outputs, vmapped over images and keys, in one compiled function."""
  return jax.jit(lambda x, k: (jax.vmap(new_fn)(x, k), jax.vmap(old_fn)(x, k)))(images, keys)


# Strengths (brightness, contrast, saturation, hue): all four (SimCLR, BYOL), the RGB ops
# alone, the HSV ops alone, one of each kind, and one op alone.
STRENGTHS = [(0.8, 0.8, 0.8, 0.2), (0.4, 0.4, 0.0, 0.0), (0.0, 0.0, 0.8, 0.2),
             (0.8, 0.0, 0.0, 0.2), (0.0, 0.8, 0.8, 0.0), (0.0, 0.0, 0.8, 0.0)]


@pytest.mark.parametrize('mode', ['multiplicative', 'additive'])
def test_jitter_equals_the_switch_over_all_ops(mode):
  """48 images (every order of the 4 ops has 2 chances) per setting of the strengths;
  inputs slightly outside [0, 1] too, where the clip before saturation matters."""
  keys = jax.random.split(jax.random.key(3), 48)
  images = np.concatenate([_images(24), _images(24, -0.1, 1.1, seed=1)])
  for strengths in STRENGTHS:
    new, old = _both(lambda x, k, s=strengths: augment.color_jitter(x, k, *s, mode),
                     lambda x, k, s=strengths: switch_color_jitter(x, k, *s, mode), images, keys)
    # The same float ops; the two programs may contract multiply-adds differently (equal
    # bits at the tests' XLA optimisation level 0; up to 2e-6 apart at the default level).
    np.testing.assert_allclose(new, old, rtol=0, atol=1e-5, err_msg=str(strengths))


def test_revisiting_jitter_equals_both_orders_selected():
  keys = jax.random.split(jax.random.key(4), 64)  # Brightness first for about 16 of 64.
  images = np.concatenate([_images(32), _images(32, -0.1, 1.1, seed=2)])
  for brightness, saturation in ((32 / 255, (0.5, 1.5)), (0.0, (0.5, 1.5)), (0.3, (1.0, 1.0))):
    args = (brightness, saturation)
    new, old = _both(lambda x, k: augment.brightness_saturation(x, k, *args),
                     lambda x, k: two_branch_brightness_saturation(x, k, *args), images, keys)
    np.testing.assert_allclose(new, old, rtol=0, atol=1e-5, err_msg=str(args))
