"""Patch machinery shared by Jigsaw and Relative Patch Location (Revisiting reference
§2.3, §2.4).

The fields below (:func:`config`) are in the task's section, ``config.jigsaw`` or
``config.relative_patch``; functions here take that section as ``p``.

Host side (tf.data, stateless ops seeded per example): the image is resized, squashed,
to ``p.resize`` px, cropped to ``p.crop`` px (random in training, central for
the pretext evaluation), split into ``grid x grid`` cells of ``crop // grid`` px, and a
``p.size`` px patch is cut from each cell (random offsets, hence random gaps
between patches; central offsets for the evaluation). What travels to the devices is
``image``: uint8 [grid^2, size, size, 3] per example, patches in row-major cell order.

Device side (jitted): grayscale (one coin per image and the RGB mean as the code, or per
patch with luma weights) and per-patch standardisation of the 0-255 values; the patches
of a batch become the network inputs, image-major [B * grid^2, size, size, 3], so that
an image's patches stay on its device.

The head embeds every patch with a linear layer on its pre_logits (the backbone's logits
layer), lets the task combine the embeddings of an image into rows (a jigsaw puzzle, a
pair of patches) and classifies each row with the FC stack of the original code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax import tasks
from ssl_jax.data import augment
from ssl_jax.models import layers

if TYPE_CHECKING:
  import tensorflow as tf

GRAYSCALE_PER = ('image', 'patch')
GRAYSCALE_WEIGHTS = ('mean', 'luma')


def config() -> ml_collections.ConfigDict:
  """The patch fields of the Jigsaw and Relative Patch Location sections (§2.3, §2.4)."""
  c = ml_collections.ConfigDict()
  c.resize = 292  # Squashed resize before the crop.
  c.crop = 255  # Random crop (central for evaluation), split into grid^2 cells.
  c.grid = 3
  c.size = 64  # Random patch in each cell (random gaps).
  # Grayscale as the code (config/jigsaw/imagenet.sh:32-35 `--preprocessing resize,
  # to_gray,crop,crop_patches,standardization --grayscale_probability 0.66`; preprocess.py
  # :204-217 one coin per image, RGB mean): the setting of Table 2's 44.6 and 51.4. The
  # paper's text reads as per patch with p 2/3 (reference §2.3, disagreement); ssl_jax's
  # former form is grayscale=2/3, grayscale_per='patch', grayscale_weights='luma'.
  c.grayscale = 0.66  # Probability of grey.
  c.grayscale_per = 'image'  # 'image' (code: one coin for its patches) or 'patch'.
  c.grayscale_weights = 'mean'  # 'mean' (code) or 'luma' (tf.image.rgb_to_grayscale).
  c.embedding = 1000  # Per-patch linear embedding (the backbone's logits layer).
  c.hidden = 4096  # FC head: hidden units (BN, ReLU, dropout).
  c.dropout = 0.5
  return c


def num_patches(p: ml_collections.ConfigDict) -> int:
  """Patches per image: grid^2."""
  return p.grid ** 2


def input_shapes(s: tasks.Sections) -> dict[str, tuple[int, ...]]:
  """The shape of one example's ``image`` as :func:`extract_patches` delivers it, without
  the batch axis: [grid^2, size, size, 3] (what ``step.init_state`` needs)."""
  return {'image': (num_patches(s.task), s.task.size, s.task.size, 3)}


def validate(p: ml_collections.ConfigDict, *, batch_size: int = 0,
             name: str = 'jigsaw|relative_patch') -> None:
  """Raises ValueError, naming the field (in the task's section ``name``), for a patch
  geometry that cannot work."""
  del batch_size
  if not 0.0 <= p.grayscale <= 1.0:
    raise ValueError(f'{name}.grayscale={p.grayscale} is a probability: use 0..1.')
  if p.grid < 1 or p.size < 1:
    raise ValueError(f'{name}.grid={p.grid} and {name}.size={p.size} must be positive.')
  if p.crop > p.resize:
    raise ValueError(f'{name}.crop={p.crop} exceeds {name}.resize={p.resize}.')
  if p.crop // p.grid < p.size:
    raise ValueError(f'{name}.size={p.size} does not fit in the cells of {name}.crop // '
                     f'{name}.grid = {p.crop} // {p.grid} = {p.crop // p.grid} px.')
  if p.grayscale_per not in GRAYSCALE_PER:
    raise ValueError(f"{name}.grayscale_per={p.grayscale_per!r}: use 'image' or 'patch'.")
  if p.grayscale_weights not in GRAYSCALE_WEIGHTS:
    raise ValueError(f"{name}.grayscale_weights={p.grayscale_weights!r}: use 'mean' or "
                     "'luma'.")


# Host side (TensorFlow).

def resize_squashed(image: tf.Tensor, size: int) -> tf.Tensor:
  """uint8 [H, W, 3] -> uint8 [size, size, 3], the aspect ratio not kept.

  Bilinear as TF1's resize_images (align_corners=False, no half-pixel centres), the
  resize of the original code (preprocess.py:140; reference §2, common facts).
  """
  from ssl_jax.data import preprocess as pp
  return pp.resize(image, (size, size), 'bilinear_tf1')


def extract_patches(image: tf.Tensor, seed: tf.Tensor, p: ml_collections.ConfigDict,
                    train: bool = True) -> tf.Tensor:
  """uint8 [H, W, 3] -> uint8 [grid^2, size, size, 3], row-major over the cells.

  Reference §2.3 (table): squashed resize to ``p.resize``; a ``p.crop`` crop,
  random in training and central otherwise; cells of ``crop // grid`` px; in each cell a
  ``p.size`` patch at a random offset in [0, cell - size] (the "jitter", 21 px in
  the code, so gaps of 0-42 px) or at the central offset (cell - size) // 2 (gaps of
  21 px). ``seed`` is the example's [2] stateless seed.
  """
  import tensorflow as tf
  validate(p)
  cell = p.crop // p.grid
  jitter = cell - p.size
  seed_crop, seed_offsets = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  image = resize_squashed(image, p.resize)
  if train:
    image = tf.image.stateless_random_crop(image, [p.crop, p.crop, 3], seed=seed_crop)
    offsets = tf.random.stateless_uniform([num_patches(p), 2], seed=seed_offsets,
                                          minval=0, maxval=jitter + 1, dtype=tf.int32)
  else:
    top = (p.resize - p.crop) // 2
    image = image[top:top + p.crop, top:top + p.crop]
    offsets = tf.fill([num_patches(p), 2], jitter // 2)
  patches = []
  for row in range(p.grid):
    for col in range(p.grid):
      offset = offsets[row * p.grid + col]
      patches.append(tf.slice(image, [row * cell + offset[0], col * cell + offset[1], 0],
                              [p.size, p.size, 3]))
  return tf.stack(patches)


def preprocess(features: dict, seed: tf.Tensor, s: tasks.Sections) -> dict:
  """The task contract's host side for the patch tasks: the training patches of
  :func:`extract_patches` as ``image`` (the whole image is resized: decoded whole)."""
  from ssl_jax.data import preprocess as pp
  return {'image': extract_patches(pp.decode(features['image']), seed, s.task, train=True)}


# Device side (JAX).

def _augment_image_patches(patches: jax.Array, key: jax.Array,
                           p: ml_collections.ConfigDict) -> jax.Array:
  """float [n, size, size, 3] in [0, 255], one image's patches: grey, standardised."""
  shape = (patches.shape[0],) if p.grayscale_per == 'patch' else ()
  grey = jax.random.bernoulli(key, p.grayscale, shape)
  grey = jnp.broadcast_to(grey, (patches.shape[0],))[:, None, None, None]
  mean = p.grayscale_weights == 'mean'
  to_grey = augment.mean_grayscale if mean else augment.rgb_to_grayscale
  return augment.standardize(jnp.where(grey, to_grey(patches), patches))


def augment_patches(patches: jax.Array, rng: jax.Array,
                    p: ml_collections.ConfigDict) -> jax.Array:
  """uint8 [B, n, size, size, 3] -> float32 network inputs [B * n, size, size, 3].

  Grayscale with probability ``p.grayscale``: with ``grayscale_per='image'`` (the code)
  one coin per image shared by its patches, with ``'patch'`` one per patch; the grey is
  the RGB mean (``grayscale_weights='mean'``, the code) or the luma. The code greys the
  whole resized image before cropping (config/jigsaw/imagenet.sh:32); either grey is a
  per-pixel map, so greying all the patches of an image gives the same pixels. Then
  per-patch standardisation (x - mean) / max(std, 1/sqrt(N)) of the 0-255 values, as
  tf.image.per_image_standardization on the code's float pixels (preprocess.py:176-182):
  the floor 1/sqrt(N) is a standard deviation of 0.02 grey levels for a 64-px patch,
  where on [0, 1] values it would be 2.3 levels. Against the code's unrounded floats the
  uint8 patches differ by at most 0.5 grey levels.
  Keys are split per image, so the result does not depend on the sharding.
  """
  validate(p)
  if patches.ndim != 5 or patches.shape[1] != num_patches(p):
    raise ValueError(f'Expected the patches of patches.preprocess, [B, {num_patches(p)}, '
                     f'size, size, 3], got {patches.shape}; step.init_state takes the '
                     'shape of an example from the task\'s input_shapes(s).')
  keys = jax.random.split(rng, patches.shape[0])
  out = jax.vmap(lambda x, key: _augment_image_patches(x, key, p))(
      patches.astype(jnp.float32), keys)
  return out.reshape((-1,) + patches.shape[2:])


# Head.

class FCHead(nn.Module):
  """The patch tasks' classifier (reference §2.3, code): dense (truncated normal
  sigma 0.005, bias 0.1) -> BN (momentum 0.997, eps 1e-5) -> ReLU -> dropout -> dense
  (sigma 0.005, bias 0). The ``_fcwd`` suffix gives both kernels
  ``optimizer.fc_weight_decay`` (5e-4 in the code; ssl_jax/optim.py)."""
  hidden: int
  num_outputs: int
  dropout: float

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    init = nn.initializers.truncated_normal(stddev=0.005)
    x = nn.Dense(self.hidden, kernel_init=init, bias_init=nn.initializers.constant(0.1),
                 name='fc1_fcwd')(x)
    x = nn.relu(layers.BatchNorm(momentum=0.997, epsilon=1e-5, name='bn')(x, train))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_outputs, kernel_init=init, bias_init=nn.initializers.zeros,
                    name='fc2_fcwd')(x)


# combine(embeddings [B, grid^2, E], views) -> rows [B * m, D], image-major.
Combine = Callable[[jax.Array, dict], jax.Array]


class PatchHead(nn.Module):
  """Per-patch embedding, the task's combination of an image's embeddings, FC head.

  The embedding is the backbone's logits layer of the code (reference §2.3: a linear
  layer with bias, 4096 -> 1000 at k=8) on each patch's pre_logits; it keeps the normal
  weight decay. ``combine`` turns the [B, grid^2, E] embeddings into the rows the FC
  head classifies (9E-d puzzles, 2E-d pairs).
  """
  combine: Combine
  patches_per_image: int
  embedding: int
  hidden: int
  num_outputs: int
  dropout: float

  @nn.compact
  def __call__(self, end_points: dict, views: dict, train: bool) -> jax.Array:
    pre_logits = end_points['pre_logits'].astype(jnp.float32)
    # The code's logits layer is a biased 1x1 conv with TF's default glorot-uniform init.
    embeddings = nn.Dense(self.embedding, kernel_init=layers.conv_init, name='embedding')(
        pre_logits)
    embeddings = embeddings.reshape(-1, self.patches_per_image, self.embedding)
    rows = self.combine(embeddings, views)
    return FCHead(self.hidden, self.num_outputs, self.dropout, name='fc')(rows, train)


def make_patch_head(p: ml_collections.ConfigDict, combine: Combine,
                    num_outputs: int) -> PatchHead:
  """A :class:`PatchHead` with the sizes of the task's section ``p``."""
  return PatchHead(combine=combine, patches_per_image=num_patches(p),
                   embedding=p.embedding, hidden=p.hidden, num_outputs=num_outputs,
                   dropout=p.dropout)
