"""Held-out pretext accuracy: the trained network (encoder and the task's head) on the
task's own problem, scored on the test split (an evaluator instance of type 'pretext').

Revisiting Fig. 4 plots it against the linear probe's accuracy, across architectures:
pretext performance does not predict representation quality. The task's host
preprocessing and device views run on the test images with fixed seeds, the network in
inference mode (BN running averages), and the task's loss function gives the loss and
its metrics (Rotation's and Jigsaw's accuracy, Exemplar's triplet loss). Tasks with a
second network or state between steps (MoCo's queue, BYOL's target) are refused: their
loss is defined against training-time state.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ssl_jax import config_lib
from ssl_jax import step as step_lib
from ssl_jax import tasks
from ssl_jax.data import dataset_section
from ssl_jax.evaluate import context as context_lib


def config() -> ml_collections.ConfigDict:
  """An evaluator instance of type 'pretext'."""
  c = ml_collections.ConfigDict()
  c.every = 0  # > 0: also every N pretraining steps.
  c.batch_size = 256
  c.max_examples = -1  # > 0: at most this many test images (whole batches).
  return c


def run(section: ml_collections.ConfigDict, encoder: context_lib.Encoder,
        data: context_lib.DataSpec, workdir: str) -> dict[str, float]:
  """{'loss', <the task's metrics>} of the task's network on the test split, averaged
  over whole batches."""
  from ssl_jax.data import input_pipeline  # TensorFlow only where the host pipeline runs.
  del workdir
  task = config_lib.import_component('tasks', data.task)
  if hasattr(task, 'TARGET') or hasattr(task, 'init_task_state'):
    raise ValueError(f'A pretext evaluator cannot score task {data.task!r}: its loss needs '
                     'a second network or state from training (a queue, a target). Remove '
                     'the instance of type pretext from config.evals.')
  if encoder.head is None or not encoder.head_variables:
    raise ValueError('The pretext evaluator needs the trained task head; this encoder has '
                     'none (evaluate a workdir of a pretraining run).')
  sections = data.sections
  model = step_lib.Model(encoder.module, encoder.head)
  variables = {kind: {'encoder': encoder.variables[kind],
                      'head': encoder.head_variables.get(kind, {})}
               for kind in ('params', 'batch_stats')}
  base_key = jax.random.key(data.seed + 4)

  @jax.jit
  def evaluate(variables: dict, batch: dict, index: jax.Array) -> tuple[jax.Array, dict]:
    views = task.views(batch, jax.random.fold_in(base_key, index), sections)
    outputs = model.apply(variables, views, train=False)
    return task.loss(outputs, views, None, sections, tasks.Progress(index, 1))

  if data.dataset.test_split == dataset_section.HOLDOUT:
    raise ValueError(f'dataset.test_split={dataset_section.HOLDOUT!r}: the pretext evaluator '
                     'reads a split of its own (set dataset.test_split to the public test '
                     'split, e.g. validation) or remove the pretext instance from evals.')
  dataset = ml_collections.ConfigDict(data.dataset.to_dict())
  dataset.train_split, dataset.holdout_examples = data.dataset.test_split, 0
  num_examples = input_pipeline.split_size(dataset, data.builder, dataset.train_split)
  if section.max_examples > 0:
    num_examples = min(num_examples, section.max_examples)
  num_batches = num_examples // section.batch_size
  if not num_batches:
    raise ValueError(f'pretext: {num_examples} test images make no batch of '
                     f'{section.batch_size}; lower the instance\'s batch_size.')
  batches = input_pipeline.train_batches(
      dataset, data.builder, data.mesh,
      lambda features, seed: task.preprocess(features, seed, sections),
      batch_size=section.batch_size, seed=data.seed + 4, encoded_images=True)
  totals: dict[str, float] = {}
  for index in range(num_batches):
    loss, metrics = evaluate(variables, next(batches), jnp.int32(index))
    for key, value in {'loss': loss, **metrics}.items():
      totals[key] = totals.get(key, 0.0) + float(np.asarray(value)) / num_batches
  return totals
