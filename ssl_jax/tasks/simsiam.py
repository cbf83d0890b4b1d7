"""SimSiam (Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021).

Two views of each image through one encoder and projector; a predictor maps one view's
projection to the other's, which is held fixed (stop-gradient). No negatives, no
momentum encoder: the stop-gradient alone prevents collapse (paper §4).

- Projector (the official main_simsiam.py): Dense(W, no bias) -> BN -> ReLU ->
  Dense(W, no bias) -> BN -> ReLU -> Dense(2048, no bias) -> BN without affine
  parameters, W the encoder's width (2048 for ResNet-50).
- Predictor: Dense(512, no bias) -> BN -> ReLU -> Dense(2048, with bias): the 2048 -> 512
  -> 2048 bottleneck of §3.
- Loss (Eq. 1-2): L = 1/2 D(p1, sg(z2)) + 1/2 D(p2, sg(z1)), D(p, z) = -cos(p, z); its
  minimum is -1. With multi-crop (``input.local_crops`` > 0) every view predicts the
  stop-gradient projection of each large view other than itself (SwAV's pairing).

Both views go through the network in one pass ([2B] inputs, image-major), so BN
statistics span both views; the official code forwards the views separately, each with
its own (synchronised) BN statistics.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax import tasks
from ssl_jax.tasks import contrastive

preprocess = contrastive.preprocess
input_shapes = contrastive.input_shapes
MULTICROP = True  # Every view predicts the projections of the large ones.


def config() -> ml_collections.ConfigDict:
  """The ``simsiam`` section (paper §3, the official code's defaults)."""
  c = ml_collections.ConfigDict()
  c.proj_hidden = 0  # Projector hidden width; 0: the encoder's (pre_logits) width.
  c.proj_dim = 2048  # Projector output, the predictor's input and output.
  c.pred_hidden = 512  # Predictor bottleneck.
  return c


def views(batch: dict, rng: jax.Array, s: tasks.Sections) -> dict:
  """Both augmented views of every image, image-major [2B, S, S, 3], and with multi-crop
  the small views ([LB, s, s, 3], a second resolution)."""
  return {'inputs': contrastive.multicrop_inputs(batch, rng, s)}


def standardize_batch(x: jax.Array, epsilon: float) -> jax.Array:
  """BatchNorm without affine parameters in training mode: each feature standardised over
  the (global) batch. The head is only run in training, so no running statistics."""
  x = x.astype(jnp.float32)
  mean = x.mean(0, keepdims=True)
  var = jnp.square(x - mean).mean(0, keepdims=True)
  return (x - mean) * jax.lax.rsqrt(var + epsilon)


class Head(nn.Module):
  """Projector and predictor on pre_logits; returns both outputs."""
  proj_hidden: int
  proj_dim: int
  pred_hidden: int
  bn_momentum: float
  bn_epsilon: float

  @nn.compact
  def __call__(self, end_points: dict, views: dict, train: bool) -> dict:
    del views
    width = self.proj_hidden or end_points['pre_logits'].shape[-1]
    projection = contrastive.MLP(
        hidden=(width, width), output=self.proj_dim, hidden_bn=True,
        hidden_bias=False, output_bn=False, output_bias=False, bn_momentum=self.bn_momentum,
        bn_epsilon=self.bn_epsilon, name='projector')(end_points['pre_logits'], train)
    projection = standardize_batch(projection, self.bn_epsilon)
    prediction = contrastive.MLP(
        hidden=(self.pred_hidden,), output=self.proj_dim, hidden_bn=True, hidden_bias=False,
        output_bn=False, output_bias=True, bn_momentum=self.bn_momentum,
        bn_epsilon=self.bn_epsilon, name='predictor')(projection, train)
    return {'projection': projection, 'prediction': prediction}


def make_head(s: tasks.Sections, num_classes: int) -> nn.Module:
  """Projector and predictor of the ``simsiam`` section."""
  del num_classes
  return Head(s.task.proj_hidden, s.task.proj_dim, s.task.pred_hidden, s.model.bn_momentum,
              s.model.bn_epsilon)


def negative_cosine_loss(predictions: jax.Array, projections: jax.Array) -> jax.Array:
  """-mean cos(p_v, sg(z_g)) over the pairs of a view v and a large view g != v of the same
  image (Eq. 1-2; with two views 1/2 D(p1, z2) + 1/2 D(p2, z1)): ``predictions`` [B, V, d]
  of every view (the large ones first), ``projections`` [B, G, d] of the large views."""
  return -contrastive.cross_view_cosine(predictions, jax.lax.stop_gradient(projections))


def loss(outputs: dict, views: dict, task_state, s: tasks.Sections,
         progress: tasks.Progress):
  """The symmetrised negative cosine and the mean cosine it is made of."""
  del task_state, s, progress
  inputs = views['inputs']
  large = inputs[0] if isinstance(inputs, tuple) else inputs
  num_images = large.shape[0] // contrastive.NUM_VIEWS
  predictions = contrastive.per_image(outputs['prediction'], num_images)
  projections = contrastive.per_image(outputs['projection'], num_images)
  value = negative_cosine_loss(predictions, projections[:, :contrastive.NUM_VIEWS])
  return value, {'mean_cosine': -value}
