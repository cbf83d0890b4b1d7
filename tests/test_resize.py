"""Host resizes (input.resize, input.eval_resize) against references computed another way:
PIL's Image.resize on float ('F') images, which torchvision uses, and numpy box averages
and samples; and each recipe's choice."""

import importlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import tiny_config
from ssl_jax.data import preprocess

RNG = np.random.default_rng(0)
IMAGE = RNG.integers(0, 256, (37, 45, 3)).astype(np.uint8)


def _pil(image: np.ndarray, size: tuple[int, int], resample) -> np.ndarray:
  """PIL's resize of each channel in float32 (no intermediate rounding), [h, w, 3]."""
  return np.stack([np.asarray(Image.fromarray(image[..., c].astype(np.float32), mode='F')
                              .resize(size[::-1], resample)) for c in range(3)], -1)


def _box(n_in: int, n_out: int) -> np.ndarray:
  """[n_out, n_in] weights of the exact box average over each output pixel's footprint."""
  edges = np.arange(n_out + 1) * n_in / n_out
  pixels = np.arange(n_in)
  overlap = (np.minimum(edges[1:, None], pixels + 1) - np.maximum(edges[:-1, None], pixels))
  weights = np.maximum(overlap, 0)
  return weights / weights.sum(1, keepdims=True)


def _resize(image: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
  out = preprocess.resize(tf.constant(image), size, method).numpy()
  assert out.dtype == np.uint8 and out.shape == size + (3,)
  return out.astype(np.float64)


@pytest.mark.parametrize('size', [(16, 20), (29, 31), (80, 90)])
def test_bilinear_antialias_is_pils_bilinear(size):
  # PIL widens the triangle by the downscaling factor, as torchvision's crops of MoCo.
  reference = _pil(IMAGE, size, Image.BILINEAR)
  assert np.abs(_resize(IMAGE, size, 'bilinear_antialias') - reference).max() <= 0.501


def test_bicubic_and_bilinear_upsampling_are_pils():
  # Upsampling, where PIL's filters are not widened: the Keys cubic (a=-0.5) and the
  # triangle with half-pixel centres, as tf.image.resize without anti-aliasing. TF
  # tabulates the cubic weights (1024 steps): 0.2 grey levels.
  size = (80, 90)
  bicubic = np.clip(_pil(IMAGE, size, Image.BICUBIC), 0, 255)  # The host clips overshoot.
  assert np.abs(_resize(IMAGE, size, 'bicubic') - bicubic).max() <= 0.7
  bilinear = _pil(IMAGE, size, Image.BILINEAR)
  assert np.abs(_resize(IMAGE, size, 'bilinear') - bilinear).max() <= 0.501


def test_area_is_the_box_average_and_bilinear_the_sample():
  for size in ((16, 20), (8, 15)):  # Fractional and integer factors.
    box = np.einsum('oh,hwc,pw->opc', _box(37, size[0]), IMAGE.astype(np.float64),
                    _box(45, size[1]))
    assert np.abs(_resize(IMAGE, size, 'area') - box).max() <= 0.501
  # Halving: with half-pixel centres bilinear samples between 2 x 2 pixels (their mean);
  # TF1's resize_images (no half-pixel centres) samples the top-left pixel of each block.
  even = IMAGE[:36, :44]
  blocks = even.reshape(18, 2, 22, 2, 3).astype(np.float64).mean((1, 3))
  assert np.abs(_resize(even, (18, 22), 'bilinear') - blocks).max() <= 0.501
  np.testing.assert_array_equal(_resize(even, (18, 22), 'bilinear_tf1'), even[::2, ::2])
  # Upsampling by 5/2: TF1 samples at out * 2/5 (linear interpolation, edge clamped).
  interp = lambda v: np.interp(np.arange(25) * 0.4, np.arange(10), v)
  up = np.apply_along_axis(interp, 0, IMAGE[:10, :10].astype(np.float64))
  up = np.apply_along_axis(interp, 1, up)
  assert np.abs(_resize(IMAGE[:10, :10], (25, 25), 'bilinear_tf1') - up).max() <= 0.501


def test_crops_use_their_method_and_recipes_choose_theirs():
  image = tf.constant(IMAGE[:32, :32])
  config = tiny_config(**{'input.resize': 'area', 'input.eval_resize': 'bilinear_tf1',
                          'input.image_size': 8, 'input.flip': False})
  blocks = IMAGE[:32, :32].reshape(8, 4, 8, 4, 3).astype(np.float64).mean((1, 3))
  crop = preprocess.train_crop(image, tf.constant([0, 0], tf.int64), config.input).numpy()
  assert np.abs(crop - blocks).max() <= 0.501  # runlocal's crop='resize': whole image.
  np.testing.assert_array_equal(preprocess.eval_image(image, config.input),
                                IMAGE[:32:4, :32:4])
  small = preprocess.resize_small_random_crop(image, tf.constant([0, 0], tf.int64), 8, 8)
  assert np.abs(small.numpy() - blocks).max() <= 0.501  # Revisiting's area resize_small.
  with pytest.raises(ValueError, match='input.eval_resize'):
    preprocess.validate(tiny_config(**{'input.eval_resize': 'lanczos'}).input)
  expected = {'simclr_resnet50': ('bicubic',) * 2, 'byol_resnet50': ('bicubic',) * 2,
              'moco_v1_resnet50': ('bilinear_antialias',) * 2,
              'moco_v2_resnet50': ('bilinear_antialias',) * 2,
              'exemplar_v2_resnet50': ('bilinear_antialias',) * 2,
              'simsiam_resnet50': ('bilinear_antialias',) * 2,
              'rotation_revnet50': ('bilinear_tf1', 'area'),
              'jigsaw_resnet50': ('bilinear_tf1', 'area'),
              'supervised_resnet50': ('bilinear_tf1', 'area')}
  for name, methods in expected.items():
    inp = importlib.import_module(f'configs.{name}').get_config().input
    assert (inp.resize, inp.eval_resize) == methods, name
  assert (preprocess.config().resize, preprocess.config().eval_resize) == ('bilinear',) * 2
