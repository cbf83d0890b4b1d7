"""Checkpoints with orbax: asynchronous, the last N kept, written to a temporary
directory and renamed when complete, so a crash or a kill mid-save leaves the previous
checkpoint intact and a restart resumes from the last finished one."""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """The checkpoints of one workdir (``WORKDIR/checkpoints/<step>``)."""

  def __init__(self, workdir: str, keep: int = 3):
    self.manager = ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), 'checkpoints'),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                             enable_async_checkpointing=True))

  def latest_step(self) -> int | None:
    """The step of the newest finished checkpoint, or None."""
    return self.manager.latest_step()

  def save(self, step: int, state: Any) -> None:
    """Starts an asynchronous save of ``state`` at ``step`` (no-op if it exists)."""
    if step not in self.manager.all_steps():
      self.manager.save(step, args=ocp.args.StandardSave(state))

  def restore(self, template: Any) -> Any:
    """The newest checkpoint, with the structure and shardings of ``template``; or
    ``template`` itself if there is none."""
    step = self.latest_step()
    if step is None:
      return template
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))

  def wait(self) -> None:
    """Blocks until pending saves are on disk."""
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def restore_raw(workdir: str) -> tuple[int, dict]:
  """(step, state as nested dicts of arrays) of the newest checkpoint, without a template."""
  checkpointer = Checkpointer(workdir)
  step = checkpointer.latest_step()
  if step is None:
    raise FileNotFoundError(f'No checkpoint in {workdir}/checkpoints: train first, or run '
                            'with --config.total_steps=0 to save the random initialisation.')
  state = checkpointer.manager.restore(step, args=ocp.args.StandardRestore())
  checkpointer.close()
  return step, state
