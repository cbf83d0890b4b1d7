"""The pure parts of training: mesh, model, train state and the jitted train step.

Free of tf.data and file I/O, so the benchmark runs it on any accelerator. The loop
that drives it is ssl_jax/train.py.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any, Callable, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

P = jax.sharding.PartitionSpec


def make_mesh(devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """A one-axis ('data') mesh over ``devices`` (default: all)."""
  devices = list(devices if devices is not None else jax.devices())
  return jax.make_mesh((len(devices),), ('data',), devices=devices,
                       axis_types=(jax.sharding.AxisType.Auto,))


def batch_sharding(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
  """Leading (batch) axis split over the data axis."""
  return jax.sharding.NamedSharding(mesh, P('data'))


def replicated(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
  """The same value on every device."""
  return jax.sharding.NamedSharding(mesh, P())


@flax.struct.dataclass
class TrainState:
  """Everything a run needs to continue: checkpointed as a whole."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  task_state: Any  # A method's state between steps (MoCo queue, BYOL target); or None.


class Model(nn.Module):
  """The encoder (its end points are the representation) and the task's head, which
  also sees the views (e.g. the permutations of a jigsaw puzzle)."""
  encoder: nn.Module
  head: nn.Module

  def __call__(self, views: dict, train: bool) -> Any:
    return self.head(self.encoder(views['inputs'], train=train), views, train=train)


def import_task(config: ml_collections.ConfigDict) -> ModuleType:
  """The module ssl_jax/tasks/<config.task>.py."""
  return _import('ssl_jax.tasks', config.task)


def build_encoder(config: ml_collections.ConfigDict, bn_groups: int = 1) -> nn.Module:
  """The encoder of ssl_jax/models/<config.model.name>.py."""
  return _import('ssl_jax.models', config.model.name).build(config.model, bn_groups=bn_groups)


def _import(package: str, name: str) -> ModuleType:
  try:
    return importlib.import_module(f'{package}.{name}')
  except ModuleNotFoundError as e:
    if e.name != f'{package}.{name}':
      raise
    folder = importlib.import_module(package).__path__[0]
    valid = sorted(f[:-3] for f in os.listdir(folder) if f.endswith('.py') and f[0] != '_')
    raise ValueError(f'No module {name!r} in {package}; valid names: {", ".join(valid)}.') from None


def build_model(config: ml_collections.ConfigDict, task: ModuleType, num_classes: int,
                mesh: jax.sharding.Mesh) -> Model:
  """Encoder + head; BN statistics per device when ``config.per_device_bn``, or over
  the groups the task's ``bn_groups(config, mesh)`` asks for (MoCo)."""
  bn_groups = mesh.size if config.per_device_bn else 1
  if hasattr(task, 'bn_groups'):
    bn_groups = task.bn_groups(config, mesh)
  return Model(build_encoder(config, bn_groups), task.make_head(config, num_classes))


def example_shape(config: ml_collections.ConfigDict, task: ModuleType) -> tuple[int, ...]:
  """The shape of one example's ``image`` as the task's host preprocessing makes it:
  ``task.input_shape(config)`` if the task defines it (patches, copies), else a crop."""
  if hasattr(task, 'input_shape'):
    return tuple(task.input_shape(config))
  return (config.input.image_size, config.input.image_size, 3)


def init_state(config: ml_collections.ConfigDict, model: Model, tx: optax.GradientTransformation,
               task: ModuleType) -> TrainState:
  """Fresh state from ``config.seed``; :func:`create_state` jits it onto a mesh."""
  dummy = {'image': jnp.zeros((1,) + example_shape(config, task), jnp.uint8),
           'label': jnp.zeros((1,), jnp.int32)}
  views = task.views(dummy, jax.random.key(0), config)
  variables = model.init({'params': jax.random.key(config.seed), 'dropout': jax.random.key(0)},
                         views, train=False)
  params = variables['params']
  init_task_state = getattr(task, 'init_task_state', None)
  return TrainState(
      step=jnp.zeros((), jnp.int32), params=params,
      batch_stats=variables.get('batch_stats', {}), opt_state=tx.init(params),
      task_state=init_task_state(config, params) if init_task_state else None)


def state_sharding(state: TrainState, mesh: jax.sharding.Mesh, task: ModuleType) -> Any:
  """Shardings of a (possibly abstract) state: replicated, except the task-state entries
  the task lists in ``SHARDED_STATE`` (a MoCo queue), split along their first axis over
  the data axis when it divides evenly (memory: a 65,536-key queue per device is waste)."""
  sharded_names = getattr(task, 'SHARDED_STATE', ())

  def sharding(path, leaf):
    names = [str(getattr(p, 'key', getattr(p, 'name', ''))) for p in path]
    if (names and names[0] == 'task_state' and any(n in sharded_names for n in names)
        and leaf.ndim and leaf.shape[0] % mesh.size == 0):
      return batch_sharding(mesh)
    return replicated(mesh)

  return jax.tree_util.tree_map_with_path(sharding, state)


def create_state(config: ml_collections.ConfigDict, model: Model,
                 tx: optax.GradientTransformation, task: ModuleType,
                 mesh: jax.sharding.Mesh) -> TrainState:
  """:func:`init_state`, jitted straight into its shardings on ``mesh``."""
  init = lambda: init_state(config, model, tx, task)  # noqa: E731
  shardings = state_sharding(jax.eval_shape(init), mesh, task)
  return jax.jit(init, out_shardings=shardings)()


def make_train_step(config: ml_collections.ConfigDict, model: Model,
                    tx: optax.GradientTransformation, task: ModuleType,
                    schedule: Callable, mesh: jax.sharding.Mesh,
                    total_steps: int) -> Callable:
  """The jitted ``(state, batch) -> (state, metrics)``.

  The batch is a global array sharded over the mesh and the loss a mean over the global
  batch, so XLA inserts the cross-device reductions and the result does not depend on the
  number of devices. The state keeps the shardings of :func:`state_sharding` and is
  donated. Order within a step: views; the task's ``targets`` from the task state, without
  gradient (MoCo keys, BYOL target projections); loss and gradients; the optimiser update;
  then ``update_task_state`` with the updated parameters (EMA, enqueue).
  """
  base_key = jax.random.key(config.seed + 1)
  targets_fn = getattr(task, 'targets', None)
  update_task_state = getattr(task, 'update_task_state', None)
  shardings = state_sharding(
      jax.eval_shape(lambda: init_state(config, model, tx, task)), mesh, task)

  def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    key_views, key_dropout, key_targets = jax.random.split(
        jax.random.fold_in(base_key, state.step), 3)
    views = task.views(batch, key_views, config)
    views['inputs'] = jax.lax.with_sharding_constraint(views['inputs'], batch_sharding(mesh))
    if targets_fn:
      views.update(jax.lax.stop_gradient(
          targets_fn(state.task_state, views, key_targets, config, mesh)))

    def loss_fn(params):
      outputs, mutated = model.apply(
          {'params': params, 'batch_stats': state.batch_stats}, views, train=True,
          mutable=['batch_stats'], rngs={'dropout': key_dropout})
      loss, metrics = task.loss(outputs, views, state.task_state, config)
      return loss, (metrics, mutated['batch_stats'])

    (loss, (metrics, batch_stats)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    task_state = state.task_state
    if update_task_state:
      task_state = update_task_state(task_state, params, views, state.step, total_steps,
                                     config)
    metrics = dict(metrics, loss=loss, learning_rate=schedule(state.step),
                   grad_norm=optax.tree.norm(grads))
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                              opt_state=opt_state, task_state=task_state)
    return new_state, metrics

  return jax.jit(train_step, in_shardings=(shardings, batch_sharding(mesh)),
                 out_shardings=(shardings, replicated(mesh)), donate_argnums=0)


def make_summary_fn(config: ml_collections.ConfigDict, task: ModuleType,
                    mesh: jax.sharding.Mesh, num_images: int = 8) -> Callable:
  """Jitted ``(batch, step) -> the first network inputs`` as the train step augments them,
  each rescaled to [0, 1] for display (inputs may be standardised, not in [-1, 1])."""
  base_key = jax.random.key(config.seed + 1)

  def summary_fn(batch: dict, step: jax.Array) -> jax.Array:
    key_views, _ = jax.random.split(jax.random.fold_in(base_key, step))
    inputs = task.views(batch, key_views, config)['inputs'][:num_images]
    low = inputs.min(axis=(1, 2, 3), keepdims=True)
    high = inputs.max(axis=(1, 2, 3), keepdims=True)
    return (inputs - low) / jnp.maximum(high - low, 1e-6)

  return jax.jit(summary_fn, in_shardings=(batch_sharding(mesh), replicated(mesh)),
                 out_shardings=replicated(mesh))
