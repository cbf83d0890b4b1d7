"""Writes the dataset file that ships with ssl_jax, from ../shared/data/cifar10_5k.npz.

    python -m ssl_jax.data.make_cifar10_5k --source=../shared/data/cifar10_5k.npz

The output, ssl_jax/data/files/cifar10_5k.npz (zlib-compressed, about 14.4 MB), holds the
same images and labels; the TFDS builder in ssl_jax/data/cifar10_5k.py reads it.
"""

from __future__ import annotations

import pathlib

from absl import app
from absl import flags
import numpy as np

SOURCE = flags.DEFINE_string('source', '../shared/data/cifar10_5k.npz', 'Source npz.')
OUTPUT = pathlib.Path(__file__).parent / 'files' / 'cifar10_5k.npz'


def main(argv):
  del argv
  data = np.load(SOURCE.value)
  np.savez_compressed(OUTPUT, image=data['image'].astype(np.uint8),
                      label=data['label'].astype(np.int64),
                      label_names=data['label_names'].astype(str))
  print(f'Wrote {OUTPUT} ({OUTPUT.stat().st_size / 1e6:.1f} MB).')


if __name__ == '__main__':
  app.run(main)
