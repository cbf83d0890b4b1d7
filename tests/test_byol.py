"""BYOL's per-view BatchNorm (byol_experiment.py `_forward`: each view through the networks
on its own) against a numpy per-view normalisation, and its online classifier against a
numpy cross-entropy and the stop-gradient that keeps the labels out of the encoder."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import init_variables
from conftest import progress
from conftest import sections
from conftest import ONE_STAGE
from conftest import tiny_config
from ssl_jax import step as step_lib
from ssl_jax.tasks import byol

NUM_CLASSES = 10


def _batch(n=8, size=16, seed=0):
  """View 1 dark and view 2 bright, so that the two views' statistics differ."""
  rng = np.random.default_rng(seed)
  image = np.stack([rng.integers(0, 80, (n, size, size, 3)),
                    rng.integers(170, 256, (n, size, size, 3))], axis=1)
  return {'image': image.astype(np.uint8),
          'label': rng.integers(0, NUM_CLASSES, (n,)).astype(np.int32)}


def _model(per_view_bn: bool, online_classifier: bool = True):
  config = tiny_config('byol', **ONE_STAGE, **{'model.variant': 'v1', 'task.proj_hidden': 16,
                                  'task.proj_dim': 8, 'task.per_view_bn': per_view_bn,
                                  'task.online_classifier': online_classifier})
  task = step_lib.import_task(config)
  model = step_lib.build_model(config, task, NUM_CLASSES, step_lib.make_mesh())
  views = task.views(_batch(), jax.random.key(1), sections(config))
  variables = init_variables(model, views)
  return config, model, views, variables


def _numpy_bn(x, scale, bias, epsilon):
  """Training-mode BN of x [N, ..., C] over all axes but the last, in float64."""
  x = np.asarray(x, np.float64)
  axes = tuple(range(x.ndim - 1))
  mean, var = x.mean(axes), x.var(axes)
  return (x - mean) / np.sqrt(var + epsilon) * np.asarray(scale) + np.asarray(bias)


def _bn_inputs_and_outputs(model, variables, views):
  """(inputs, outputs) of each call of the encoder's root BN and of the projector's
  hidden BN (one call per view with per-view BN, one in all without)."""
  _, state = jax.jit(functools.partial(
      model.apply, train=True, capture_intermediates=True,
      mutable=['batch_stats', 'intermediates']))(variables, views)
  inter = state['intermediates']
  return {
      'root_bn': (inter['encoder']['root']['__call__'],
                  inter['encoder']['root_bn']['__call__']),
      'hidden0_bn': (inter['head']['projector']['hidden0']['__call__'],
                     inter['head']['projector']['hidden0_bn']['__call__'])}


def _bn_params(variables, name):
  params = variables['params']
  node = params['encoder'] if name == 'root_bn' else params['head']['projector']
  return node[name]['scale'], node[name]['bias']


def test_per_view_bn_normalises_each_view_in_the_online_and_target_networks():
  config, model, views, variables = _model(per_view_bn=True)
  assert len(views['inputs']) == 2 and views['inputs'][0].shape == (8, 16, 16, 3)
  per_view = _bn_inputs_and_outputs(model, variables, views)
  for name, (inputs, outputs) in per_view.items():
    assert len(inputs) == len(outputs) == 2  # One pass per view.
    for x, y in zip(inputs, outputs):
      np.testing.assert_allclose(
          y, _numpy_bn(x, *_bn_params(variables, name), config.model.bn_epsilon),
          rtol=1e-4, atol=1e-4)

  # The shared pass (the same pixels, image-major) normalises both views together, and
  # its root BN differs from the per-view one because the views' statistics differ.
  _, shared_model, shared_views, _ = _model(per_view_bn=False)
  (x,), (y,) = _bn_inputs_and_outputs(shared_model, variables, shared_views)['root_bn']
  np.testing.assert_allclose(y, _numpy_bn(x, *_bn_params(variables, 'root_bn'),
                                          config.model.bn_epsilon), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(x, byol.image_major(per_view['root_bn'][0]), atol=1e-5)
  per_view_rows = byol.image_major(per_view['root_bn'][1])
  assert np.abs(np.asarray(y) - np.asarray(per_view_rows)).mean() > 0.1

  # The target network: view 1's projections do not depend on view 2 with per-view BN.
  apply_target = step_lib.apply_target_fn(model)
  targets = jax.jit(lambda params, views: byol.targets(
      {'target_params': params}, views, jax.random.key(0), sections(config), apply_target))
  both = targets(variables['params'], views)['target_projection']
  alone = jax.jit(apply_target)(variables['params'], views['inputs'][:1])['projection']
  np.testing.assert_allclose(both[0::2], alone, rtol=1e-4, atol=1e-5)
  shared = targets(variables['params'], shared_views)
  shared_view1 = np.asarray(shared['target_projection'][0::2])
  assert np.abs(shared_view1 - np.asarray(alone)).max() > 1e-3


def test_online_classifier_loss_equals_numpy_and_leaves_the_encoder_without_gradient():
  config, model, views, variables = _model(per_view_bn=True)
  s = sections(config)
  views = dict(views, target_projection=jnp.ones((16, 8)))

  def loss_fn(params, only_classifier):
    outputs, _ = model.apply({'params': params, 'batch_stats': variables['batch_stats']},
                             views, train=True, mutable=['batch_stats'])
    total, metrics = byol.loss(outputs, views, None, s, progress(0, 10))
    return (metrics['classifier_loss'] if only_classifier else total), metrics

  (_, metrics), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True),
                                static_argnums=1)(variables['params'], True)
  # Numpy: view 1's representation (the encoder on view 1 alone: per-view BN) through the
  # classifier, softmax cross-entropy with the labels and top-1.
  pre_logits, _ = jax.jit(lambda v, x: model.apply(
      v, x, train=True, mutable=['batch_stats'],
      method=lambda m, x, train: m.encoder(x, train=train)))(variables, views['inputs'][0])
  head = variables['params']['head']['classifier']
  logits = (np.asarray(pre_logits['pre_logits'], np.float64) @ np.asarray(head['kernel'])
            + np.asarray(head['bias']))
  logits -= logits.max(-1, keepdims=True)
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  labels = np.asarray(views['label'])
  np.testing.assert_allclose(metrics['classifier_loss'],
                             -log_probs[np.arange(8), labels].mean(), rtol=1e-4)
  np.testing.assert_allclose(metrics['classifier_top1'],
                             np.mean(logits.argmax(-1) == labels), rtol=1e-6)
  np.testing.assert_allclose(metrics['regression_loss'] + metrics['classifier_loss'],
                             jax.jit(loss_fn, static_argnums=1)(variables['params'], False)[0],
                             rtol=1e-5)
  # The classifier learns from the labels; nothing else gets their gradient.
  flat = jax.tree_util.tree_flatten_with_path(grads)[0]
  for path, grad in flat:
    names = [p.key for p in path]
    if 'classifier' in names:
      assert np.abs(grad).max() > 0, names
    else:
      assert np.abs(grad).max() == 0, names


def test_online_classifier_off_and_unlabelled_data():
  _, _, _, variables = _model(per_view_bn=True, online_classifier=False)
  assert 'classifier' not in variables['params']['head']
  config = tiny_config('byol')
  with pytest.raises(ValueError, match='byol.online_classifier=False'):
    byol.make_head(sections(config), 0)
