"""The dataset that ships with ssl_jax: 5,085 real CIFAR-10 training images (the first
1,017 of each of the five training batches; Krizhevsky 2009), as a TFDS dataset, so it
goes through the same pipeline as ImageNet.

Splits: ``train`` holds the first 4,085 images, ``test`` the last 1,000 (held out from
pretraining and from the choice of the L-BFGS regulariser). Preparing it reads
ssl_jax/data/files/cifar10_5k.npz and needs no network.

Importing this module registers the builder with TFDS; the input pipeline imports it
only when ``config.dataset.name == 'cifar10_5k'``.
"""

from __future__ import annotations

import pathlib

import numpy as np
import tensorflow_datasets as tfds

FILE = pathlib.Path(__file__).parent / 'files' / 'cifar10_5k.npz'
NUM_TRAIN = 4085


class Cifar105k(tfds.core.GeneratorBasedBuilder):
  """5,085 CIFAR-10 training images, 32x32 RGB, 10 classes."""
  name = 'cifar10_5k'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First 1,017 images of each CIFAR-10 training batch.'}

  def _info(self) -> tfds.core.DatasetInfo:
    with np.load(FILE) as data:
      names = [str(n) for n in data['label_names']]
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(32, 32, 3)),
            'label': tfds.features.ClassLabel(names=names),
            'id': tfds.features.Scalar(dtype=np.int64),
        }),
        supervised_keys=('image', 'label'),
        homepage='https://www.cs.toronto.edu/~kriz/cifar.html')

  def _split_generators(self, dl_manager):
    del dl_manager  # Everything is in the package.
    return {'train': self._generate_examples(0, NUM_TRAIN),
            'test': self._generate_examples(NUM_TRAIN, None)}

  def _generate_examples(self, start: int, stop: int | None):
    with np.load(FILE) as data:
      images, labels = data['image'], data['label']
    for i in range(start, len(images) if stop is None else stop):
      yield i, {'image': images[i], 'label': int(labels[i]), 'id': i}
