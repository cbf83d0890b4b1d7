"""RevNet50 and VGG19-BN: parameter counts against the reference table, invertibility,
end points, patch mode, tiny forward passes, the representation layer, weight decay."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import init_variables
from ssl_jax import config_lib
from ssl_jax import optim
from ssl_jax.models import layers
from ssl_jax.models import revnet
from ssl_jax.models import vgg

# ../shared/reference/revisiting.md §1.5: conv kernels + BN, no head, millions, 224 px.
REFERENCE = {('revnet', 4): 5.4, ('revnet', 8): 21.5, ('revnet', 12): 48.3,
             ('revnet', 16): 85.8, ('vgg', 4): 34.9, ('vgg', 8): 139.6, ('vgg', 12): 314.0,
             ('vgg', 16): 558.3}


def _model(family, **kwargs):
  return revnet.RevNet(**kwargs) if family == 'revnet' else vgg.VGG(**kwargs)


def _shapes(model, size, batch=2):
  """(end point shapes, variable shapes) at a size x size input, without allocating."""
  out, variables = jax.eval_shape(lambda: model.init_with_output(
      jax.random.key(0), jnp.zeros((batch, size, size, 3)), train=False))
  return {k: v.shape for k, v in out.items()}, variables


@pytest.mark.parametrize('family,k', sorted(REFERENCE))
def test_parameter_count_matches_reference(family, k):
  _, variables = _shapes(_model(family, k=k), 224, batch=1)
  count = sum(x.size for x in jax.tree.leaves(variables['params'])) / 1e6
  assert round(count, 1) == REFERENCE[(family, k)]


def _random_variables(model, x, **kwargs):
  """Variables of ``model`` drawn with NumPy, so that no init is compiled: N(0, 0.3)
  everywhere except the BN running variances, drawn from U(0.5, 1.5)."""
  shapes = jax.eval_shape(functools.partial(model.init, **kwargs), jax.random.key(0), x)
  rng = np.random.default_rng(0)

  def draw(path, leaf):
    if path[-1].key == 'var':
      return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
    return rng.normal(0.0, 0.3, leaf.shape).astype(np.float32)

  return jax.tree_util.tree_map_with_path(draw, shapes)


def test_rev_unit_is_invertible():
  unit = revnet.RevUnit(width=16, inner=2, bn=layers.BatchNorm)
  x = np.random.default_rng(1).normal(size=(2, 5, 5, 16)).astype(np.float32)
  variables = _random_variables(unit, x, train=False)
  y = jax.jit(functools.partial(unit.apply, train=False))(variables, x)
  # The halves swap: y = [x2, x1 + F(x2)] with a non-trivial F.
  np.testing.assert_array_equal(y[..., :8], x[..., 8:])
  assert not np.allclose(y[..., 8:], x[..., :8], atol=1e-2)
  recovered = jax.jit(functools.partial(unit.apply, train=False,
                                        method=revnet.RevUnit.inverse))(variables, y)
  np.testing.assert_allclose(recovered, x, rtol=1e-5, atol=1e-5)


def test_transition_pools_without_padding_and_centres_the_input():
  x = jnp.ones((1, 3, 3, 4))
  y = revnet.pool_and_widen(x, 8, 2)
  assert y.shape == (1, 2, 2, 8)
  # TF's SAME average pool leaves the padding out of the mean: the edge windows stay 1.
  np.testing.assert_array_equal(y[..., 2:6], 1.0)
  np.testing.assert_array_equal(y[..., :2], 0.0)
  np.testing.assert_array_equal(y[..., 6:], 0.0)


def test_revnet_end_points_standard_width():
  shapes, _ = _shapes(revnet.RevNet(k=4), 224)
  assert shapes == {
      'after_root': (2, 56, 56, 256), 'block1': (2, 56, 56, 256),
      'block2': (2, 28, 28, 512), 'block3': (2, 14, 14, 1024),
      'block4': (2, 7, 7, 2048), 'pre_logits': (2, 2048)}


def test_vgg_end_points_standard_width_both_namings():
  paper, _ = _shapes(vgg.VGG(k=8), 224)
  assert paper == {
      'after_root': (2, 224, 224, 64), 'block1': (2, 112, 112, 128),
      'block2': (2, 56, 56, 256), 'block3': (2, 28, 28, 512),
      'block4': (2, 14, 14, 512), 'pre_logits': (2, 4096)}
  code, _ = _shapes(vgg.VGG(k=8, names='code'), 224)
  assert code == {
      'block1': (2, 224, 224, 64), 'block2': (2, 112, 112, 128),
      'block3': (2, 56, 56, 256), 'block4': (2, 28, 28, 512),
      'block5': (2, 14, 14, 512), 'fc6': (2, 1, 1, 4096), 'pre_logits': (2, 4096)}


def test_revnet_patch_mode_spatial_sizes():
  # §1.4: 64 (root) -> 32 (max-pool) -> 32, 16, 8, 8 (blocks 1-4); pre-logits 512k.
  shapes, _ = _shapes(revnet.RevNet(k=8, root_stride=1, stage_strides=(1, 2, 2, 1)), 64)
  assert shapes['after_root'] == (2, 32, 32, 512)
  assert [shapes[f'block{i}'][1:3] for i in range(1, 5)] == [(32, 32), (16, 16), (8, 8),
                                                              (8, 8)]
  assert shapes['pre_logits'] == (2, 4096)


@pytest.mark.parametrize('family', ['revnet', 'vgg'])
def test_bfloat16_maps_keep_dtype(family):
  model = _model(family, k=0.125, dtype=jnp.bfloat16)
  out = jax.eval_shape(lambda: model.init_with_output(
      jax.random.key(0), jnp.zeros((2, 64, 64, 3)), train=True)[0])
  assert {k: v.dtype for k, v in out.items() if k != 'pre_logits'} == {
      k: jnp.bfloat16 for k in out if k != 'pre_logits'}
  assert out['pre_logits'].dtype == jnp.float32


@pytest.mark.parametrize('family,size', [('revnet', 16), ('vgg', 32)])
def test_tiny_forward_train_is_finite(family, size):
  kwargs = {'units': (1, 1, 1, 1)} if family == 'revnet' else {}
  model = _model(family, k=0.125, **kwargs)
  x = np.random.default_rng(1).uniform(-1, 1, (4, size, size, 3)).astype(np.float32)
  variables = _random_variables(model, x, train=False)
  out, updates = jax.jit(functools.partial(model.apply, train=True, mutable=['batch_stats']))(
      variables, x)
  assert out['pre_logits'].shape == (4, 64)
  assert np.isfinite(out['pre_logits']).all()
  assert jax.tree.structure(updates['batch_stats']) == jax.tree.structure(
      variables['batch_stats'])


@pytest.mark.parametrize('name', ['revnet', 'vgg'])
def test_build_reads_config_and_representation_size(name):
  config = config_lib.run_config('rotation')
  config.model.name = name
  config.model.representation_size = 512
  config.model.vgg_names = 'code'
  module = revnet if name == 'revnet' else vgg
  shapes, variables = _shapes(module.build(config.model), 224)
  assert shapes['pre_logits'] == (2, 512)
  # Bias-free, from the 512k = 2048 pooled features at the default k = 4.
  assert {k: v.shape for k, v in variables['params']['representation'].items()} == {
      'kernel': (2048, 512)}
  if name == 'vgg':
    assert 'fc6' in shapes and 'block5' in shapes


def test_vgg_rejects_unknown_names():
  with pytest.raises(ValueError, match="'paper' or 'code'"):
    _shapes(vgg.VGG(k=0.125, names='slim'), 32)


def test_revnet_root_has_no_weight_decay():
  config = config_lib.run_config('rotation')
  _, variables = _shapes(revnet.RevNet(k=0.125, units=(1, 1, 1, 1)), 16)
  rates = optim.weight_decay_rates(variables['params'], config.optimizer)
  assert rates['root_nowd']['conv']['kernel'] == 0.0
  decay = config.optimizer.weight_decay
  assert rates['block1_0']['residual']['conv1']['conv']['kernel'] == decay
  assert rates['final_bn']['scale'] == 0.0


def test_zero_init_residual_starts_every_revnet_unit_as_a_swap_and_trains():
  """With every F's last conv at zero, each reversible unit [x1, x2] -> [x2, x1 + F(x2)]
  is a swap of the halves: the end points are after_root carried by the parameter-free
  transitions alone, computed here by hand; the zero kernels still get a gradient."""
  units = (1, 2, 1, 1)
  model = revnet.RevNet(k=0.125, units=units, zero_init_residual=True)
  x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
  variables = init_variables(model, x)  # Jitted, as the apply below.
  end_points = jax.jit(functools.partial(model.apply, train=False))(variables, x)
  expected = end_points['after_root']
  for stage, (num_units, stride) in enumerate(zip(units, model.stage_strides)):
    width = layers.channels(64 * 2**stage, model.k)
    expected = revnet.pool_and_widen(expected, width, stride)
    for _ in range(num_units):
      half = width // 2
      expected = jnp.concatenate([expected[..., half:], expected[..., :half]], -1)
    np.testing.assert_allclose(end_points[f'block{stage + 1}'], expected, atol=1e-6)
  default = jax.jit(functools.partial(revnet.RevNet(k=0.125, units=units).init,
                                      train=False))(jax.random.key(0), x)
  assert np.abs(default['params']['block1_0']['residual']['conv3']['conv']['kernel']).sum() > 0

  def loss(params):
    out = model.apply({**variables, 'params': params}, x, train=False)
    return jnp.sum(out['pre_logits'] ** 2)
  grads = jax.jit(jax.grad(loss))(variables['params'])
  assert np.abs(grads['block4_0']['residual']['conv3']['conv']['kernel']).sum() > 0
