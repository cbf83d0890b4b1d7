"""Recipe details checked against their sources' formulas: each framework's conv
initialiser, and the standard supervised baseline's input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import supervised_v1_resnet50
from ssl_jax import step as step_lib
from ssl_jax.tasks import supervised
from conftest import init_variables
from conftest import sections


@pytest.mark.parametrize('name, expected_std', [
    # torchvision kaiming_normal_(mode='fan_out', nonlinearity='relu'): sqrt(2 / fan_out).
    ('fan_out_normal', lambda fan_in, fan_out: np.sqrt(2 / fan_out)),
    # tf.keras VarianceScaling() / Haiku: scale 1, fan_in, truncated normal.
    ('fan_in_truncated', lambda fan_in, fan_out: np.sqrt(1 / fan_in)),
    # Glorot uniform: variance 2 / (fan_in + fan_out).
    ('glorot_uniform', lambda fan_in, fan_out: np.sqrt(2 / (fan_in + fan_out))),
])
def test_conv_initialisers_have_their_frameworks_scale(name, expected_std):
  config = supervised_v1_resnet50.get_config('runlocal')
  config.unlock()
  config.model.conv_init = name
  config.model.k = 1.0
  encoder = step_lib.build_encoder(config.model)
  params = init_variables(encoder, jnp.zeros((1, 32, 32, 3)))['params']
  kernel = np.asarray(params['block3_0']['conv2']['conv']['kernel'])  # 3 x 3 x 64 x 64.
  kh, kw, cin, cout = kernel.shape
  np.testing.assert_allclose(kernel.std(), expected_std(kh * kw * cin, kh * kw * cout),
                             rtol=0.05)


def test_crop_only_supervised_views_are_the_normalised_host_crops():
  config = supervised_v1_resnet50.get_config('runlocal')
  assert config.supervised.augment == 'none' and config.augment.normalize == 'imagenet'
  images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
  views = supervised.views({'image': jnp.asarray(images), 'label': jnp.arange(4)},
                           jax.random.key(0), sections(config))
  mean = np.array([0.485, 0.456, 0.406])
  std = np.array([0.229, 0.224, 0.225])
  np.testing.assert_allclose(views['inputs'], (images / 255.0 - mean) / std, atol=1e-5)
