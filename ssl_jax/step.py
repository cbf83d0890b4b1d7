"""The pure parts of training: mesh, model, train state and the jitted train step.

Free of tf.data and file I/O, so the benchmark runs it on any accelerator. Pretraining
(ssl_jax/train.py) drives it through the one loop (ssl_jax/loop.py).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Callable, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from ssl_jax import config_lib
from ssl_jax import sharding
from ssl_jax import tasks

P = jax.sharding.PartitionSpec


def make_mesh(devices: Sequence[jax.Device] | None = None,
              fsdp: int = 1) -> jax.sharding.Mesh:
  """The mesh over ``devices`` (default: all): one 'data' axis, or ('data', 'fsdp') with
  ``fsdp`` > 1 (``mesh.fsdp``, ssl_jax/sharding.py); ValueError if it does not divide."""
  devices = list(devices if devices is not None else jax.devices())
  shape, names = sharding.mesh_shape(fsdp, len(devices))
  return jax.make_mesh(shape, names, devices=devices,
                       axis_types=(jax.sharding.AxisType.Auto,) * len(names))


def batch_sharding(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
  """Leading (batch) axis split over every device: over the data axis, and the fsdp axis
  too when there is one (each device holds its own examples either way)."""
  names = mesh.axis_names
  return jax.sharding.NamedSharding(mesh, P(names[0] if len(names) == 1 else names))


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
  also sees the views (e.g. the permutations of a jigsaw puzzle).

  ``views['inputs']`` is one array, or a tuple of arrays at several resolutions
  (multi-crop): the encoder runs on each, and the head sees the pooled end points
  (2-D, such as ``pre_logits``) concatenated along the batch axis in the tuple's order.
  """
  encoder: nn.Module
  head: nn.Module

  def __call__(self, views: dict, train: bool) -> Any:
    inputs = views['inputs']
    if not isinstance(inputs, (tuple, list)):
      return self.head(self.encoder(inputs, train=train), views, train=train)
    groups = [self.encoder(x, train=train) for x in inputs]
    pooled = {name: jnp.concatenate([g[name] for g in groups], axis=0)
              for name, value in groups[0].items() if value.ndim == 2}
    return self.head(pooled, views, train=train)


def first_inputs(views: dict) -> jax.Array:
  """The network inputs at the first (largest) resolution."""
  inputs = views['inputs']
  return inputs[0] if isinstance(inputs, (tuple, list)) else inputs


def import_task(config: ml_collections.ConfigDict) -> ModuleType:
  """The module ssl_jax/tasks/<config.task>.py."""
  return config_lib.import_component('tasks', config.task)


def task_sections(config: ml_collections.ConfigDict) -> tasks.Sections:
  """What the task of ``config`` reads: its section and the input, augment and model
  sections."""
  task = config[config.task] if config.task in config else ml_collections.ConfigDict()
  return tasks.Sections(task=task, input=config.input, augment=config.augment,
                        model=config.model)


def build_encoder(model_config: ml_collections.ConfigDict, bn_groups: int = 1) -> nn.Module:
  """The encoder of ssl_jax/models/<model_config.name>.py."""
  return config_lib.import_component('models', model_config.name).build(
      model_config, bn_groups=bn_groups)


def bn_groups(config: ml_collections.ConfigDict, task: ModuleType, num_devices: int) -> int:
  """How many equal slices of the batch axis BatchNorm takes its statistics over: the
  task's ``bn_groups`` if it declares them (MoCo's shuffled BN), else ``batch_size /
  bn_group_images`` groups (1, global BN, with ``bn_group_images=0``).

  A slice of the image-major inputs (the task contract: an image's inputs are adjacent
  rows) holds whole images with all their inputs, so the groups are the same on any number
  of devices. The original code's per-core BN (tf.layers.batch_normalization in
  models/resnet.py, no cross-replica sum, under TPUEstimator) saw the per-core batch: 8
  images of the released 8-core configs' batch 64 (config/rotation/imagenet.sh,
  config/exemplar/imagenet.sh), 16 of batch 128 (config/jigsaw/imagenet.sh).
  """
  if hasattr(task, 'bn_groups'):
    return task.bn_groups(task_sections(config), num_devices)
  config_lib.validate_bn_groups(config.bn_group_images, config.batch_size, config.task,
                                task_has_groups=False)
  return config.batch_size // config.bn_group_images if config.bn_group_images else 1


def build_model(config: ml_collections.ConfigDict, task: ModuleType, num_classes: int,
                mesh: jax.sharding.Mesh) -> Model:
  """Encoder + head, BN over the groups of :func:`bn_groups`. The task's second network
  (``TARGET``) is this same model, applied to its own parameters."""
  return Model(build_encoder(config.model, bn_groups(config, task, mesh.size)),
               task.make_head(task_sections(config), num_classes))


def input_shapes(config: ml_collections.ConfigDict, task: ModuleType) -> dict[str, tuple]:
  """The shape of each image-like array of one example as the task's host preprocessing
  makes it: ``task.input_shapes`` if the task defines it (patches, copies, multi-crop),
  else one crop as ``image``."""
  if hasattr(task, 'input_shapes'):
    return dict(task.input_shapes(task_sections(config)))
  return {'image': (config.input.image_size, config.input.image_size, 3)}


def dummy_batch(config: ml_collections.ConfigDict, task: ModuleType, size: int = 1) -> dict:
  """A batch of ``size`` zero examples of the task's host shapes, and labels."""
  batch = {key: jnp.zeros((size,) + shape, jnp.uint8)
           for key, shape in input_shapes(config, task).items()}
  batch['label'] = jnp.zeros((size,), jnp.int32)
  return batch


def apply_target_fn(model: Model) -> Callable:
  """``(params, inputs) -> outputs`` of the task's second network: ``model`` on its own
  parameters in train mode, with the batch's own BN statistics and its running statistics
  discarded (MoCo's key encoder and BYOL's target neither keep nor average BN buffers,
  reference contrastive.md §2.1, §3)."""

  def apply_target(params: Any, inputs: jax.Array) -> Any:
    outputs, _ = model.apply({'params': params}, {'inputs': inputs}, train=True,
                             mutable=['batch_stats'])
    return outputs

  return apply_target


def init_state(config: ml_collections.ConfigDict, model: Model, tx: optax.GradientTransformation,
               task: ModuleType) -> TrainState:
  """Fresh state from ``config.seed``; :func:`create_state` jits it onto a mesh. The
  task state holds the second network's ``target_params`` (``task.TARGET``: a copy of the
  parameters, or a fresh initialisation from seed + 1) and ``task.init_task_state``'s."""
  sections = task_sections(config)
  views = task.views(dummy_batch(config, task), jax.random.key(0), sections)
  variables = model.init({'params': jax.random.key(config.seed), 'dropout': jax.random.key(0)},
                         views, train=False)
  params = variables['params']
  task_state = {}
  target = getattr(task, 'TARGET', None)
  if target == 'copy':
    task_state['target_params'] = jax.tree.map(jnp.copy, params)
  elif target == 'fresh':
    task_state['target_params'] = model.init(jax.random.key(config.seed + 1), views,
                                             train=False)['params']
  elif target is not None:
    raise ValueError(f"{task.__name__}.TARGET={target!r}: use 'copy' or 'fresh'.")
  if hasattr(task, 'init_task_state'):
    task_state.update(task.init_task_state(sections, params, jax.random.key(config.seed + 3)))
  return TrainState(
      step=jnp.zeros((), jnp.int32), params=params,
      batch_stats=variables.get('batch_stats', {}), opt_state=tx.init(params),
      task_state=task_state or None)


def state_sharding(state: TrainState, mesh: jax.sharding.Mesh, task: ModuleType,
                   fsdp_min_bytes: int = 0) -> Any:
  """Shardings of a (possibly abstract) state. The task-state entries the task lists in
  ``SHARDED_STATE`` (a MoCo queue) are split along their first axis over every device
  when it divides evenly (memory: a 65,536-key queue per device is waste). On a mesh with
  an 'fsdp' axis the parameters, optimiser slots and the rest of the task state (the
  second network) follow :func:`sharding.fsdp_spec` (arrays of at most
  ``fsdp_min_bytes`` replicated); BN statistics and the step are always replicated."""
  sharded_names = getattr(task, 'SHARDED_STATE', ())
  fsdp = mesh.shape.get(sharding.FSDP_AXIS, 1)

  def leaf_sharding(path, leaf):
    names = [str(getattr(p, 'key', getattr(p, 'name', ''))) for p in path]
    if (names and names[0] == 'task_state' and any(n in sharded_names for n in names)
        and leaf.ndim and leaf.shape[0] % mesh.size == 0):
      return batch_sharding(mesh)
    if names and names[0] in ('step', 'batch_stats'):
      return replicated(mesh)
    return jax.sharding.NamedSharding(mesh, sharding.fsdp_spec(
        leaf.shape, leaf.dtype.itemsize, fsdp, fsdp_min_bytes))

  return jax.tree_util.tree_map_with_path(leaf_sharding, state)


def _initializer(config: ml_collections.ConfigDict, model: Model,
                 tx: optax.GradientTransformation, task: ModuleType,
                 mesh: jax.sharding.Mesh) -> tuple[Callable[[], TrainState], TrainState, Any]:
  """(the function :func:`init_state` of ``config``, its abstract state, the state's
  shardings on ``mesh``): what :func:`create_state` and :func:`abstract_state` share."""
  init = lambda: init_state(config, model, tx, task)  # noqa: E731
  abstract = jax.eval_shape(init)
  return init, abstract, state_sharding(abstract, mesh, task, config.mesh.fsdp_min_bytes)


def create_state(config: ml_collections.ConfigDict, model: Model,
                 tx: optax.GradientTransformation, task: ModuleType,
                 mesh: jax.sharding.Mesh) -> TrainState:
  """:func:`init_state`, jitted straight into its shardings on ``mesh``."""
  init, _, shardings = _initializer(config, model, tx, task, mesh)
  # jit reuses eval_shape's trace of the same function: the model's init is traced once.
  return jax.jit(init, out_shardings=shardings)()


def abstract_state(config: ml_collections.ConfigDict, model: Model,
                   tx: optax.GradientTransformation, task: ModuleType,
                   mesh: jax.sharding.Mesh) -> TrainState:
  """The state :func:`create_state` makes, as shapes, dtypes and shardings only (nothing
  is allocated): for compiling the train step without a state (ssl_jax/memory_benchmark.py)."""
  _, abstract, shardings = _initializer(config, model, tx, task, mesh)
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      abstract, shardings)


def shardings_of(state: Any) -> Any:
  """The sharding of every array of ``state`` (jax.Arrays or ShapeDtypeStructs)."""
  return jax.tree.map(lambda x: x.sharding, state)


def _constrain(inputs: Any, mesh: jax.sharding.Mesh) -> Any:
  return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, batch_sharding(mesh)),
                      inputs)


def make_train_step(config: ml_collections.ConfigDict, model: Model,
                    tx: optax.GradientTransformation, task: ModuleType,
                    schedule: Callable, mesh: jax.sharding.Mesh,
                    total_steps: int, state_shardings: Any) -> Callable:
  """The jitted ``(state, batch) -> (state, metrics)`` for a state of ``state_shardings``
  (:func:`shardings_of` the state from :func:`create_state`, a checkpoint restored onto
  it, or :func:`abstract_state`: taken, not recomputed, because tracing the model's init
  again costs seconds). A state laid out otherwise (say, put on the devices replicated)
  would compile a step without its FSDP split.

  The batch is a global array sharded over the mesh and the loss a mean over the global
  batch, so XLA inserts the cross-device reductions and the result does not depend on the
  number of devices. The state keeps its shardings and is donated. Order within a step:
  views; the task's ``targets`` from the second network, without gradient (MoCo keys,
  BYOL target projections); loss and gradients; the optimiser update; then
  ``update_task_state`` with the updated parameters (EMA, enqueue), which may also change
  them.
  """
  base_key = jax.random.key(config.seed + 1)
  sections = task_sections(config)
  targets_fn = getattr(task, 'targets', None)
  update_task_state = getattr(task, 'update_task_state', None)
  apply_target = apply_target_fn(model)

  def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    key_views, key_dropout, key_targets = jax.random.split(
        jax.random.fold_in(base_key, state.step), 3)
    progress = tasks.Progress(state.step, total_steps)
    views = task.views(batch, key_views, sections)
    views['inputs'] = _constrain(views['inputs'], mesh)
    if targets_fn:
      views.update(jax.lax.stop_gradient(
          targets_fn(state.task_state, views, key_targets, sections, apply_target)))

    def loss_fn(params):
      outputs, mutated = model.apply(
          {'params': params, 'batch_stats': state.batch_stats}, views, train=True,
          mutable=['batch_stats'], rngs={'dropout': key_dropout})
      loss, metrics = task.loss(outputs, views, state.task_state, sections, progress)
      return loss, (metrics, mutated['batch_stats'])

    (loss, (metrics, batch_stats)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    task_state = state.task_state
    if update_task_state:
      task_state, params = update_task_state(task_state, params, views, sections, progress)
    metrics = dict(metrics, loss=loss, learning_rate=schedule(state.step),
                   grad_norm=optax.tree.norm(grads))
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                              opt_state=opt_state, task_state=task_state)
    return new_state, metrics

  return jax.jit(train_step, in_shardings=(state_shardings, batch_sharding(mesh)),
                 out_shardings=(state_shardings, replicated(mesh)), donate_argnums=0)


def make_summary_fn(config: ml_collections.ConfigDict, task: ModuleType,
                    mesh: jax.sharding.Mesh, num_images: int = 8) -> Callable:
  """Jitted ``(batch, step) -> the first network inputs`` as the train step augments them,
  each rescaled to [0, 1] for display (inputs may be standardised, not in [-1, 1])."""
  base_key = jax.random.key(config.seed + 1)

  def summary_fn(batch: dict, step: jax.Array) -> jax.Array:
    key_views = jax.random.split(jax.random.fold_in(base_key, step), 3)[0]  # As the step.
    inputs = first_inputs(task.views(batch, key_views, task_sections(config)))[:num_images]
    low = inputs.min(axis=(1, 2, 3), keepdims=True)
    high = inputs.max(axis=(1, 2, 3), keepdims=True)
    return (inputs - low) / jnp.maximum(high - low, 1e-6)

  return jax.jit(summary_fn, in_shardings=(batch_sharding(mesh), replicated(mesh)),
                 out_shardings=replicated(mesh))
