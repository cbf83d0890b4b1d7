"""Jigsaw puzzles (Noroozi & Favaro 2016), as studied in Revisiting (reference §2.3).

The 9 patches of an image (ssl_jax/tasks/patches.py) go through the network one by one;
their embeddings are concatenated in the order of a permutation from a fixed set of 100
with maximal Hamming distances, and the FC head predicts which permutation it was (a
100-way classification). The set is the published file ``jigsaw.permutations_file``
when given (the code's), else ssl_jax's greedy set of the same construction.

Per step, as the code: ``jigsaw.permutation_subset`` (8) distinct permutations are
drawn for the whole batch and every image is seen under each of them, so B images give
9B patch forwards and 8B puzzles. Batch sizes and learning-rate scaling count images.
"""

from __future__ import annotations

import functools
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ssl_jax import files
from ssl_jax import losses
from ssl_jax import tasks
from ssl_jax.tasks import patches

NUM_PIECES = 9  # A 3x3 puzzle.

# Host side: the patches of patches.extract_patches.
preprocess = patches.preprocess
input_shapes = patches.input_shapes


def config() -> ml_collections.ConfigDict:
  """The ``jigsaw`` section: the patch fields and the permutation set."""
  c = patches.config()
  c.num_permutations = 100  # Size of the maximal-Hamming set.
  c.permutation_subset = 8  # Permutations sampled per step.
  # Path of the published set, permutations_100_max.bin (MehdiNoroozi/JigsawPuzzleSolver),
  # which the code loads (self_supervision/patch_utils.py:43, 218-234); '': the greedy set
  # of maximal_hamming_permutations.
  c.permutations_file = ''
  return c


def validate(task_config: ml_collections.ConfigDict, *, batch_size: int) -> None:
  """Raises ValueError naming the field and the fix."""
  patches.validate(task_config, batch_size=batch_size, name='jigsaw')
  if task_config.permutations_file:
    count = len(read_permutations(task_config.permutations_file))
    if count != task_config.num_permutations:
      raise ValueError(f'jigsaw.permutations_file={task_config.permutations_file!r} holds '
                       f'{count} permutations, jigsaw.num_permutations='
                       f'{task_config.num_permutations}: set num_permutations={count}.')


@functools.lru_cache(maxsize=None)
def _all_permutations() -> np.ndarray:
  """All 9! = 362,880 permutations of 0..8, lexicographic, int8 [9!, 9]."""
  return np.array(list(itertools.permutations(range(NUM_PIECES))), np.int8)


@functools.lru_cache(maxsize=None)
def _maximal_hamming(num: int, seed: int) -> np.ndarray:
  candidates = _all_permutations()
  if not 1 <= num <= len(candidates):
    raise ValueError(f'num={num} permutations: choose between 1 and {len(candidates)}.')
  available = np.ones(len(candidates), bool)
  summed = np.zeros(len(candidates), np.int64)
  chosen = [int(np.random.default_rng(seed).integers(len(candidates)))]
  while True:
    available[chosen[-1]] = False
    if len(chosen) == num:
      break
    summed += (candidates != candidates[chosen[-1]]).sum(1)
    chosen.append(int(np.argmax(np.where(available, summed, -1))))
  result = candidates[chosen].astype(np.int32)
  result.flags.writeable = False
  return result


def maximal_hamming_permutations(num: int = 100, seed: int = 0) -> np.ndarray:
  """``num`` permutations of 0..8 with large pairwise Hamming distances, int32 [num, 9].

  Noroozi & Favaro's Algorithm 1 (the generator of the published set that Revisiting
  uses; reference §2.3): start from a permutation drawn uniformly from all 9! with
  ``np.random.default_rng(seed)``; then repeatedly add the permutation, among those not
  yet chosen, whose Hamming distance summed over the chosen ones is largest (ties: the
  first in lexicographic order, as MATLAB's max). For num=100, seed=0 the pairwise
  distances are min 2, mean 8.08, max 9, the statistics of the published set (which
  is a different set: its random start and tie-breaks are not known). Computed on first
  use (about a second) and cached; the returned array is read-only.
  """
  return _maximal_hamming(num, seed)


def read_permutations(path: str) -> np.ndarray:
  """The permutation set of a file in the format of permutations_100_max.bin, 0-based
  int32 [count, 9], read-only; cached per path.

  The format, as the code reads it (self_supervision/patch_utils.py:218-234): a header of
  two little-endian int32, (count, 9), then count x 9 little-endian int32 holding 1-based
  piece indices (the code subtracts 1). Raises ValueError naming
  ``jigsaw.permutations_file`` for a missing file or one whose header, size or rows (each a
  permutation of 1..9, all distinct) do not fit.
  """
  return _read_permutations(path)


@functools.lru_cache(maxsize=None)
def _read_permutations(path: str) -> np.ndarray:
  field = f'jigsaw.permutations_file={path!r}'
  if not files.Path(path).exists():
    raise ValueError(f'{field} does not exist: give the path of permutations_100_max.bin '
                     "or '' for ssl_jax's greedy set.")
  data = files.Path(path).read_bytes()
  words = np.frombuffer(data[:len(data) // 4 * 4], '<i4')
  if len(data) % 4 or len(words) < 2 or words[1] != NUM_PIECES or words[0] < 1:
    raise ValueError(f'{field} is not a permutation file: it must start with two int32, '
                     f'(count, {NUM_PIECES}), then count x {NUM_PIECES} int32.')
  count = int(words[0])
  if len(words) != 2 + count * NUM_PIECES:
    raise ValueError(f'{field} holds {len(data)} bytes; its header ({count}, {NUM_PIECES}) '
                     f'needs {4 * (2 + count * NUM_PIECES)}.')
  perms = words[2:].reshape(count, NUM_PIECES).astype(np.int32) - 1
  if not (np.sort(perms, 1) == np.arange(NUM_PIECES)).all():
    raise ValueError(f'{field}: every row must be a permutation of the 1-based piece '
                     f'indices 1..{NUM_PIECES}.')
  if len(np.unique(perms, axis=0)) != count:
    raise ValueError(f'{field} repeats a permutation: its labels would be ambiguous.')
  perms.flags.writeable = False
  return perms


def permutation_table(p: ml_collections.ConfigDict) -> jax.Array:
  """The task's fixed set, int32 [jigsaw.num_permutations, 9], of the section ``p``: the
  file ``p.permutations_file`` if given, else :func:`maximal_hamming_permutations`."""
  if patches.num_patches(p) != NUM_PIECES:
    raise ValueError(f'Jigsaw uses a 3x3 grid (9 pieces); jigsaw.grid={p.grid}.')
  if p.permutations_file:
    return jnp.asarray(read_permutations(p.permutations_file))
  return jnp.asarray(maximal_hamming_permutations(p.num_permutations))


def permute(pieces: jax.Array, permutations: jax.Array) -> jax.Array:
  """[B, 9, ...] pieces and [P, 9] permutations -> the puzzles [B, P, 9, ...].

  Puzzle (b, j) holds at position i the piece permutations[j, i] of image b, i.e. the
  pieces in the order of the permutation (as the code's gather); the network predicts
  the permutation's index. The inverse permutation puts the pieces back.
  """
  return pieces[:, permutations]


def views(batch: dict, rng: jax.Array, s: tasks.Sections) -> dict:
  """Augmented patches as inputs [9B, size, size, 3]; the step's permutations.

  ``jigsaw.permutation_subset`` distinct indices are drawn (without replacement) for the
  whole batch from the views key; ``labels`` [B * P] are these indices tiled image-major,
  so that puzzle b * P + j is image b under permutation ``labels[b * P + j]`` and stays
  on the device of image b. ``permutations`` [P, 9] are the corresponding rows of the
  table, read by the head.
  """
  table = permutation_table(s.task)
  subset = s.task.permutation_subset
  if not 1 <= subset <= table.shape[0]:
    raise ValueError(f'jigsaw.permutation_subset={subset} must lie in 1..'
                     f'{table.shape[0]} (jigsaw.num_permutations).')
  key_augment, key_subset = jax.random.split(rng)
  images = batch['image']
  indices = jax.random.permutation(key_subset, table.shape[0])[:subset]
  return {'inputs': patches.augment_patches(images, key_augment, s.task),
          'permutations': table[indices],
          'labels': jnp.tile(indices, images.shape[0])}


def _puzzles(embeddings: jax.Array, views: dict) -> jax.Array:
  """[B, 9, E] embeddings -> [B * P, 9E] puzzles, the pieces concatenated in permutation
  order (the code interleaves channel-major, a fixed re-ordering of the input of a freshly
  initialised dense layer; reference §2.3)."""
  puzzles = permute(embeddings, views['permutations'])
  return puzzles.reshape(puzzles.shape[0] * puzzles.shape[1], -1)


def make_head(s: tasks.Sections, num_classes: int) -> nn.Module:
  """Per-patch embedding, puzzles, FC head to ``jigsaw.num_permutations`` logits (the
  dataset's num_classes is not used)."""
  del num_classes
  return patches.make_patch_head(s.task, _puzzles, s.task.num_permutations)


def loss(outputs: jax.Array, views: dict, task_state, s: tasks.Sections,
         progress: tasks.Progress):
  """Mean cross-entropy over the B * P puzzles, and the puzzle accuracy."""
  del task_state, s, progress
  return losses.classification(outputs, views['labels'], 'jigsaw_accuracy')
