"""Memory at scale: FSDP-style sharding of the train state (mesh.fsdp) gives the replicated
run's losses and parameters, checkpoints move between sharding modes, and
rematerialisation (model.remat) and RevNet's reversible backward
(model.reversible_backward) give the same loss and gradients."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import init_variables
from conftest import make_optimizer
from conftest import ONE_STAGE
from conftest import tiny_config
from ssl_jax import checkpoint
from ssl_jax import config_lib
from ssl_jax import sharding
from ssl_jax import step as step_lib
from ssl_jax import train
from ssl_jax.models import resnet
from ssl_jax.models import revnet

P = jax.sharding.PartitionSpec


def _batches(config, task, steps: int) -> list[dict]:
  """``steps`` random uint8 batches of the task's host shapes."""
  rng = np.random.default_rng(0)
  shapes = step_lib.input_shapes(config, task)
  batches = []
  for _ in range(steps):
    batch = {key: rng.integers(0, 256, (config.batch_size,) + shape).astype(np.uint8)
             for key, shape in shapes.items()}
    batch['label'] = rng.integers(0, 10, (config.batch_size,)).astype(np.int32)
    batches.append(batch)
  return batches


def _train(config, fsdp: int, steps: int = 2):
  """(state, [loss per step]) of ``steps`` steps on 8 devices with the state split over
  ``fsdp`` of them; arrays of any size are split (fsdp_min_bytes=0)."""
  mesh = step_lib.make_mesh(jax.devices(), fsdp)
  task = step_lib.import_task(config)
  tx, schedule = make_optimizer(config)
  model = step_lib.build_model(config, task, 10, mesh)
  state = step_lib.create_state(config, model, tx, task, mesh)
  train_step = step_lib.make_train_step(config, model, tx, task, schedule, mesh, 10,
                                        step_lib.shardings_of(state))
  losses = []
  for batch in _batches(config, task, steps):
    state, metrics = train_step(state, jax.device_put(batch, step_lib.batch_sharding(mesh)))
    losses.append(float(metrics['loss']))
  return state, losses


def _split_fraction(tree) -> float:
  """Bytes a device holds of ``tree`` over its total bytes."""
  held = sum(x.addressable_shards[0].data.nbytes for x in jax.tree.leaves(tree))
  return held / sum(x.nbytes for x in jax.tree.leaves(tree))


@pytest.mark.parametrize('task,fsdp', [('rotation', 4), ('moco', 2)])
def test_fsdp_equals_the_replicated_run(task, fsdp):
  """Two steps: the losses and every parameter (the MoCo key encoder and optimiser slots
  included) match pure data parallelism, while each device holds about 1/fsdp of them."""
  overrides = {'optimizer.warmup_steps': 0, 'mesh.fsdp_min_bytes': 0}
  rtol, atol = 1e-4, 1e-5
  if task == 'moco':  # As test_contrastive's 1-vs-8-device test: gradient norms of ~1e3
    # summed in another order differ in the 5th digit, so a small LR; after two steps
    # the parameters and momenta agree to 2e-4 (a split that went wrong differs by O(1)).
    # MoCo on one stage (conftest.ONE_STAGE); Rotation keeps four, whose arrays split
    # over 4 devices as the split-fraction check below needs.
    overrides.update({'batch_size': 8, 'task.queue_size': 32, 'task.bn_groups': 1,
                      'task.proj_hidden': 16, 'task.proj_dim': 8, 'optimizer.base_lr': 0.001,
                      **ONE_STAGE})
    rtol, atol = 1e-3, 1e-4
  replicated, losses = _train(tiny_config(task=task, **overrides), fsdp=1)
  split, split_losses = _train(tiny_config(task=task, **overrides, **{'mesh.fsdp': fsdp}),
                               fsdp=fsdp)
  np.testing.assert_allclose(split_losses, losses, rtol=1e-4)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(replicated),
                          jax.tree.leaves(split)):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=rtol, atol=atol,
                               err_msg=jax.tree_util.keystr(path))
  # Channel counts of the tiny model are multiples of 4, so nearly everything splits.
  assert _split_fraction(replicated.params) == 1.0
  for part in (split.params, split.opt_state):
    assert _split_fraction(part) < 1.2 / fsdp
  assert all(x.sharding.is_fully_replicated for x in jax.tree.leaves(split.batch_stats))
  if task == 'moco':
    assert _split_fraction(split.task_state['target_params']) < 1.2 / fsdp
    assert split.task_state['queue'].sharding.spec == P(('data', 'fsdp'))


def test_only_large_replicated_arrays_are_saved_split_over_the_replicas(tmp_path,
                                                                       monkeypatch):
  """orbax's replica-parallel saving (each of the 8 replicas writes a slice) for an array
  of 1 MiB per slice; one replica writes a small one
  (checkpoint.MIN_SLICE_BYTES_FOR_REPLICA_PARALLEL); both restore exactly."""
  from orbax.checkpoint._src.serialization import replica_slices
  slices_per_array = {}
  get = replica_slices.get_replica_slices

  def counted(arr, *args, **kwargs):
    result = get(arr, *args, **kwargs)
    slices_per_array[arr.shape] = len(result.replica_slices)
    return result

  monkeypatch.setattr(replica_slices, 'get_replica_slices', counted)
  replicated = jax.sharding.NamedSharding(step_lib.make_mesh(),
                                          jax.sharding.PartitionSpec())
  rows = checkpoint.MIN_SLICE_BYTES_FOR_REPLICA_PARALLEL // 4 // 256  # 1 MiB per replica.
  state = {'large': jax.device_put(np.arange(8 * rows * 256, dtype=np.float32).reshape(
               8 * rows, 256), replicated),
           'small': jax.device_put(np.arange(64, dtype=np.float32), replicated)}
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  ckpt.save(1, state)
  ckpt.wait()
  restored = ckpt.restore(jax.tree.map(jnp.zeros_like, state))
  ckpt.close()
  assert slices_per_array == {(8 * rows, 256): 8, (64,): 1}
  for name in state:
    np.testing.assert_array_equal(np.asarray(restored[name]), np.asarray(state[name]))


def test_checkpoint_moves_between_replicated_and_fsdp(tmp_path):
  """A replicated checkpoint restores into an fsdp=4 state (split as the run asks) and an
  fsdp checkpoint back into a replicated one, with the same values."""
  config = tiny_config(**{'mesh.fsdp_min_bytes': 0})
  task = step_lib.import_task(config)
  tx, _ = make_optimizer(config)

  def fresh_state(fsdp):
    mesh = step_lib.make_mesh(jax.devices(), fsdp)
    model = step_lib.build_model(config, task, 10, mesh)
    return step_lib.create_state(config, model, tx, task, mesh)

  def zeros(state):  # A template of other values: the restore must replace them.
    return jax.tree.map(lambda x: jax.device_put(np.zeros(x.shape, x.dtype), x.sharding),
                        state)

  saved = fresh_state(1)
  templates = {1: zeros(saved), 4: zeros(fresh_state(4))}
  for directory, target_fsdp in (('to_fsdp', 4), ('to_replicated', 1)):
    ckpt = checkpoint.Checkpointer(str(tmp_path / directory))
    ckpt.save(1, saved)
    ckpt.wait()
    template = templates[target_fsdp]
    restored = ckpt.restore(template)
    ckpt.close()
    for a, b, t in zip(jax.tree.leaves(saved), jax.tree.leaves(restored),
                       jax.tree.leaves(template)):
      np.testing.assert_array_equal(np.asarray(b), np.asarray(a))
      assert b.sharding == t.sharding
    fraction = _split_fraction(restored.params)  # 2-channel BN scales do not split by 4.
    assert fraction == 1.0 if target_fsdp == 1 else fraction < 0.3
    saved = restored  # The fsdp state is saved next and restored replicated.


def test_fsdp_that_does_not_divide_the_devices_is_a_clear_error():
  with pytest.raises(ValueError, match=r'mesh.fsdp=3 does not divide the 8 devices.*'
                                       r'1, 2, 4, 8'):
    step_lib.make_mesh(jax.devices(), fsdp=3)
  with pytest.raises(ValueError, match='mesh.fsdp=0 must be >= 1'):
    config_lib.validate(tiny_config(**{'mesh.fsdp': 0}))


def test_fsdp_spec_takes_the_largest_divisible_dimension():
  assert sharding.fsdp_spec((3, 3, 64, 128), 4, 4, 0) == P(None, None, None, 'fsdp')
  assert sharding.fsdp_spec((3, 3, 128, 64), 4, 4, 0) == P(None, None, 'fsdp')
  assert sharding.fsdp_spec((6, 5), 4, 4, 0) == P()  # Nothing divides.
  assert sharding.fsdp_spec((1024,), 4, 4, 4096) == P()  # 4 KiB: not worth splitting.
  assert sharding.fsdp_spec((1024,), 4, 4, 4095) == P('fsdp')
  assert sharding.fsdp_spec((1024,), 4, 1, 0) == P()  # fsdp=1: replicated.


@pytest.mark.parametrize('module,variant', [(resnet, 'v1'), (revnet, 'v2')])
def test_remat_gives_the_same_loss_and_gradients(module, variant):
  """nn.remat around each residual unit keeps the parameter tree, the outputs, the BN
  statistics and the gradients (a recomputation, not another function)."""
  config = tiny_config(**{'model.variant': variant}).model
  x = jax.random.normal(jax.random.key(0), (4, 16, 16, 3))
  plain = module.build(config)
  with config.unlocked():
    config.remat = True
  remat = module.build(config)
  variables = init_variables(plain, x, seed=1)

  def loss_and_grads(model):
    def loss(params):
      out, new = model.apply({'params': params, 'batch_stats': variables['batch_stats']}, x,
                             train=True, mutable=['batch_stats'])
      return jnp.sum(out['pre_logits'] ** 2) + jnp.sum(out['block2'] ** 2), new
    return jax.jit(jax.value_and_grad(loss, has_aux=True))(variables['params'])

  assert (jax.tree.structure(jax.eval_shape(functools.partial(remat.init, train=False),
                                            jax.random.key(1), x))
          == jax.tree.structure(variables))
  (loss, stats), grads = loss_and_grads(plain)
  (remat_loss, remat_stats), remat_grads = loss_and_grads(remat)
  # The recomputed forward is fused and rounded differently: with gradients up to ~500,
  # each agrees to 1e-5 of the largest.
  scale = max(float(np.max(np.abs(g))) for g in jax.tree.leaves(grads))
  np.testing.assert_allclose(remat_loss, loss, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(stats), jax.tree.leaves(remat_stats)):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(remat_grads)):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * scale)


def test_reversible_units_give_autodiff_gradients():
  """revnet.reversible_units (inputs rebuilt from outputs in the backward pass) against
  jax.grad of the same units composed plainly: three units on an odd width (x2 takes the
  larger half), a nonlinear F with its own weights and a statistic it passes on."""
  rng = np.random.default_rng(0)
  width, half = 7, 3
  weights = [{'w': jnp.asarray(rng.normal(size=(width - half, half)), jnp.float32)}
             for _ in range(3)]
  stats = [{'count': jnp.float32(i)} for i in range(3)]
  x = jnp.asarray(rng.normal(size=(5, width)), jnp.float32)

  def residual(w, s, x2):
    return jnp.tanh(x2 @ w['w']) + 0.1 * s['count'], {'count': s['count'] + 1}

  def plain(weights, x):
    for w, s in zip(weights, stats):
      x1, x2 = x[:, :half], x[:, half:]
      x = jnp.concatenate([x2, x1 + residual(w, s, x2)[0]], axis=-1)
    return x

  def loss(run, weights, x):  # Weights every output element differently.
    return jnp.sum(jnp.sin(run(weights, x)) * jnp.arange(1, width + 1))

  reversible = lambda w, a: revnet.reversible_units(residual, w, stats, a)[0]  # noqa: E731
  np.testing.assert_allclose(reversible(weights, x), plain(weights, x), rtol=1e-6)
  assert [s['count'] for s in revnet.reversible_units(residual, weights, stats, x)[1]] == [
      1, 2, 3]
  expected = jax.grad(functools.partial(loss, plain), argnums=(0, 1))(weights, x)
  got = jax.grad(functools.partial(loss, reversible), argnums=(0, 1))(weights, x)
  for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(got)):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_reversible_backward_trains_as_stored_activations(monkeypatch):
  """Rotation on RevNet, two steps on 8 devices: with model.reversible_backward and the
  state split over 4 devices, the losses, parameters, BN statistics and optimiser state
  equal the run that stores every unit's activations (replicated). Stage 1 has three units
  on an odd width (11 channels at k=11/64), so inputs are rebuilt through a chain."""
  overrides = {'optimizer.warmup_steps': 0, 'mesh.fsdp_min_bytes': 0,
               'model.name': 'revnet', 'model.k': 11 / 64, 'model.units': (3, 2, 1, 1)}
  stored, losses = _train(tiny_config(**overrides), fsdp=1)
  stages, original = [], revnet.reversible_units  # The units of each traced stage.
  monkeypatch.setattr(revnet, 'reversible_units', lambda residual, weights, *args: (
      stages.append(len(weights)) or original(residual, weights, *args)))
  rebuilt, rebuilt_losses = _train(
      tiny_config(**overrides, **{'model.reversible_backward': True, 'mesh.fsdp': 4}), fsdp=4)
  assert stages == [3, 2, 1, 1]  # One trace of the train step.
  np.testing.assert_allclose(rebuilt_losses, losses, rtol=1e-5)
  assert jax.tree.structure(rebuilt) == jax.tree.structure(stored)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(stored),
                          jax.tree.leaves(rebuilt)):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-5,
                               err_msg=jax.tree_util.keystr(path))


def test_reversible_backward_is_refused_where_it_cannot_apply():
  with pytest.raises(ValueError, match='needs model.name=revnet'):
    config_lib.validate(tiny_config(**{'model.reversible_backward': True}))
  with pytest.raises(ValueError, match='set model.remat=False'):
    config_lib.validate(tiny_config(**{'model.name': 'revnet', 'model.remat': True,
                                       'model.reversible_backward': True}))


def test_target_network_without_statistics_runs_plainly():
  """MoCo's key encoder and BYOL's target apply the encoder in train mode with parameters
  only (fresh BN statistics, step.apply_target_fn): with model.reversible_backward the
  same outputs as without it, through the plain path."""
  config = tiny_config(**{'model.name': 'revnet', 'model.units': (2, 1, 1, 1)}).model
  x = jax.random.normal(jax.random.key(0), (4, 16, 16, 3))
  plain = revnet.build(config)
  params = init_variables(plain, x, seed=1)['params']
  with config.unlocked():
    config.reversible_backward = True
  outputs = [model.apply({'params': params}, x, train=True, mutable=['batch_stats'])[0]
             for model in (plain, revnet.build(config))]
  for a, b in zip(jax.tree.leaves(outputs[0]), jax.tree.leaves(outputs[1])):
    np.testing.assert_array_equal(b, a)


def test_resume_may_change_how_the_backward_gets_activations(tmp_path):
  """model.remat and model.reversible_backward change no variable: a run may resume with
  either changed; a change of the model's shape is refused."""
  workdir = str(tmp_path)
  overrides = {'model.name': 'revnet'}
  train.save_config(tiny_config(**overrides), workdir)
  train.check_resume(tiny_config(**overrides, **{'model.reversible_backward': True}),
                     workdir, 4)
  train.check_resume(tiny_config(**overrides, **{'model.remat': True}), workdir, 4)
  with pytest.raises(ValueError, match='model.k'):
    train.check_resume(tiny_config(**overrides, **{'model.k': 0.25}), workdir, 4)
