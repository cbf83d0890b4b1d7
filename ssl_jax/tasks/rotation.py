"""Rotation prediction (Gidaris et al. 2018), as studied in Revisiting (reference §2.1).

All four rotations (0, 90, 180, 270 degrees counter-clockwise) of the same augmented crop
go through the network; a linear layer on pre_logits predicts which one was applied. The
loss is the mean softmax cross-entropy over all 4B inputs. Batch sizes and learning-rate
scaling count images, not inputs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import flax.linen as nn
import jax
import jax.numpy as jnp
from ssl_jax import losses
from ssl_jax import tasks
from ssl_jax.data import augment

if TYPE_CHECKING:
  import tensorflow as tf

NUM_ROTATIONS = 4


def preprocess(features: dict, seed: tf.Tensor, s: tasks.Sections) -> dict:
  """One random crop per image; the rotations are made on the device."""
  # TensorFlow is imported where the host pipeline runs, so that the device side of a
  # task (views, head, loss) also runs where TensorFlow is absent (benchmarks).
  from ssl_jax.data import preprocess as pp
  return {'image': pp.train_crop(features['image'], seed, s.input)}


def rotate(images: jax.Array) -> tuple[jax.Array, jax.Array]:
  """[B, H, W, C] -> the 4 rotations of each image, image-major [4B, H, W, C], and labels.

  Label r is a counter-clockwise rotation by r * 90 degrees (np.rot90 with k=r). Keeping
  an image's rotations adjacent keeps them on the image's device when sharded.
  """
  if images.shape[1] != images.shape[2]:
    raise ValueError(f'Rotation needs square images, got {images.shape[1:3]}.')
  rotated = jnp.stack([jnp.rot90(images, r, axes=(1, 2)) for r in range(NUM_ROTATIONS)], 1)
  labels = jnp.tile(jnp.arange(NUM_ROTATIONS), images.shape[0])
  return rotated.reshape((-1,) + images.shape[1:]), labels


def views(batch: dict, rng: jax.Array, s: tasks.Sections) -> dict:
  """Colour jitter on the crop, then its four rotations."""
  images = augment.batch_brightness_saturation(
      augment.to_unit(batch['image']), rng, s.augment.inception_brightness,
      s.augment.inception_saturation)
  inputs, labels = rotate(augment.to_model_input(images))
  return {'inputs': inputs, 'labels': labels}


class Head(nn.Module):
  """A linear layer with bias on pre_logits (the original 1x1 conv on pooled features)."""
  num_outputs: int

  @nn.compact
  def __call__(self, end_points: dict, views: dict, train: bool) -> jax.Array:
    del views, train
    return nn.Dense(self.num_outputs, name='logits')(end_points['pre_logits'])


def make_head(s: tasks.Sections, num_classes: int) -> nn.Module:
  """The 4-way rotation classifier (num_classes of the dataset is not used)."""
  del s, num_classes
  return Head(NUM_ROTATIONS)


def loss(outputs: jax.Array, views: dict, task_state, s: tasks.Sections,
         progress: tasks.Progress):
  """Mean cross-entropy over the 4B inputs, and the rotation accuracy."""
  del task_state, s, progress
  return losses.classification(outputs, views['labels'], 'rotation_accuracy')
