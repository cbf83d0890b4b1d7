"""The one SGD loop: pretraining (ssl_jax/train.py) and every evaluator that trains (linear
and MLP probes, fine-tuning) run their jitted steps through :func:`run`.

It resumes from the newest checkpoint in its workdir, saves every ``checkpoint_every``
steps and at the end, logs progress (steps/s, ETA) and the mean metrics every
``log_every`` steps to TensorBoard and ``metrics.jsonl``, stops on a non-finite metric
(loss, gradient norm) or non-finite parameters before they can be saved, and on SIGTERM
(a preempted TPU) saves and returns so that the same command resumes. With several
processes a SIGTERM on any of them stops all at the same step (:class:`StopVote`).
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any, Callable, Iterator, Mapping

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ssl_jax import checkpoint
from ssl_jax import processes
from ssl_jax import writers

# Set by SIGTERM on this process; the loop votes on it after every step.
STOP_REQUESTED = threading.Event()
# Set when the processes agreed to stop after the current step (every process alike).
STOP_AGREED = threading.Event()

# (state, batch) -> (state, metrics with 'loss').
Step = Callable[[Any, dict], tuple[Any, dict]]
# (steps done, state, batch, writer) -> None: summaries, periodic evaluation.
Hook = Callable[[int, Any, dict, Any], None]


class NonFiniteLossError(FloatingPointError):
  """The loss, the gradient norm or the parameters became NaN or infinite."""


def _on_sigterm(signum, frame):
  del signum, frame
  STOP_REQUESTED.set()


def catch_sigterm() -> None:
  """From now on SIGTERM sets :data:`STOP_REQUESTED` instead of ending the process, so a
  notice that comes while the run starts (or between loops) stops the next loop after its
  first step, with a checkpoint, rather than killing one host of several mid-collective."""
  signal.signal(signal.SIGTERM, _on_sigterm)


def _all_finite(state: Any) -> jax.Array:
  """True when every floating-point leaf of ``state`` is finite (one jitted reduction)."""
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(state)
            if jnp.issubdtype(x.dtype, jnp.floating)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def _check_finite(pending: list[tuple[int, dict]], last_saved: int | None, workdir: str,
                  state_finite: Callable[[], bool] | None = None, step: int = 0):
  """Raises NonFiniteLossError when a logged metric (the loss, the gradient norm) or, before
  a save, a parameter is NaN or infinite: the loss can stay finite while the weights are
  not."""
  kept = (f'the last good checkpoint (step {last_saved}) is kept in {workdir}/checkpoints'
          if last_saved is not None else 'no checkpoint was written')
  advice = 'Lower the learning rate (base_lr), lengthen the warm-up, or check the inputs.'
  for (at, _), values in zip(pending, jax.device_get([m for _, m in pending])):
    bad = sorted(k for k, v in values.items() if not np.all(np.isfinite(v)))
    if bad:
      raise NonFiniteLossError(f'{", ".join(bad)} became non-finite at step {at} '
                               f'({bad[0]} = {values[bad[0]]}); stopping, and {kept}. {advice}')
  if state_finite is not None and not state_finite():
    raise NonFiniteLossError(f'The parameters or optimiser state hold NaN or infinite values '
                             f'at step {step}; stopping without saving them, and {kept}. '
                             f'{advice}')


def duration(seconds: float) -> str:
  """'1h02m03s' or '2m03s'."""
  minutes, seconds = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f'{hours}h{minutes:02d}m{seconds:02d}s' if hours else f'{minutes}m{seconds:02d}s'


def run(state: Any, train_step: Step, batches_from: Callable[[int], Iterator[dict]], *,
        total_steps: int, workdir: str, name: str, log_every: int, checkpoint_every: int,
        keep_checkpoints: int = 3, hook: Hook | None = None,
        writers_section: ml_collections.ConfigDict | None = None,
        run_config: Mapping[str, Any] | None = None) -> tuple[Any, bool]:
  """Trains ``state`` (a pytree with a ``step`` field, laid out on its devices) to
  ``total_steps`` in ``workdir``; returns (state, finished). ``state`` is consumed: donated
  to the first step, or freed when a checkpoint replaces it. ``finished`` is False when
  SIGTERM stopped the run after saving (call again to resume).

  ``batches_from(start_step)`` yields the batches from a step on (the input stream is a
  function of the step, so a resumed run sees the batches an uninterrupted one would).
  ``hook`` runs after every step. ``name`` prefixes the log lines. ``writers_section``
  (the ``writers`` section) adds optional writers, with ``run_config`` as their record.
  """
  ckpt = checkpoint.Checkpointer(workdir, keep_checkpoints)
  restored = ckpt.restore(state)
  if restored is not state:
    # The checkpoint replaces the fresh state: free its buffers now, as the first step's
    # donation would have. The caller still refers to it during this call, so a resumed
    # run would otherwise keep a second copy of the state on every device to its end.
    jax.tree.map(lambda x: x.delete() if isinstance(x, jax.Array) else None, state)
  state = restored
  start = int(state.step)
  last_saved = ckpt.latest_step()
  if start >= total_steps:
    ckpt.save(start, state)  # total_steps=0 keeps the initialisation.
    ckpt.close()
    return state, True
  from clu import periodic_actions  # Imports TensorFlow: only where a loop runs.
  writer = writers.create(workdir, resume_step=start, section=writers_section,
                          run_config=run_config)
  all_finite = jax.jit(_all_finite)
  batches = batches_from(start)
  progress = periodic_actions.ReportProgress(num_train_steps=total_steps, writer=writer,
                                             every_steps=log_every)
  # A loop started inside another (an evaluator that trains, run from pretraining's hook)
  # keeps the flag: a SIGTERM that already arrived stops both.
  if signal.getsignal(signal.SIGTERM) is not _on_sigterm:
    STOP_REQUESTED.clear()
  STOP_AGREED.clear()
  previous_handler = signal.signal(signal.SIGTERM, _on_sigterm)
  vote = processes.StopVote()
  pending: list[tuple[int, dict]] = []
  t_start, finished = time.time(), True
  try:
    for step in range(start, total_steps):
      with jax.profiler.StepTraceAnnotation(name, step_num=step):
        batch = next(batches)
        state, metrics = train_step(state, batch)
      done = step + 1
      stop = vote(STOP_REQUESTED.is_set())  # The same on every process.
      if stop:
        STOP_AGREED.set()
      pending.append((done, metrics))
      progress(done)
      if hook:
        hook(done, state, batch, writer)
      if done % log_every == 0 or done == total_steps or stop:
        ckpt.check_for_errors()  # A failed background save stops the run here.
        _check_finite(pending, last_saved, workdir)
        means = {k: float(np.mean([m[k] for _, m in pending])) for k in pending[-1][1]}
        writer.write_scalars(done, means)
        rate = (done - start) / (time.time() - t_start)
        logging.info('%s step %d/%d | loss %.4f | %.2f steps/s | ETA %s', name, done,
                     total_steps, means['loss'], rate,
                     duration((total_steps - done) / max(rate, 1e-9)))
        pending = []
      if done % checkpoint_every == 0 or done == total_steps or stop:
        _check_finite(pending, last_saved, workdir, lambda: bool(all_finite(state)), done)
        ckpt.save(done, state)
        last_saved = done
      if stop:
        logging.warning('SIGTERM: %s saved step %d; run the same command to resume.', name,
                        done)
        finished = False
        break
  finally:
    signal.signal(signal.SIGTERM, previous_handler)
    # Stops the input stream's prefetch thread now, not at garbage collection or at
    # interpreter exit, where a daemon thread inside tf.data can abort the process.
    if hasattr(batches, 'close'):
      batches.close()
    try:
      writer.close()  # Flushes; ends the W&B run, which write_results resumes.
    except OSError as e:  # A full disk: the checkpoint error below says what to do.
      logging.warning('Could not flush the metric writers: %s', e)
    ckpt.close()
  return state, finished
