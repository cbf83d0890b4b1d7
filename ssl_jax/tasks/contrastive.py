"""Pieces shared by the two-view methods (SimCLR, MoCo, BYOL and Exemplar-v1/v2).

Host: two independent random resized crops (and flips) of each image, stacked as
[2, H, W, 3] uint8. Device: the colour, grayscale, blur and solarisation of
``ssl_jax.data.augment.contrastive_views``, one key per image and view. Heads are MLPs on
``pre_logits``; target networks are exponential moving averages of the online one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax.data import augment
from ssl_jax.models import layers

if TYPE_CHECKING:
  import tensorflow as tf

NUM_VIEWS = 2


def preprocess(features: dict, seed: tf.Tensor, config: ml_collections.ConfigDict) -> dict:
  """Two independent crops of ``input.crop_area`` (SimCLR/BYOL 0.08-1, MoCo 0.2-1) with
  flips, [2, S, S, 3] uint8, and the label (Exemplar filters negatives with it)."""
  # TensorFlow is imported where the host pipeline runs (see ssl_jax/tasks/rotation.py).
  import tensorflow as tf
  from ssl_jax.data import preprocess as pp
  seeds = tf.random.experimental.stateless_split(seed, NUM_VIEWS)
  crops = [pp.train_crop(features['image'], seeds[i], config) for i in range(NUM_VIEWS)]
  return {'image': tf.stack(crops), 'label': features['label']}


def input_shape(config: ml_collections.ConfigDict) -> tuple[int, ...]:
  """One example: the two crops."""
  size = config.input.image_size
  return (NUM_VIEWS, size, size, 3)


def augmented_views(batch: dict, rng: jax.Array, config: ml_collections.ConfigDict) -> jax.Array:
  """[B, 2, S, S, 3] uint8 crops -> the augmented, normalised float32 views."""
  return augment.contrastive_views(batch['image'], rng, config)


def interleave(views: jax.Array) -> jax.Array:
  """[B, V, ...] -> [B * V, ...], image-major: the views of an image stay adjacent, so on
  the same device when the batch is sharded."""
  return views.reshape((-1,) + views.shape[2:])


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """x / max(||x||, eps) over the last axis, in float32 (reference §7.3)."""
  x = x.astype(jnp.float32)
  norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True))
  return x / jnp.maximum(norm, eps)


def ema(target: Any, online: Any, decay: jax.Array | float) -> Any:
  """target <- decay * target + (1 - decay) * online, leaf by leaf (MoCo's key encoder,
  BYOL's target network)."""
  return jax.tree.map(lambda t, o: decay * t + (1.0 - decay) * o, target, online)


class MLP(nn.Module):
  """Dense layers on ``pre_logits``: each hidden layer Dense -> [BN] -> ReLU, then the
  output Dense -> [BN]. The variants:

  - SimCLR (reference §1.2): hidden and output dense without bias, BN everywhere, the
    output BN without beta;
  - MoCo v2 (§2.1): Dense(2048) -> ReLU -> Dense(128), biases, no BN;
  - BYOL (§3): Dense(4096, bias) -> BN -> ReLU -> Dense(256, no bias).
  """
  hidden: Sequence[int]
  output: int
  hidden_bn: bool
  hidden_bias: bool
  output_bn: bool
  output_bias: bool
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  kernel_init: Any = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    bn = lambda name, **kw: layers.BatchNorm(  # noqa: E731
        momentum=self.bn_momentum, epsilon=self.bn_epsilon, name=name, **kw)
    for i, width in enumerate(self.hidden):
      x = nn.Dense(width, use_bias=self.hidden_bias, kernel_init=self.kernel_init,
                   name=f'hidden{i}')(x)
      if self.hidden_bn:
        x = bn(f'hidden{i}_bn')(x, train)
      x = nn.relu(x)
    x = nn.Dense(self.output, use_bias=self.output_bias, kernel_init=self.kernel_init,
                 name='output')(x)
    if self.output_bn:
      x = bn('output_bn', use_bias=False)(x, train)
    return x.astype(jnp.float32)


class ProjectionHead(nn.Module):
  """A task head that is an MLP on the encoder's pre_logits (SimCLR, MoCo)."""
  proj: MLP

  @nn.compact
  def __call__(self, end_points: dict, views: dict, train: bool) -> jax.Array:
    del views
    return self.proj(end_points['pre_logits'], train)


def apply_target(model: nn.Module, params: Any, inputs: jax.Array, train: bool = True) -> Any:
  """A second network (MoCo key encoder, BYOL target) on ``inputs``: in train mode, with
  the batch's own BN statistics and its running statistics discarded (reference §2.1,
  §3: neither keeps nor averages BN buffers)."""
  outputs, _ = model.apply({'params': params}, {'inputs': inputs}, train=train,
                           mutable=['batch_stats'])
  return outputs
