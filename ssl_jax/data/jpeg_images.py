"""ImageNet-sized JPEG images made from the shipped CIFAR-10 images, as a TFDS dataset:
the input benchmark's data (``python -m ssl_jax.benchmark --input_only``), made offline.

Each image is a shipped 32-px image upscaled (bicubic) to ``height`` x ``width``, with
seeded Gaussian noise of ``noise`` grey levels (an upscaled 32-px image alone is so
smooth that its JPEG is a few times smaller than a photograph's, and entropy decoding
scales with the file), encoded by ``tf.io.encode_jpeg`` at ``quality`` with 4:2:0 chroma
(libjpeg's default, and that of most ImageNet files). Importing this module registers
the builder with TFDS; build it with :func:`prepare`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from ssl_jax.data import cifar10_5k


@dataclasses.dataclass
class JpegImagesConfig(tfds.core.BuilderConfig):
  """Size, count and encoding of the images."""
  height: int = 350
  width: int = 400
  count: int = 512
  quality: int = 90
  noise: float = 8.0  # Standard deviation in grey levels, before rounding.


class JpegImages(tfds.core.GeneratorBasedBuilder):
  """``count`` JPEG images of ``height`` x ``width`` and their CIFAR-10 labels (train)."""
  name = 'jpeg_images'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Upscaled shipped CIFAR-10 images, JPEG-encoded.'}
  BUILDER_CONFIGS = [JpegImagesConfig(name='400x350_512')]

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(c.height, c.width, 3),
                                         encoding_format='jpeg'),
            'label': tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=('image', 'label'))

  def _split_generators(self, dl_manager):
    del dl_manager  # Made from the shipped images.
    return {'train': self._generate_examples()}

  def _generate_examples(self):
    c = self.builder_config
    with np.load(cifar10_5k.FILE) as data:
      images, labels = data['image'], data['label']
    rng = np.random.default_rng(0)
    for i in range(c.count):
      large = tf.image.resize(tf.cast(images[i % len(images)], tf.float32),
                              (c.height, c.width), method='bicubic').numpy()
      large += rng.normal(0.0, c.noise, large.shape)
      pixels = np.clip(np.round(large), 0, 255).astype(np.uint8)
      # Bytes are stored as they are (TFDS re-encodes only arrays).
      encoded = tf.io.encode_jpeg(pixels, quality=c.quality, chroma_downsampling=True)
      yield i, {'image': encoded.numpy(), 'label': int(labels[i % len(images)])}


def prepare(data_dir: str, *, height: int, width: int, count: int, quality: int = 90,
            noise: float = 8.0) -> JpegImages:
  """The prepared builder of ``count`` images of ``height`` x ``width`` in ``data_dir``
  (written on the first call, read afterwards)."""
  if min(height, width, count) < 1 or not 1 <= quality <= 100:
    raise ValueError(f'JPEG images of {height}x{width}, {count} of them, quality {quality}: '
                     'use positive sizes and count and a quality in 1-100.')
  config = JpegImagesConfig(name=f'{width}x{height}_{count}_q{quality}_n{noise:g}',
                            height=height, width=width, count=count, quality=quality,
                            noise=noise)
  builder = JpegImages(config=config, data_dir=data_dir)
  builder.download_and_prepare()
  return builder
