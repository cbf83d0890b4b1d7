"""The ``mesh`` section: FSDP-style sharding of the train state over a second mesh axis.

With ``mesh.fsdp = N`` > 1 the devices form a ('data', 'fsdp') mesh of shape
(devices / N, N). The batch is split over both axes (every device holds its own images, as
with pure data parallelism); each parameter, optimiser slot and second-network parameter
is split over the 'fsdp' axis along its largest dimension that N divides, and replicated
over 'data'. XLA gathers a parameter before it is used and reduce-scatters its gradient,
so a device holds 1/N of the state. This is big_vision's ``fsdp`` rule
(big_vision/sharding.py: the largest dimension divisible by the axis size, tensors of at
most ``min_size_to_shard_mb`` = 4 MiB left replicated) on its ('replica', 'fsdp') mesh
with the batch over both axes (configs/proj/jetformer). BatchNorm statistics and the step
stay replicated (small, and read whole by every device).
"""

from __future__ import annotations

from typing import Sequence

import jax
import ml_collections

P = jax.sharding.PartitionSpec

FSDP_AXIS = 'fsdp'


def config() -> ml_collections.ConfigDict:
  """The ``mesh`` section."""
  c = ml_collections.ConfigDict()
  # Devices each parameter and optimiser slot is split over (1: replicated, pure data
  # parallelism). Must divide the number of devices.
  c.fsdp = 1
  # Arrays of at most this many bytes stay replicated (big_vision's 4 MiB): splitting a
  # BN scale costs a collective and saves nothing.
  c.fsdp_min_bytes = 4 * 2**20
  return c


def validate(mesh: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the field and the fix (the device count is checked by
  :func:`check_fsdp` when the mesh is made)."""
  if mesh.fsdp < 1:
    raise ValueError(f'mesh.fsdp={mesh.fsdp} must be >= 1 (1: parameters replicated).')
  if mesh.fsdp_min_bytes < 0:
    raise ValueError(f'mesh.fsdp_min_bytes={mesh.fsdp_min_bytes} must be >= 0.')


def check_fsdp(fsdp: int, num_devices: int) -> None:
  """Raises ValueError unless ``fsdp`` divides ``num_devices``, listing the divisors."""
  if fsdp < 1 or num_devices % fsdp:
    divisors = [d for d in range(1, num_devices + 1) if num_devices % d == 0]
    raise ValueError(
        f'mesh.fsdp={fsdp} does not divide the {num_devices} devices: the state is split '
        f'into fsdp equal parts per group of devices; use one of '
        f'{", ".join(map(str, divisors))} (--config.mesh.fsdp=...).')


def mesh_shape(fsdp: int, num_devices: int) -> tuple[tuple[int, ...], tuple[str, ...]]:
  """(shape, axis names) of the mesh: one 'data' axis for ``fsdp`` = 1 (the layout every
  evaluator and the input pipeline use), else ('data', 'fsdp'), the 'fsdp' axis last so
  that its devices are neighbours (jax.make_mesh puts the fastest links on the last axis)."""
  check_fsdp(fsdp, num_devices)
  if fsdp == 1:
    return (num_devices,), ('data',)
  return (num_devices // fsdp, fsdp), ('data', FSDP_AXIS)


def fsdp_spec(shape: Sequence[int], itemsize: int, fsdp: int, min_bytes: int) -> P:
  """The partition of one array: its largest dimension that ``fsdp`` divides, over the
  'fsdp' axis (the first such in order of size, ties to the earlier dimension), or
  replicated when ``fsdp`` is 1, the array has at most ``min_bytes`` or no dimension
  divides."""
  size = itemsize
  for d in shape:
    size *= d
  if fsdp == 1 or size <= min_bytes:
    return P()
  for axis in sorted(range(len(shape)), key=lambda i: -shape[i]):
    if shape[axis] % fsdp == 0:
      return P(*([None] * axis + [FSDP_AXIS]))
  return P()
