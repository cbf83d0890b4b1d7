"""Rotation task: labels match np.rot90, and undoing each label recovers the image."""

import jax
import jax.numpy as jnp
import numpy as np

from conftest import progress
from conftest import sections
from conftest import tiny_config
from ssl_jax.tasks import rotation


def test_labels_match_np_rot90():
  images = np.random.default_rng(0).integers(0, 255, (3, 5, 5, 2)).astype(np.float32)
  rotated, labels = rotation.rotate(jnp.asarray(images))
  assert rotated.shape == (12, 5, 5, 2)
  for i in range(12):
    np.testing.assert_array_equal(rotated[i], np.rot90(images[i // 4], k=int(labels[i])))


def test_rotation_undone_by_label():
  images = np.random.default_rng(1).normal(size=(4, 6, 6, 3)).astype(np.float32)
  rotated, labels = rotation.rotate(jnp.asarray(images))
  for i in range(len(labels)):
    np.testing.assert_array_equal(np.rot90(rotated[i], k=-int(labels[i])), images[i // 4])


def test_views_and_loss():
  config = tiny_config()
  batch = {'image': jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3)),
                                jnp.uint8)}
  views = rotation.views(batch, jax.random.key(0), sections(config))
  assert views['inputs'].shape == (16, 16, 16, 3)
  assert float(jnp.abs(views['inputs']).max()) <= 1.0
  # Perfectly confident correct logits give ~0 loss; uniform logits give log(4).
  perfect = jax.nn.one_hot(views['labels'], 4) * 100.0
  assert float(rotation.loss(perfect, views, None, sections(config), progress())[0]) < 1e-6
  uniform = jnp.zeros((16, 4))
  np.testing.assert_allclose(rotation.loss(uniform, views, None, sections(config),
                                           progress())[0], np.log(4),
                             rtol=1e-6)
