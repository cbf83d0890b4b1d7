"""VGG19-BN with widening factor k (Revisiting, reference §1.3).

Five blocks of 2/2/4/4/4 bias-free 3x3 convs, each followed by BN and ReLU, at widths
w/2w/4w/8w/8w with w = 8k (k = 8 is the original VGG19), a 2x2 max-pool after each block,
then fc6 and fc7 as convs of 512k channels with BN and ReLU. No dropout.

End point names (§1.3, ``vgg_names``):
  'paper': block1..block4 are the inputs to the 2nd..5th max-pools (the code's
    block2..block5). after_root, which the paper does not name for VGG, is the output of
    conv block 1 before its pool (the code's block1), the same kind of pre-pool map as the
    paper's blocks. pre_logits is the fc7 output.
  'code': block1..block5 (each block's output before its pool), fc6 and pre_logits.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax.models import layers

# §1.3: block b has NUM_CONVS[b] convs of channels(BASE_WIDTHS[b], k) = w, 2w, 4w, 8w, 8w.
BASE_WIDTHS = (8, 16, 32, 64, 64)
NUM_CONVS = (2, 2, 4, 4, 4)


class VGG(nn.Module):
  """Returns the end points of ``names`` ('paper' or 'code', see the module docstring)."""
  k: float = 8.0
  names: str = 'paper'
  bn_momentum: float = 0.99
  bn_epsilon: float = 1e-3
  bn_groups: int = 1
  representation_size: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
    if self.names not in ('paper', 'code'):
      raise ValueError(f"vgg_names={self.names!r}: use 'paper' or 'code'.")
    bn = functools.partial(layers.BatchNorm, momentum=self.bn_momentum,
                           epsilon=self.bn_epsilon, groups=self.bn_groups, dtype=self.dtype)
    blocks = []
    x = x.astype(self.dtype)
    for block, (base, num_convs) in enumerate(zip(BASE_WIDTHS, NUM_CONVS)):
      for i in range(num_convs):
        # 3x3 'same' at stride 1 is the symmetric 1/1 padding of layers.Conv.
        x = layers.Conv(layers.channels(base, self.k), 3, 1, self.dtype,
                        name=f'conv{block + 1}_{i + 1}')(x)
        x = nn.relu(bn(name=f'bn{block + 1}_{i + 1}')(x, train))
      blocks.append(x)
      x = nn.max_pool(x, (2, 2), strides=(2, 2), padding='VALID')
    if min(x.shape[1:3]) < 1:
      raise ValueError('VGG needs inputs of at least 32 px (5 max-pools), got '
                       f'{blocks[0].shape[1]}x{blocks[0].shape[2]}.')
    # fc6: a VALID conv whose kernel covers the remaining map (7x7 at 224 px).
    x = nn.Conv(layers.channels(512, self.k), x.shape[1:3], padding='VALID', use_bias=False,
                kernel_init=layers.conv_init, dtype=self.dtype, name='fc6')(x)
    fc6 = x = nn.relu(bn(name='fc6_bn')(x, train))
    x = layers.Conv(layers.channels(512, self.k), 1, 1, self.dtype, name='fc7')(x)
    x = nn.relu(bn(name='fc7_bn')(x, train))
    # N x 1 x 1 x C -> N x C (the mean over a 1 x 1 map), then the optional §4.6 layer.
    x = layers.pre_logits(x, self.representation_size, self.dtype)
    if self.names == 'paper':
      end_points = {'after_root': blocks[0]}
      end_points.update({f'block{i}': blocks[i] for i in range(1, 5)})
    else:
      end_points = {f'block{i + 1}': blocks[i] for i in range(5)}
      end_points['fc6'] = fc6
    end_points['pre_logits'] = x
    return end_points


def build(model_config: ml_collections.ConfigDict, *, bn_groups: int = 1) -> VGG:
  """Builds the VGG19-BN that ``model_config`` describes (strides and units do not apply:
  patch tasks leave VGG unchanged, §1.3)."""
  return VGG(k=model_config.k, names=model_config.vgg_names,
             bn_momentum=model_config.bn_momentum, bn_epsilon=model_config.bn_epsilon,
             bn_groups=bn_groups, representation_size=model_config.representation_size,
             dtype=jnp.dtype(model_config.dtype))
