"""The metric writers ssl_jax adds to clu's: ``WORKDIR/metrics.jsonl`` and Weights & Biases
(:func:`ssl_jax.writers.create` puts them beside TensorBoard's). clu's writers import
TensorFlow, so this module is apart from the ``writers`` section (ssl_jax/writers.py),
which configs load without it."""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

from clu.metric_writers import interface
import ml_collections
import numpy as np

from ssl_jax import files
from ssl_jax import writers


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


class WandbWriter(interface.MetricWriter):
  """Logs to one Weights & Biases run per workdir (resumed when the workdir is)."""

  def __init__(self, section: ml_collections.ConfigDict, workdir: str,
               run_config: Mapping[str, Any] | None = None):
    self._wandb = writers.import_wandb()
    name = section.wandb_name or os.path.basename(os.path.normpath(str(workdir)))
    self._run = self._wandb.init(project=section.wandb_project,
                                 entity=section.wandb_entity or None, name=name,
                                 id=writers.wandb_run_id(workdir), resume='allow',
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
