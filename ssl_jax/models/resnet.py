"""ResNet50 v1, v2 and v2 "(-)" with widening factor k (Revisiting, reference §1.1).

Stem 16k channels, stage outputs 64k/128k/256k/512k with bottleneck widths 16k..128k, the
stride on the 3x3 conv of a stage's first unit, projection shortcuts wherever the stride
or the channel count changes, explicit symmetric padding.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax.models import layers


class BottleneckV1(nn.Module):
  """Post-activation unit: conv-BN-ReLU x2, conv-BN, add, ReLU. ``zero_init_last``
  starts the last BN's gamma at 0, so the unit starts as its shortcut (SimCLR's code)."""
  width: int
  out: int
  strides: int
  bn: Any
  dtype: Any = jnp.float32
  zero_init_last: bool = False
  conv: Any = layers.Conv

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    dtype = self.dtype
    shortcut = x
    if self.strides > 1 or x.shape[-1] != self.out:
      shortcut = self.conv(self.out, 1, self.strides, dtype, name='proj')(x)
      shortcut = self.bn(name='proj_bn')(shortcut, train)
    y = self.conv(self.width, 1, 1, dtype, name='conv1')(x)
    y = nn.relu(self.bn(name='bn1')(y, train))
    y = self.conv(self.width, 3, self.strides, dtype, name='conv2')(y)
    y = nn.relu(self.bn(name='bn2')(y, train))
    y = self.conv(self.out, 1, 1, dtype, name='conv3')(y)
    scale_init = nn.initializers.zeros if self.zero_init_last else nn.initializers.ones
    y = self.bn(name='bn3', scale_init=scale_init)(y, train)
    return nn.relu(y + shortcut)


class BottleneckV2(nn.Module):
  """Pre-activation unit: BN-ReLU on the input (the projection reads it too), then
  conv, BN-ReLU, conv, BN-ReLU, conv, add; nothing after the add."""
  width: int
  out: int
  strides: int
  bn: Any
  dtype: Any = jnp.float32
  conv: Any = layers.Conv

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    dtype = self.dtype
    pre = nn.relu(self.bn(name='bn0')(x, train))
    shortcut = x
    if self.strides > 1 or x.shape[-1] != self.out:
      shortcut = self.conv(self.out, 1, self.strides, dtype, name='proj')(pre)
    y = self.conv(self.width, 1, 1, dtype, name='conv1')(pre)
    y = nn.relu(self.bn(name='bn1')(y, train))
    y = self.conv(self.width, 3, self.strides, dtype, name='conv2')(y)
    y = nn.relu(self.bn(name='bn2')(y, train))
    y = self.conv(self.out, 1, 1, dtype, name='conv3')(y)
    return y + shortcut


class ResNet(nn.Module):
  """Returns the end points after_root, block1..block4 and pre_logits."""
  variant: str = 'v2'
  k: float = 4.0
  units: Sequence[int] = (3, 4, 6, 3)
  last_relu: bool = True
  root_stride: int = 2
  stage_strides: Sequence[int] = (1, 2, 2, 2)
  bn_momentum: float = 0.99
  bn_epsilon: float = 1e-3
  bn_groups: int = 1
  representation_size: int = 0
  zero_init_last_bn: bool = False  # v1 only: v2 units end in a conv, not a BN.
  conv_init: str = 'glorot_uniform'  # A key of layers.CONV_INITS.
  remat: bool = False  # Recompute each unit in the backward pass (models.config()).
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
    bn = functools.partial(layers.BatchNorm, momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                    groups=self.bn_groups, dtype=self.dtype)
    unit = BottleneckV1 if self.variant == 'v1' else BottleneckV2
    if self.remat:  # Argument 2 (self is 0) is ``train``, a Python bool.
      unit = nn.remat(unit, static_argnums=(2,))
    if self.variant == 'v1':
      unit = functools.partial(unit, zero_init_last=self.zero_init_last_bn)
    conv = functools.partial(layers.Conv, init=self.conv_init)
    end_points = {}
    x = conv(layers.channels(16, self.k), 7, self.root_stride, self.dtype,
             name='root')(x.astype(self.dtype))
    if self.variant == 'v1':
      x = nn.relu(bn(name='root_bn')(x, train))
    x = layers.max_pool_3x3(x)
    end_points['after_root'] = x
    for stage, (num_units, stride) in enumerate(zip(self.units, self.stage_strides)):
      width = layers.channels(16 * 2**stage, self.k)
      out = layers.channels(64 * 2**stage, self.k)
      for i in range(num_units):
        x = unit(width, out, stride if i == 0 else 1, bn, self.dtype, conv=conv,
                 name=f'block{stage + 1}_{i}')(x, train)
      end_points[f'block{stage + 1}'] = x
    if self.variant == 'v2':
      x = bn(name='final_bn')(x, train)
      if self.last_relu:
        x = nn.relu(x)
    end_points['pre_logits'] = layers.pre_logits(x, self.representation_size, self.dtype)
    return end_points


def build(model_config: ml_collections.ConfigDict, *, bn_groups: int = 1) -> ResNet:
  """Builds the ResNet that ``model_config`` describes."""
  return ResNet(variant=model_config.variant, k=model_config.k,
                units=tuple(model_config.units), last_relu=model_config.last_relu,
                root_stride=model_config.root_stride,
                stage_strides=tuple(model_config.stage_strides),
                bn_momentum=model_config.bn_momentum, bn_epsilon=model_config.bn_epsilon,
                bn_groups=bn_groups, representation_size=model_config.representation_size,
                zero_init_last_bn=model_config.zero_init_last_bn,
                conv_init=model_config.conv_init, remat=model_config.remat,
                dtype=jnp.dtype(model_config.dtype))
