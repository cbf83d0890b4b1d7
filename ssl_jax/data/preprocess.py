"""Host-side (tf.data) decoding and crops. Random ops are stateless and seeded per
example, so the input stream is a function of (seed, step) and resumes exactly."""

from __future__ import annotations

import ml_collections
import tensorflow as tf


def decode(image_bytes: tf.Tensor) -> tf.Tensor:
  """Encoded image -> uint8 [H, W, 3]."""
  return tf.io.decode_image(image_bytes, channels=3, expand_animations=False)


def _resize(image: tf.Tensor, size: int) -> tf.Tensor:
  resized = tf.image.resize(image, (size, size), method='bilinear', antialias=False)
  return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def train_crop(image: tf.Tensor, seed: tf.Tensor,
               config: ml_collections.ConfigDict) -> tf.Tensor:
  """Random crop and flip to ``input.image_size``, uint8.

  'inception': slim's distorted bounding box (min object covered 0.1, 100 attempts,
  the area and aspect ranges of the config; Revisiting §2.1), bilinear resize.
  'resize': the whole image resized. Either is flipped with probability 1/2.
  """
  seed_crop, seed_flip = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  if config.input.crop == 'inception':
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=seed_crop, min_object_covered=0.1,
        aspect_ratio_range=tuple(config.input.crop_aspect),
        area_range=tuple(config.input.crop_area), max_attempts=100,
        use_image_if_no_bounding_boxes=True)
    image = tf.slice(image, begin, size)
  image = _resize(image, config.input.image_size)
  if config.input.flip:
    image = tf.image.stateless_random_flip_left_right(image, seed_flip)
  return image


def eval_image(image: tf.Tensor, config: ml_collections.ConfigDict) -> tf.Tensor:
  """Central crop of ``input.eval_crop_fraction`` of the shorter side, resized, uint8."""
  shape = tf.shape(image)
  height, width = shape[0], shape[1]
  side = tf.cast(tf.cast(tf.minimum(height, width), tf.float32)
                 * config.input.eval_crop_fraction, tf.int32)
  top, left = (height - side) // 2, (width - side) // 2
  image = tf.slice(image, [top, left, 0], [side, side, 3])
  return _resize(image, config.input.image_size)


def resize_small_random_crop(image: tf.Tensor, seed: tf.Tensor, resize: int,
                             size: int) -> tf.Tensor:
  """Shorter side to ``resize`` (aspect kept), then a random ``size`` crop, uint8: the
  training augmentation of the Revisiting linear evaluation (reference §4)."""
  shape = tf.cast(tf.shape(image)[:2], tf.float32)
  scale = resize / tf.reduce_min(shape)
  new_shape = tf.cast(tf.round(shape * scale), tf.int32)
  resized = tf.image.resize(image, new_shape, method='bilinear', antialias=True)
  resized = tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)
  return tf.image.stateless_random_crop(resized, (size, size, 3), seed)
