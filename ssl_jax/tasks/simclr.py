"""SimCLR (Chen et al. 2020): NT-Xent between two views of each image, every other view in
the global batch a negative (reference contrastive.md §1).

The network sees both views of every image in one pass ([2B] inputs, image-major), so the
encoder's and head's BN statistics are global over both views, as the released code
(global BN). The loss is written on the global batch under jit: XLA gathers the
projections of every device, which gives each anchor its 2N - 2 negatives and sends the
gradients of remote negatives back to the device that made them (the bug class of
reference §7.1 cannot occur; the 1-vs-8-device test checks it).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from ssl_jax import losses
from ssl_jax import tasks
from ssl_jax.tasks import contrastive

preprocess = contrastive.preprocess
input_shapes = contrastive.input_shapes


def config() -> ml_collections.ConfigDict:
  """The ``simclr`` section (reference §1)."""
  c = ml_collections.ConfigDict()
  c.temperature = 0.1
  c.proj_layers = 3  # v1 released head: 2; v2: 3.
  # 0: the representation's width, 2048 for ResNet50 1x, 4096 at 2x (tf2/model.py
  # ProjectionHead: num_classes=lambda input_shape: int(input_shape[-1])).
  c.proj_hidden = 0
  c.proj_dim = 128
  return c


def validate(task_config: ml_collections.ConfigDict, *, batch_size: int) -> None:
  """Raises ValueError naming the field and the fix."""
  del batch_size
  if task_config.proj_hidden < 0:
    raise ValueError('simclr.proj_hidden must be >= 0 (0: the width of pre_logits).')
  if task_config.proj_layers < 1:
    raise ValueError('simclr.proj_layers must be >= 1 (v1: 2, v2: 3).')


def views(batch: dict, rng: jax.Array, s: tasks.Sections) -> dict:
  """Both augmented views of every image, image-major [2B, S, S, 3]."""
  return {'inputs': contrastive.interleave(contrastive.augmented_views(batch, rng, s))}


def make_head(s: tasks.Sections, num_classes: int) -> nn.Module:
  """The projection head on pre_logits (reference §1.2: v1 released as 2 layers, v2 3):
  bias-free dense layers of ``proj_hidden`` units (0: as wide as pre_logits) with BN and
  ReLU, then a bias-free dense layer to ``proj_dim`` with BN without beta; kernels
  initialised N(0, 0.01)."""
  del num_classes
  c = s.task
  validate(c, batch_size=0)
  return contrastive.ProjectionHead(contrastive.MLP(
      hidden=(c.proj_hidden,) * (c.proj_layers - 1), output=c.proj_dim, hidden_bn=True,
      hidden_bias=False, output_bn=True, output_bias=False,
      bn_momentum=s.model.bn_momentum, bn_epsilon=s.model.bn_epsilon,
      kernel_init=nn.initializers.normal(0.01)))


def nt_xent(z: jax.Array, temperature: float) -> tuple[jax.Array, jax.Array]:
  """(loss, contrastive accuracy) of image-major projections z [2N, d].

  For view a of image i the logits are [z_a_i . z_b_j, z_a_i . z_a_j] / T over all j, with
  the self-similarity z_a_i . z_a_i removed and the positive z_b_i: a softmax cross-entropy
  over 2N - 1 candidates. The loss is mean_i l_a_i + mean_i l_b_i, the sum of the two
  directions as the released code (2x the mean over 2N anchors; it sets the LR scale).
  Computed in float32; the mask is a where-select, not a subtraction of 1e9 (§7.3).
  """
  z = losses.l2_normalize(z).reshape(-1, 2, z.shape[-1])
  za, zb = z[:, 0], z[:, 1]
  n = za.shape[0]
  labels = jnp.arange(n)
  self_mask = jnp.eye(n, dtype=bool)

  def direction(anchors, others):
    cross = anchors @ others.T / temperature
    same = jnp.where(self_mask, -jnp.inf, anchors @ anchors.T / temperature)
    logits = jnp.concatenate([cross, same], axis=1)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), cross

  loss_a, cross_ab = direction(za, zb)
  loss_b, _ = direction(zb, za)
  accuracy = jnp.mean(jnp.argmax(cross_ab, axis=1) == labels)
  return loss_a + loss_b, accuracy


def loss(outputs: jax.Array, views: dict, task_state, s: tasks.Sections,
         progress: tasks.Progress):
  """NT-Xent at ``simclr.temperature``, and the contrastive accuracy (ab block)."""
  del views, task_state, progress
  value, accuracy = nt_xent(outputs, s.task.temperature)
  return value, {'contrastive_accuracy': accuracy}
