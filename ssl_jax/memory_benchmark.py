"""Compiled memory per device of a train step: ``python -m ssl_jax.benchmark --memory``.

:func:`compiled_memory` lowers a config's train step from abstract arrays (nothing is
allocated) and reads ``jit(step).lower(...).compile().memory_analysis()``;
:func:`memory_table` does so for ResNet50 v1 and RevNet50, replicated and under
``mesh.fsdp``, with each unit's activations stored, recomputed (``model.remat``) or, for
RevNet, rebuilt from its output (``model.reversible_backward``). :func:`topology_devices`
gives the compile-only devices of a TPU slice, so the same numbers come from XLA's TPU
compiler on any host (no TPU attached). No flags here: ssl_jax/benchmark.py owns the
command line.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import time
from typing import Any, Callable

import jax
from jax.experimental import topologies
import numpy as np

from ssl_jax import optim
from ssl_jax import step as step_lib

IMAGENET_TRAIN = 1_281_167  # Images in ImageNet's train split: the schedule's epochs.
# jax[tpu]==0.10.2's libtpu: the TPU compiler that topology_devices needs.
LIBTPU_PIN = 'libtpu==0.0.42.1'
# The released Revisiting configs: 64 images on 8 TPU cores (reference revisiting.md §2.1).
PAPER_IMAGES_PER_DEVICE = 8
# How the backward pass gets each residual unit's activations (a row of the memory
# table): the model section fields of each.
BACKWARDS = {'stored': {'remat': False, 'reversible_backward': False},
             'remat': {'remat': True, 'reversible_backward': False},
             'reversible': {'remat': False, 'reversible_backward': True}}
# (row label, model section fields, backward passes) of the memory table.
MEMORY_MODELS = (('ResNet50 v1', {'name': 'resnet', 'variant': 'v1'}, ('stored', 'remat')),
                 ('RevNet50', {'name': 'revnet'}, ('stored', 'remat', 'reversible')))


def training_parts(config, mesh: jax.sharding.Mesh) -> tuple:
  """(task module, model, optimiser, step builder) of ``config`` on ``mesh``, its schedule
  laid over ImageNet's train split: the step both benchmarks build, the timed one
  (ssl_jax/benchmark.py) and :func:`compiled_memory`'s. The builder takes the state's
  shardings and returns the jitted train step."""
  task = step_lib.import_task(config)
  tx, schedule, total_steps = optim.for_run(
      config.optimizer, batch_size=config.batch_size, num_examples=IMAGENET_TRAIN,
      steps=config.total_steps, epochs=config.total_epochs)
  model = step_lib.build_model(config, task, 1000, mesh)

  def step_for(state_shardings: Any) -> Callable:
    return step_lib.make_train_step(config, model, tx, task, schedule, mesh, total_steps,
                                    state_shardings)

  return task, model, tx, step_for


def compiled_memory(config, mesh: jax.sharding.Mesh) -> dict[str, int]:
  """Bytes per device of ``config``'s train step compiled on ``mesh``, from abstract
  state and batch: 'argument', 'output', 'temp', 'alias' (outputs written over the donated
  state) and 'total' = argument + output - alias + temp."""
  task, model, tx, step_for = training_parts(config, mesh)
  state = step_lib.abstract_state(config, model, tx, task, mesh)
  train_step = step_for(step_lib.shardings_of(state))
  batch_sharding = step_lib.batch_sharding(mesh)
  batch = {key: jax.ShapeDtypeStruct((config.batch_size,) + shape, np.uint8,
                                     sharding=batch_sharding)
           for key, shape in step_lib.input_shapes(config, task).items()}
  batch['label'] = jax.ShapeDtypeStruct((config.batch_size,), np.int32,
                                        sharding=batch_sharding)
  stats = train_step.lower(state, batch).compile().memory_analysis()
  row = {'argument': stats.argument_size_in_bytes, 'output': stats.output_size_in_bytes,
         'temp': stats.temp_size_in_bytes, 'alias': stats.alias_size_in_bytes}
  row['total'] = row['argument'] + row['output'] - row['alias'] + row['temp']
  return row


def topology_devices(name: str) -> list[jax.Device]:
  """Compile-only devices of the TPU topology ``name`` (``jax.experimental.topologies``,
  as MaxText's train_compile.py): XLA's TPU compiler runs on this host, no TPU attached.
  It sets ALLOW_MULTIPLE_LIBTPU_LOAD in os.environ (below), which libtpu reads when it
  loads. ValueError naming the fix if libtpu is missing or the name is not a topology."""
  if importlib.util.find_spec('libtpu') is None:
    raise ValueError(f'--memory_topology={name} compiles with the TPU compiler, which is not '
                     f'installed: pip install {LIBTPU_PIN} (jax[tpu]\'s pin).')
  # Compile-only: there is no chip to guard, so other processes may load libtpu too (its
  # lockfile would otherwise refuse a second benchmark, or the test beside one).
  os.environ.setdefault('ALLOW_MULTIPLE_LIBTPU_LOAD', '1')
  try:
    return list(topologies.get_topology_desc(name, platform='tpu').devices)
  except jax.errors.JaxRuntimeError as e:
    if 'INVALID_ARGUMENT' not in str(e):
      raise
    raise ValueError(f'--memory_topology={name} is not a TPU topology that libtpu knows '
                     f'(such as v3:2x2, v4:2x2x1, v5e:2x2, v5p:2x2x1, v6e:2x2): {e}') from e


def memory_table(config, k: float, fsdp: int,
                 devices: list[jax.Device] | None = None) -> list[dict]:
  """:func:`compiled_memory` of each of :data:`MEMORY_MODELS` at width ``k``, replicated
  and split over ``fsdp`` devices, with each of its :data:`BACKWARDS`, on ``devices``
  (default: all attached); one dict per row."""
  rows = []
  for label, fields, backwards in MEMORY_MODELS:
    for split in sorted({1, fsdp}):
      for backward in backwards:
        row_config = copy.deepcopy(config)
        row_config.model.update(fields, k=k, **BACKWARDS[backward])
        row_config.mesh.fsdp = split
        t0 = time.perf_counter()
        row = compiled_memory(row_config, step_lib.make_mesh(devices, fsdp=split))
        rows.append(dict(row, model=label, fsdp=split, backward=backward,
                         compile_s=time.perf_counter() - t0))
        print_memory_row(rows[-1])
  return rows


def print_memory_row(row: dict) -> None:
  """One row of the --memory table, in GiB per device."""
  gib = lambda n: f'{n / 2**30:.2f}'  # noqa: E731
  print(f'| {row["model"]} | {row["fsdp"]} | {row["backward"]} | '
        f'{gib(row["argument"])} | {gib(row["output"])} | {gib(row["temp"])} | '
        f'{gib(row["total"])} | {row["compile_s"]:.0f} |', flush=True)
