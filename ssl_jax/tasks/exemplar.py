"""Exemplar (Dosovitskiy et al. 2014), as studied in Revisiting (reference §2.2).

Every image is its own class. Its examples are ``exemplar.copies`` independently augmented
copies, and a linear embedding on pre_logits is trained with TF's semi-hard triplet loss:
the copies of an image are positives of one another, every other input is a negative.

Pipeline, in the original code's order (reference §2.2 [code], preprocessing steps 1-3):

1. grayscale (RGB mean tiled to 3 channels) with probability ``exemplar.grayscale``, one
   coin per image, so that all copies of an image are grey or all are colour;
2. ``exemplar.copies`` independent Inception crops with flip (host, tf.data) and colour
   jitter (device), each as in §2.1;
3. per-copy standardisation (tf.image.per_image_standardization) of the [-1, 1] copy.

The original greys the whole image before cropping; here the grey is taken on the device
after the crop and the bilinear resize. The channel mean commutes with both, so the two
differ only by the rounding of the resized crop to uint8 (and the original's integer mean
of uint8 pixels).

Groups (``exemplar.group_images``) and normalisation (``exemplar.normalize``) follow the
released code. Its model_fn runs on each TPU core's share of the batch (TPUEstimator's
per-shard ``params['batch_size']``, datasets.py:134): 8 images x 8 copies of the 8-core
config's batch 64 (config/exemplar/imagenet.sh:24,37; README.md:41-44, the 8-core
setup). It L2-normalises those 64 [64, 1000] logits with ``tf.nn.l2_normalize(logits,
axis=0)`` and mines triplets among them alone (self_supervision/exemplar.py:133-135).
Here the batch is cut into groups of ``group_images`` images (0: one group, the global
batch), a fixed size whatever the number of devices; each group is normalised and mined
on its own, and the loss is the mean over the groups. ``'batch'`` (default) normalises as
``axis=0`` does: each embedding dimension to unit norm across the group's 64 embeddings,
so the squared distance of two unrelated embeddings is about 2 x 1000 / 64 = 31, and the
0.5 margin small beside it. ``'vector'`` L2-normalises each embedding, as TF's triplet
loss documents (squared distances in [0, 4]): the paper's evident intent and this
code's earlier default.

Batch sizes and learning-rate scaling count images, not inputs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax import config_lib
from ssl_jax import tasks
from ssl_jax.data import augment

if TYPE_CHECKING:
  import tensorflow as tf

NORMALIZATIONS = ('batch', 'vector')


def config() -> ml_collections.ConfigDict:
  """The ``exemplar`` section (Revisiting §2.2), the released code's values
  (config/exemplar/imagenet.sh, self_supervision/exemplar.py)."""
  c = ml_collections.ConfigDict()
  c.copies = 8  # Augmented copies per image (--num_of_inception_patches 8).
  c.embedding = 1000  # --embed_dim 1000.
  c.margin = 0.5  # --margin 0.5.
  # Images per group of normalisation and mining: 8, one TPU core's share of batch 64 on
  # the released 8-core setup; 0: the global batch.
  c.group_images = 8
  c.normalize = 'batch'  # 'batch': along the group's batch axis (code); 'vector'.
  c.grayscale = 0.66  # Probability that all copies of an image are grey.
  return c


def validate(task_config: ml_collections.ConfigDict, *, batch_size: int) -> None:
  """Raises ValueError naming the field and the fix."""
  config_lib.check_choice(task_config, 'exemplar', 'normalize', NORMALIZATIONS)
  if task_config.copies < 2:
    raise ValueError('exemplar.copies must be >= 2: the triplet loss needs positives.')
  if not 0.0 <= task_config.grayscale <= 1.0:
    raise ValueError(f'exemplar.grayscale={task_config.grayscale} is a probability: use 0..1.')
  group = task_config.group_images
  if group < 0 or group == 1:
    raise ValueError(f'exemplar.group_images={group}: use 0 (the global batch) or >= 2 '
                     "(the negatives are the group's other images).")
  if group and batch_size % group:
    raise ValueError(f'exemplar.group_images={group} does not divide batch_size='
                     f'{batch_size}: choose a batch_size that is a multiple of it, or '
                     'another exemplar.group_images.')


def input_shapes(s: tasks.Sections) -> dict[str, tuple[int, ...]]:
  """The shape of one example's ``image`` after :func:`preprocess`: [copies, S, S, 3]."""
  size = s.input.image_size
  return {'image': (s.task.copies, size, size, 3)}


def preprocess(features: dict, seed: tf.Tensor, s: tasks.Sections) -> dict:
  """``exemplar.copies`` independent crops of the image: ``image`` uint8 [copies, S, S, 3].

  Each copy is :func:`ssl_jax.data.preprocess.train_crop` (Inception crop and flip) with its
  own seed split from the example's (reference §2.2 step 2); the grey coin, the colour
  jitter and the standardisation are applied on the device by :func:`views`.
  """
  # TensorFlow is imported where the host pipeline runs, so that the device side of a
  # task (views, head, loss) also runs where TensorFlow is absent (benchmarks).
  import tensorflow as tf
  from ssl_jax.data import preprocess as pp
  image = pp.decode(features['image'])  # Once for all the copies.
  seeds = tf.unstack(tf.random.experimental.stateless_split(seed, s.task.copies))
  return {'image': tf.stack([pp.train_crop(image, copy_seed, s.input)
                             for copy_seed in seeds])}


def views(batch: dict, rng: jax.Array, s: tasks.Sections) -> dict:
  """Grey coin per image, colour jitter and standardisation per copy.

  ``batch['image']`` is uint8 [B, copies, S, S, 3] (from :func:`preprocess`).

  Returns ``inputs`` float32 [B * copies, S, S, 3], image-major (an image's copies are
  adjacent, so they stay on one device when sharded), each copy standardised to zero mean
  and unit variance rather than scaled to [-1, 1] (reference §2.2 step 3), and ``labels``
  int32 [B * copies], the image index of each input (the triplet loss's classes).
  """
  copies = s.task.copies
  images = batch['image']
  if images.ndim != 5 or images.shape[1] != copies:
    raise ValueError(f'Exemplar takes images [batch, {copies} copies, H, W, 3] from its '
                     f'preprocess (exemplar.copies={copies}); got shape {images.shape}.')
  num_images = images.shape[0]
  key_gray, key_jitter = jax.random.split(rng)
  images = augment.to_unit(images)
  # Step 1: one coin per image, shared by its copies (grey before the colour jitter, as
  # the original greys before the Inception preprocessing; jitter keeps a grey image grey).
  gray = jax.random.bernoulli(key_gray, s.task.grayscale, (num_images,))
  images = jnp.where(gray[:, None, None, None, None], augment.mean_grayscale(images), images)
  # Step 2: the colour jitter of §2.1, independently per copy.
  images = images.reshape((num_images * copies,) + images.shape[2:])
  images = augment.batch_brightness_saturation(
      images, key_jitter, s.augment.inception_brightness, s.augment.inception_saturation)
  # Step 3: slim's Inception preprocessing ends in [-1, 1]; each copy is then standardised.
  inputs = augment.standardize(augment.to_model_input(images))
  labels = jnp.repeat(jnp.arange(num_images, dtype=jnp.int32), copies)
  return {'inputs': inputs, 'labels': labels}


class Head(nn.Module):
  """The embedding: a dense layer with bias on pre_logits (the backbone's logits layer of
  the original, reference §2.2 [code] head)."""
  embedding: int

  @nn.compact
  def __call__(self, end_points: dict, views: dict, train: bool) -> jax.Array:
    del views, train
    return nn.Dense(self.embedding, name='embedding')(end_points['pre_logits'])


def make_head(s: tasks.Sections, num_classes: int) -> nn.Module:
  """The ``exemplar.embedding``-d embedding (num_classes of the dataset is not used)."""
  del num_classes
  return Head(s.task.embedding)


def l2_normalize(x: jax.Array, axis: int) -> jax.Array:
  """tf.nn.l2_normalize: x / sqrt(max(sum(x^2, axis), 1e-12))."""
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.square(x), axis, keepdims=True), 1e-12))


def normalize(embeddings: jax.Array, mode: str) -> jax.Array:
  """[..., N, D] embeddings L2-normalised per vector ('vector') or, as the original code's
  ``tf.nn.l2_normalize(logits, axis=0)`` on [N, D] logits, per dimension along the N axis
  of each group ('batch')."""
  if mode not in NORMALIZATIONS:
    raise ValueError(f'exemplar.normalize={mode!r}: use one of {", ".join(NORMALIZATIONS)}.')
  return l2_normalize(embeddings, axis=-1 if mode == 'vector' else -2)


def group(embeddings: jax.Array, copies: int, group_images: int) -> jax.Array:
  """Image-major [B * copies, D] -> [B / group_images, group_images * copies, D]: whole
  images' copies per group (``group_images=0``: one group of all)."""
  num_images = embeddings.shape[0] // copies
  if embeddings.shape[0] % copies or (group_images and num_images % group_images):
    raise ValueError(f'{embeddings.shape[0]} embeddings are not whole groups of '
                     f'exemplar.group_images={group_images} images of {copies} copies.')
  num_groups = num_images // group_images if group_images else 1
  return embeddings.reshape((num_groups, -1) + embeddings.shape[1:])


def pairwise_squared_distances(x: jax.Array) -> jax.Array:
  """[N, D] -> [N, N] squared Euclidean distances, |a|^2 + |b|^2 - 2 a.b clipped at 0, as
  TF's metric-learning ``pairwise_distance(squared=True)``; the Gram matrix is computed at
  full float32 precision (no TF32/bfloat16 passes on accelerators)."""
  squared_norms = jnp.sum(jnp.square(x), -1)
  gram = jnp.matmul(x, x.T, precision=jax.lax.Precision.HIGHEST)
  return jnp.maximum(squared_norms[:, None] + squared_norms[None, :] - 2.0 * gram, 0.0)


def semihard_triplet_loss(embeddings: jax.Array, copies: int,
                          margin: float) -> tuple[jax.Array, dict]:
  """TF's ``triplet_semihard_loss`` on image-major embeddings (reference §2.2 [code] loss).

  ``embeddings`` [N, D] hold N / ``copies`` images' copies, each image's ``copies`` rows
  adjacent; copies of one image share a label. With d the squared Euclidean distance,
  every ordered pair (a, p) of distinct copies of one image is a positive, and its
  negative n is the semi-hard one, the closest negative with d(a, n) > d(a, p), or, if
  there is none, the farthest negative of a. The loss is the mean over all positives of
  max(margin + d(a, p) - d(a, n), 0). As in TF, the choice of n carries no gradient; d(a, n)
  of the chosen n does.

  The positives of an anchor are the ``copies`` entries of its own image's block, so the
  mining compares [N, copies, N] distances instead of TF's [N^2, N].

  Returns the loss and metrics: ``triplet_accuracy``, the fraction of positives closer to
  the anchor than all its negatives, and ``active_triplets``, the fraction with a nonzero
  hinge.
  """
  n = embeddings.shape[0]
  if copies < 2:
    raise ValueError(f'exemplar.copies={copies}: the triplet loss needs at least 2 copies '
                     'per image (positives are pairs of copies).')
  if n % copies:
    raise ValueError(f'{n} embeddings are not a whole number of images of {copies} copies.')
  distances = pairwise_squared_distances(embeddings)  # [N, N]
  index = jnp.arange(n)
  image = index // copies
  negative = image[:, None] != image[None, :]  # [N, N]
  # d(a, p) for the members p of a's image, a itself included and masked out: [N, copies].
  members = image[:, None] * copies + jnp.arange(copies)[None, :]
  positive = members != index[:, None]
  d_ap = jnp.take_along_axis(distances, members, axis=1)
  # Semi-hard: the closest negative farther than d(a, p).
  farther = negative[:, None, :] & (distances[:, None, :] > d_ap[:, :, None])  # [N, copies, N]
  semihard = jnp.min(jnp.where(farther, distances[:, None, :], jnp.inf), -1)
  # Otherwise the farthest negative (TF's masked_maximum; distances are >= 0, so a 0 fill
  # gives the maximum over the negatives, and TF's 0 where an anchor has none).
  farthest = jnp.max(jnp.where(negative, distances, 0.0), -1, keepdims=True)
  d_an = jnp.where(jnp.any(farther, -1), semihard, farthest)
  hinge = jnp.maximum(margin + d_ap - d_an, 0.0)
  num_positives = n * (copies - 1)
  loss = jnp.sum(jnp.where(positive, hinge, 0.0)) / num_positives
  closest = jnp.min(jnp.where(negative, distances, jnp.inf), -1, keepdims=True)
  metrics = {
      'triplet_accuracy': jnp.sum(positive & (d_ap < closest)) / num_positives,
      'active_triplets': jnp.sum(positive & (hinge > 0.0)) / num_positives,
  }
  return loss, metrics


def loss(outputs: jax.Array, views: dict, task_state, s: tasks.Sections,
         progress: tasks.Progress):
  """The semi-hard triplet loss of each group of ``exemplar.group_images`` images,
  normalised within the group, averaged over the groups (the original's per-core losses).
  The metrics, also averaged, count negatives within the group.

  The loss reads the image-major layout of :func:`views` (``views['labels']`` spells it
  out); the groups are the same on any number of devices.
  """
  del views, task_state, progress
  grouped = normalize(group(outputs.astype(jnp.float32), s.task.copies, s.task.group_images),
                      s.task.normalize)
  losses, metrics = jax.vmap(
      lambda e: semihard_triplet_loss(e, s.task.copies, s.task.margin))(grouped)
  return losses.mean(), jax.tree.map(jnp.mean, metrics)
