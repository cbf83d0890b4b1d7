"""Corruptions of the pretraining images (Cole et al. 2022, §4.3 and Fig. 5: "data
quality"), applied on the host to each decoded uint8 image before the task's
preprocessing, to the pretraining stream only (evaluators see clean images).

* ``downsample``: down by ``downsample_factor`` with an area (box) filter, then back up to
  the original size with bilinear interpolation: the image keeps its size and loses its
  detail. Cole et al. name "Downsample (2x)" and "(4x)"; that the image goes back up, and
  the two kernels, are this implementation's reading (reference contrastive.md: the
  resampling kernel is not given [unverified]).
* ``jpeg``: encoded and decoded as JPEG at ``jpeg_quality`` (TensorFlow's libjpeg, 4:2:0
  chroma subsampling, as PIL's default).
* ``salt_pepper``: each pixel independently, with probability ``salt_pepper_rate``, set to
  0 or 255 (one of the two with equal probability, all three channels together).

The quality and the rate of the paper are not known (reference contrastive.md: "Unknown:
JPEG quality, salt-and-pepper probability"); the defaults below are strong settings of
this implementation, not the paper's values. The noise is a function of the image's
``seed``: the stream passes a hash of the image's encoded bytes
(input_pipeline.corruption_seed), so each image has one corrupted copy, the same in every
epoch and after a resume, as a corrupted dataset stored once.

TensorFlow is imported by the functions that tf.data runs, so that the section loads
without it (ssl_jax/config_lib.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import ml_collections

if TYPE_CHECKING:
  import tensorflow as tf

NAMES = ('none', 'downsample', 'jpeg', 'salt_pepper')


def config() -> ml_collections.ConfigDict:
  """The ``corruption`` section."""
  c = ml_collections.ConfigDict()
  c.name = 'none'  # One of NAMES.
  c.downsample_factor = 2  # Cole Fig. 5: 2 and 4.
  c.jpeg_quality = 10  # 1..100; the paper's value is unknown.
  c.salt_pepper_rate = 0.05  # Fraction of pixels set to 0 or 255; paper's value unknown.
  return c


def validate(section: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the field and the fix."""
  if section.name not in NAMES:
    raise ValueError(f'corruption.name={section.name!r}: use one of {NAMES}.')
  if section.downsample_factor < 1:
    raise ValueError(f'corruption.downsample_factor={section.downsample_factor} must be '
                     '>= 1 (1: no change).')
  if not 1 <= section.jpeg_quality <= 100:
    raise ValueError(f'corruption.jpeg_quality={section.jpeg_quality} must lie in 1..100.')
  if not 0.0 <= section.salt_pepper_rate <= 1.0:
    raise ValueError(f'corruption.salt_pepper_rate={section.salt_pepper_rate} must lie in '
                     '[0, 1].')


def downsample(image: tf.Tensor, factor: int) -> tf.Tensor:
  """uint8 [H, W, 3] down to [H // factor, W // factor] (at least 1 px) by area
  averaging, then back up to [H, W] by bilinear interpolation (half-pixel centres),
  rounded to uint8. ``factor`` 1 returns ``image`` unchanged."""
  import tensorflow as tf
  if factor == 1:
    return image
  size = tf.shape(image)[:2]
  small = tf.maximum(size // factor, 1)
  down = tf.image.resize(tf.cast(image, tf.float32), small, method='area')
  up = tf.image.resize(down, size, method='bilinear')
  return tf.cast(tf.clip_by_value(tf.round(up), 0.0, 255.0), tf.uint8)


def jpeg(image: tf.Tensor, quality: int) -> tf.Tensor:
  """uint8 [H, W, 3] encoded as JPEG at ``quality`` and decoded again."""
  import tensorflow as tf
  # The accurate integer DCT, PIL's (libjpeg's JDCT_ISLOW): the result is PIL's to the bit.
  return tf.io.decode_jpeg(tf.io.encode_jpeg(image, quality=quality), channels=3,
                           dct_method='INTEGER_ACCURATE')


def salt_pepper(image: tf.Tensor, rate: float, seed: tf.Tensor) -> tf.Tensor:
  """uint8 [H, W, 3] with each pixel, independently with probability ``rate``, set to 0
  or 255 (equally likely) in every channel; ``seed`` (int [2]) fixes the draw."""
  import tensorflow as tf
  hit, white = tf.unstack(tf.random.stateless_uniform(
      tf.concat([[2], tf.shape(image)[:2]], 0), seed=seed), axis=0)
  value = tf.where(white < 0.5, tf.constant(0, tf.uint8), tf.constant(255, tf.uint8))
  return tf.where((hit < rate)[..., None], value[..., None], image)


def corrupt_fn(section: ml_collections.ConfigDict
               ) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor] | None:
  """The ``(uint8 image, seed int64 [2]) -> uint8 image`` corruption of ``section``; None
  for 'none'."""
  validate(section)
  if section.name == 'none':
    return None
  if section.name == 'downsample':
    return lambda image, seed: downsample(image, section.downsample_factor)
  if section.name == 'jpeg':
    return lambda image, seed: jpeg(image, section.jpeg_quality)
  import tensorflow as tf
  rate = section.salt_pepper_rate
  # A stream of its own: the task's augmentations draw from the same example seed.
  return lambda image, seed: salt_pepper(
      image, rate, tf.random.experimental.stateless_fold_in(seed, 0x5A17))
