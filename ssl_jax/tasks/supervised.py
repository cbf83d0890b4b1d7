"""Supervised baseline: softmax cross-entropy on the dataset's labels, with the same
encoder, crops and colour augmentation as the pretext tasks."""

from __future__ import annotations

from typing import TYPE_CHECKING

import flax.linen as nn
import jax
import ml_collections

from ssl_jax import losses
from ssl_jax.data import augment
from ssl_jax.tasks import rotation

if TYPE_CHECKING:
  import tensorflow as tf


def preprocess(features: dict, seed: tf.Tensor, config: ml_collections.ConfigDict) -> dict:
  """A random crop and the label."""
  # TensorFlow is imported where the host pipeline runs, so that the device side of a
  # task (views, head, loss) also runs where TensorFlow is absent (benchmarks).
  from ssl_jax.data import preprocess as pp
  return {'image': pp.train_crop(features['image'], seed, config),
          'label': features['label']}


def views(batch: dict, rng: jax.Array, config: ml_collections.ConfigDict) -> dict:
  """The Revisiting colour jitter scaled to [-1, 1], or, with input.device_augment =
  'contrastive', one view of the contrastive methods' augmentation (its first view)."""
  if config.input.device_augment == 'contrastive':
    inputs = augment.contrastive_views(batch['image'][:, None], rng, config)[:, 0]
    return {'inputs': inputs, 'labels': batch['label']}
  images = augment.batch_brightness_saturation(
      augment.to_unit(batch['image']), rng, config.input.brightness, config.input.saturation)
  return {'inputs': augment.to_model_input(images), 'labels': batch['label']}


def make_head(config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
  """A linear classifier over the dataset's classes."""
  del config
  return rotation.Head(num_classes)


def loss(outputs: jax.Array, views: dict, task_state, config: ml_collections.ConfigDict):
  """Mean cross-entropy and top-1 accuracy."""
  del task_state, config
  return losses.classification(outputs, views['labels'], 'accuracy')
