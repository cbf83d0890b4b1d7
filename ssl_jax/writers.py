"""Metric writers: TensorBoard (clu) and ``WORKDIR/metrics.jsonl``."""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import jax
from clu import metric_writers
from clu.metric_writers import interface
import numpy as np


class JsonlWriter(interface.MetricWriter):
  """Appends one JSON object per ``write_scalars`` call: ``{"step": s, name: value}``.

  Only scalars are written; images, texts and histograms go to TensorBoard.
  """

  def __init__(self, path: str):
    self._file = open(path, 'a')

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    row = {'step': int(step)}
    row.update({k: float(np.asarray(v)) for k, v in scalars.items()})
    self._file.write(json.dumps(row) + '\n')
    self._file.flush()

  def write_summaries(self, step, values, metadata=None): pass
  def write_images(self, step, images): pass
  def write_videos(self, step, videos): pass
  def write_audios(self, step, audios, *, sample_rate): pass
  def write_texts(self, step, texts): pass
  def write_histograms(self, step, arrays, num_buckets=None): pass
  def write_hparams(self, hparams): pass

  def flush(self) -> None:
    self._file.flush()

  def close(self) -> None:
    self._file.close()


def drop_rows_after(path: str, step: int) -> None:
  """Removes the rows of a metrics.jsonl written after ``step`` (by a run killed before
  its next checkpoint), so that the resumed run does not repeat them."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = f.readlines()
  kept = [line for line in lines
          if line.strip() and json.loads(line).get('step', 0) <= step]
  if len(kept) != len(lines):
    with open(path + '.tmp', 'w') as f:
      f.writelines(kept)
    os.replace(path + '.tmp', path)


def create(workdir: str, resume_step: int | None = None) -> interface.MetricWriter:
  """TensorBoard + JSONL on process 0; logging only on the others. With ``resume_step``,
  rows of metrics.jsonl after that step (from a killed run) are dropped first."""
  if jax.process_index() > 0:
    return metric_writers.create_default_writer(workdir, just_logging=True)
  os.makedirs(workdir, exist_ok=True)
  if resume_step is not None:
    drop_rows_after(os.path.join(workdir, 'metrics.jsonl'), resume_step)
  return metric_writers.MultiWriter([
      metric_writers.SummaryWriter(workdir),
      JsonlWriter(os.path.join(workdir, 'metrics.jsonl'))])


def write_results(results: Mapping[str, float], workdir: str, step: int) -> None:
  """Merges ``results`` into ``WORKDIR/results.json`` (atomically) and TensorBoard."""
  if jax.process_index() > 0:
    return
  path = os.path.join(workdir, 'results.json')
  merged = {}
  if os.path.exists(path):
    with open(path) as f:
      merged = json.load(f)
  merged.update(results)
  merged['step'] = step
  with open(path + '.tmp', 'w') as f:
    json.dump(merged, f, indent=2, sort_keys=True)
  os.replace(path + '.tmp', path)
  writer = create(workdir)
  writer.write_scalars(step, results)
  writer.close()
