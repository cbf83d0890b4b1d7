"""Layers shared by the encoders: group-aware BatchNorm and convolutions with the
explicit symmetric ("fixed") padding of the Revisiting code (reference §1.1)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# Revisiting code: backbone convs are bias-free with glorot-uniform initialisation.
conv_init = nn.initializers.glorot_uniform()
# Each framework's default conv initialiser (model.conv_init): 'glorot_uniform' (TF1
# layers, the Revisiting code); 'fan_in_truncated' (SimCLR resnet.py
# VarianceScaling(): scale 1, fan_in, truncated normal; Haiku's Conv2D default, BYOL);
# 'fan_out_normal' (torchvision resnet.py kaiming_normal_(mode='fan_out',
# nonlinearity='relu'): N(0, 2 / fan_out); MoCo, SimSiam).
CONV_INITS = {
    'glorot_uniform': conv_init,
    'fan_in_truncated': nn.initializers.variance_scaling(1.0, 'fan_in', 'truncated_normal'),
    'fan_out_normal': nn.initializers.variance_scaling(2.0, 'fan_out', 'normal'),
    # The last conv of a pre-activation residual function that starts as the identity
    # (model.zero_init_last_bn on RevNet: its F ends in a conv, not a BN).
    'zeros': nn.initializers.zeros,
}


def fixed_padding(kernel_size: int) -> tuple[int, int]:
  """Pads kernel_size - 1 pixels in total, split evenly (3/3 for 7x7, 1/1 for 3x3)."""
  total = kernel_size - 1
  return total // 2, total - total // 2


class Conv(nn.Module):
  """Bias-free convolution with explicit symmetric padding, then a VALID conv."""
  features: int
  kernel_size: int
  strides: int = 1
  dtype: Any = jnp.float32
  init: str = 'glorot_uniform'  # A key of CONV_INITS.

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    pad = fixed_padding(self.kernel_size)
    return nn.Conv(self.features, (self.kernel_size, self.kernel_size),
                   strides=(self.strides, self.strides), padding=(pad, pad), use_bias=False,
                   kernel_init=CONV_INITS[self.init], dtype=self.dtype, name='conv')(x)


def _by_group(x: jax.Array, groups: int) -> jax.Array:
  """x [N, ..., C] as [groups, N / groups, rest, C]: the batch axis split as it is sharded,
  the spatial axes merged (a reshape without a copy)."""
  return x.reshape(groups, x.shape[0] // groups, -1, x.shape[-1])


def batch_statistics(x: jax.Array, groups: int, shift: jax.Array | None = None
                     ) -> tuple[jax.Array, jax.Array]:
  """(mean, biased variance), float32 [groups, C], of each of ``groups`` equal slices of
  the batch axis of ``x`` [N, ..., C], over all axes but the last.

  One pass: E[d] and E[d^2] of d = x - ``shift`` (per channel; default 0) are reduced
  together (XLA fuses the two reductions, and the conversion of a bfloat16 ``x`` to
  float32 into them, so no float32 copy of ``x`` is made); the variance is
  max(E[d^2] - E[d]^2, 0) instead of a second pass over x - mean. With shift 0 this is
  flax.linen.BatchNorm's default (``use_fast_variance``); a shift near the mean (the
  running mean) keeps it as accurate as two passes when the mean is large against the
  standard deviation, where E[x^2] - E[x]^2 cancels."""
  flat = _by_group(x, groups).astype(jnp.float32)
  if shift is not None:
    flat = flat - shift
  mean = jnp.mean(flat, axis=(1, 2))
  mean_square = jnp.mean(jnp.square(flat), axis=(1, 2))
  variance = jnp.maximum(mean_square - jnp.square(mean), 0.0)
  return (mean if shift is None else mean + shift), variance


class BatchNorm(nn.Module):
  """BatchNorm whose training statistics are taken over ``groups`` equal slices of the
  batch axis. groups=1 is global (cross-device) BN under jit; with image-major inputs a
  slice holds whole images, so fixed groups of images (``bn_group_images``, the per-core
  statistics of the original TPU code) give the same result on any number of devices,
  without shard_map (a slice lives on one device when the groups are a multiple of it).
  Statistics by :func:`batch_statistics`, shifted by the running mean; the output is
  (x - mean) x scale / sqrt(var + epsilon) + bias in float32, cast to ``dtype``, in one
  elementwise pass."""
  momentum: float = 0.99
  epsilon: float = 1e-3
  groups: int = 1
  dtype: Any = jnp.float32
  scale_init: Any = nn.initializers.ones
  use_bias: bool = True  # False: no beta (SimCLR's last projection layer).

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    features = x.shape[-1]
    scale = self.param('scale', self.scale_init, (features,), jnp.float32)
    bias = (self.param('bias', nn.initializers.zeros, (features,), jnp.float32)
            if self.use_bias else jnp.zeros((features,), jnp.float32))
    ra_mean = self.variable('batch_stats', 'mean', jnp.zeros, (features,), jnp.float32)
    ra_var = self.variable('batch_stats', 'var', jnp.ones, (features,), jnp.float32)
    with jax.named_scope('batch_norm'):  # Names the ops in a profile (ssl_jax.benchmark).
      groups = self.groups if train else 1
      if x.shape[0] % groups:
        raise ValueError(f'BatchNorm groups={groups} must divide the batch of '
                         f'{x.shape[0]} inputs.')
      if train:
        # The running mean as the shift: constant within the step (no gradient flows into
        # batch_stats), and near the batch mean once training has begun.
        mean, var = batch_statistics(x, groups, jax.lax.stop_gradient(ra_mean.value))
        if not self.is_initializing():
          # Running statistics average the per-group statistics.
          ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean.mean(0)
          ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var.mean(0)
      else:
        mean, var = ra_mean.value[None], ra_var.value[None]
      multiplier = jax.lax.rsqrt(var + self.epsilon) * scale  # [groups, C]
      flat = _by_group(x, groups).astype(jnp.float32)
      y = (flat - mean[:, None, None]) * multiplier[:, None, None] + bias
      return y.reshape(x.shape).astype(self.dtype)


def max_pool_3x3(x: jax.Array) -> jax.Array:
  """3x3 stride-2 max-pool after explicit 1/1 zero padding (reference §1.1: a faithful
  port pads with zeros, not -inf, since v2 and RevNet pool signed values).

  Computed without the padded copy, which XLA would keep for the backward pass beside its
  gradient (2 x 812 MiB per TPU v3 core for k=16's 1,024-channel root at 8 images): the
  pool leaves the padding out (-inf), and an output whose window covers padding takes
  max(it, 0), the zero padding's value. The same outputs, bit for bit (tested)."""
  pooled = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))

  def touches_padding(size: int, outputs: int) -> np.ndarray:
    centre = 2 * np.arange(outputs)  # Output i covers input rows 2i-1 .. 2i+1.
    return (centre == 0) | (centre + 1 >= size)

  # A constant of the static shapes (numpy): nothing to compute in the step.
  border = (touches_padding(x.shape[1], pooled.shape[1])[:, None]
            | touches_padding(x.shape[2], pooled.shape[2])[None, :])
  # where, not maximum: maximum splits a tie's gradient, and a window of zeros ties.
  return jnp.where(border[None, :, :, None] & (pooled < 0), 0, pooled)


def channels(base: int, k: float) -> int:
  """Channel count base * k, at least 1 (fractional k gives tiny test models)."""
  return max(1, int(round(base * k)))


def pre_logits(x: jax.Array, representation_size: int, dtype: Any) -> jax.Array:
  """Global average pool to [N, C] (float32); with ``representation_size`` > 0, then a
  bias-free dense layer to that size (Revisiting §4.6: sets the representation size
  independently of the width; where it sits is not stated, reference §1.4: an
  assumption). Call inside a compact module: the layer becomes its ``representation``."""
  x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
  if representation_size > 0:
    x = nn.Dense(representation_size, use_bias=False, kernel_init=conv_init, dtype=dtype,
                 name='representation')(x).astype(jnp.float32)
  return x
