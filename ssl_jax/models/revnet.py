"""RevNet50 with widening factor k (Revisiting, reference §1.2).

A 7x7 root conv straight to 64k channels (no BN, ReLU or weight decay), the zero-padded
root max-pool, then stages of 3/4/6/3 reversible units at widths 64k/128k/256k/512k joined
by parameter-free transitions (average pool, zero channels), a final BN and ReLU.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax.models import layers


class Residual(nn.Module):
  """F of the reversible unit (§1.2): a shortcut-free v2 bottleneck, BN-ReLU-1x1 to
  ``inner``, BN-ReLU-3x3 at ``inner``, BN-ReLU-1x1 to ``out``. ``zero_init``: the last
  conv starts at zero, so that F starts at 0 and its unit as a swap of the halves."""
  inner: int
  out: int
  bn: Any
  dtype: Any = jnp.float32
  zero_init: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    y = nn.relu(self.bn(name='bn1')(x, train))
    y = layers.Conv(self.inner, 1, 1, self.dtype, name='conv1')(y)
    y = nn.relu(self.bn(name='bn2')(y, train))
    y = layers.Conv(self.inner, 3, 1, self.dtype, name='conv2')(y)
    y = nn.relu(self.bn(name='bn3')(y, train))
    init = 'zeros' if self.zero_init else 'glorot_uniform'
    return layers.Conv(self.out, 1, 1, self.dtype, init=init, name='conv3')(y)


def split_input(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(x1, x2) of a reversible unit's input: x1 the first C // 2 channels, x2 the rest
  (the larger half for odd C)."""
  half = x.shape[-1] // 2
  return x[..., :half], x[..., half:]


def split_output(y: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(x2, y2) of a reversible unit's output y = [x2, y2 = x1 + F(x2)]."""
  split = y.shape[-1] - y.shape[-1] // 2
  return y[..., :split], y[..., split:]


class RevUnit(nn.Module):
  """Reversible unit on ``width`` channels (§1.2): x = [x1, x2] maps to [x2, x1 + F(x2)],
  so the halves swap every unit; ``inverse`` recovers x with the same F. The reversible
  backward (:func:`reversible_units`) splits with the same :func:`split_input` and
  :func:`split_output`."""
  width: int
  inner: int
  bn: Any
  dtype: Any = jnp.float32
  zero_init: bool = False

  def setup(self):
    # x1 takes width // 2 channels and x2 the rest (equal halves for even widths).
    self.residual = Residual(self.inner, self.width // 2, self.bn, self.dtype,
                             self.zero_init)

  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x1, x2 = split_input(x)
    return jnp.concatenate([x2, x1 + self.residual(x2, train)], axis=-1)

  def inverse(self, y: jax.Array, train: bool) -> jax.Array:
    """x2 = y's first part and x1 = y2 - F(x2), with y = [x2, y2]."""
    x2, y2 = split_output(y)
    return jnp.concatenate([y2 - self.residual(x2, train), x2], axis=-1)


def pool_and_widen(x: jax.Array, width: int, stride: int) -> jax.Array:
  """Parameter-free stage transition (§1.2): a stride x stride average pool (SAME, padding
  left out of the mean as in TF) when stride > 1, then zero channels on both sides,
  [zeros, x, zeros], up to ``width`` (C/2 on each side when the width doubles)."""
  if stride > 1:
    # flax divides by a float32 window count when leaving padding out: keep x's dtype.
    x = nn.avg_pool(x, (stride, stride), strides=(stride, stride), padding='SAME',
                    count_include_pad=False).astype(x.dtype)
  extra = width - x.shape[-1]
  if extra < 0:
    raise ValueError(f'A RevNet stage cannot narrow {x.shape[-1]} channels to {width}.')
  return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))


# F of a unit as a function: (its weights, its BN statistics, x2) -> (F(x2), new statistics).
ResidualFn = Callable[[Any, Any, jax.Array], tuple[jax.Array, Any]]


def reversible_units(residual: ResidualFn, weights: Sequence[Any], stats: Sequence[Any],
                     x: jax.Array) -> tuple[jax.Array, list[Any]]:
  """Applies reversible units in sequence, each F = ``residual(weights[i], stats[i], x2)``
  -> (F(x2), its new BN statistics), and returns (output, new statistics per unit).

  The backward pass keeps only the output and rebuilds each unit's input from its output
  (RevNet, Gomez et al. 2017, Algorithm 1): x2 = y1 and x1 = y2 - F(x2), F recomputed with
  the statistics it was trained with (the shift and BN's batch statistics, so the same
  function), last unit first. The stored activations are one per stage instead of one per
  unit, at the cost of one more forward of each F. The rebuilt input differs from the true
  one by the rounding of y2 = x1 + F(x2): exact-enough in float32, coarser in bfloat16
  (README, Benchmarks). ``stats`` receive no gradient."""
  @jax.custom_vjp
  def run(weights: list[Any], stats: list[Any], x: jax.Array) -> tuple[jax.Array, list[Any]]:
    new_stats = []
    for unit_weights, unit_stats in zip(weights, stats):  # RevUnit.__call__ of each.
      x1, x2 = split_input(x)
      f, unit_stats = residual(unit_weights, unit_stats, x2)
      x = jnp.concatenate([x2, x1 + f], axis=-1)
      new_stats.append(unit_stats)
    return x, new_stats

  def run_forward(weights: list[Any], stats: list[Any], x: jax.Array) -> tuple:
    y, new_stats = run(weights, stats, x)
    return (y, new_stats), (weights, stats, y)

  def run_backward(saved: tuple, cotangents: tuple) -> tuple:
    weights, stats, y = saved
    dy, _ = cotangents  # The new statistics are not differentiated.
    weight_grads = []
    for unit_weights, unit_stats in zip(reversed(weights), reversed(stats)):
      # Tie the rebuild to the cotangent: without it XLA may rebuild every unit, and keep
      # each F's activations, before the backward pass reaches it (undoing the saving).
      y, dy = jax.lax.optimization_barrier((y, dy))
      x2, y2 = split_output(y)  # RevUnit.inverse, with the cotangents alongside.
      dx2, dy2 = split_output(dy)
      f, f_vjp = jax.vjp(lambda w, a: residual(w, unit_stats, a)[0], unit_weights, x2)
      dw, dx2_through_f = f_vjp(dy2)
      y = jnp.concatenate([y2 - f, x2], axis=-1)
      dy = jnp.concatenate([dy2, dx2 + dx2_through_f], axis=-1)  # d/dx1 = d/dy2.
      weight_grads.append(dw)
    return weight_grads[::-1], jax.tree.map(jnp.zeros_like, stats), dy

  run.defvjp(run_forward, run_backward)
  return run(list(weights), list(stats), x)


class RevNet(nn.Module):
  """Returns the end points after_root, block1..block4 and pre_logits."""
  k: float = 4.0
  units: Sequence[int] = (3, 4, 6, 3)
  last_relu: bool = True
  root_stride: int = 2
  stage_strides: Sequence[int] = (1, 2, 2, 2)
  bn_momentum: float = 0.99
  bn_epsilon: float = 1e-3
  bn_groups: int = 1
  representation_size: int = 0
  # Every F starts at 0 (its last conv zero-initialised), the reversible counterpart of
  # ResNet v1's zero-initialised last BN gamma (Goyal et al. 2017): a runlocal choice.
  zero_init_residual: bool = False
  remat: bool = False  # Recompute each unit in the backward pass (models.config()).
  # Rebuild each unit's input from its output in the backward pass (models.config());
  # it takes the place of remat in training.
  reversible_backward: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
    bn = functools.partial(layers.BatchNorm, momentum=self.bn_momentum,
                           epsilon=self.bn_epsilon, groups=self.bn_groups, dtype=self.dtype)
    # Argument 2 (self is 0) is ``train``, a Python bool.
    unit = nn.remat(RevUnit, static_argnums=(2,)) if self.remat else RevUnit
    end_points = {}
    # §1.2: the root conv is a "random projection" to 64k channels with no BN, no ReLU and
    # no weight decay (the _nowd suffix excludes it in ssl_jax.optim).
    x = layers.Conv(layers.channels(64, self.k), 7, self.root_stride, self.dtype,
                    name='root_nowd')(x.astype(self.dtype))
    x = layers.max_pool_3x3(x)
    end_points['after_root'] = x
    for stage, (num_units, stride) in enumerate(zip(self.units, self.stage_strides)):
      width = layers.channels(64 * 2**stage, self.k)
      # Identity for stage 1 at stride 1; stages 2-4 pool (stride 2) and double the width.
      x = pool_and_widen(x, width, stride)
      inner = layers.channels(8 * 2**stage, self.k)  # C/8: half of ResNet's at the same k.
      names = [f'block{stage + 1}_{i}' for i in range(num_units)]
      # Training with the statistics at hand; MoCo's key encoder and BYOL's target run in
      # train mode without them (fresh ones, no gradient: step.apply_target_fn), plainly.
      if (self.reversible_backward and train and names and not self.is_initializing()
          and self.has_variable('batch_stats', names[0])):
        x = self._reversible_stage(names, width, inner, bn, x)
      else:
        for name in names:
          x = unit(width, inner, bn, self.dtype, self.zero_init_residual, name=name)(x, train)
      end_points[f'block{stage + 1}'] = x
    x = bn(name='final_bn')(x, train)
    if self.last_relu:
      x = nn.relu(x)
    end_points['pre_logits'] = layers.pre_logits(x, self.representation_size, self.dtype)
    return end_points

  def _reversible_stage(self, names: Sequence[str], width: int, inner: int, bn: Any,
                        x: jax.Array) -> jax.Array:
    """The training forward of the units ``names`` through :func:`reversible_units`: the
    same variables, outputs and statistics as the RevUnit modules of the plain path."""
    # Unbound (parent=None): applied as a pure function of each unit's variables.
    residual = Residual(inner, width // 2, bn, self.dtype, self.zero_init_residual,
                        parent=None)

    def apply_residual(weights: Any, stats: Any, x2: jax.Array) -> tuple[jax.Array, Any]:
      f, new = residual.apply({'params': weights, 'batch_stats': stats}, x2, True,
                              mutable=['batch_stats'])
      return f, new['batch_stats']

    weights = [self.variables['params'][name]['residual'] for name in names]
    stats = [self.variables['batch_stats'][name]['residual'] for name in names]
    x, new_stats = reversible_units(apply_residual, weights, stats, x)
    for name, unit_stats in zip(names, new_stats):
      self.put_variable('batch_stats', name, {'residual': unit_stats})
    return x


def build(model_config: ml_collections.ConfigDict, *, bn_groups: int = 1) -> RevNet:
  """Builds the RevNet that ``model_config`` describes (``variant`` is ignored, §1.2)."""
  return RevNet(k=model_config.k, units=tuple(model_config.units),
                last_relu=model_config.last_relu, root_stride=model_config.root_stride,
                stage_strides=tuple(model_config.stage_strides),
                bn_momentum=model_config.bn_momentum, bn_epsilon=model_config.bn_epsilon,
                bn_groups=bn_groups, representation_size=model_config.representation_size,
                zero_init_residual=model_config.zero_init_last_bn,
                remat=model_config.remat,
                reversible_backward=model_config.reversible_backward,
                dtype=jnp.dtype(model_config.dtype))
