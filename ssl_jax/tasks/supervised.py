"""Supervised baseline: softmax cross-entropy on the dataset's labels, with the same
encoder, crops and colour augmentation as the pretext tasks (``supervised.augment =
'inception'``), as the contrastive methods' first view (``'contrastive'``), or the crop
and flip alone (``'none'``: the standard ImageNet recipe the contrastive papers compare
with; configs/supervised_v1_resnet50.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import flax.linen as nn
import jax
import ml_collections

from ssl_jax import config_lib
from ssl_jax import losses
from ssl_jax import tasks
from ssl_jax.data import augment
from ssl_jax.tasks import rotation

if TYPE_CHECKING:
  import tensorflow as tf


def config() -> ml_collections.ConfigDict:
  """The ``supervised`` section."""
  c = ml_collections.ConfigDict()
  # Device augmentation: 'inception' (augment.inception_*, the Revisiting tasks'),
  # 'contrastive' (the augment section's first view: a baseline with the same views) or
  # 'none' (the host crop and flip only, normalised by augment.normalize).
  c.augment = 'inception'
  return c


def validate(task_config: ml_collections.ConfigDict, *, batch_size: int) -> None:
  """Raises ValueError naming the field and the fix."""
  del batch_size
  config_lib.check_choice(task_config, 'supervised', 'augment',
                          ('inception', 'contrastive', 'none'))


def preprocess(features: dict, seed: tf.Tensor, s: tasks.Sections) -> dict:
  """A random crop and the label."""
  # TensorFlow is imported where the host pipeline runs, so that the device side of a
  # task (views, head, loss) also runs where TensorFlow is absent (benchmarks).
  from ssl_jax.data import preprocess as pp
  return {'image': pp.train_crop(features['image'], seed, s.input),
          'label': features['label']}


def views(batch: dict, rng: jax.Array, s: tasks.Sections) -> dict:
  """The Revisiting colour jitter scaled to [-1, 1]; with supervised.augment =
  'contrastive', one view of the contrastive methods' augmentation (its first view);
  with 'none', the host crop normalised by ``augment.normalize``."""
  if s.task.augment == 'none':
    return {'inputs': augment.normalize(augment.to_unit(batch['image']), s.augment.normalize),
            'labels': batch['label']}
  if s.task.augment == 'contrastive':
    inputs = augment.contrastive_views(batch['image'][:, None], rng, s.augment)[:, 0]
    return {'inputs': inputs, 'labels': batch['label']}
  images = augment.batch_brightness_saturation(
      augment.to_unit(batch['image']), rng, s.augment.inception_brightness,
      s.augment.inception_saturation)
  return {'inputs': augment.to_model_input(images), 'labels': batch['label']}


def make_head(s: tasks.Sections, num_classes: int) -> nn.Module:
  """A linear classifier over the dataset's classes."""
  del s
  return rotation.Head(num_classes)


def loss(outputs: jax.Array, views: dict, task_state, s: tasks.Sections,
         progress: tasks.Progress):
  """Mean cross-entropy and top-1 accuracy."""
  del task_state, s, progress
  return losses.classification(outputs, views['labels'], 'accuracy')
