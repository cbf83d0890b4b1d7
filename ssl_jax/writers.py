"""Metric writers: TensorBoard (clu) and ``WORKDIR/metrics.jsonl``; optionally Weights &
Biases (the ``writers`` section: ``--config.writers.wandb_project=NAME``). The writers
themselves, clu's and ours (ssl_jax/clu_writers.py), import TensorFlow: :func:`create`
imports them, so that the section loads without it."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, Mapping

import jax
import ml_collections

from ssl_jax import files

if TYPE_CHECKING:
  from clu.metric_writers import interface


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
  from clu import metric_writers  # Imports TensorFlow: only where a run writes.
  from ssl_jax import clu_writers
  if jax.process_index() > 0:
    return metric_writers.create_default_writer(workdir, just_logging=True)
  files.Path(workdir).mkdir(parents=True, exist_ok=True)
  metrics = str(files.Path(workdir) / 'metrics.jsonl')
  if resume_step is not None:
    drop_rows_after(metrics, resume_step)
  # TensorBoard events through tf.summary, which writes gs:// URLs itself.
  chosen = [metric_writers.SummaryWriter(str(workdir)), clu_writers.JsonlWriter(metrics)]
  if section is not None and section.wandb_project:
    chosen.append(clu_writers.WandbWriter(section, workdir, run_config))
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
