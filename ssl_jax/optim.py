"""Optimisers and learning-rate schedules (Revisiting reference §3), durations in steps
or epochs."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import optax


def steps_per_epoch(config: ml_collections.ConfigDict, num_train_examples: int) -> int:
  """floor(N_train / batch_size), as the original code; at least 1."""
  return max(1, num_train_examples // config.batch_size)


def total_steps(config: ml_collections.ConfigDict, num_train_examples: int) -> int:
  """``total_steps`` if set (>= 0), else ``total_epochs`` converted to steps."""
  if config.total_steps >= 0:
    return config.total_steps
  return int(math.ceil(config.total_epochs * steps_per_epoch(config, num_train_examples)))


def peak_lr(config: ml_collections.ConfigDict) -> float:
  """The peak learning rate from ``optimizer.base_lr`` and the batch (in images, not
  network inputs): linear scaling base_lr * B / 256, square-root scaling base_lr * sqrt(B)
  (SimCLR Table B.1, better for small batches), or none."""
  scaling = config.optimizer.lr_scaling
  if scaling == 'linear':
    return config.optimizer.base_lr * config.batch_size / 256
  if scaling == 'sqrt':
    return config.optimizer.base_lr * math.sqrt(config.batch_size)
  return config.optimizer.base_lr


def learning_rate(config: ml_collections.ConfigDict, num_train_examples: int) -> optax.Schedule:
  """Linear warm-up from 0, then step decay, cosine to 0, or constant."""
  opt = config.optimizer
  per_epoch = steps_per_epoch(config, num_train_examples)
  total = total_steps(config, num_train_examples)
  warmup = opt.warmup_steps if opt.warmup_steps >= 0 else int(opt.warmup_epochs * per_epoch)
  decays = tuple(opt.decay_steps) or tuple(int(e * per_epoch) for e in opt.decay_epochs)
  peak = peak_lr(config)

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


def weight_decay_rates(params, config: ml_collections.ConfigDict) -> dict:
  """The L2 rate of every parameter. With ``optimizer.weight_decay_on='kernels'``:
  ``optimizer.weight_decay`` on conv and dense kernels, 0 on BN parameters and biases
  (Revisiting §3; SimCLR and BYOL's LARS exclusions). Module-name suffixes mark
  exceptions: ``_nowd`` takes none (RevNet's root "random projection", reference §1.2) and
  ``_fcwd`` takes ``optimizer.fc_weight_decay`` when it is >= 0 (the patch tasks' FC head,
  5e-4). With 'all': every parameter (MoCo's SGD decays BN and biases too)."""
  opt = config.optimizer

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


def add_weight_decay(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adds ``rate * w`` to each gradient, the gradient of TF's loss-side 0.5 * rate * w^2."""

  def update(updates, state, params):
    rates = weight_decay_rates(params, config)
    return jax.tree.map(lambda g, r, p: g + r * p, updates, rates, params), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make(config: ml_collections.ConfigDict, num_train_examples: int):
  """Returns (optax transformation, schedule).

  'sgd': SGD with momentum, the L2 gradient ``rate * w`` added before momentum, as TF's
  loss-side L2 does. 'lars': the same decay, then the LARS trust ratio
  eta * ||w|| / ||g + wd w|| on kernels only (1 where either norm is 0), then the learning
  rate, then momentum: SimCLR's order, where the rate sits inside the momentum buffer
  (BYOL's optax chain applies it after the momentum; the two agree at constant rate).
  """
  schedule = learning_rate(config, num_train_examples)
  opt = config.optimizer
  if opt.name == 'lars':
    return optax.chain(
        add_weight_decay(config),
        optax.masked(optax.scale_by_trust_ratio(trust_coefficient=opt.lars_eta), is_kernel),
        optax.scale_by_learning_rate(schedule),
        optax.trace(decay=opt.momentum, nesterov=opt.nesterov)), schedule
  tx = optax.chain(
      add_weight_decay(config),
      optax.sgd(schedule, momentum=opt.momentum, nesterov=opt.nesterov))
  return tx, schedule
