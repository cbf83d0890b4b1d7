"""Host-side (tf.data) decoding and crops. Random ops are stateless and seeded per
example, so the input stream is a function of (seed, step) and resumes exactly. The
``input`` section configures them. TensorFlow is imported by the functions that tf.data
runs, so that the section loads without it (ssl_jax/config_lib.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import ml_collections

if TYPE_CHECKING:
  import tensorflow as tf

# Resize methods of the ``input`` section. Each computes in float32 from the uint8 image
# (TF casts before resizing); the result is clipped to [0, 255] and rounded to uint8, so
# that 1 byte per value travels to the devices. Against the recipes' float images this
# rounding moves a value by at most 0.5 / 255; the clip is BYOL's (byol/utils/dataset.py:
# 202, `clip_by_value(image / 255., 0., 1.)` after its bicubic resize), where SimCLR clips
# its bicubic overshoot only after the colour distortion (tf2/data_util.py:474, 493).
#   'bilinear': tf.image.resize, half-pixel centres, no anti-aliasing (ssl_jax's default).
#   'bilinear_tf1': TF1's resize_images (align_corners=False, no half-pixel centres), the
#     resize of the Revisiting pretext inputs (preprocess.py:140 `tf.image.resize_images
#     (im, im_size)`; slim inception_preprocessing.py in fast mode).
#   'bicubic': tf.image.resize BICUBIC (Keys a=-0.5, half-pixel centres), no anti-aliasing:
#     SimCLR (tf2/data_util.py:240-241 center_crop, 319-320 crop_and_resize; TF1
#     data_util.py:247, 325 used TF1's resize_bicubic) and BYOL (byol/utils/dataset.py:201).
#   'area': the box average over each output pixel's footprint (tf.image.resize AREA, the
#     op of TF1's resize_area with align_corners=False): Revisiting's resize_small for the
#     linear evaluation, training and test (preprocess.py:62).
#   'bilinear_antialias': the triangle filter widened by the downscaling factor
#     (antialias=True), PIL's Image.resize(BILINEAR), which torchvision applies to the PIL
#     images of MoCo (main_moco.py:331, 348; main_lincls.py:354, 381-382) and SimSiam.
RESIZE_METHODS = ('bilinear', 'bilinear_tf1', 'bicubic', 'area', 'bilinear_antialias')


def config() -> ml_collections.ConfigDict:
  """The ``input`` section: host crops for training and evaluation."""
  c = ml_collections.ConfigDict()
  c.image_size = 224
  c.crop = 'inception'  # 'inception' (distorted bounding box) or 'resize'.
  c.crop_area = (0.05, 1.0)  # Revisiting §2.1: slim Inception crop, fast mode.
  c.crop_aspect = (0.75, 1.333)
  c.flip = True
  c.resize = 'bilinear'  # Training crops' resize: one of RESIZE_METHODS.
  c.eval_resize = 'bilinear'  # Evaluation crops' resize (test images, features).
  # Multi-crop (SwAV, Caron et al. 2020): besides the two crops of image_size, this many
  # small crops of local_size px and area local_crop_area (SwAV: 6 x 96 px, 0.05-0.14,
  # with the large crops at 0.14-1), for the two-view methods that take them.
  c.local_crops = 0
  c.local_size = 96
  c.local_crop_area = (0.05, 0.14)
  c.eval_crop_fraction = 0.875  # Central crop for evaluation.
  # Patch tasks' evaluation representation (Revisiting §2.3): > 0 averages every end point
  # over the eval_patch_grid^2 contiguous patches of a central crop (3: 9 patches of 64
  # px from a 192-px crop of the image resized to 224 on its shorter side).
  c.eval_patch_grid = 0
  # Evaluation input: [-1, 1] (Rotation; the released linear-eval code for every task) or
  # per-image (per-patch) standardisation, as the Exemplar and patch pretext inputs.
  c.eval_standardize = False
  return c


def validate(inp: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the field and the fix."""
  if inp.crop not in ('inception', 'resize'):
    raise ValueError(f"input.crop={inp.crop!r}: use 'inception' or 'resize'.")
  for field in ('resize', 'eval_resize'):
    if inp[field] not in RESIZE_METHODS:
      raise ValueError(f'input.{field}={inp[field]!r}: use one of {RESIZE_METHODS}.')
  if inp.local_crops < 0 or inp.local_size < 1:
    raise ValueError('input.local_crops must be >= 0 (0: no multi-crop) and '
                     'input.local_size positive.')


def decode(image: tf.Tensor) -> tf.Tensor:
  """Encoded image (a scalar string: JPEG, PNG, GIF, BMP) -> uint8 [H, W, 3]; an image
  already decoded (uint8 [H, W, 3]) is returned as it is, so that a preprocessing
  function takes either."""
  import tensorflow as tf
  if image.dtype != tf.string:
    return image
  return tf.io.decode_image(image, channels=3, expand_animations=False)


# A crop window of an image of shape [H, W, 3] (int32 [3]): (begin [y, x, 0], size
# [h, w, -1 or 3]), as tf.slice takes them.
Window = Callable[['tf.Tensor'], tuple['tf.Tensor', 'tf.Tensor']]


def decode_crop(image: tf.Tensor, window: Window) -> tf.Tensor:
  """The crop ``window(shape)`` of ``image`` (encoded or decoded, see :func:`decode`),
  uint8 [h, w, 3], equal to ``tf.slice(decode(image), *window(shape))``.

  A JPEG is decoded only over the window (``tf.image.decode_and_crop_jpeg``, its shape
  read from the header by ``extract_jpeg_shape``), widened by one pixel on each side
  within the image: libjpeg-turbo upsamples subsampled chroma (4:2:0, 4:2:2) at a
  window's first and last column as if they were the image's edge, which moves those
  pixels by up to ~20 levels; with the margin every pixel of the crop equals the full
  decode's (tests/test_hostpipe.py). Other formats are decoded whole, then cropped.
  """
  import tensorflow as tf
  if image.dtype != tf.string:
    return tf.slice(image, *window(tf.shape(image)))

  def whole() -> tf.Tensor:
    decoded = decode(image)
    return tf.slice(decoded, *window(tf.shape(decoded)))

  def jpeg() -> tf.Tensor:
    # decode() gives 3 channels whatever the file holds: the window sees the same shape.
    height_width = tf.io.extract_jpeg_shape(image, output_type=tf.int32)[:2]
    begin, size = window(tf.concat([height_width, [3]], 0))
    size = size[:2]
    top_left = tf.maximum(begin[:2] - 1, 0)
    bottom_right = tf.minimum(begin[:2] + size + 1, height_width)
    wide = tf.image.decode_and_crop_jpeg(
        image, tf.concat([top_left, bottom_right - top_left], 0), channels=3)
    return tf.slice(wide, tf.concat([begin[:2] - top_left, [0]], 0),
                    tf.concat([size, [3]], 0))

  return tf.cond(tf.io.is_jpeg(image), jpeg, whole)


def resize(image: tf.Tensor, size: tuple[int, int] | tf.Tensor, method: str) -> tf.Tensor:
  """uint8 [H, W, 3] -> uint8 [height, width, 3] for ``size`` (height, width), with one
  of RESIZE_METHODS (see there), computed in float32 then clipped and rounded."""
  import tensorflow as tf
  if method not in RESIZE_METHODS:
    raise ValueError(f'Resize method {method!r}: use one of {RESIZE_METHODS}.')
  image = tf.cast(image, tf.float32)
  if method == 'bilinear_tf1':
    resized = tf.compat.v1.image.resize(image, size, align_corners=False,
                                        method=tf.compat.v1.image.ResizeMethod.BILINEAR)
  elif method == 'bilinear_antialias':
    resized = tf.image.resize(image, size, method='bilinear', antialias=True)
  else:
    resized = tf.image.resize(image, size, method=method, antialias=False)
  return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def train_crop(image: tf.Tensor, seed: tf.Tensor, inp: ml_collections.ConfigDict,
               output_size: int | None = None, area: tuple[float, float] | None = None,
               min_object_covered: float = 0.1) -> tf.Tensor:
  """Random crop and flip of the ``input`` section ``inp`` to ``output_size`` (default
  ``inp.image_size``), uint8, of ``image`` decoded or encoded (:func:`decode`; a JPEG's
  Inception crop is decoded alone, :func:`decode_crop`, the same pixels).

  'inception': slim's distorted bounding box (``min_object_covered`` 0.1, 100 attempts,
  the aspect range of the section and ``area``, default ``inp.crop_area``; Revisiting
  §2.1). 'resize': the whole image. Either is resized with ``inp.resize`` and flipped
  with probability 1/2. The box must cover ``min_object_covered`` of the image, a floor
  under the area range: multi-crop's small crops pass 0 (SwAV's crops of 5-14%).
  """
  import tensorflow as tf
  seed_crop, seed_flip = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  if inp.crop == 'inception':

    def window(shape: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
      begin, box, _ = tf.image.stateless_sample_distorted_bounding_box(
          shape, bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
          seed=seed_crop, min_object_covered=min_object_covered,
          aspect_ratio_range=tuple(inp.crop_aspect),
          area_range=tuple(area or inp.crop_area), max_attempts=100,
          use_image_if_no_bounding_boxes=True)
      return begin, box

    image = decode_crop(image, window)
  else:
    image = decode(image)
  size = output_size or inp.image_size
  image = resize(image, (size, size), inp.resize)
  if inp.flip:
    image = tf.image.stateless_random_flip_left_right(image, seed_flip)
  return image


def eval_image(image: tf.Tensor, inp: ml_collections.ConfigDict) -> tf.Tensor:
  """Central crop of ``inp.eval_crop_fraction`` of the shorter side, resized to
  ``inp.image_size`` with ``inp.eval_resize``, uint8, of ``image`` decoded or encoded
  (:func:`decode_crop`)."""
  import tensorflow as tf

  def window(shape: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    height, width = shape[0], shape[1]
    side = tf.cast(tf.cast(tf.minimum(height, width), tf.float32)
                   * inp.eval_crop_fraction, tf.int32)
    top, left = (height - side) // 2, (width - side) // 2
    return tf.stack([top, left, 0]), tf.stack([side, side, 3])

  image = decode_crop(image, window)
  return resize(image, (inp.image_size, inp.image_size), inp.eval_resize)


def resize_small_random_crop(image: tf.Tensor, seed: tf.Tensor, smaller: int, size: int,
                             method: str = 'area') -> tf.Tensor:
  """Shorter side to ``smaller`` (aspect kept), then a random ``size`` crop, uint8, of
  ``image`` decoded or encoded (:func:`decode`): the training augmentation of the
  Revisiting linear evaluation (reference §4), whose resize_small is an area resize
  (preprocess.py:45-66)."""
  import tensorflow as tf
  image = decode(image)
  shape = tf.cast(tf.shape(image)[:2], tf.float32)
  scale = smaller / tf.reduce_min(shape)
  new_shape = tf.cast(tf.round(shape * scale), tf.int32)
  return tf.image.stateless_random_crop(resize(image, new_shape, method), (size, size, 3),
                                        seed)
