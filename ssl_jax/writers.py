"""Metric writers: TensorBoard (clu) and ``WORKDIR/metrics.jsonl``; optionally Weights &
Biases (the ``writers`` section: ``--config.writers.wandb_project=NAME``)."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Mapping

import jax
from clu import metric_writers
from clu.metric_writers import interface
import ml_collections
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


def config() -> ml_collections.ConfigDict:
  """The ``writers`` section: writers beside TensorBoard and metrics.jsonl."""
  c = ml_collections.ConfigDict()
  # Non-empty: pretraining's metrics, images and the results also go to this Weights &
  # Biases project, from process 0 (needs `pip install wandb` and `wandb login`).
  c.wandb_project = ''
  c.wandb_entity = ''  # W&B team or user; '' is the account's default.
  c.wandb_name = ''  # Run name; '' is the workdir's last folder name.
  return c


def validate(section: ml_collections.ConfigDict) -> None:
  """Raises ValueError if a W&B project is set and wandb is not installed (before the run
  starts rather than at its first log)."""
  if section.wandb_project:
    import_wandb()  # Raises, naming the fix.


def import_wandb():
  """The wandb module, imported only when a run asks for it (not a dependency)."""
  try:
    import wandb  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ValueError('writers.wandb_project is set but wandb is not installed: '
                     '`pip install wandb` (then `wandb login`), or set '
                     "--config.writers.wandb_project=''.") from e
  return wandb


def wandb_run_id(workdir: str) -> str:
  """The W&B run id of a workdir: the same for every (resumed) run in it, so that a
  resumed run continues its W&B run instead of starting another."""
  return hashlib.sha256(str(files.absolute(workdir)).encode()).hexdigest()[:16]


class WandbWriter(interface.MetricWriter):
  """Logs to one Weights & Biases run per workdir (resumed when the workdir is)."""

  def __init__(self, section: ml_collections.ConfigDict, workdir: str,
               run_config: Mapping[str, Any] | None = None):
    self._wandb = import_wandb()
    name = section.wandb_name or os.path.basename(os.path.normpath(str(workdir)))
    self._run = self._wandb.init(project=section.wandb_project,
                                 entity=section.wandb_entity or None, name=name,
                                 id=wandb_run_id(workdir), resume='allow',
                                 config=dict(run_config or {}))

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    self._run.log({k: float(np.asarray(v)) for k, v in scalars.items()}, step=int(step))

  def write_images(self, step: int, images: Mapping[str, Any]) -> None:
    # clu's images are [N, H, W, C] batches; W&B takes a list of images per key.
    self._run.log({k: [self._wandb.Image(np.asarray(im)) for im in np.asarray(v)]
                   for k, v in images.items()}, step=int(step))

  def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
    self._run.log(dict(texts), step=int(step))

  def write_histograms(self, step, arrays, num_buckets=None) -> None:
    bins = num_buckets or {}
    self._run.log({k: self._wandb.Histogram(np.asarray(v).ravel(), num_bins=bins.get(k, 64))
                   for k, v in arrays.items()}, step=int(step))

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    self._run.config.update(dict(hparams), allow_val_change=True)

  def write_summaries(self, step, values, metadata=None): pass
  def write_videos(self, step, videos): pass
  def write_audios(self, step, audios, *, sample_rate): pass

  def flush(self) -> None:
    pass  # wandb sends in the background.

  def close(self) -> None:
    self._run.finish()


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


def create(workdir: str, resume_step: int | None = None,
           section: ml_collections.ConfigDict | None = None,
           run_config: Mapping[str, Any] | None = None) -> interface.MetricWriter:
  """TensorBoard + JSONL on process 0 (+ W&B if the ``writers`` ``section`` names a
  project; ``run_config`` is its run's config); logging only on the others. With
  ``resume_step``, rows of metrics.jsonl after that step (from a killed run) are dropped
  first."""
  if jax.process_index() > 0:
    return metric_writers.create_default_writer(workdir, just_logging=True)
  files.Path(workdir).mkdir(parents=True, exist_ok=True)
  metrics = str(files.Path(workdir) / 'metrics.jsonl')
  if resume_step is not None:
    drop_rows_after(metrics, resume_step)
  # TensorBoard events through tf.summary, which writes gs:// URLs itself.
  chosen = [metric_writers.SummaryWriter(str(workdir)), JsonlWriter(metrics)]
  if section is not None and section.wandb_project:
    chosen.append(WandbWriter(section, workdir, run_config))
  return metric_writers.MultiWriter(chosen)


def write_results(results: Mapping[str, float], workdir: str, step: int,
                  section: ml_collections.ConfigDict | None = None) -> None:
  """Merges ``results`` into ``WORKDIR/results.json`` (atomically), TensorBoard and the
  writers of the ``writers`` ``section``."""
  if jax.process_index() > 0:
    return
  path = files.Path(workdir) / 'results.json'
  merged = json.loads(files.read_text(path) or '{}')
  merged.update(results)
  merged['step'] = step
  files.write_text(path, json.dumps(merged, indent=2, sort_keys=True))
  writer = create(workdir, section=section)
  writer.write_scalars(step, results)
  writer.close()
