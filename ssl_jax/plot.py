"""Curves and a results table from runs' workdirs (local folders or gs:// alike).

    python -m ssl_jax.plot /tmp/rot /tmp/rot_k8 --output=/tmp/plots

draws, from each run's ``metrics.jsonl``, the pretext loss, the learning rate, the kNN
monitor's accuracy and the other evaluators' accuracies against the step, every run
overlaid on one figure per quantity (its legend names each run by its workdir), as PNG
files in ``--output`` (default: the current folder), and prints a markdown table of
every run's ``results.json``: one row per metric, one column per run.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Sequence

from absl import app
from absl import flags
# Figures without pyplot: no display and no global backend (savefig draws with Agg), so
# importing this module in a notebook leaves its inline plots alone.
from matplotlib import figure as figure_lib

from ssl_jax import files

OUTPUT = flags.DEFINE_string('output', '.', 'Folder for the PNG files (local or gs://).')

# One figure per quantity: (file stem, y label, which metrics.jsonl keys it draws).
PANELS: tuple[tuple[str, str, Callable[[str], bool]], ...] = (
    ('loss', 'pretext loss', lambda key: key == 'loss'),
    ('learning_rate', 'learning rate', lambda key: key == 'learning_rate'),
    ('knn', 'kNN top-1', lambda key: key.startswith('knn/') and key.endswith('/top1')),
    # Every other evaluator's held-out accuracy (periodic instances, and the final row
    # that ssl_jax.main writes after training); not the probes' training accuracy.
    ('evaluation', 'top-1', lambda key: '/' in key and not key.startswith('knn/')
     and key.endswith('/top1')),
)


def read_metrics(workdir: str) -> list[dict[str, float]]:
  """The rows of ``WORKDIR/metrics.jsonl`` (``{'step': s, name: value}``), in file order."""
  text = files.read_text(files.Path(workdir) / 'metrics.jsonl')
  if text is None:
    raise FileNotFoundError(f'{workdir}/metrics.jsonl does not exist: is {workdir!r} the '
                            'workdir of a run that has logged a step?')
  return [json.loads(line) for line in text.splitlines() if line.strip()]


def series(rows: Sequence[dict[str, float]], key: str) -> tuple[list[int], list[float]]:
  """(steps, values) of ``key`` over the rows that hold it."""
  kept = [(int(row['step']), float(row[key])) for row in rows if key in row]
  return [s for s, _ in kept], [v for _, v in kept]


def run_names(workdirs: Sequence[str]) -> list[str]:
  """Each workdir's last path component, or the whole path where two runs share it."""
  names = [os.path.basename(str(w).rstrip('/')) or str(w) for w in workdirs]
  return [n if names.count(n) == 1 else str(w) for n, w in zip(names, workdirs)]


def draw(panel: tuple[str, str, Callable[[str], bool]],
         runs: dict[str, list[dict[str, float]]]) -> figure_lib.Figure | None:
  """One figure of ``panel``: a line per (run, matching key), labelled by the run's name
  (and the key where the panel draws several); None when no run logged such a key."""
  _, ylabel, matches = panel
  lines = [(name, key) for name, rows in runs.items()
           for key in sorted({k for row in rows for k in row if matches(k)})]
  if not lines:
    return None
  fig = figure_lib.Figure(figsize=(6, 4))
  ax = fig.subplots()
  drawn = {(name, key): series(runs[name], key) for name, key in lines}
  if all(len(steps) == 1 for steps, _ in drawn.values()):
    _bars(ax, drawn)  # Final evaluations only: one value per run and metric.
  else:
    several_keys = len({key for _, key in lines}) > 1
    for (name, key), (steps, values) in drawn.items():
      ax.plot(steps, values, marker='.' if len(steps) < 20 else None,
              label=f'{name}: {key}' if several_keys else name)
    ax.set_xlabel('step')
    values = [v for _, vs in drawn.values() for v in vs]
    if panel[0] == 'loss' and min(values) > 0:
      ax.set_yscale('log')  # Losses fall over decades early on (not SimSiam's, negative).
  ax.set_ylabel(ylabel)
  ax.grid(alpha=0.3)
  ax.legend(fontsize='small')
  fig.tight_layout()
  return fig


def _bars(ax, drawn: dict[tuple[str, str], tuple[list[int], list[float]]]) -> None:
  """Grouped bars on ``ax``: a group per metric, a bar per run (the value at its one
  step)."""
  names = list(dict.fromkeys(name for name, _ in drawn))
  keys = sorted({key for _, key in drawn})
  width = 0.8 / len(names)
  for i, name in enumerate(names):
    at = [j for j, key in enumerate(keys) if (name, key) in drawn]
    ax.bar([j + (i - (len(names) - 1) / 2) * width for j in at],
           [drawn[name, keys[j]][1][0] for j in at], width, label=name)
  ax.set_xticks(range(len(keys)), [k.removesuffix('/top1') for k in keys], rotation=20,
                ha='right', fontsize='small')


def plot(workdirs: Sequence[str], output: str) -> dict[str, str]:
  """Writes ``OUTPUT/<panel>.png`` for every panel some run has data for; returns
  {panel: path}."""
  runs = dict(zip(run_names(workdirs), (read_metrics(w) for w in workdirs)))
  files.Path(output).mkdir(parents=True, exist_ok=True)
  written = {}
  for panel in PANELS:
    fig = draw(panel, runs)
    if fig is None:
      continue
    path = files.Path(output) / f'{panel[0]}.png'
    with path.open('wb') as f:  # Through the path layer, so gs:// works too.
      fig.savefig(f, format='png', dpi=100)
    written[panel[0]] = str(path)
  return written


def read_results(workdir: str) -> dict[str, float]:
  """``WORKDIR/results.json``, or {} for a run that has not finished its evaluation."""
  return json.loads(files.read_text(files.Path(workdir) / 'results.json') or '{}')


def results_table(workdirs: Sequence[str]) -> str:
  """A markdown table of the runs' results.json: one row per metric (sorted; ``step``
  first), one column per run, '' where a run lacks the metric."""
  names = run_names(workdirs)
  results = [read_results(w) for w in workdirs]
  keys = sorted({k for r in results for k in r}, key=lambda k: (k != 'step', k))
  cell = lambda r, k: '' if k not in r else (  # noqa: E731
      str(int(r[k])) if float(r[k]).is_integer() and abs(r[k]) >= 1 else f'{r[k]:.4f}')
  rows = ['| metric | ' + ' | '.join(names) + ' |',
          '|---|' + '---|' * len(names)]
  rows += [f'| {k} | ' + ' | '.join(cell(r, k) for r in results) + ' |' for k in keys]
  return '\n'.join(rows)


def main(argv: Sequence[str]) -> None:
  workdirs = argv[1:]
  if not workdirs:
    raise app.UsageError('Name at least one workdir: python -m ssl_jax.plot WORKDIR '
                         '[WORKDIR ...] [--output=DIR]')
  try:
    written = plot(workdirs, OUTPUT.value)
  except FileNotFoundError as e:
    raise SystemExit(f'ssl_jax.plot: {e}') from None
  for panel, path in written.items():
    print(f'{panel}: {path}')
  print(results_table(workdirs))


if __name__ == '__main__':
  app.run(main)
