"""Several processes, one run: joining them with ``jax.distributed`` and agreeing on when
to stop.

A TPU pod slice runs one process per host, a multi-GPU cluster one per host or per GPU;
every process runs the same command. Each reads its own slice of the input (see
ssl_jax/data/input_pipeline.py), the jitted step sees the global batch, orbax writes each
process's shards, and only process 0 writes the shared files (config.json,
metrics.jsonl, TensorBoard events, results.json).
"""

from __future__ import annotations

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

FLAGS_HINT = ('give --coordinator_address=HOST:PORT (process 0 listens there), '
              '--num_processes and --process_id together')


def start(coordinator_address: str | None = None, num_processes: int | None = None,
          process_id: int | None = None) -> None:
  """Joins the run's other processes (``jax.distributed.initialize``), before any JAX
  computation: with the three arguments when given, else from the environment where jax
  finds them (Cloud TPU, SLURM, Open MPI); with neither, the process runs alone. Raises
  ValueError when only some of the three are given."""
  given = {'coordinator_address': coordinator_address, 'num_processes': num_processes,
           'process_id': process_id}
  missing = [name for name, value in given.items() if value is None]
  if 0 < len(missing) < len(given):
    raise ValueError(f'--{", --".join(missing)} missing: {FLAGS_HINT} (or none of them on '
                     'Cloud TPU and SLURM, where jax finds them).')
  # Cross-process collectives of the CPU backend (two processes on one machine, CPU
  # clusters): gloo, jax's default today, named so that a change of default cannot leave
  # a multi-process CPU run without them. Only the CPU backend reads it.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  if not missing:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
  else:
    try:
      jax.distributed.initialize()  # Cloud TPU, SLURM, Open MPI: jax reads the environment.
    except ValueError as e:
      # jax found no cluster environment, so no coordinator: this process runs alone.
      if 'should be defined' not in str(e):
        raise
  logging.info('This is process %d of %d, %d of %d devices.', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


class StopVote:
  """Agrees across processes on whether to stop, one call per training step.

  SIGTERM reaches one host (a preempted TPU VM, a SLURM node) while the others train on:
  hosts that stop at different steps would wait for each other in different collectives,
  and hang. Each call takes this process's flag and returns whether any process had set
  it at the previous call, the same answer on every process at the same step.

  Why a vote of our own rather than jax's preemption sync point
  (``multihost_utils.reached_preemption_sync_point``, which orbax's ``reached_preemption``
  calls): that one learns of SIGTERM through a C++ handler installed by
  ``jax.distributed.initialize``, which the Python handler that stops a one-process run
  replaces; it exists only with jax.distributed; and its step ids must rise across the
  whole process, while each loop here (pretraining, then each probe) counts from its own
  start. The vote is one all-reduce of a bit per step (any backend; gloo on CPU), and it
  is read one call late, so that the devices always hold the next step while the host
  waits for it: the host never stalls the devices for it.
  """

  def __init__(self):
    self._pending: jax.Array | None = None
    self._any = None

  def __call__(self, local: bool) -> bool:
    if jax.process_count() == 1:
      return local
    if self._any is None:
      self._any = jax.jit(lambda flags: flags.max(), out_shardings=jax.sharding.NamedSharding(
          _process_mesh(), jax.sharding.PartitionSpec()))
    flags = multihost_utils.host_local_array_to_global_array(
        np.full((jax.local_device_count(),), local, np.int32), _process_mesh(),
        jax.sharding.PartitionSpec('devices'))
    previous, self._pending = self._pending, self._any(flags)
    return previous is not None and bool(previous)


def _process_mesh() -> jax.sharding.Mesh:
  """A one-axis mesh over every device, each process's devices adjacent."""
  devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
  return jax.sharding.Mesh(np.array(devices), ('devices',))
