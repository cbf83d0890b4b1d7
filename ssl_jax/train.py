"""The one training loop. A method plugs in as a task (ssl_jax/tasks/<name>.py).

Resumes from the newest checkpoint in the workdir; SIGTERM (a preempted TPU) saves a
checkpoint and returns cleanly; a non-finite loss stops the run before it can be saved.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Sequence

from absl import logging
from clu import periodic_actions
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ssl_jax import checkpoint
from ssl_jax import config_lib
from ssl_jax import optim
from ssl_jax import step as step_lib
from ssl_jax import writers
from ssl_jax.data import input_pipeline
from ssl_jax.evaluate import knn as knn_lib

# Set by SIGTERM; the loop checks it after every step.
STOP_REQUESTED = threading.Event()


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or infinite."""


def _on_sigterm(signum, frame):
  del signum, frame
  STOP_REQUESTED.set()


def save_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes ``WORKDIR/config.json`` (process 0)."""
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config_lib.to_json(config))


def _check_finite(pending: list[tuple[int, dict]], last_saved: int | None, workdir: str):
  losses = np.asarray(jax.device_get([m['loss'] for _, m in pending]))
  bad = np.flatnonzero(~np.isfinite(losses))
  if bad.size:
    step = pending[bad[0]][0]
    kept = (f'the last good checkpoint (step {last_saved}) is kept in {workdir}/checkpoints'
            if last_saved is not None else 'no checkpoint was written')
    raise NonFiniteLossError(
        f'The loss became {losses[bad[0]]} at step {step}; stopping, and {kept}. Lower '
        '--config.optimizer.base_lr, lengthen the warm-up, or check the inputs.')


def train(config: ml_collections.ConfigDict, workdir: str,
          devices: Sequence[jax.Device] | None = None) -> bool:
  """Trains ``config`` in ``workdir``; returns True when finished, False if stopped by
  SIGTERM (call again to resume)."""
  mesh = step_lib.make_mesh(devices)
  task = step_lib.import_task(config)
  builder = input_pipeline.get_builder(config)
  info = input_pipeline.dataset_info(config, builder)
  input_pipeline.per_process_batch(config.batch_size, mesh)  # Fails early if uneven.
  tx, schedule = optim.make(config, info.num_train_examples)
  total = optim.total_steps(config, info.num_train_examples)
  model = step_lib.build_model(config, task, info.num_classes, mesh)
  state = step_lib.create_state(config, model, tx, task, mesh)
  ckpt = checkpoint.Checkpointer(workdir, config.keep_checkpoints)
  state = ckpt.restore(state)
  start = int(state.step)
  last_saved = ckpt.latest_step()
  save_config(config, workdir)
  logging.info('Task %s, %s, %d steps (starting at %d), batch %d over %d devices, '
               '%d training images.', config.task, config.model.name, total, start,
               config.batch_size, mesh.size, info.num_train_examples)
  if start >= total:
    ckpt.save(start, state)  # total_steps=0 keeps the random initialisation.
    ckpt.close()
    return True

  writer = writers.create(workdir)
  train_step = step_lib.make_train_step(config, model, tx, task, schedule, mesh, total)
  summary_fn = step_lib.make_summary_fn(config, task, mesh)
  # Wu et al. 2018's weighted kNN on the live encoder (compiled once, run every knn.every).
  knn_monitor = (knn_lib.make_monitor(config, model.encoder, builder, mesh)
                 if config.knn.every > 0 else None)
  batches = input_pipeline.train_batches(config, builder, mesh, task.preprocess, start)
  progress = periodic_actions.ReportProgress(num_train_steps=total, writer=writer,
                                             every_steps=config.log_every)
  STOP_REQUESTED.clear()
  previous_handler = signal.signal(signal.SIGTERM, _on_sigterm)
  pending: list[tuple[int, dict]] = []
  t_start, finished = time.time(), True
  try:
    for step in range(start, total):
      with jax.profiler.StepTraceAnnotation('train', step_num=step):
        batch = next(batches)
        state, metrics = train_step(state, batch)
      pending.append((step + 1, metrics))
      progress(step + 1)
      done = step + 1
      if config.image_summary_every and (step == start or done % config.image_summary_every == 0):
        writer.write_images(done, {'augmented_inputs': np.asarray(
            summary_fn(batch, jnp.asarray(step)))})
      stop = STOP_REQUESTED.is_set()
      if done % config.log_every == 0 or done == total or stop:
        _check_finite(pending, last_saved, workdir)
        means = {k: float(np.mean([m[k] for _, m in pending])) for k in pending[-1][1]}
        writer.write_scalars(done, means)
        rate = (done - start) / (time.time() - t_start)
        logging.info('step %d/%d | loss %.4f | %.2f steps/s | ETA %s', done, total,
                     means['loss'], rate, _duration((total - done) / max(rate, 1e-9)))
        pending = []
      if knn_monitor and (done % config.knn.every == 0 or done == total):
        knn = knn_monitor(state)
        writer.write_scalars(done, knn)
        logging.info('step %d/%d | kNN %s', done, total, knn_lib.format_results(knn))
      if done % config.checkpoint_every == 0 or done == total or stop:
        _check_finite(pending, last_saved, workdir)
        ckpt.save(done, state)
        last_saved = done
      if stop:
        logging.warning('SIGTERM: saved step %d; run the same command to resume.', done)
        finished = False
        break
  finally:
    signal.signal(signal.SIGTERM, previous_handler)
    ckpt.close()
    writer.flush()
  return finished


def _duration(seconds: float) -> str:
  minutes, seconds = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f'{hours}h{minutes:02d}m{seconds:02d}s' if hours else f'{minutes}m{seconds:02d}s'
