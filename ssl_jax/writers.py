"""Metric writers: TensorBoard (clu) and ``WORKDIR/metrics.jsonl``."""

from __future__ import annotations

import json
from typing import Any, Mapping

import jax
from clu import metric_writers
from clu.metric_writers import interface
import numpy as np

from ssl_jax import files


class JsonlWriter(interface.MetricWriter):
  """Adds one JSON object per ``write_scalars`` call, ``{"step": s, name: value}``, to the
  rows already in ``path``, rewriting the file whole at each call (:mod:`ssl_jax.files`:
  GCS cannot append; one call per ``log_every`` steps).

  Only scalars are written; images, texts and histograms go to TensorBoard.
  """

  def __init__(self, path: str):
    self._path = path
    self._text = files.read_text(path) or ''

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    row = {'step': int(step)}
    row.update({k: float(np.asarray(v)) for k, v in scalars.items()})
    self._text += json.dumps(row) + '\n'
    files.write_text(self._path, self._text)

  def write_summaries(self, step, values, metadata=None): pass
  def write_images(self, step, images): pass
  def write_videos(self, step, videos): pass
  def write_audios(self, step, audios, *, sample_rate): pass
  def write_texts(self, step, texts): pass
  def write_histograms(self, step, arrays, num_buckets=None): pass
  def write_hparams(self, hparams): pass

  def flush(self) -> None:
    pass  # Every call wrote the file.

  def close(self) -> None:
    pass


def drop_rows_after(path: str, step: int) -> None:
  """Removes the rows of a metrics.jsonl written after ``step`` (by a run killed before
  its next checkpoint), so that the resumed run does not repeat them."""
  text = files.read_text(path)
  if text is None:
    return
  lines = text.splitlines(keepends=True)
  kept = [line for line in lines
          if line.strip() and json.loads(line).get('step', 0) <= step]
  if len(kept) != len(lines):
    files.write_text(path, ''.join(kept))


def create(workdir: str, resume_step: int | None = None) -> interface.MetricWriter:
  """TensorBoard + JSONL on process 0; logging only on the others. With ``resume_step``,
  rows of metrics.jsonl after that step (from a killed run) are dropped first."""
  if jax.process_index() > 0:
    return metric_writers.create_default_writer(workdir, just_logging=True)
  files.Path(workdir).mkdir(parents=True, exist_ok=True)
  metrics = str(files.Path(workdir) / 'metrics.jsonl')
  if resume_step is not None:
    drop_rows_after(metrics, resume_step)
  # TensorBoard events through tf.summary, which writes gs:// URLs itself.
  return metric_writers.MultiWriter([metric_writers.SummaryWriter(str(workdir)),
                                     JsonlWriter(metrics)])


def write_results(results: Mapping[str, float], workdir: str, step: int) -> None:
  """Merges ``results`` into ``WORKDIR/results.json`` (atomically) and TensorBoard."""
  if jax.process_index() > 0:
    return
  path = files.Path(workdir) / 'results.json'
  merged = json.loads(files.read_text(path) or '{}')
  merged.update(results)
  merged['step'] = step
  files.write_text(path, json.dumps(merged, indent=2, sort_keys=True))
  writer = create(workdir)
  writer.write_scalars(step, results)
  writer.close()
