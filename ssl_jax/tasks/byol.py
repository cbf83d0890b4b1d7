"""BYOL (Grill et al. 2020): the online network's prediction of one view regresses the
target network's projection of the other view; the target is an EMA of the online
network (reference contrastive.md §3, the official deepmind-research code).

- Online: encoder -> projector (Dense(4096, bias) -> BN -> ReLU -> Dense(256, no bias))
  -> predictor (same shape). Both views in one pass, BN global over the 2B inputs.
- Target: the same encoder and projector (and BN groups), initialised from a different
  seed (as the code; not a copy: ``TARGET = 'fresh'``), run by the loop in train mode with
  its own batch statistics, which are not averaged (§3), and without gradient.
- Loss: l(x, y) = ||x/|x| - y/|y|||^2 = 2 - 2 cos(x, y), symmetrised:
  mean over images of l(p(v1), z'(v2)) + l(p(v2), z'(v1)).
- After each optimiser step: xi <- tau_k xi + (1 - tau_k) theta with the updated online
  parameters, tau_k = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2 (``update_task_state``).
The code's online classifier on the stop-gradient embedding is left out: the kNN monitor
(an evaluator with ``every`` > 0) and the evaluators measure the representation instead.
With multi-crop (``input.local_crops`` > 0) the online network also sees the small views,
and every view predicts the target projection of each large view other than itself
(the target sees the large views only), as SwAV's multi-crop pairing.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax import tasks
from ssl_jax.tasks import contrastive

preprocess = contrastive.preprocess
input_shapes = contrastive.input_shapes
TARGET = 'fresh'  # The target network is initialised from its own seed.
MULTICROP = True  # Every view predicts the target projections of the large ones.


def config() -> ml_collections.ConfigDict:
  """The ``byol`` section (reference §3)."""
  c = ml_collections.ConfigDict()
  c.proj_hidden = 4096
  c.proj_dim = 256
  c.base_ema = 0.996  # tau_k = 1 - (1 - base) (cos(pi k / K) + 1) / 2.
  return c


def views(batch: dict, rng: jax.Array, s: tasks.Sections) -> dict:
  """Both augmented views of every image, image-major [2B, S, S, 3] (view 1 blurred
  always, view 2 with p 0.1 and solarised with p 0.2: the config's augment fields), and
  with multi-crop the small views ([LB, s, s, 3], a second resolution)."""
  return {'inputs': contrastive.multicrop_inputs(batch, rng, s)}


class Head(nn.Module):
  """Projector and predictor on pre_logits; returns both outputs."""
  hidden: int
  dim: int
  bn_momentum: float
  bn_epsilon: float

  @nn.compact
  def __call__(self, end_points: dict, views: dict, train: bool) -> dict:
    del views
    mlp = lambda name: contrastive.MLP(  # noqa: E731
        hidden=(self.hidden,), output=self.dim, hidden_bn=True, hidden_bias=True,
        output_bn=False, output_bias=False, bn_momentum=self.bn_momentum,
        bn_epsilon=self.bn_epsilon, name=name)
    projection = mlp('projector')(end_points['pre_logits'], train)
    return {'projection': projection, 'prediction': mlp('predictor')(projection, train)}


def make_head(s: tasks.Sections, num_classes: int) -> nn.Module:
  """Projector and predictor of the ``byol`` section."""
  del num_classes
  return Head(s.task.proj_hidden, s.task.proj_dim, s.model.bn_momentum, s.model.bn_epsilon)


def large_views(views: dict) -> jax.Array:
  """The large views' inputs [2B, S, S, 3] (all inputs without multi-crop)."""
  inputs = views['inputs']
  return inputs[0] if isinstance(inputs, tuple) else inputs


def targets(task_state: dict, views: dict, rng: jax.Array, s: tasks.Sections,
            apply_target: Callable) -> dict:
  """The target projections of the large views (train-mode BN, own statistics)."""
  del rng, s
  outputs = apply_target(task_state['target_params'], large_views(views))
  return {'target_projection': outputs['projection']}


def regression_loss(predictions: jax.Array, target_projections: jax.Array) -> jax.Array:
  """Mean over images of l(p1, z2) + l(p2, z1), l = 2 - 2 cos, for image-major inputs
  (view 1 and view 2 of each image adjacent): ``target_projections`` [2B, d] of the large
  views, ``predictions`` [2B + LB, d] of every view (the small views' rows last). With
  small views, 2 x the mean of l over the pairs of :func:`contrastive.cross_view_cosine`,
  which is the same sum for L = 0."""
  num_images = target_projections.shape[0] // contrastive.NUM_VIEWS
  cosine = contrastive.cross_view_cosine(
      contrastive.per_image(predictions, num_images),
      target_projections.reshape(num_images, contrastive.NUM_VIEWS, -1))
  return 2.0 * (2.0 - 2.0 * cosine)


def loss(outputs: dict, views: dict, task_state, s: tasks.Sections,
         progress: tasks.Progress):
  """The symmetrised regression loss, and the mean cosine it is made of."""
  del task_state, s, progress
  value = regression_loss(outputs['prediction'], views['target_projection'])
  return value, {'mean_cosine': 1.0 - value / 4.0}


def ema_decay(step: jax.Array, total_steps: int, base: float) -> jax.Array:
  """tau_k = 1 - (1 - base) (cos(pi k / K) + 1) / 2, k clipped at K: base at step 0, 1
  at the end (BYOL §3.2)."""
  progress = jnp.minimum(jnp.asarray(step, jnp.float32), total_steps) / max(total_steps, 1)
  return 1.0 - (1.0 - base) * (jnp.cos(jnp.pi * progress) + 1.0) / 2.0


def update_task_state(task_state: dict, params, views: dict, s: tasks.Sections,
                      progress: tasks.Progress) -> tuple[dict, dict]:
  """target <- EMA with the updated online parameters at this step's decay (the
  predictor has no target counterpart in use, but keeping one tree is simpler)."""
  del views
  decay = ema_decay(progress.step, progress.total_steps, s.task.base_ema)
  return {'target_params': contrastive.ema(task_state['target_params'], params, decay)}, params
