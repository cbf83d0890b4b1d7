"""Checkpoints with orbax: asynchronous, the last N kept, written to a temporary
directory and renamed when complete, so a crash or a kill mid-save leaves the previous
checkpoint intact and a restart resumes from the last finished one.

Restoring falls back from a damaged newest checkpoint (a truncated or deleted file) to the
newest intact one, saying which it skipped and why; a checkpoint whose arrays do not fit
the run (another task or model in the same workdir) is refused with the paths that
differ. Leftover temporary folders of an interrupted save are removed at start. A failed
background save (a full disk, a lost permission) is raised at the next step that checks,
before anything else is written.
"""

from __future__ import annotations

from typing import Any

from absl import logging
import jax
import orbax.checkpoint as ocp

from ssl_jax import files


class CheckpointError(RuntimeError):
  """A checkpoint could not be written, read or used by this run."""


def _path_names(path) -> str:
  """'params/encoder/conv/kernel' for a tree path of dict keys or dataclass fields."""
  return '/'.join(str(getattr(p, 'key', getattr(p, 'name', getattr(p, 'idx', p))))
                  for p in path)


def _shapes(tree: Any) -> dict[str, tuple]:
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {_path_names(path): tuple(getattr(leaf, 'shape', ())) for path, leaf in leaves}


def layout_differences(saved: Any, template: Any, limit: int = 6) -> list[str]:
  """The parameter paths whose presence or shape differs between a checkpoint's metadata
  tree and a run's state (at most ``limit``)."""
  saved_shapes, new_shapes = _shapes(saved), _shapes(template)
  lines = []
  for name in sorted(set(saved_shapes) | set(new_shapes)):
    old, new = saved_shapes.get(name), new_shapes.get(name)
    if old != new:
      lines.append(f'{name}: checkpoint {old if old is not None else "absent"}, '
                   f'this run {new if new is not None else "absent"}')
  return lines[:limit] + ([f'... and {len(lines) - limit} more'] if len(lines) > limit else [])


# orbax's replica-parallel saving splits every replicated array into one slice per replica,
# each cut out by its own eager dispatch on its device: for BatchNorm vectors and biases
# that is pure overhead (a tiny ResNet on 8 CPU devices: 1.2 s a save, 0.6 s with this
# threshold, 2026-12-01). Arrays whose slice per replica would be under 1 MiB are written
# by one replica; large kernels (ResNet-50's 3x3x512x512, 1.2 MiB per slice on 8 chips)
# are still split across the replicas.
MIN_SLICE_BYTES_FOR_REPLICA_PARALLEL = 1 << 20


def _use_replica_parallel_for_large_arrays_only() -> None:
  """orbax's jax.Array handler with :data:`MIN_SLICE_BYTES_FOR_REPLICA_PARALLEL`.
  StandardCheckpointHandler takes no handler of its own: this overrides orbax's global
  one (as orbax documents), for every checkpoint of the process."""
  ocp.type_handlers.register_type_handler(
      jax.Array, ocp.type_handlers.ArrayHandler(
          min_slice_bytes_for_replica_parallel=MIN_SLICE_BYTES_FOR_REPLICA_PARALLEL),
      override=True)


class Checkpointer:
  """The checkpoints of one workdir (``WORKDIR/checkpoints/<step>``, a folder or gs://).
  With several processes every one constructs it and calls each method (orbax writes each
  process's shards and lets process 0 finish the checkpoint)."""

  def __init__(self, workdir: str, keep: int = 3):
    self.directory = files.absolute(workdir) / 'checkpoints'  # orbax wants it absolute.
    _use_replica_parallel_for_large_arrays_only()
    self.manager = ocp.CheckpointManager(
        self.directory, item_handlers=ocp.StandardCheckpointHandler(),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                             enable_async_checkpointing=True,
                                             cleanup_tmp_directories=True))

  def latest_step(self) -> int | None:
    """The step of the newest finished checkpoint, or None."""
    return self.manager.latest_step()

  def check_for_errors(self) -> None:
    """Raises CheckpointError if a background save failed."""
    try:
      self.manager.check_for_errors()
    except Exception as e:  # orbax re-raises the save thread's error as it was.
      raise CheckpointError(
          f'Saving a checkpoint in {self.directory} failed: {type(e).__name__}: {e}. The '
          'earlier checkpoints are intact. Free disk space or fix the permissions, then run '
          'the same command to resume.') from e

  def save(self, step: int, state: Any) -> None:
    """Starts an asynchronous save of ``state`` at ``step`` (no-op if it exists), after
    raising the error of an earlier save, if any."""
    self.check_for_errors()
    if step in self.manager.all_steps():
      return
    try:
      self.manager.save(step, args=ocp.args.StandardSave(state))
    except Exception as e:  # Starting the save failed (no space for its folder, say).
      raise CheckpointError(
          f'Saving the checkpoint of step {step} in {self.directory} failed: '
          f'{type(e).__name__}: {e}. The earlier checkpoints are intact. Free disk space '
          'or fix the permissions, then run the same command to resume.') from e

  def restore(self, template: Any) -> Any:
    """The newest intact checkpoint, with the structure and shardings of ``template``;
    or ``template`` itself if there is none. Damaged checkpoints are skipped with a
    warning; an intact one of another layout is refused (CheckpointError)."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    skipped = []
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        saved = self.manager.item_metadata(step).tree
      except Exception as e:  # A missing or unreadable metadata file: damaged.
        skipped.append(f'step {step} ({type(e).__name__}: {str(e).splitlines()[0][:200]})')
        continue
      differences = layout_differences(saved, abstract)
      if differences:
        raise CheckpointError(
            f'The checkpoint of step {step} in {self.directory} does not fit this run: '
            + '; '.join(differences) + '. Another task or model was trained in this '
            'workdir: use a new --workdir, or the config that wrote it.')
      try:
        state = self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
      except Exception as e:  # A truncated or corrupted array file.
        skipped.append(f'step {step} ({type(e).__name__}: {str(e).splitlines()[0][:200]})')
        continue
      for line in skipped:
        logging.warning('Skipped a damaged checkpoint: %s; resuming from step %d.', line,
                        step)
      return state
    if skipped:
      raise CheckpointError(f'Every checkpoint in {self.directory} is damaged: '
                            + '; '.join(skipped) + '. Move the folder away to start over.')
    return template

  def wait(self) -> None:
    """Blocks until pending saves are on disk; raises CheckpointError if one failed."""
    try:
      self.manager.wait_until_finished()
    except Exception as e:
      raise CheckpointError(f'Saving a checkpoint in {self.directory} failed: '
                            f'{type(e).__name__}: {e}. The earlier checkpoints are intact.'
                            ) from e
    self.check_for_errors()

  def close(self) -> None:
    """Waits for pending saves (raising CheckpointError if one failed) and closes."""
    try:
      self.wait()
    finally:
      self.manager.close()


def latest_step(workdir: str) -> int | None:
  """The step of the newest finished checkpoint in ``workdir``, or None."""
  checkpointer = Checkpointer(workdir)
  try:
    return checkpointer.latest_step()
  finally:
    checkpointer.close()


def _replicated(saved: Any) -> Any:
  """The abstract arrays of a checkpoint's metadata tree, each replicated on every device
  of this run: a checkpoint saved by any number of processes and devices (a pod) restores
  on this machine, which orbax refuses without a target ("Topology mismatch")."""
  mesh = jax.sharding.Mesh(jax.devices(), ('devices',))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding),
                      saved)


def restore_raw(workdir: str) -> tuple[int, dict]:
  """(step, state as nested dicts of arrays, replicated on every device) of the newest
  intact checkpoint, without a template."""
  checkpointer = Checkpointer(workdir)
  errors = []
  try:
    for step in sorted(checkpointer.manager.all_steps(), reverse=True):
      try:
        target = _replicated(checkpointer.manager.item_metadata(step).tree)
        return step, checkpointer.manager.restore(step, args=ocp.args.StandardRestore(target))
      except Exception as e:  # A damaged checkpoint: try the previous one.
        errors.append(f'step {step} ({type(e).__name__}: {str(e).splitlines()[0][:200]})')
        logging.warning('Skipped a damaged checkpoint: %s.', errors[-1])
  finally:
    checkpointer.close()
  if errors:
    raise CheckpointError(f'Every checkpoint in {checkpointer.directory} is damaged: '
                          + '; '.join(errors) + '.')
  raise FileNotFoundError(f'No checkpoint in {workdir}/checkpoints: train first, or run '
                          'with --config.total_steps=0 to save the random initialisation.')
