"""How fast the host input pipeline feeds each task, against what a chip consumes.

``python -m ssl_jax.benchmark --input_only`` runs :func:`run`: each config's task
preprocessing through the real training stream (``input_pipeline.train_batches``: file
reads, shuffle, the task's ``preprocess``, batching, the transfer onto the devices) on
ImageNet-sized JPEGs made from the shipped images (``ssl_jax/data/jpeg_images.py``), and
prints images/s in all (wall clock) and per host core (images per CPU second of the
process, all its threads: a busy core's rate, which other processes on a shared machine
do not dilute as they do the wall clock) beside the device's images/s from the step
benchmark. The goal: one chip's share of its host's cores delivers at least
:data:`GOAL` times what the chip consumes. TensorFlow is imported where the stream runs:
``ssl_jax.benchmark`` times the step without it.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Sequence

import jax
import ml_collections

from ssl_jax import step as step_lib

GOAL = 1.5  # Host pipeline / device rate, per chip.

# Host CPU threads (vCPUs) per accelerator chip: a chip's share of its host.
#   tpu_v4: v4 TPU VM, 240 vCPUs / 4 chips.
#   tpu_v5e: ct5lp-hightpu-8t, 224 vCPUs / 8 chips (cloud.google.com/tpu/docs/v5e).
#   tpu_v5p: v5p TPU VM, 208 vCPUs / 4 chips (cloud.google.com/tpu/docs/v5p).
#   dgx_h100: 2 x Xeon Platinum 8480C, 112 cores, 224 threads / 8 GPUs (DGX H100/H200).
HOST_CORES_PER_CHIP = {'tpu_v4': 240 / 4, 'tpu_v5e': 224 / 8, 'tpu_v5p': 208 / 4,
                       'dgx_h100': 224 / 8}


@dataclasses.dataclass(frozen=True)
class Row:
  """One config's host throughput, and the device's when known."""
  name: str  # The config, as given.
  task: str
  images: int  # Timed images.
  seconds: float  # Wall clock, the fastest of the repeats.
  cpu_seconds: float  # CPU time of the process (all its threads), the least of the repeats.
  host_cores: int  # Cores the pipeline ran on.
  device_images_per_s: float | None = None  # One chip's, from the step benchmark.
  cpu_seconds_decode_whole: float | None = None  # Decoding whole images first, if timed.

  @property
  def images_per_s(self) -> float:
    return self.images / self.seconds

  @property
  def per_core(self) -> float:
    """Images per second of one busy core: per CPU second, which other processes on a
    shared machine do not inflate as they do the wall clock."""
    return self.images / self.cpu_seconds

  def per_core_decode_whole(self) -> float | None:
    if self.cpu_seconds_decode_whole is None:
      return None
    return self.images / self.cpu_seconds_decode_whole

  def cores_needed(self) -> float | None:
    """Host cores one chip needs for GOAL x its rate (None: device rate unknown)."""
    if not self.device_images_per_s:
      return None
    return GOAL * self.device_images_per_s / self.per_core

  def ratio(self, cores_per_chip: float) -> float | None:
    """Pipeline on a chip's share of ``cores_per_chip`` cores / the chip's rate."""
    if not self.device_images_per_s:
      return None
    return self.per_core * cores_per_chip / self.device_images_per_s


def time_stream(config: ml_collections.ConfigDict, builder, mesh: jax.sharding.Mesh, *,
                batches: int, warmup: int,
                encoded_images: bool = True) -> tuple[int, float, float]:
  """(images, wall seconds, CPU seconds of this process) of ``batches`` global batches of
  ``config``'s training stream with its task's preprocessing, after ``warmup`` batches
  (which fill the shuffle buffer and trace the tf.data functions). ``encoded_images=False``
  decodes every image whole before the task's crops (the pipeline before
  decode-and-crop)."""
  from ssl_jax.data import input_pipeline
  task = step_lib.import_task(config)
  sections = step_lib.task_sections(config)
  stream = input_pipeline.train_batches(
      config.dataset, builder, mesh, lambda f, seed: task.preprocess(f, seed, sections),
      batch_size=config.batch_size, seed=config.seed, encoded_images=encoded_images)
  try:
    for _ in range(warmup):
      jax.block_until_ready(next(stream))
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(batches):
      jax.block_until_ready(next(stream))
    return (batches * config.batch_size, time.perf_counter() - start,
            time.process_time() - cpu_start)
  finally:
    stream.close()


def benchmark_config(config: ml_collections.ConfigDict, *, batch: int, threads: int,
                     shuffle_buffer: int) -> ml_collections.ConfigDict:
  """A copy of ``config`` with the benchmark's batch, tf.data threads and shuffle
  buffer, reading the whole train split (no held-out part) from the files (no cache)."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.batch_size = batch
  config.dataset.train_split = 'train'
  config.dataset.holdout_examples = 0
  config.dataset.threads = threads
  config.dataset.shuffle_buffer = shuffle_buffer
  config.dataset.cache = False
  return config


def run(configs: dict[str, ml_collections.ConfigDict], builder, *, batches: int,
        warmup: int, device_images_per_s: dict[str, float], repeats: int = 1,
        decode_whole: bool = False) -> list[Row]:
  """A :class:`Row` per config (named by its key) on ``builder``'s train split, the
  fastest of ``repeats`` timings (a shared machine's load only slows a run); with
  ``decode_whole`` each repeat also times the stream decoding whole images, right after,
  so that both see the same load. A device rate is looked up by the config's name, then
  by its task."""
  from ssl_jax.data import input_pipeline
  mesh = step_lib.make_mesh()
  rows = []
  for name, config in configs.items():
    wall, cpu, whole = [], [], []
    for _ in range(repeats):
      images, seconds, cpu_seconds = time_stream(config, builder, mesh, batches=batches,
                                                 warmup=warmup)
      wall.append(seconds)
      cpu.append(cpu_seconds)
      if decode_whole:
        whole.append(time_stream(config, builder, mesh, batches=batches, warmup=warmup,
                                 encoded_images=False)[2])
    cores = config.dataset.threads or input_pipeline.host_cores()
    rate = device_images_per_s.get(name, device_images_per_s.get(config.task))
    rows.append(Row(name, config.task, images, min(wall), min(cpu), cores, rate,
                    min(whole) if whole else None))
  return rows


def parse_rates(text: str) -> dict[str, float]:
  """'rotation=5328,simclr_resnet50=2900' -> {name: images/s}."""
  rates = {}
  for item in filter(None, (part.strip() for part in text.split(','))):
    name, _, value = item.partition('=')
    try:
      rate = float(value)
    except ValueError:
      rate = 0.0
    if not name.strip() or rate <= 0:
      raise ValueError(f'--device_images_per_s item {item!r}: write NAME=IMAGES_PER_S with a '
                       'positive rate, NAME a config (rotation_resnet50) or a task (rotation).')
    rates[name.strip()] = rate
  return rates


def format_table(rows: Sequence[Row], host: str, cores_per_chip: float) -> str:
  """The markdown table of ``rows`` (a column for decoding whole images when timed)."""
  whole = any(row.cpu_seconds_decode_whole is not None for row in rows)
  head = ['config', 'task', 'host images/s (wall)', 'per host core (CPU time)']
  if whole:
    head.append('per core, decode whole')
  head += ['device images/s', 'cores needed per chip', f'ratio on {host} ({cores_per_chip:g} '
           f'cores/chip; goal >= {GOAL:g})']
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for row in rows:
    cells = [row.name, row.task, f'{row.images_per_s:.1f}', f'{row.per_core:.1f}']
    if whole:
      before = row.per_core_decode_whole()
      cells.append(f'{before:.1f}' if before is not None else '')
    needed, ratio = row.cores_needed(), row.ratio(cores_per_chip)
    cells += [f'{row.device_images_per_s:.0f}' if row.device_images_per_s else 'not given',
              f'{needed:.1f}' if needed else '',
              f'{ratio:.2f}' + ('' if ratio >= GOAL else ' (below)') if ratio else '']
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)
