"""SimCLR, MoCo / Exemplar and BYOL: losses against independent numpy computations, device
count independence, the MoCo queue, EMA schedules and LARS."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ONE_STAGE
from conftest import compare_1_and_8_devices
from conftest import make_optimizer
from conftest import progress
from conftest import sections
from conftest import tiny_config
from ssl_jax import optim
from ssl_jax import step as step_lib
from ssl_jax.tasks import byol
from ssl_jax.tasks import contrastive
from ssl_jax.tasks import moco
from ssl_jax.tasks import simclr


def _normalize(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _log_softmax(row):
  row = row - row.max()
  return row - np.log(np.sum(np.exp(row)))


def test_nt_xent_equals_numpy():
  rng = np.random.default_rng(0)
  n, d, t = 6, 5, 0.3
  z = rng.normal(size=(2 * n, d)).astype(np.float32)
  views = _normalize(z.astype(np.float64)).reshape(n, 2, d)
  total = 0.0
  for a, b in ((0, 1), (1, 0)):  # Both directions, each a mean over anchors.
    losses = []
    for i in range(n):
      anchor = views[i, a]
      # Candidates: every other view in the batch (2n - 1 of them), the positive first.
      candidates = [views[i, b]] + [views[j, v] for j in range(n) for v in (0, 1)
                                    if (j, v) not in ((i, a), (i, b))]
      logits = np.array([anchor @ c for c in candidates]) / t
      losses.append(-_log_softmax(logits)[0])
    total += np.mean(losses)
  value, accuracy = simclr.nt_xent(jnp.asarray(z), t)
  np.testing.assert_allclose(value, total, rtol=1e-5)
  assert 0.0 <= float(accuracy) <= 1.0


def _info_nce_numpy(q, k, queue, t, labels=None, queue_labels=None):
  q = _normalize(q.astype(np.float64))
  losses = []
  for i in range(len(q)):
    negatives = [queue[j] for j in range(len(queue))
                 if labels is None or queue_labels[j] != labels[i]]
    logits = np.array([q[i] @ k[i]] + [q[i] @ c for c in negatives]) / t
    losses.append(-_log_softmax(logits)[0])
  return np.mean(losses)


def test_info_nce_and_exemplar_equal_numpy():
  rng = np.random.default_rng(1)
  q = rng.normal(size=(4, 8)).astype(np.float32)
  k = _normalize(rng.normal(size=(4, 8))).astype(np.float32)
  queue = _normalize(rng.normal(size=(12, 8))).astype(np.float32)
  labels = np.array([0, 1, 2, 1], np.int32)
  queue_labels = rng.integers(-1, 3, 12).astype(np.int32)
  value, _ = moco.info_nce(jnp.asarray(q), jnp.asarray(k), jnp.asarray(queue), 0.2)
  np.testing.assert_allclose(value, _info_nce_numpy(q, k, queue, 0.2), rtol=1e-5)
  value, _ = moco.info_nce(jnp.asarray(q), jnp.asarray(k), jnp.asarray(queue), 0.2,
                           jnp.asarray(labels), jnp.asarray(queue_labels))
  np.testing.assert_allclose(value, _info_nce_numpy(q, k, queue, 0.2, labels, queue_labels),
                             rtol=1e-5)
  # Exemplar with labels that match no queue entry is MoCo.
  distinct, _ = moco.info_nce(jnp.asarray(q), jnp.asarray(k), jnp.asarray(queue), 0.2,
                              jnp.arange(100, 104), jnp.asarray(queue_labels))
  plain, _ = moco.info_nce(jnp.asarray(q), jnp.asarray(k), jnp.asarray(queue), 0.2)
  np.testing.assert_allclose(distinct, plain, rtol=1e-6)


def test_byol_loss_equals_two_minus_two_cosine():
  rng = np.random.default_rng(2)
  p = rng.normal(size=(6, 5)).astype(np.float32)  # Image-major: 3 images x 2 views.
  z = rng.normal(size=(6, 5)).astype(np.float32)
  pn, zn = _normalize(p.astype(np.float64)), _normalize(z.astype(np.float64))
  expected = np.mean([
      np.sum((pn[2 * i] - zn[2 * i + 1]) ** 2) + np.sum((pn[2 * i + 1] - zn[2 * i]) ** 2)
      for i in range(3)])
  np.testing.assert_allclose(byol.regression_loss(jnp.asarray(p), jnp.asarray(z)), expected,
                             rtol=1e-5)


def _batch(n=8, size=16, seed=0):
  rng = np.random.default_rng(seed)
  return {'image': rng.integers(0, 256, (n, 2, size, size, 3)).astype(np.uint8),
          'label': rng.integers(0, 10, (n,)).astype(np.int32)}


def _config(task, **overrides):
  defaults = {'batch_size': 8, 'optimizer.warmup_steps': 0, 'input.crop': 'inception',
              'augment.blur_prob': (0.5, 0.5), 'task.proj_hidden': 16, 'task.proj_dim': 8}
  if task == 'moco':
    defaults.update({'task.queue_size': 32, 'task.bn_groups': 4})
  defaults.update(overrides)
  return tiny_config(task=task, **defaults)


@pytest.mark.parametrize('task,optimizer', [('simclr', 'lars'), ('moco', 'sgd'),
                                            ('byol', 'lars')])
def test_loss_and_gradients_equal_on_1_and_8_devices(task, optimizer):
  """The global-batch loss (SimCLR's 2N - 2 negatives from every device, MoCo's grouped
  and shuffled BN, BYOL's target) is the same computation on 1 and 8 devices."""
  # Gradient norms of ~1e3 (a random net's projections through BN) summed in another
  # order differ in the 5th digit: rtol 1e-4 on the metrics, and a small LR so that the
  # parameters' rounding differences stay within the helper's tolerance.
  overrides = {'task.filter_negatives_by_label': True} if task == 'moco' else {}
  config = _config(task, **{'optimizer.name': optimizer, 'optimizer.base_lr': 0.001},
                   **overrides, **ONE_STAGE)
  state, metrics = compare_1_and_8_devices(config, _batch(), rtol=1e-4)
  assert np.isfinite(metrics['loss'])
  if task == 'byol':  # The target is initialised from its own seed, not copied.
    online = jax.tree.leaves(state.params)
    target = jax.tree.leaves(state.task_state['target_params'])
    assert len(online) == len(target)
    assert not all(np.allclose(a, b) for a, b in zip(online, target))
    assert 0.0 <= float(metrics['regression_loss']) <= 4.0


def test_simclr_positives_are_found_when_views_are_identical():
  z = jax.random.normal(jax.random.key(0), (8, 16))
  twice = jnp.repeat(z, 2, axis=0)  # Both views of each image equal.
  value, accuracy = simclr.nt_xent(twice, 0.1)
  assert float(accuracy) == 1.0
  assert float(value) < float(simclr.nt_xent(jax.random.normal(jax.random.key(1), (16, 16)),
                                             0.1)[0])


def test_moco_queue_holds_the_last_batches_in_order():
  queue_size, batch, dim = 12, 4, 3
  config = _config('moco', **{'task.queue_size': queue_size, 'task.proj_dim': dim})
  state = {'queue': jnp.zeros((queue_size, dim)), 'queue_ptr': jnp.zeros((), jnp.int32),
           'queue_labels': jnp.full((queue_size,), -1, jnp.int32)}
  batches = [jnp.full((batch, dim), float(s)) + jnp.arange(batch)[:, None] / 10
             for s in range(1, 6)]
  for s, keys in enumerate(batches, start=1):
    state = moco.enqueue(state, keys, jnp.full((batch,), s))
  # 5 batches of 4 into 12 slots: slots hold batches 4, 5, 3 (FIFO, oldest overwritten).
  np.testing.assert_array_equal(state['queue'],
                                jnp.concatenate([batches[3], batches[4], batches[2]]))
  np.testing.assert_array_equal(state['queue_labels'], np.repeat([4, 5, 3], batch))
  assert int(state['queue_ptr']) == 8
  del config


def test_moco_train_steps_enqueue_keys_and_update_the_key_encoder():
  config = _config('moco', **{'task.queue_size': 16, 'task.momentum': 0.9})
  mesh = step_lib.make_mesh()
  task = step_lib.import_task(config)
  tx, schedule = make_optimizer(config)
  model = step_lib.build_model(config, task, 10, mesh)
  state = step_lib.create_state(config, model, tx, task, mesh)
  assert state.task_state['queue'].sharding.spec[0] == 'data'  # The queue is sharded.
  train_step = step_lib.make_train_step(config, model, tx, task, schedule, mesh, 10,
                                        step_lib.shardings_of(state))
  labels = []
  for s in range(3):
    batch = _batch(seed=s)
    labels.append(batch['label'])
    key_before = state.task_state['target_params']
    key_before = jax.tree.map(np.asarray, key_before)
    state, _ = train_step(state, jax.device_put(batch, step_lib.batch_sharding(mesh)))
    # Key encoder: the EMA with the parameters the optimiser just made.
    for k, q, new in zip(jax.tree.leaves(key_before), jax.tree.leaves(state.params),
                         jax.tree.leaves(state.task_state['target_params'])):
      np.testing.assert_allclose(new, 0.9 * k + 0.1 * np.asarray(q), rtol=1e-5, atol=1e-7)
  # 3 batches of 8 into 16 slots: [batch 3, batch 2].
  np.testing.assert_array_equal(state.task_state['queue_labels'],
                                np.concatenate([labels[2], labels[1]]))
  queue = np.asarray(state.task_state['queue'])
  np.testing.assert_allclose(np.linalg.norm(queue, axis=1), 1.0, rtol=1e-5)


def test_shuffled_keys_are_permutation_invariant_with_global_bn():
  """With one BN group, shuffling then un-shuffling changes nothing; with several, the
  statistics of a key's group change (the leak remedy), so the keys differ."""
  config = _config('moco')
  views = moco.views(_batch(), jax.random.key(0), sections(config))
  mesh = step_lib.make_mesh()

  def keys(groups, shuffle):
    model = step_lib.Model(step_lib.build_encoder(config.model, groups),
                           moco.make_head(sections(config), 0))
    params = jax.jit(model.init, static_argnames='train')(
        jax.random.key(0), {'inputs': views['key_inputs']}, train=False)['params']
    apply_target = step_lib.apply_target_fn(model)
    return jax.jit(lambda inputs, rng: moco.shuffled_keys(
        lambda x: apply_target(params, x), inputs, rng, shuffle))(
            views['key_inputs'], jax.random.key(1))

  np.testing.assert_allclose(keys(1, True), keys(1, False), rtol=1e-4, atol=1e-5)
  # Two groups of 4 (with 2 images per group BN maps every channel to about +-1 whatever
  # the partner, which hides the change).
  assert not np.allclose(keys(2, True), keys(2, False), atol=1e-4)
  del mesh


def test_byol_ema_schedule_and_update():
  np.testing.assert_allclose(byol.ema_decay(0, 100, 0.996), 0.996, rtol=1e-7)
  np.testing.assert_allclose(byol.ema_decay(50, 100, 0.996), 0.998, rtol=1e-7)
  np.testing.assert_allclose(byol.ema_decay(100, 100, 0.996), 1.0, rtol=1e-7)
  np.testing.assert_allclose(byol.ema_decay(150, 100, 0.996), 1.0, rtol=1e-7)
  target = {'w': jnp.ones(3)}
  online = {'w': jnp.zeros(3)}
  config = _config('byol', **{'task.base_ema': 0.9})
  updated, params = byol.update_task_state({'target_params': target}, online, {},
                                           sections(config), progress(0, 10))
  assert params is online
  np.testing.assert_allclose(updated['target_params']['w'], 0.9, rtol=1e-6)


def test_lars_step_equals_the_formula():
  config = tiny_config(**{'optimizer.name': 'lars', 'optimizer.weight_decay': 0.1,
                          'optimizer.lars_eta': 0.001, 'optimizer.momentum': 0.9,
                          'optimizer.schedule': 'constant', 'optimizer.warmup_steps': 0,
                          'optimizer.base_lr': 0.5, 'optimizer.lr_scaling': 'none'})
  tx, _ = make_optimizer(config)
  params = {'dense': {'kernel': jnp.array([[3.0, 4.0]]), 'bias': jnp.array([1.0, 2.0])}}
  grads = {'dense': {'kernel': jnp.array([[1.0, -2.0]]), 'bias': jnp.array([0.5, 0.5])}}
  opt_state = tx.init(params)
  updates, opt_state = tx.update(grads, opt_state, params)
  w, g = np.array([3.0, 4.0]), np.array([1.0, -2.0])
  g_wd = g + 0.1 * w
  trust = 0.001 * np.linalg.norm(w) / np.linalg.norm(g_wd)
  np.testing.assert_allclose(updates['dense']['kernel'][0], -0.5 * trust * g_wd, rtol=1e-5)
  # Biases: no weight decay, no trust ratio.
  np.testing.assert_allclose(updates['dense']['bias'], -0.5 * np.array([0.5, 0.5]), rtol=1e-6)
  # Second step: momentum on the scaled updates (lr inside the buffer, SimCLR's order).
  updates2, _ = tx.update(grads, opt_state, params)
  np.testing.assert_allclose(updates2['dense']['bias'], -0.5 * 1.9 * np.array([0.5, 0.5]),
                             rtol=1e-6)


def test_sqrt_lr_scaling_and_weight_decay_on_all():
  config = tiny_config(batch_size=64, **{'optimizer.base_lr': 0.075,
                                         'optimizer.lr_scaling': 'sqrt',
                                         'optimizer.weight_decay_on': 'all'})
  np.testing.assert_allclose(optim.peak_lr(config.optimizer, config.batch_size), 0.6,
                             rtol=1e-6)
  params = {'bn': {'scale': jnp.ones(2), 'bias': jnp.ones(2)}, 'conv': {'kernel': jnp.ones(2)}}
  rates = optim.weight_decay_rates(params, config.optimizer)
  assert rates['bn']['scale'] == rates['bn']['bias'] == rates['conv']['kernel'] == 1e-4


def test_projection_heads_match_the_references():
  config = _config('simclr')
  head = simclr.make_head(sections(config), 10)
  variables = head.init(jax.random.key(0), {'pre_logits': jnp.ones((4, 12))}, {}, train=False)
  proj = variables['params']['proj']
  assert set(proj) == {'hidden0', 'hidden0_bn', 'hidden1', 'hidden1_bn', 'output', 'output_bn'}
  assert 'bias' not in proj['output'] and 'bias' not in proj['output_bn']  # No beta.
  moco_head = moco.make_head(sections(_config('moco', **{'task.mlp': True})), 10)
  params = moco_head.init(jax.random.key(0), {'pre_logits': jnp.ones((4, 12))}, {},
                          train=False)['params']['proj']
  assert set(params) == {'hidden0', 'output'}  # No BN in MoCo v2's head.
  assert contrastive.interleave(jnp.zeros((3, 2, 4))).shape == (6, 4)
