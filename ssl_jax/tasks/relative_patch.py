"""Relative Patch Location (Doersch et al. 2015), as studied in Revisiting (reference
§2.4).

The patches of an image (ssl_jax/tasks/patches.py, the preprocessing of Jigsaw) go
through the network one by one. Every image contributes all 8 pairs (neighbour, centre)
of a 3x3 grid; the neighbour's and then the centre's embeddings are concatenated and the
FC head predicts which of the 8 neighbours it was. B images give 9B patch forwards and
8B pairs; batch sizes and learning-rate scaling count images.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ssl_jax import losses
from ssl_jax import tasks
from ssl_jax.tasks import patches

GRID = 3
CENTRE = 4  # Row-major index of the centre cell of the 3x3 grid.
# The code's pairs (neighbour i, centre 4), i in row-major order; label j is pair j.
NEIGHBOURS = (0, 1, 2, 3, 5, 6, 7, 8)
# Label j: where the neighbour lies relative to the centre, as (rows, columns) of its
# grid position minus the centre's (rows grow downwards, columns to the right).
OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
DIRECTIONS = ('up-left', 'up', 'up-right', 'left', 'right', 'down-left', 'down',
              'down-right')
NUM_LOCATIONS = len(NEIGHBOURS)

# Host side: the patches of patches.extract_patches.
preprocess = patches.preprocess
input_shapes = patches.input_shapes
config = patches.config  # The ``relative_patch`` section: the patch fields.


def validate(task_config: ml_collections.ConfigDict, *, batch_size: int) -> None:
  """Raises ValueError naming the field and the fix."""
  patches.validate(task_config, batch_size=batch_size, name='relative_patch')
  _check_grid(task_config)


def pair_offsets() -> np.ndarray:
  """Grid position of each label's neighbour minus the centre's, int [8, 2] (rows,
  columns), computed from NEIGHBOURS and CENTRE (equals OFFSETS)."""
  positions = np.array([divmod(i, GRID) for i in NEIGHBOURS])
  return positions - np.array(divmod(CENTRE, GRID))


def pairs(pieces: jax.Array) -> jax.Array:
  """[B, 9, ...] -> the 8 (neighbour, centre) pairs of each image, [B, 8, 2, ...]: pair
  j of image b is (pieces[b, NEIGHBOURS[j]], pieces[b, CENTRE]), with label j."""
  neighbours = pieces[:, np.array(NEIGHBOURS)]
  centre = jnp.broadcast_to(pieces[:, CENTRE:CENTRE + 1], neighbours.shape)
  return jnp.stack([neighbours, centre], 2)


def views(batch: dict, rng: jax.Array, s: tasks.Sections) -> dict:
  """Augmented patches as inputs [9B, size, size, 3]; labels 0..7 tiled image-major
  ([B * 8]: pair b * 8 + j is image b's pair j)."""
  _check_grid(s.task)
  images = batch['image']
  return {'inputs': patches.augment_patches(images, rng, s.task),
          'labels': jnp.tile(jnp.arange(NUM_LOCATIONS), images.shape[0])}


def _check_grid(p: ml_collections.ConfigDict) -> None:
  if p.grid != GRID:
    raise ValueError(f'Relative Patch Location uses a 3x3 grid; relative_patch.grid={p.grid}.')


def _pair_rows(embeddings: jax.Array, views: dict) -> jax.Array:
  """[B, 9, E] embeddings -> [B * 8, 2E]: neighbour's, then centre's (reference §2.4)."""
  del views
  rows = pairs(embeddings)
  return rows.reshape(rows.shape[0] * rows.shape[1], -1)


def make_head(s: tasks.Sections, num_classes: int) -> nn.Module:
  """Per-patch embedding, pairs, FC head to 8 logits (the dataset's num_classes is not
  used)."""
  del num_classes
  _check_grid(s.task)
  return patches.make_patch_head(s.task, _pair_rows, NUM_LOCATIONS)


def loss(outputs: jax.Array, views: dict, task_state, s: tasks.Sections,
         progress: tasks.Progress):
  """Mean cross-entropy over the 8B pairs, and the location accuracy."""
  del task_state, s, progress
  return losses.classification(outputs, views['labels'], 'relative_patch_accuracy')
