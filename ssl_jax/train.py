"""Pretraining: a task (ssl_jax/tasks/<name>.py) through the one loop (ssl_jax/loop.py).

Resumes from the newest checkpoint in the workdir; SIGTERM (a preempted TPU) saves a
checkpoint and returns cleanly; a non-finite loss stops the run before it can be saved.
Evaluator instances with ``every`` > 0 run on the live encoder every that many steps.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ssl_jax import checkpoint
from ssl_jax import config_lib
from ssl_jax import encoder as encoder_lib
from ssl_jax import files
from ssl_jax import loop
from ssl_jax import optim
from ssl_jax import step as step_lib
from ssl_jax.data import corruption
from ssl_jax.data import input_pipeline
from ssl_jax.evaluate import context as context_lib

# What train() raises when the run becomes non-finite (the loop checks).
NonFiniteLossError = loop.NonFiniteLossError


def prepare_workdir(workdir: str) -> None:
  """Creates ``workdir`` (a folder or a gs:// URL) and checks that it is writable, before
  anything is built."""
  try:
    files.Path(workdir).mkdir(parents=True, exist_ok=True)
    probe = files.Path(workdir) / f'.write_test_{jax.process_index()}'
    probe.write_text('ok')
    probe.unlink()
  except Exception as e:  # OSError locally; each gs:// backend raises its own types.
    reason = getattr(e, 'strerror', None) or f'{type(e).__name__}: {e}'.splitlines()[0]
    raise ValueError(f'Cannot create or write the workdir {workdir!r} ({reason}): '
                     'choose another --workdir.') from None


def save_config(config: ml_collections.ConfigDict, workdir: str, step: int = 0) -> None:
  """Writes ``WORKDIR/config.json`` (process 0) and, when it differs from the newest
  recorded one, ``WORKDIR/configs/step_<step>.json``: the history of the configs and the
  step at which each took effect, never overwritten."""
  if jax.process_index() > 0:
    return
  text = config_lib.to_json(config)
  history = files.Path(workdir) / 'configs'
  history.mkdir(parents=True, exist_ok=True)
  recorded = sorted((p.name for p in history.glob('step_*.json')),
                    key=lambda f: [int(n) for n in re.findall(r'\d+', f)])
  newest = (history / recorded[-1]).read_text() if recorded else None
  if text != newest:
    path = history / f'step_{step}.json'
    if path.exists():  # Changed again before a step was trained: keep both.
      path = history / f'step_{step}_{len(recorded)}.json'
    files.write_text(path, text)
  files.write_text(files.Path(workdir) / 'config.json', text)


def check_resume(config: ml_collections.ConfigDict, workdir: str, start: int) -> None:
  """Compares ``config`` with the one a run saved in ``workdir``: a change of the task or
  the model (what the checkpoint holds) is refused naming the fields; other changes are
  logged, and recorded by :func:`save_config`."""
  text = files.read_text(files.Path(workdir) / 'config.json')
  if text is None:
    return
  saved = config_lib.flatten(config_lib.from_json(text))
  new = config_lib.flatten(config)
  changed = sorted(k for k in set(saved) | set(new) if saved.get(k) != new.get(k))
  # The task and the model fix what the checkpoint holds (the compute dtype and how the
  # backward pass gets its activations do not).
  free = ('model.dtype', 'model.remat', 'model.reversible_backward')
  fixed = [k for k in changed if k == 'task' or (k.startswith('model.') and k not in free)]
  if fixed and start > 0:
    raise ValueError(
        f'{workdir} holds a run trained to step {start} with another ' +
        ', '.join(f'{k} ({saved.get(k)!r}, now {new.get(k)!r})' for k in fixed) +
        ': use a new --workdir, or the config that trained it.')
  for key in changed:
    logging.warning('Config change at step %d: %s %r -> %r (recorded in %s/configs).',
                    start, key, saved.get(key), new.get(key), workdir)


def write_train_ids(ids, workdir: str) -> None:
  """Writes ``WORKDIR/train_ids.txt`` (process 0): the ``tfds_id`` of every pretraining
  example, one per line, in the subset's order (the file of a smaller nested subset is a
  prefix of a larger one's)."""
  if jax.process_index() > 0:
    return
  files.write_text(files.Path(workdir) / 'train_ids.txt',
                   ''.join(i.decode() + '\n' for i in ids))


def _periodic_evaluations(config: ml_collections.ConfigDict, builder,
                          mesh: jax.sharding.Mesh, workdir: str,
                          total_steps: int) -> loop.Hook | None:
  """The hook that runs every evaluator instance with ``every`` > 0 on the live encoder
  (Wu et al. 2018's kNN monitor, or a probe), to TensorBoard and metrics.jsonl. Not at
  the last step: every instance runs after training (ssl_jax/main.py). ``mesh`` is the
  evaluators' one-axis mesh: the encoder's variables are gathered onto it, replicated,
  whatever sharding (``mesh.fsdp``) pretraining keeps them in."""
  periodic = {name: section for name, section in config.evals.items() if section.every > 0}
  if not periodic:
    return None
  data = context_lib.data_spec(config, builder, mesh)
  # The encoder as evaluated after training: global BN, whatever groups the task trains
  # with (a fine-tuning probe must not inherit MoCo's shuffled-BN groups).
  encoder = context_lib.Encoder(
      step_lib.build_encoder(config.model), {},
      head=encoder_lib.build_head(config, data.num_classes))

  def hook(done: int, state: step_lib.TrainState, batch: dict, writer: Any) -> None:
    del batch
    variables, head_variables = jax.device_put(tuple(
        {'params': state.params.get(part, {}), 'batch_stats': state.batch_stats.get(part, {})}
        for part in ('encoder', 'head')), step_lib.replicated(mesh))
    for name, section in periodic.items():
      if done % section.every == 0 and done < total_steps and not loop.STOP_AGREED.is_set():
        results = context_lib.run_evaluator(
            name, section, encoder.with_variables(variables, head_variables), data,
            str(files.Path(workdir) / 'evals' / f'{name}_step{done}'))
        if results:  # run_evaluator has logged them.
          writer.write_scalars(done, results)

  return hook


def train(config: ml_collections.ConfigDict, workdir: str,
          devices: Sequence[jax.Device] | None = None) -> bool:
  """Trains ``config`` in ``workdir``; returns True when finished, False if stopped by
  SIGTERM (call again to resume)."""
  mesh = step_lib.make_mesh(devices, config.mesh.fsdp)
  task = step_lib.import_task(config)
  builder = input_pipeline.get_builder(config.dataset)
  info = input_pipeline.dataset_info(config.dataset, builder)
  input_pipeline.per_process_batch(config.batch_size, mesh)  # Fails early if uneven.
  pooled = (input_pipeline.mixture_parts(config.dataset) if config.dataset.mixture_names
            else None)
  keep_ids = None if pooled else input_pipeline.pretrain_ids(config.dataset, builder)
  num_examples = (config.dataset.subset_examples if pooled else
                  info.num_train_examples if keep_ids is None else len(keep_ids))
  tx, schedule, total = optim.for_run(
      config.optimizer, batch_size=config.batch_size, num_examples=num_examples,
      steps=config.total_steps, epochs=config.total_epochs)
  start = checkpoint.latest_step(workdir) or 0
  check_resume(config, workdir, start)
  # A pooled set's labels are the datasets' classes one after the other.
  num_classes = (sum(p.builder.info.features[p.dataset.label_key].num_classes for p in pooled)
                 if pooled else info.num_classes)
  model = step_lib.build_model(config, task, num_classes, mesh)
  state = step_lib.create_state(config, model, tx, task, mesh)
  save_config(config, workdir, start)
  if pooled:  # Ids name examples within a dataset: each line is dataset/tfds_id.
    write_train_ids([f'{p.dataset.name}/{i.decode()}'.encode() for p in pooled
                     for i in p.keep_ids], workdir)
  elif keep_ids is not None:
    write_train_ids(keep_ids, workdir)
  logging.info('Task %s, %s, %d steps, batch %d over %d devices (state split over %d), '
               '%d training images.', config.task, config.model.name, total,
               config.batch_size, mesh.size, config.mesh.fsdp, num_examples)
  train_step = step_lib.make_train_step(config, model, tx, task, schedule, mesh, total,
                                        step_lib.shardings_of(state))
  summary_fn = step_lib.make_summary_fn(config, task, mesh)
  evaluations = _periodic_evaluations(config, builder, step_lib.make_mesh(devices), workdir,
                                      total)
  sections = step_lib.task_sections(config)

  def batches_from(start: int):
    return input_pipeline.train_batches(
        config.dataset, builder, mesh, lambda f, seed: task.preprocess(f, seed, sections),
        batch_size=config.batch_size, seed=config.seed, start_step=start,
        keep_ids=keep_ids, corrupt_fn=corruption.corrupt_fn(config.corruption),
        pooled=pooled, encoded_images=True)

  first_step: list[int] = []  # The first step of this (possibly resumed) run.

  def hook(done: int, state: step_lib.TrainState, batch: dict, writer: Any) -> None:
    first_step[:] = first_step or [done]
    every = config.image_summary_every
    if every and (done == first_step[0] or done % every == 0):
      writer.write_images(done, {'augmented_inputs': np.asarray(
          summary_fn(batch, jnp.asarray(done - 1)))})
    if evaluations:
      evaluations(done, state, batch, writer)

  _, finished = loop.run(state, train_step, batches_from, total_steps=total,
                         workdir=workdir, name='train', log_every=config.log_every,
                         checkpoint_every=config.checkpoint_every,
                         keep_checkpoints=config.keep_checkpoints, hook=hook,
                         writers_section=config.writers, run_config=config.to_dict())
  return finished
