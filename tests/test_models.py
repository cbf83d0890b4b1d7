"""ResNet family: parameter counts against the reference table, end points, BN groups."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import models
from ssl_jax.models import layers
from ssl_jax.models import resnet

# ../shared/reference/revisiting.md §1.5: conv kernels + BN, no head, millions.
REFERENCE = {('v1', 4): 23.5, ('v1', 8): 93.9, ('v1', 12): 211.2, ('v1', 16): 375.4,
             ('v2', 4): 23.5, ('v2', 8): 93.9, ('v2', 12): 211.2, ('v2', 16): 375.3}


@pytest.mark.parametrize('variant,k', sorted(REFERENCE))
def test_parameter_count_matches_reference(variant, k):
  model = resnet.ResNet(variant=variant, k=k)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)),
                                             train=False))
  count = sum(x.size for x in jax.tree.leaves(shapes['params'])) / 1e6
  assert round(count, 1) == REFERENCE[(variant, k)]


def test_end_points_shapes_standard_width():
  model = resnet.ResNet(variant='v2', k=4)
  out = jax.eval_shape(lambda: model.init_with_output(
      jax.random.key(0), jnp.zeros((2, 224, 224, 3)), train=False)[0])
  assert {k: v.shape for k, v in out.items()} == {
      'after_root': (2, 56, 56, 64), 'block1': (2, 56, 56, 256),
      'block2': (2, 28, 28, 512), 'block3': (2, 14, 14, 1024),
      'block4': (2, 7, 7, 2048), 'pre_logits': (2, 2048)}


def test_a_stride_per_stage_is_required():
  config = models.config()
  config.units = (1,)
  with pytest.raises(ValueError, match=r'model.units=\(1,\) and model.stage_strides='):
    models.validate(config)
  config.stage_strides = (1,)
  models.validate(config)
  assert resnet.build(config).units == (1,)


def test_minus_variant_keeps_negative_pre_logits():
  x = jax.random.normal(jax.random.key(1), (4, 16, 16, 3))
  for last_relu in (True, False):
    model = resnet.ResNet(variant='v2', k=0.25, units=(1, 1, 1, 1), last_relu=last_relu)
    # Jitted: op-by-op dispatch of a ResNet costs more on a CPU than one compilation.
    variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(x)
    out, _ = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats']))(
        variables, x)
    assert (out['pre_logits'].min() < 0) == (not last_relu)


def test_zero_init_last_bn_starts_a_v1_unit_as_its_shortcut():
  x = jax.random.normal(jax.random.key(2), (4, 5, 5, 8))
  bn = lambda **kw: layers.BatchNorm(**kw)  # noqa: E731
  for zero_init in (True, False):
    unit = resnet.BottleneckV1(width=2, out=8, strides=1, bn=bn, zero_init_last=zero_init)
    variables = unit.init(jax.random.key(0), x, train=False)
    y, _ = unit.apply(variables, x, train=True, mutable=['batch_stats'])
    # Identity shortcut: the unit is relu(x + 0) when the last BN's gamma starts at 0.
    assert np.allclose(y, jax.nn.relu(x)) == zero_init


def test_batchnorm_groups_match_per_slice_statistics():
  x = jax.random.normal(jax.random.key(0), (8, 3, 3, 5)) * jnp.arange(1, 9)[:, None, None, None]
  bn = layers.BatchNorm(groups=4, epsilon=1e-3)
  variables = bn.init(jax.random.key(0), x, train=False)
  y, _ = bn.apply(variables, x, train=True, mutable=['batch_stats'])
  for g in range(4):
    part = np.asarray(x[2 * g:2 * g + 2])
    expected = (part - part.mean((0, 1, 2))) / np.sqrt(part.var((0, 1, 2)) + 1e-3)
    np.testing.assert_allclose(y[2 * g:2 * g + 2], expected, rtol=1e-4, atol=1e-5)


def test_fixed_padding_is_symmetric():
  assert layers.fixed_padding(7) == (3, 3)
  assert layers.fixed_padding(3) == (1, 1)
  assert layers.fixed_padding(1) == (0, 0)


def test_root_max_pool_equals_pooling_a_zero_padded_copy():
  """layers.max_pool_3x3 (padding left out, then max with 0 where a window covers it)
  against the reference's explicit zero padding then a VALID pool: the same outputs and
  gradients, bit for bit, on signed inputs of even and odd sizes, float32 and bfloat16."""
  def padded_then_pooled(x):
    x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1),
                                 'VALID')

  rng = np.random.default_rng(0)
  padding_mattered = False  # Some window's real values were all negative: the zeros win.
  for height, width in [(16, 16), (7, 8), (5, 5), (2, 3), (1, 1)]:
    x = jnp.asarray(rng.normal(size=(2, height, width, 3)) - 0.5, jnp.float32)
    expected, expected_vjp = jax.vjp(padded_then_pooled, x)
    got, got_vjp = jax.vjp(layers.max_pool_3x3, x)
    np.testing.assert_array_equal(got, expected)
    cotangent = jnp.asarray(rng.normal(size=expected.shape), jnp.float32)
    np.testing.assert_array_equal(got_vjp(cotangent)[0], expected_vjp(cotangent)[0])
    low = x.astype(jnp.bfloat16)
    np.testing.assert_array_equal(layers.max_pool_3x3(low), padded_then_pooled(low))
    unpadded = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1),
                                     ((0, 0), (1, 1), (1, 1), (0, 0)))
    padding_mattered |= not np.array_equal(unpadded, expected)
  assert padding_mattered
