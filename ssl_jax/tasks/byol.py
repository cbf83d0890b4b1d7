"""BYOL (Grill et al. 2020): the online network's prediction of one view regresses the
target network's projection of the other view; the target is an EMA of the online
network (reference contrastive.md §3, the official deepmind-research code).

- Online: encoder -> projector (Dense(4096, bias) -> BN -> ReLU -> Dense(256, no bias))
  -> predictor (same shape).
- Per-view BN (``byol.per_view_bn``, default as the code): byol_experiment.py `_forward`
  (lines 166-185) applies the encoder, projector and predictor to view 1 and to view 2
  separately, each BN taking its statistics over one view of the global batch
  (configs/byol.py:53 ``cross_replica_axis``), in the online and the target network
  alike. Here each view is its own array of ``inputs`` (the loop encodes each array on its
  own; BN groups within a view still follow the run's ``bn_groups``), and the head runs
  on each view's rows. Off: one pass over all 2B views (BN statistics shared by the views).
- Target: the same encoder and projector (and BN groups), initialised from a different
  seed (as the code; not a copy: ``TARGET = 'fresh'``), run by the loop in train mode with
  its own batch statistics, which are not averaged (§3), and without gradient.
- Loss: l(x, y) = ||x/|x| - y/|y|||^2 = 2 - 2 cos(x, y), symmetrised:
  mean over images of l(p(v1), z'(v2)) + l(p(v2), z'(v1)).
- Online classifier (``byol.online_classifier``), the code's progress monitor: a linear
  layer on the stop-gradient of view 1's representation, its softmax cross-entropy with
  the labels added to the loss with weight 1 (byol_experiment.py:163-175, 256-276), so
  the encoder gets no gradient from the labels; trained by the same LARS with the same
  weight decay on its kernel, as every online parameter (byol_experiment.py:189-195).
- After each optimiser step: xi <- tau_k xi + (1 - tau_k) theta with the updated online
  parameters, tau_k = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2 (``update_task_state``).
With multi-crop (``input.local_crops`` > 0) the online network also sees the small views,
and every view predicts the target projection of each large view other than itself
(the target sees the large views only), as SwAV's multi-crop pairing; with per-view BN
each small view is a view of its own.
"""

from __future__ import annotations

from typing import Callable, Sequence

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
  # BN statistics per view in both networks (byol_experiment.py:183-185); False: one pass
  # over both views.
  c.per_view_bn = True
  # The linear classifier on the stop-gradient representation (byol_experiment.py:175).
  c.online_classifier = True
  return c


def views(batch: dict, rng: jax.Array, s: tasks.Sections) -> dict:
  """The augmented views (view 1 blurred always, view 2 with p 0.1 and solarised with
  p 0.2: the config's augment fields) and the labels (the online classifier's). Per-view
  BN: ``inputs`` is a tuple of one array [B, S, S, 3] per view, the two large ones first,
  then each small view [B, s, s, 3]; else [2B, S, S, 3] image-major, and with multi-crop
  the small views as a second array [LB, s, s, 3]."""
  if s.task.per_view_bn:
    large, small = contrastive.all_views(batch, rng, s)
    stacks = (large,) if small is None else (large, small)
    inputs = tuple(stack[:, v] for stack in stacks for v in range(stack.shape[1]))
  else:
    inputs = contrastive.multicrop_inputs(batch, rng, s)
  return {'inputs': inputs, 'label': batch['label']}


def image_major(per_view: Sequence[jax.Array]) -> jax.Array:
  """The outputs of each view [B, ...] (the large views first) -> the rows of the shared
  pass: the large views image-major [2B, ...], then the small views image-major
  [LB, ...]."""
  stacked = jnp.stack(per_view, axis=1)
  large = stacked[:, :contrastive.NUM_VIEWS].reshape((-1,) + stacked.shape[2:])
  small = stacked[:, contrastive.NUM_VIEWS:].reshape((-1,) + stacked.shape[2:])
  return jnp.concatenate([large, small])


def linear_init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
  """Haiku's default ``hk.Linear`` kernel, which the official classifier uses
  (byol_experiment.py:163): basic.py Linear's ``TruncatedNormal(stddev=1/sqrt(fan_in))``,
  a standard normal truncated at +-2 (initializers.py), scaled without correction."""
  return jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype) / jnp.sqrt(shape[0])


class Head(nn.Module):
  """Projector and predictor on pre_logits, run on each view's rows (``per_view``) or
  on all rows at once; with ``num_classes`` > 0 also the online classifier's logits of
  view 1 [B, num_classes]. Outputs are in the shared pass's row order."""
  hidden: int
  dim: int
  bn_momentum: float
  bn_epsilon: float
  per_view: bool
  num_classes: int  # 0: no online classifier.

  @nn.compact
  def __call__(self, end_points: dict, views: dict, train: bool) -> dict:
    mlp = lambda name: contrastive.MLP(  # noqa: E731
        hidden=(self.hidden,), output=self.dim, hidden_bn=True, hidden_bias=True,
        output_bn=False, output_bias=False, bn_momentum=self.bn_momentum,
        bn_epsilon=self.bn_epsilon, name=name)
    projector, predictor = mlp('projector'), mlp('predictor')
    embedding = end_points['pre_logits']
    if self.per_view:  # The Model concatenated each view's rows in the inputs' order.
      chunks = jnp.split(embedding, len(views['inputs']))
      projections = [projector(x, train) for x in chunks]
      outputs = {'projection': image_major(projections),
                 'prediction': image_major([predictor(z, train) for z in projections])}
      first_view = chunks[0]
    else:
      projection = projector(embedding, train)
      outputs = {'projection': projection, 'prediction': predictor(projection, train)}
      # View 1's rows: the even rows of the image-major large views.
      first_view = embedding[:large_views(views, False).shape[0]:contrastive.NUM_VIEWS]
    if self.num_classes:
      # The stop-gradient keeps the labels out of the encoder (byol_experiment.py:173-175).
      outputs['logits'] = nn.Dense(self.num_classes, kernel_init=linear_init,
                                   name='classifier')(jax.lax.stop_gradient(first_view))
    return outputs


def make_head(s: tasks.Sections, num_classes: int) -> nn.Module:
  """Projector, predictor and online classifier of the ``byol`` section."""
  if s.task.online_classifier and num_classes < 1:
    raise ValueError(f'byol.online_classifier=True needs labelled classes (the dataset has '
                     f'num_classes={num_classes}): set byol.online_classifier=False.')
  return Head(s.task.proj_hidden, s.task.proj_dim, s.model.bn_momentum, s.model.bn_epsilon,
              per_view=s.task.per_view_bn,
              num_classes=num_classes if s.task.online_classifier else 0)


def large_views(views: dict, per_view: bool) -> jax.Array | tuple[jax.Array, ...]:
  """The large views' inputs: the pair of per-view arrays (``per_view``), or the
  image-major [2B, S, S, 3] (all inputs without multi-crop)."""
  inputs = views['inputs']
  if per_view:
    return inputs[:contrastive.NUM_VIEWS]
  return inputs[0] if isinstance(inputs, tuple) else inputs


def targets(task_state: dict, views: dict, rng: jax.Array, s: tasks.Sections,
            apply_target: Callable) -> dict:
  """The target projections of the large views (train-mode BN, own statistics, per view
  with ``per_view_bn`` as the online network)."""
  del rng
  inputs = large_views(views, s.task.per_view_bn)
  outputs = apply_target(task_state['target_params'], inputs)
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


def classifier_loss(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(mean softmax cross-entropy, top-1 accuracy) of the online classifier's logits
  [B, C] for integer labels [B] (byol_experiment.py:256-272: cross-entropy with one-hot
  labels, mean over the batch; top-1 is the code's progress monitor)."""
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32))
  cross_entropy = -jnp.sum(jax.nn.one_hot(labels, logits.shape[-1]) * log_probs, axis=-1)
  top1 = jnp.argmax(logits, axis=-1) == labels
  return jnp.mean(cross_entropy), jnp.mean(top1.astype(jnp.float32))


def loss(outputs: dict, views: dict, task_state, s: tasks.Sections,
         progress: tasks.Progress):
  """The symmetrised regression loss plus, with ``byol.online_classifier``, the
  classifier's cross-entropy (weight 1, byol_experiment.py:276); the mean cosine, and the
  classifier's loss and top-1."""
  del task_state, progress
  regression = regression_loss(outputs['prediction'], views['target_projection'])
  metrics = {'mean_cosine': 1.0 - regression / 4.0, 'regression_loss': regression}
  if not s.task.online_classifier:
    return regression, metrics
  classification, top1 = classifier_loss(outputs['logits'], views['label'])
  metrics.update(classifier_loss=classification, classifier_top1=top1)
  return regression + classification, metrics


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
