"""Pieces shared by the two-view methods (SimCLR, MoCo, BYOL, SimSiam, Exemplar-v1/v2).

Host: two independent random resized crops (and flips) of each image, stacked as
[2, H, W, 3] uint8; with multi-crop (``input.local_crops`` > 0; SwAV, Caron et al. 2020)
also that many small crops, ``local_image`` [L, s, s, 3]. Device: the colour, grayscale,
blur and solarisation of ``ssl_jax.data.augment.contrastive_views``, one key per image
and view. Heads are MLPs on ``pre_logits``; target networks are exponential moving
averages of the online one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_jax import losses
from ssl_jax import tasks
from ssl_jax.data import augment
from ssl_jax.models import layers

if TYPE_CHECKING:
  import tensorflow as tf

NUM_VIEWS = 2


def preprocess(features: dict, seed: tf.Tensor, s: tasks.Sections) -> dict:
  """Two independent crops of ``input.crop_area`` (SimCLR/BYOL 0.08-1, MoCo 0.2-1) with
  flips, [2, S, S, 3] uint8, and the label (Exemplar filters negatives with it); with
  multi-crop also ``input.local_crops`` crops of ``input.local_crop_area`` at
  ``input.local_size`` px as ``local_image``."""
  # TensorFlow is imported where the host pipeline runs (see ssl_jax/tasks/rotation.py).
  import tensorflow as tf
  from ssl_jax.data import preprocess as pp
  inp = s.input
  image = pp.decode(features['image'])  # Once for all the crops.
  seeds = tf.random.experimental.stateless_split(seed, NUM_VIEWS + inp.local_crops)
  crops = [pp.train_crop(image, seeds[i], inp) for i in range(NUM_VIEWS)]
  example = {'image': tf.stack(crops), 'label': features['label']}
  if inp.local_crops:
    example['local_image'] = tf.stack([
        pp.train_crop(image, seeds[NUM_VIEWS + i], inp,
                      output_size=inp.local_size, area=inp.local_crop_area,
                      min_object_covered=0.0) for i in range(inp.local_crops)])
  return example


def input_shapes(s: tasks.Sections) -> dict[str, tuple[int, ...]]:
  """One example: the two crops, and the small crops of multi-crop."""
  size, local = s.input.image_size, s.input.local_size
  shapes = {'image': (NUM_VIEWS, size, size, 3)}
  if s.input.local_crops:
    shapes['local_image'] = (s.input.local_crops, local, local, 3)
  return shapes


def augmented_views(batch: dict, rng: jax.Array, s: tasks.Sections) -> jax.Array:
  """[B, 2, S, S, 3] uint8 crops -> the augmented, normalised float32 views."""
  return augment.contrastive_views(batch['image'], rng, s.augment)


def all_views(batch: dict, rng: jax.Array, s: tasks.Sections
              ) -> tuple[jax.Array, jax.Array | None]:
  """The augmented views of each image: the large ones [B, 2, S, S, 3], and with
  multi-crop the small ones [B, L, s, s, 3] (else None; they take the augmentation of the
  second view, as SwAV's and DINO's local crops)."""
  large = augmented_views(batch, rng, s)
  if 'local_image' not in batch:
    return large, None
  return large, augment.contrastive_views(batch['local_image'], jax.random.fold_in(rng, 1),
                                          s.augment, first_view=NUM_VIEWS)


def multicrop_inputs(batch: dict, rng: jax.Array, s: tasks.Sections
                     ) -> jax.Array | tuple[jax.Array, jax.Array]:
  """The network inputs of every view (:func:`all_views`), image-major: [2B, S, S, 3],
  or with multi-crop the pair ([2B, S, S, 3], [LB, s, s, 3])."""
  large, small = all_views(batch, rng, s)
  return interleave(large) if small is None else (interleave(large), interleave(small))


def per_image(outputs: jax.Array, num_images: int) -> jax.Array:
  """Image-major outputs of every view (the large views' rows, then the small views')
  -> [B, V, d]: the views of each image, the two large ones first."""
  large = outputs[:NUM_VIEWS * num_images].reshape(num_images, NUM_VIEWS, -1)
  small = outputs[NUM_VIEWS * num_images:].reshape(num_images, -1, outputs.shape[-1])
  return jnp.concatenate([large, small], axis=1)


def cross_view_cosine(predictions: jax.Array, targets: jax.Array) -> jax.Array:
  """Mean cosine between the prediction of each view v of an image and the target of
  each large view g != v of the same image: ``predictions`` [B, V, d] (the large views
  first), ``targets`` [B, G, d] (G large views). With V = G = 2: the mean of cos(p1, z2)
  and cos(p2, z1), the symmetrised pairs of BYOL and SimSiam; with small views, every
  view predicts both large ones (SwAV's multi-crop pairing)."""
  p = losses.l2_normalize(predictions)
  z = losses.l2_normalize(targets)
  cosines = jnp.einsum('bvd,bgd->bvg', p, z)
  num_views, num_large = p.shape[1], z.shape[1]
  valid = jnp.arange(num_views)[:, None] != jnp.arange(num_large)[None, :]
  return jnp.sum(jnp.where(valid, cosines, 0.0)) / (p.shape[0] * jnp.sum(valid))


def interleave(views: jax.Array) -> jax.Array:
  """[B, V, ...] -> [B * V, ...], image-major: the views of an image stay adjacent, so on
  the same device when the batch is sharded."""
  return views.reshape((-1,) + views.shape[2:])


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
  # > 0: stop after this many hidden layers and return their ReLU output (SimCLR v2
  # fine-tunes from the first one: tf2/model.py ProjectionHead, ft_proj_selector=1).
  hidden_only: int = 0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    bn = lambda name, **kw: layers.BatchNorm(  # noqa: E731
        momentum=self.bn_momentum, epsilon=self.bn_epsilon, name=name, **kw)
    for i, width in enumerate(self.hidden):
      # Width 0: the input's width (SimCLR tf2/model.py: num_classes=input_shape[-1]).
      x = nn.Dense(width or x.shape[-1], use_bias=self.hidden_bias,
                   kernel_init=self.kernel_init, name=f'hidden{i}')(x)
      if self.hidden_bn:
        x = bn(f'hidden{i}_bn')(x, train)
      x = nn.relu(x)
      if i + 1 == self.hidden_only:
        return x.astype(jnp.float32)
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


