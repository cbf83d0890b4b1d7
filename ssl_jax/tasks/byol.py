"""BYOL (Grill et al. 2020): the online network's prediction of one view regresses the
target network's projection of the other view; the target is an EMA of the online
network (reference contrastive.md §3, the official deepmind-research code).

- Online: encoder -> projector (Dense(4096, bias) -> BN -> ReLU -> Dense(256, no bias))
  -> predictor (same shape). Both views in one pass, BN global over the 2B inputs.
- Target: the same encoder and projector, initialised from a different seed (as the
  code; not a copy), run in train mode with its own batch statistics, which are not
  averaged (§3), and without gradient (``targets``).
- Loss: l(x, y) = ||x/|x| - y/|y|||^2 = 2 - 2 cos(x, y), symmetrised:
  mean over images of l(p(v1), z'(v2)) + l(p(v2), z'(v1)).
- After each optimiser step: xi <- tau_k xi + (1 - tau_k) theta with the updated online
  parameters, tau_k = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2 (``update_task_state``).
The code's online classifier on the stop-gradient embedding is left out: the kNN monitor
(``knn.every``) and the evaluators measure the representation instead.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax import step as step_lib
from ssl_jax.tasks import contrastive

preprocess = contrastive.preprocess
input_shape = contrastive.input_shape


def views(batch: dict, rng: jax.Array, config: ml_collections.ConfigDict) -> dict:
  """Both augmented views of every image, image-major [2B, S, S, 3] (view 1 blurred
  always, view 2 with p 0.1 and solarised with p 0.2: the config's augment fields)."""
  return {'inputs': contrastive.interleave(contrastive.augmented_views(batch, rng, config))}


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


def make_head(config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
  """Projector and predictor of ``config.byol``."""
  del num_classes
  return Head(config.byol.proj_hidden, config.byol.proj_dim, config.model.bn_momentum,
              config.model.bn_epsilon)


def _target_model(config: ml_collections.ConfigDict) -> step_lib.Model:
  return step_lib.Model(step_lib.build_encoder(config), make_head(config, 0))


def init_task_state(config: ml_collections.ConfigDict, params) -> dict:
  """The target parameters, initialised from seed + 1 (the code's separate rng)."""
  del params
  size = config.input.image_size
  dummy = {'inputs': jnp.zeros((contrastive.NUM_VIEWS, size, size, 3), jnp.float32)}
  variables = _target_model(config).init(jax.random.key(config.seed + 1), dummy, train=False)
  return {'target_params': variables['params']}


def targets(task_state: dict, views: dict, rng: jax.Array, config: ml_collections.ConfigDict,
            mesh: jax.sharding.Mesh) -> dict:
  """The target projections of both views (train-mode BN, own statistics)."""
  del rng, mesh
  outputs = contrastive.apply_target(_target_model(config), task_state['target_params'],
                                     views['inputs'])
  return {'target_projection': outputs['projection']}


def regression_loss(predictions: jax.Array, target_projections: jax.Array) -> jax.Array:
  """Mean over images of l(p1, z2) + l(p2, z1), l = 2 - 2 cos, for image-major [2B, d]
  inputs (view 1 and view 2 of each image adjacent)."""
  p = contrastive.l2_normalize(predictions).reshape(-1, 2, predictions.shape[-1])
  z = contrastive.l2_normalize(target_projections).reshape(-1, 2, predictions.shape[-1])
  swapped = z[:, ::-1]  # Each view's prediction against the other view's target.
  return jnp.mean(jnp.sum(2.0 - 2.0 * jnp.sum(p * swapped, axis=-1), axis=1))


def loss(outputs: dict, views: dict, task_state, config: ml_collections.ConfigDict):
  """The symmetrised regression loss, and the mean cosine it is made of."""
  del task_state, config
  value = regression_loss(outputs['prediction'], views['target_projection'])
  return value, {'mean_cosine': 1.0 - value / 4.0}


def ema_decay(step: jax.Array, total_steps: int, base: float) -> jax.Array:
  """tau_k = 1 - (1 - base) (cos(pi k / K) + 1) / 2, k clipped at K: base at step 0, 1
  at the end (BYOL §3.2)."""
  progress = jnp.minimum(jnp.asarray(step, jnp.float32), total_steps) / max(total_steps, 1)
  return 1.0 - (1.0 - base) * (jnp.cos(jnp.pi * progress) + 1.0) / 2.0


def update_task_state(task_state: dict, params, views: dict, step: jax.Array,
                      total_steps: int, config: ml_collections.ConfigDict) -> dict:
  """target <- EMA with the updated online parameters at this step's decay (the
  predictor has no target counterpart in use, but keeping one tree is simpler)."""
  del views
  decay = ema_decay(step, total_steps, config.byol.base_ema)
  return {'target_params': contrastive.ema(task_state['target_params'], params, decay)}
