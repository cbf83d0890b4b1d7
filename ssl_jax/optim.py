"""Optimisers and learning-rate schedules (Revisiting reference §3), durations in steps
or epochs. Takes the ``optimizer`` section and the explicit batch and durations, so the
pretraining loop and every evaluator that trains share it."""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from ssl_jax import config_lib


def config() -> ml_collections.ConfigDict:
  """The ``optimizer`` section."""
  c = ml_collections.ConfigDict()
  c.name = 'sgd'  # 'sgd' (momentum) or 'lars' (SimCLR, BYOL; reference §1.4).
  c.lars_eta = 1e-3  # LARS trust coefficient.
  # 'kernels': decay conv and dense kernels only (Revisiting §3; LARS excludes BN and
  # biases from decay and trust scaling); 'all': every parameter (MoCo's SGD).
  c.weight_decay_on = 'kernels'
  c.momentum = 0.9
  c.nesterov = False
  c.weight_decay = 1e-4  # On kernels only (Revisiting §3).
  c.fc_weight_decay = -1.0  # Kernels of modules named *_fcwd; -1: weight_decay.
  c.base_lr = 0.1
  # 'linear': base_lr * batch_size / 256; 'sqrt': base_lr * sqrt(batch_size); 'none'.
  c.lr_scaling = 'linear'
  c.schedule = 'step'  # 'step', 'cosine' or 'constant'.
  c.warmup_epochs = 5.0  # Used when warmup_steps < 0.
  c.warmup_steps = -1
  c.decay_epochs = (15.0, 25.0)  # For 'step'; used when decay_steps is empty.
  c.decay_steps = ()
  c.decay_factor = 0.1
  # Modules (by name, anywhere in the parameter path) trained at the constant peak rate
  # instead of the schedule: SimSiam's fixed predictor learning rate (--fix-pred-lr).
  c.constant_lr_modules = ()
  return c


def validate(opt: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the field and the fix."""
  if opt.schedule not in ('step', 'cosine', 'constant'):
    raise ValueError(f'optimizer.schedule={opt.schedule!r}: use step, cosine or constant.')
  if opt.lr_scaling not in ('linear', 'sqrt', 'none'):
    raise ValueError(f'optimizer.lr_scaling={opt.lr_scaling!r}: use linear, sqrt or none.')
  config_lib.check_choice(opt, 'optimizer', 'name', ('sgd', 'lars'))
  config_lib.check_choice(opt, 'optimizer', 'weight_decay_on', ('kernels', 'all'))


def steps_per_epoch(batch_size: int, num_train_examples: int) -> int:
  """floor(N_train / batch_size), as the original code; at least 1."""
  return max(1, num_train_examples // batch_size)


def total_steps(total_steps: int, total_epochs: float, steps_per_epoch: int) -> int:
  """``total_steps`` if set (>= 0), else ``total_epochs`` converted to steps."""
  if total_steps >= 0:
    return total_steps
  return int(math.ceil(total_epochs * steps_per_epoch))


def peak_lr(opt: ml_collections.ConfigDict, batch_size: int) -> float:
  """The peak learning rate from ``base_lr`` and the batch (in images, not network
  inputs): linear scaling base_lr * B / 256, square-root scaling base_lr * sqrt(B)
  (SimCLR Table B.1, better for small batches), or none."""
  if opt.lr_scaling == 'linear':
    return opt.base_lr * batch_size / 256
  if opt.lr_scaling == 'sqrt':
    return opt.base_lr * math.sqrt(batch_size)
  return opt.base_lr


def learning_rate(opt: ml_collections.ConfigDict, *, batch_size: int, total_steps: int,
                  steps_per_epoch: int) -> optax.Schedule:
  """Linear warm-up from 0, then step decay, cosine to 0, or constant."""
  warmup = (opt.warmup_steps if opt.warmup_steps >= 0
            else int(opt.warmup_epochs * steps_per_epoch))
  decays = tuple(opt.decay_steps) or tuple(int(e * steps_per_epoch) for e in opt.decay_epochs)
  peak = peak_lr(opt, batch_size)
  total = total_steps

  def schedule(step: jax.Array) -> jax.Array:
    step = jnp.asarray(step, jnp.float32)
    if opt.schedule == 'step':
      after = peak * opt.decay_factor ** sum((step >= d).astype(jnp.float32) for d in decays)
    elif opt.schedule == 'cosine':
      progress = jnp.clip((step - warmup) / max(total - warmup, 1), 0.0, 1.0)
      after = 0.5 * peak * (1.0 + jnp.cos(jnp.pi * progress))
    else:
      after = jnp.asarray(peak, jnp.float32)
    return jnp.where(step < warmup, peak * step / max(warmup, 1), after)

  return schedule


def weight_decay_rates(params, opt: ml_collections.ConfigDict) -> dict:
  """The L2 rate of every parameter. With ``optimizer.weight_decay_on='kernels'``:
  ``optimizer.weight_decay`` on conv and dense kernels, 0 on BN parameters and biases
  (Revisiting §3; SimCLR and BYOL's LARS exclusions). Module-name suffixes mark
  exceptions: ``_nowd`` takes none (RevNet's root "random projection", reference §1.2) and
  ``_fcwd`` takes ``optimizer.fc_weight_decay`` when it is >= 0 (the patch tasks' FC head,
  5e-4). With 'all': every parameter (MoCo's SGD decays BN and biases too)."""
  def rate(path, _) -> float:
    names = [str(getattr(p, 'key', '')) for p in path]
    if any(n.endswith('_nowd') for n in names):
      return 0.0
    if opt.weight_decay_on == 'kernels' and names[-1] != 'kernel':
      return 0.0
    if opt.fc_weight_decay >= 0 and any(n.endswith('_fcwd') for n in names):
      return opt.fc_weight_decay
    return opt.weight_decay

  return jax.tree_util.tree_map_with_path(rate, params)


def is_kernel(params) -> dict:
  """True for conv and dense kernels: the parameters LARS adapts (SimCLR and BYOL exclude
  BN parameters and biases from the trust ratio; reference contrastive.md §1.4, §3)."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: str(getattr(path[-1], 'key', '')) == 'kernel', params)


def add_weight_decay(opt: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adds ``rate * w`` to each gradient, the gradient of TF's loss-side 0.5 * rate * w^2."""

  def update(updates, state, params):
    rates = weight_decay_rates(params, opt)
    return jax.tree.map(lambda g, r, p: g + r * p, updates, rates, params), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make(opt: ml_collections.ConfigDict, *, batch_size: int, total_steps: int,
         steps_per_epoch: int):
  """Returns (optax transformation, schedule) of the ``optimizer`` section ``opt`` for a
  run of ``total_steps`` steps of ``batch_size`` images (epochs in the section count
  ``steps_per_epoch`` steps).

  'sgd': SGD with momentum, the L2 gradient ``rate * w`` added before momentum, as TF's
  loss-side L2 does. 'lars': the same decay, then the LARS trust ratio
  eta * ||w|| / ||g + wd w|| on kernels only (1 where either norm is 0), then the learning
  rate, then momentum: SimCLR's order, where the rate sits inside the momentum buffer
  (BYOL's optax chain applies it after the momentum; the two agree at constant rate).
  """
  schedule = learning_rate(opt, batch_size=batch_size, total_steps=total_steps,
                           steps_per_epoch=steps_per_epoch)
  if opt.constant_lr_modules:
    constant = peak_lr(opt, batch_size)
    scheduled = _chain(opt, schedule)
    fixed = _chain(opt, lambda step: jnp.asarray(constant, jnp.float32))
    return optax.multi_transform({'scheduled': scheduled, 'constant': fixed},
                                 _lr_labels(opt.constant_lr_modules)), schedule
  return _chain(opt, schedule), schedule


def for_run(opt: ml_collections.ConfigDict, *, batch_size: int, num_examples: int,
            steps: int, epochs: float):
  """(optax transformation, schedule, total steps) of a run of ``steps`` steps (>= 0) or
  else ``epochs`` epochs over ``num_examples`` images in batches of ``batch_size``: what
  pretraining and every evaluator that trains call."""
  per_epoch = steps_per_epoch(batch_size, num_examples)
  total = total_steps(steps, epochs, per_epoch)
  tx, schedule = make(opt, batch_size=batch_size, total_steps=total,
                      steps_per_epoch=per_epoch)
  return tx, schedule, total


def _lr_labels(modules: tuple[str, ...]) -> Callable:
  """params -> 'constant' for the parameters inside one of ``modules``, else 'scheduled'."""

  def labels(params):
    def label(path, _) -> str:
      names = {str(getattr(p, 'key', '')) for p in path}
      return 'constant' if names & set(modules) else 'scheduled'
    return jax.tree_util.tree_map_with_path(label, params)

  return labels


def _chain(opt: ml_collections.ConfigDict,
           schedule: optax.Schedule) -> optax.GradientTransformation:
  """The optimiser of :func:`make` at the learning rate ``schedule``."""
  if opt.name == 'lars':
    return optax.chain(
        add_weight_decay(opt),
        optax.masked(optax.scale_by_trust_ratio(trust_coefficient=opt.lars_eta), is_kernel),
        optax.scale_by_learning_rate(schedule),
        optax.trace(decay=opt.momentum, nesterov=opt.nesterov))
  return optax.chain(
      add_weight_decay(opt),
      optax.sgd(schedule, momentum=opt.momentum, nesterov=opt.nesterov))
