"""ssl_jax.plot: the curves drawn are the metrics written, one line per run; the table."""

import json
import subprocess
import sys

import numpy as np

from ssl_jax import clu_writers
from ssl_jax import plot


def _run(workdir, losses, knn, results):
  """A workdir whose metrics.jsonl is written by the run's own writer."""
  workdir.mkdir()
  writer = clu_writers.JsonlWriter(str(workdir / 'metrics.jsonl'))
  for step, loss in enumerate(losses, 1):
    writer.write_scalars(step, {'steps_per_sec': 3.0})
    writer.write_scalars(step, {'loss': loss, 'learning_rate': 0.1 * step})
    if step in knn:
      writer.write_scalars(step, {'knn/pre_logits/top1': knn[step]})
  writer.write_scalars(len(losses), results)
  (workdir / 'results.json').write_text(json.dumps(dict(results, step=len(losses))))
  return str(workdir)


def test_lines_are_the_metrics_of_each_run(tmp_path):
  a = _run(tmp_path / 'a', [2.0, 1.5, 1.2, 1.0], {2: 0.2, 3: 0.25},
           {'lbfgs/pre_logits/top1': 0.4, 'knn/pre_logits/top1': 0.3})
  b = _run(tmp_path / 'b', [2.2, 1.9], {2: 0.1}, {'lbfgs/pre_logits/top1': 0.25})
  runs = {'a': plot.read_metrics(a), 'b': plot.read_metrics(b)}
  panels = {p[0]: p for p in plot.PANELS}
  loss = plot.draw(panels['loss'], runs).axes[0]
  assert [line.get_label() for line in loss.lines] == ['a', 'b']
  np.testing.assert_array_equal(loss.lines[0].get_xdata(), [1, 2, 3, 4])
  np.testing.assert_allclose(loss.lines[0].get_ydata(), [2.0, 1.5, 1.2, 1.0])
  np.testing.assert_allclose(loss.lines[1].get_ydata(), [2.2, 1.9])
  knn = plot.draw(panels['knn'], runs).axes[0]
  # The periodic monitor's rows, then the final evaluation's row (ssl_jax.main).
  np.testing.assert_array_equal(knn.lines[0].get_xdata(), [2, 3, 4])
  np.testing.assert_allclose(knn.lines[0].get_ydata(), [0.2, 0.25, 0.3])
  np.testing.assert_allclose(knn.lines[1].get_ydata(), [0.1])
  lr = plot.draw(panels['learning_rate'], runs).axes[0]
  np.testing.assert_allclose(lr.lines[1].get_ydata(), [0.1, 0.2])
  # Final evaluations only (one step per run): grouped bars, one per run and metric.
  evaluation = plot.draw(panels['evaluation'], runs).axes[0]
  np.testing.assert_allclose([bar.get_height() for bar in evaluation.patches], [0.4, 0.25])
  assert [t.get_text() for t in evaluation.get_xticklabels()] == ['lbfgs/pre_logits']
  assert plot.draw(panels['knn'], {'c': [{'step': 1, 'loss': 1.0}]}) is None
  # Log scale for positive losses only (SimSiam's negative cosine stays linear).
  assert loss.get_yscale() == 'log'
  simsiam = [{'step': 1, 'loss': -0.1}, {'step': 2, 'loss': -0.5}]
  assert plot.draw(panels['loss'], {'s': simsiam}).axes[0].get_yscale() == 'linear'


def test_command_writes_pngs_and_prints_table(tmp_path):
  a = _run(tmp_path / 'a', [2.0, 1.0], {2: 0.2},
           {'lbfgs/pre_logits/top1': 0.4, 'knn/pre_logits/top1': 0.2})
  b = _run(tmp_path / 'b', [2.0, 1.5], {}, {'lbfgs/pre_logits/top1': 0.25})
  out = tmp_path / 'plots'
  done = subprocess.run([sys.executable, '-m', 'ssl_jax.plot', a, b, f'--output={out}'],
                        capture_output=True, text=True, check=True)
  for name in ('loss', 'learning_rate', 'knn', 'evaluation'):
    assert (out / f'{name}.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  table = [line for line in done.stdout.splitlines() if line.startswith('|')]
  assert table[0] == '| metric | a | b |'
  assert table[2:] == ['| step | 2 | 2 |', '| knn/pre_logits/top1 | 0.2000 |  |',
                       '| lbfgs/pre_logits/top1 | 0.4000 | 0.2500 |']


def test_same_names_keep_their_paths_and_missing_run_is_one_line(tmp_path):
  assert plot.run_names(['/x/run', '/y/run', '/z/other/']) == ['/x/run', '/y/run', 'other']
  done = subprocess.run([sys.executable, '-m', 'ssl_jax.plot', str(tmp_path / 'none')],
                        capture_output=True, text=True)
  assert done.returncode != 0
  assert 'metrics.jsonl does not exist' in done.stderr
