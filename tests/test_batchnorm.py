"""layers.BatchNorm's one-pass statistics against flax.linen.BatchNorm and float64 numpy:
outputs, running statistics and gradients, per group, and for bfloat16 inputs."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax.models import layers


def _inputs(shape, offset=0.0, seed=0):
  """Normal values with a per-channel scale and an offset (BN inputs are rarely centred)."""
  rng = np.random.default_rng(seed)
  scale = rng.uniform(0.5, 2.0, shape[-1])
  return (rng.normal(size=shape) * scale + offset).astype(np.float32)


def _apply(module, variables, x, train):
  out, new = module.apply(variables, x, train, mutable=['batch_stats'])
  return out, new['batch_stats']


class FlaxBN(nn.Module):
  """flax.linen.BatchNorm with our layer's call signature and variable names."""
  momentum: float
  epsilon: float

  @nn.compact
  def __call__(self, x, train):
    return nn.BatchNorm(use_running_average=not train, momentum=self.momentum,
                        epsilon=self.epsilon, name='bn')(x)


def test_matches_flax_batchnorm_outputs_statistics_and_gradients():
  x = _inputs((8, 5, 5, 6), offset=1.5)
  ours, flax_bn = layers.BatchNorm(momentum=0.9, epsilon=1e-5), FlaxBN(0.9, 1e-5)
  rng = np.random.default_rng(1)
  scale, bias = rng.uniform(0.5, 1.5, 6).astype(np.float32), rng.normal(size=6).astype(np.float32)
  mean, var = rng.normal(size=6).astype(np.float32), rng.uniform(0.5, 2, 6).astype(np.float32)
  ours_vars = {'params': {'scale': scale, 'bias': bias},
               'batch_stats': {'mean': mean, 'var': var}}
  flax_vars = {'params': {'bn': {'scale': scale, 'bias': bias}},
               'batch_stats': {'bn': {'mean': mean, 'var': var}}}
  for train in (True, False):
    y, stats = _apply(ours, ours_vars, x, train)
    y_ref, stats_ref = _apply(flax_bn, flax_vars, x, train)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    if train:
      for name in ('mean', 'var'):
        np.testing.assert_allclose(stats[name], stats_ref['bn'][name], rtol=1e-6)

  def loss(module, variables, x):
    return jnp.sum(jnp.sin(_apply(module, variables, x, True)[0]))

  g = jax.grad(loss, argnums=(1, 2))(ours, ours_vars, x)
  g_ref = jax.grad(loss, argnums=(1, 2))(flax_bn, flax_vars, x)
  np.testing.assert_allclose(g[1], g_ref[1], rtol=1e-4, atol=1e-5)
  for name in ('scale', 'bias'):
    np.testing.assert_allclose(g[0]['params'][name], g_ref[0]['params']['bn'][name],
                               rtol=1e-4, atol=1e-5)


def test_group_statistics_equal_float64_numpy_per_slice():
  """4 groups of 3 images, inputs offset by 4 to 8 standard deviations: each group's mean
  and biased variance as numpy's two-pass float64 ones (the one-pass variance to 1e-4
  unshifted, 2e-6 shifted by an estimate of the mean), and its output normalised by
  them."""
  x = _inputs((12, 4, 4, 5), offset=4.0)
  slices = np.asarray(x, np.float64).reshape(4, 3, 4, 4, 5)
  ref_mean, ref_var = slices.mean((1, 2, 3)), slices.var((1, 2, 3))
  mean, var = layers.batch_statistics(jnp.asarray(x), 4)
  np.testing.assert_allclose(mean, ref_mean, rtol=1e-6)
  np.testing.assert_allclose(var, ref_var, rtol=1e-4)
  estimate = jnp.asarray(ref_mean.mean(0) + 0.1, jnp.float32)
  mean, var = layers.batch_statistics(jnp.asarray(x), 4, estimate)
  np.testing.assert_allclose(mean, ref_mean, rtol=1e-6)
  np.testing.assert_allclose(var, ref_var, rtol=2e-6)
  bn = layers.BatchNorm(groups=4, epsilon=1e-3)
  variables = bn.init(jax.random.key(0), x, train=False)
  y, stats = _apply(bn, variables, x, True)
  ref_y = (slices - ref_mean[:, None, None, None]) / np.sqrt(ref_var[:, None, None, None] + 1e-3)
  np.testing.assert_allclose(y, ref_y.reshape(x.shape), rtol=1e-4, atol=1e-5)
  # The running statistics move by the mean of the groups' statistics (momentum 0.99).
  np.testing.assert_allclose(stats['mean'], 0.01 * ref_mean.mean(0), rtol=1e-5)
  np.testing.assert_allclose(stats['var'], 0.99 + 0.01 * ref_var.mean(0), rtol=1e-6)


def test_bfloat16_inputs_take_float32_statistics():
  """A bfloat16 input: the statistics of its values in float32 exactly, the output that
  of the float32 layer on the same values, rounded once to bfloat16."""
  x = jnp.asarray(_inputs((16, 3, 3, 8), offset=0.5)).astype(jnp.bfloat16)
  x32 = x.astype(jnp.float32)
  for a, b in zip(layers.batch_statistics(x, 2), layers.batch_statistics(x32, 2)):
    assert a.dtype == jnp.float32
    np.testing.assert_array_equal(a, b)
  bn16 = layers.BatchNorm(groups=2, dtype=jnp.bfloat16)
  bn32 = layers.BatchNorm(groups=2)
  variables = bn32.init(jax.random.key(0), x32, train=False)
  y16, _ = _apply(bn16, variables, x, True)
  y32, _ = _apply(bn32, variables, x32, True)
  assert y16.dtype == jnp.bfloat16
  np.testing.assert_array_equal(y16, y32.astype(jnp.bfloat16))
