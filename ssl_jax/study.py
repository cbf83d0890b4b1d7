r"""The study runner: a grid of runs of ``ssl_jax.main``, their table and the papers' figures.

    python -m ssl_jax.study --config=configs/studies/revisiting_width.py:runlocal \
        --workdir=/tmp/width [--launch=run|print|gather]

A study config (configs/studies/*.py) names a base config file and its argument, fixed
``--config.KEY=VALUE`` overrides, one or more grids and the figures to draw. A grid is an
ordered product of axes: a config key with its values (:func:`axis`), or named variants,
each a set of overrides (:func:`variants`; an ablation such as 'flip only', '+ crop'). A
variant may also change the config file (the reserved key ``config``) or add items to its
argument (``arg``: 'model=revnet'). The string ``{study}`` in any value is the study's
workdir, so that an evaluation cell can name the encoder a pretraining cell trained.

Each cell runs as its own process, ``python -m ssl_jax.main --config=FILE:ARG
--workdir=W/CELL --config.KEY=VALUE ...``, from the folder above ``configs/`` (a crash stays
in its cell; its output goes to W/CELL/log.txt). The cells run one after another: a cell
whose results.json exists is skipped, an interrupted one resumes (main resumes from its
checkpoint). ``--launch=print`` prints each cell's command instead, one line per cell,
to run on a pod from the repository root; ``--launch=gather`` only gathers and draws.
Last, every finished cell's results.json and config.json are gathered into W/results.csv
(every metric) and W/results.md (the accuracies), one row per cell, and the figures are
drawn into W/<name>.png. W may be a local folder or gs://BUCKET/PATH (ssl_jax/files.py).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import fnmatch
import importlib.util
import io
import itertools
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import Any, Iterable, Mapping, Sequence

from absl import app
from absl import flags
from matplotlib.figure import Figure

from ssl_jax import config_lib
from ssl_jax import files

ConfigDict = config_lib.ConfigDict
FLAGS = flags.FLAGS

RESERVED = ('config', 'arg')  # Variant keys that change the config file and its argument.
FIGURE_KINDS = ('lines', 'bars', 'layers', 'fewshot')
# The end points of ssl_jax/models in network order: the x axis of a per-layer figure.
LAYER_ORDER = ('after_root', 'block1', 'block2', 'block3', 'block4', 'block5', 'fc6',
               'pre_logits')
TABLE_METRICS = ('*/top1', '*/accuracy', '*/ci95')


# Building a study config (configs/studies/*.py).

def axis(key: str, values: Sequence[Any], name: str = '') -> ConfigDict:
  """A grid axis over the config field ``key`` ('model.k'); its column is ``name`` (by
  default the key's last part, 'k')."""
  if not values:
    raise ValueError(f'axis {key!r} has no values; give at least one.')
  return ConfigDict({'name': name or key.split('.')[-1], 'key': key,
                     'choices': tuple(str(v) for v in values),
                     'overrides': tuple(((key, v),) for v in values)})


def variants(name: str, named: Mapping[str, Mapping[str, Any]]) -> ConfigDict:
  """A grid axis of named variants (column ``name``, values the variants' names, in
  order), each a set of overrides: dotted config keys, or ``config`` (another config
  file) and ``arg`` (items added to the config argument)."""
  if not named:
    raise ValueError(f'variants {name!r} has no variants; give at least one.')
  return ConfigDict({'name': name, 'key': '', 'choices': tuple(named),
                     'overrides': tuple(tuple(o.items()) for o in named.values())})


def figure(kind: str, name: str, *, metric: str = '', x: str = '', series: str = '',
           log_x: bool = False, evaluator: str = '', where: Mapping[str, Any] | None = None,
           title: str = '') -> ConfigDict:
  """A figure, drawn into W/<name>.png: ``lines`` (``metric`` against the numeric column
  ``x``, one line per value of the column ``series``; ``log_x``), ``bars`` (``metric``
  per value of the column ``x``, grouped by ``series``), ``layers`` (the top-1 of the
  evaluator instance ``evaluator`` on each end point, one line per cell) or ``fewshot``
  (the accuracy of each N-way K-shot setting of ``evaluator`` with its 95% interval).
  ``series`` may name several columns ('method,architecture'); ``where`` keeps the rows
  whose columns have these values ('' for a column the row lacks: a cell of another grid)."""
  if kind not in FIGURE_KINDS:
    raise ValueError(f'figure {name!r}: kind={kind!r}; use one of {", ".join(FIGURE_KINDS)}.')
  return ConfigDict({'kind': kind, 'name': name, 'metric': metric, 'x': x, 'series': series,
                     'log_x': log_x, 'evaluator': evaluator,
                     'where': tuple((where or {}).items()), 'title': title or name})


def probe_figures(kind: str, name: str, *, caption: str, **options: Any) -> list[ConfigDict]:
  """The figure pair every study draws: the linear probe's top-1 on pre_logits as ``name``
  and L-BFGS's as ``name``_lbfgs, each titled '<metric> <caption>'; ``options`` as
  `figure`'s."""
  return [figure(kind, name + suffix, metric=metric, title=f'{metric} {caption}', **options)
          for suffix, metric in (('', 'linear/pre_logits/top1'),
                                 ('_lbfgs', 'lbfgs/pre_logits/top1'))]


def study_config(base: str, base_arg: str, grids: Sequence[Sequence[ConfigDict]], *,
                 overrides: Mapping[str, Any] | None = None,
                 figures: Sequence[ConfigDict] = (),
                 table_metrics: Sequence[str] = TABLE_METRICS) -> ConfigDict:
  """A locked study config: the base config file (relative to the repository root) and its
  argument, grids (each an ordered product of axes; the cells of all grids, a cell shared
  by two grids run once), fixed ``overrides`` of every cell, the figures, and which metrics
  results.md shows (fnmatch patterns; results.csv has all)."""
  c = ConfigDict({'base': base, 'base_arg': base_arg,
                  'overrides': tuple((overrides or {}).items()),
                  'grids': tuple(tuple(g) for g in grids), 'figures': tuple(figures),
                  'table_metrics': tuple(table_metrics)})
  c.lock()
  return c


# Expanding the grid.

@dataclasses.dataclass(frozen=True)
class Cell:
  """One run of the study: its folder name, its value in each grid column, its config
  file with argument ('configs/x.py:runlocal'), its overrides (dotted key -> value) and
  the config key of each plain axis's column."""
  name: str
  columns: dict[str, str]
  config: str
  overrides: dict[str, Any]
  keys: dict[str, str]  # Column -> config key, for the columns of plain axes.


def _safe(text: str) -> str:
  """``text`` as a piece of a folder name: letters, digits, '.', '+', '-', parentheses."""
  return re.sub(r'[^A-Za-z0-9.+()-]+', '-', text).strip('-') or '-'


def cell_name(columns: Mapping[str, str]) -> str:
  """'method-rotation_k-0.5': each column's name and value, in the grid's order."""
  return '_'.join(f'{_safe(k)}-{_safe(v)}' for k, v in columns.items())


def _substitute(value: Any, workdir: str) -> Any:
  return value.replace('{study}', workdir) if isinstance(value, str) else value


def _cell(study: ConfigDict, axes: Sequence[ConfigDict], choice: Sequence[int],
          workdir: str) -> Cell:
  """The cell of ``choice`` (one value index per axis)."""
  keys: dict[str, str] = {}
  path, args, overrides, columns = study.base, [study.base_arg], dict(study.overrides), {}
  for ax, i in zip(axes, choice):
    columns[ax.name] = ax.choices[i]
    if ax.key:
      keys[ax.name] = ax.key
    for key, value in ax.overrides[i]:
      if key == 'config':
        path = value
      elif key == 'arg':
        args.append(value)
      else:
        overrides[key] = value
  arg = ','.join(a for a in args if a)
  config = _substitute(f'{path}:{arg}' if arg else path, workdir)
  return Cell(cell_name(columns), columns, config,
              {k: _substitute(v, workdir) for k, v in overrides.items()}, keys)


def expand(study: ConfigDict, workdir: str) -> list[Cell]:
  """Every cell of every grid, in order (the last axis varies fastest); a cell that two
  grids share appears once."""
  cells: dict[str, Cell] = {}
  for axes in study.grids:
    names = [ax.name for ax in axes]
    if len(set(names)) != len(names):
      raise ValueError(f'Two axes of one grid share a column name ({names}): give one a '
                       'name=.')
    for choice in itertools.product(*(range(len(ax.choices)) for ax in axes)):
      cell = _cell(study, axes, choice, workdir)
      if cell.name in cells and cells[cell.name] != cell:
        raise ValueError(f'Two different cells are both named {cell.name!r}: give their '
                         'axes distinct names or values.')
      cells[cell.name] = cell
  return list(cells.values())


def columns_of(study: ConfigDict) -> list[str]:
  """The grid columns, in the order of first appearance."""
  return list(dict.fromkeys(ax.name for axes in study.grids for ax in axes))


def check_keys(cells: Iterable[Cell], root: str) -> None:
  """Raises ValueError naming the cell and the key if an override is not a field of its
  cell's config (checked for all cells before any runs)."""
  valid: dict[str, set[str]] = {}
  for cell in cells:
    if cell.config not in valid:
      valid[cell.config] = config_lib.field_names(load_config(cell.config, root))
    for key in cell.overrides:
      if key not in valid[cell.config]:
        raise ValueError(f'Cell {cell.name}: {key!r} is not a field of {cell.config}; '
                         'fix the study config (valid keys: python -m ssl_jax.main '
                         f'--config={cell.config} --config.x=0 lists them).')


def load_config(path_and_arg: str, root: str) -> ConfigDict:
  """The config (study or run) of 'configs/x.py:arg', its path relative to ``root``."""
  path, _, arg = path_and_arg.partition(':')
  full = os.path.join(root, path)  # An absolute path stays as it is.
  if not os.path.exists(full):
    raise FileNotFoundError(f'No config file {path!r} under {root}.')
  if root not in sys.path:
    sys.path.insert(0, root)  # Config files import configs.common.
  spec = importlib.util.spec_from_file_location('_study_config_file', full)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


# Running the cells.

def _flag_value(value: Any) -> str:
  """A value as config_flags parses it after --config.KEY=: a tuple as a Python literal
  without spaces ("('a','b')"; config_flags reads '(a,b)' as one string)."""
  if isinstance(value, (list, tuple)):
    return '(' + ','.join(repr(v) for v in value) + (',)' if len(value) == 1 else ')')
  return str(value)


def command(cell: Cell, workdir: str, main_module: str = 'ssl_jax.main') -> list[str]:
  """The argv of one cell's run (from the repository root)."""
  return ([sys.executable, '-m', main_module, f'--config={cell.config}',
           f'--workdir={cell_dir(workdir, cell)}'] +
          [f'--config.{k}={_flag_value(v)}' for k, v in cell.overrides.items()])


def cell_dir(workdir: str, cell: Cell) -> str:
  return os.fspath(files.Path(workdir) / cell.name)


def status(workdir: str, cell: Cell) -> str:
  """'done' (results.json exists), 'resume' (the cell has started: its folder holds
  files) or 'new'."""
  folder = files.Path(cell_dir(workdir, cell))
  if (folder / 'results.json').exists():
    return 'done'
  if folder.exists() and any(p.name != 'log.txt' for p in folder.iterdir()):
    return 'resume'
  return 'new'


class _Stop:
  """Set by SIGTERM: the running cell gets SIGTERM (main saves a checkpoint and exits)
  and no further cell starts."""

  def __init__(self):
    self.process: subprocess.Popen | None = None
    self.stopped = False

  def __call__(self, signum, frame):
    self.stopped = True
    if self.process is not None:
      self.process.send_signal(signal.SIGTERM)


def run_cell(cell: Cell, workdir: str, root: str, main_module: str, stop: _Stop) -> int:
  """Runs one cell to its end; its output is appended to W/CELL/log.txt (written at the
  end for a gs:// workdir, which cannot append). Returns the exit status."""
  folder = files.Path(cell_dir(workdir, cell))
  folder.mkdir(parents=True, exist_ok=True)
  argv = command(cell, workdir, main_module)
  header = f'\n=== {datetime.datetime.now().isoformat(timespec="seconds")} {shlex.join(argv)}\n'
  local = not files.is_url(workdir)
  with tempfile.TemporaryDirectory() as tmp:
    log_path = os.fspath(folder / 'log.txt') if local else os.path.join(tmp, 'log.txt')
    with open(log_path, 'a') as log:
      log.write(header)
      log.flush()
      stop.process = subprocess.Popen(argv, cwd=root, stdout=log, stderr=subprocess.STDOUT)
      code = stop.process.wait()
      stop.process = None
    if not local:
      with open(log_path) as log:
        files.append_text(folder / 'log.txt', log.read())
  return code


def run_all(cells: Sequence[Cell], workdir: str, root: str, main_module: str) -> list[str]:
  """Runs every cell not done, one after another; returns the names of those that
  failed (a failed cell does not stop the others; SIGTERM does)."""
  stop = _Stop()
  previous = signal.signal(signal.SIGTERM, stop)
  failed = []
  try:
    for i, cell in enumerate(cells):
      state = status(workdir, cell)
      print(f'[{i + 1}/{len(cells)}] {cell.name}: {state}', flush=True)
      if state == 'done':
        continue
      start = time.time()
      code = run_cell(cell, workdir, root, main_module, stop)
      print(f'    exit {code} after {time.time() - start:.0f} s; log: '
            f'{cell_dir(workdir, cell)}/log.txt', flush=True)
      if stop.stopped:
        print('Stopped by SIGTERM; run the same command to resume.')
        break
      if code != 0:
        failed.append(cell.name)
  finally:
    signal.signal(signal.SIGTERM, previous)
  return failed


# Gathering results.

def gather(cells: Sequence[Cell], workdir: str) -> list[dict[str, Any]]:
  """One row per finished cell: 'cell', each grid column (a plain axis's value read back
  from the cell's config.json, typed), then its results.json (flat keys)."""
  rows = []
  for cell in cells:
    folder = files.Path(cell_dir(workdir, cell))
    results = files.read_text(folder / 'results.json')
    if results is None:
      continue
    saved = files.read_text(folder / 'config.json')
    config = config_lib.flatten(ConfigDict(json.loads(saved))) if saved else {}
    row: dict[str, Any] = {'cell': cell.name}
    for column, value in cell.columns.items():
      row[column] = config.get(cell.keys.get(column, ''), value)
    row.update(json.loads(results))
    rows.append(row)
  return rows


def metric_names(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> list[str]:
  """Every key of the rows that is not 'cell' or a grid column, sorted."""
  return sorted({k for row in rows for k in row} - {'cell', *columns})


def to_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
  """results.csv: cell, the grid columns, then every metric."""
  out = io.StringIO()
  writer = csv.writer(out, lineterminator='\n')
  header = ['cell', *columns, *metric_names(rows, columns)]
  writer.writerow(header)
  for row in rows:
    writer.writerow(['' if row.get(k) is None else row[k] for k in header])
  return out.getvalue()


def _cell_text(value: Any) -> str:
  if isinstance(value, float):
    return f'{value:.4f}'
  return '' if value is None else str(value)


def to_markdown(rows: Sequence[Mapping[str, Any]], columns: Sequence[str],
                patterns: Sequence[str]) -> str:
  """results.md: the grid columns, then the metrics that match ``patterns``."""
  metrics = [m for m in metric_names(rows, columns)
             if any(fnmatch.fnmatchcase(m, p) for p in patterns)]
  header = [*columns, *metrics]
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join([*(str(row.get(c, '')) for c in columns),
                               *(_cell_text(row.get(m)) for m in metrics)]) + ' |'
            for row in rows]
  return '\n'.join(lines) + '\n'


# Figures.

def _label(row: Mapping[str, Any], series: str) -> str:
  """The values of the comma-separated columns ``series`` in ``row``, joined by spaces."""
  return ' '.join(str(row.get(c, '')) for c in series.split(',')) if series else ''


def _series(rows: Sequence[Mapping[str, Any]], series: str) -> dict[str, list]:
  """The rows grouped by their :func:`_label` (one group '' if no series)."""
  groups: dict[str, list] = {}
  for row in rows:
    groups.setdefault(_label(row, series), []).append(row)
  return groups


def select(rows: Sequence[Mapping[str, Any]], where: Sequence[tuple[str, Any]]) -> list:
  """The rows whose columns have the values of ``where`` ('' matches a missing column)."""
  return [r for r in rows if all(str(r.get(c, '')) == str(v) for c, v in where)]


def _require(rows: Sequence[Mapping[str, Any]], spec: ConfigDict, key: str) -> list:
  """The rows that have ``key``; ValueError naming the figure if none has it."""
  found = [r for r in rows if r.get(key) is not None]
  if not found:
    raise ValueError(f'figure {spec.name!r}: no finished cell has {key!r}; check the '
                     'figure\'s metric/x names against results.csv.')
  return found


def draw_lines(rows: Sequence[Mapping[str, Any]], spec: ConfigDict) -> Figure:
  """``spec.metric`` against the numeric column ``spec.x``, a line per ``spec.series``."""
  fig = Figure(figsize=(5, 3.6))
  ax = fig.add_subplot()
  rows = _require(_require(rows, spec, spec.x), spec, spec.metric)
  for label, group in _series(rows, spec.series).items():
    points = sorted((float(r[spec.x]), r[spec.metric]) for r in group)
    ax.plot([p[0] for p in points], [p[1] for p in points], marker='o',
            label=label or None)
  if spec.log_x:
    ax.set_xscale('log')
    # The grid's own values as ticks: log scale's default 2x10^3-style labels collide.
    xs = sorted({float(r[spec.x]) for r in rows})
    ax.set_xticks(xs, [f'{x:,g}' for x in xs])
    ax.minorticks_off()
  ax.set_xlabel(spec.x)
  ax.set_ylabel(spec.metric)
  return _finish(fig, ax, spec)


def draw_bars(rows: Sequence[Mapping[str, Any]], spec: ConfigDict) -> Figure:
  """``spec.metric`` per value of the column ``spec.x`` (in the cells' order), grouped by
  ``spec.series``."""
  rows = _require(_require(rows, spec, spec.x), spec, spec.metric)
  categories = list(dict.fromkeys(str(r[spec.x]) for r in rows))
  values = {label: {str(r[spec.x]): r[spec.metric] for r in group}
            for label, group in _series(rows, spec.series).items()}
  return _grouped_bars(categories, values, {}, spec, spec.x, spec.metric)


def _grouped_bars(categories: Sequence[str], values: Mapping[str, Mapping[str, float]],
                  errors: Mapping[str, Mapping[str, float]], spec: ConfigDict,
                  xlabel: str, ylabel: str) -> Figure:
  """Bars of ``values[series][category]``, one colour per series, with error bars."""
  fig = Figure(figsize=(max(5, 0.9 * len(categories) * max(1, len(values))), 3.6))
  ax = fig.add_subplot()
  width = 0.8 / len(values)
  for j, (label, by_category) in enumerate(values.items()):
    xs = [i + (j - (len(values) - 1) / 2) * width for i, c in enumerate(categories)
          if c in by_category]
    ys = [by_category[c] for c in categories if c in by_category]
    err = [errors.get(label, {}).get(c, 0.0) for c in categories if c in by_category]
    ax.bar(xs, ys, width, yerr=err if any(err) else None, capsize=3, label=label or None)
  ax.set_xticks(range(len(categories)), categories, rotation=20)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  return _finish(fig, ax, spec)


def draw_layers(rows: Sequence[Mapping[str, Any]], spec: ConfigDict) -> Figure:
  """The top-1 of evaluator ``spec.evaluator`` on each end point (network order), one
  line per cell, labelled by ``spec.series`` or the cell's name."""
  pattern = re.compile(rf'^{re.escape(spec.evaluator)}/([^/]+)/top1$')
  found = {m.group(1) for r in rows for k in r if (m := pattern.match(k))}
  if not found:
    raise ValueError(f'figure {spec.name!r}: no finished cell has {spec.evaluator}/LAYER/'
                     'top1; check evaluator= against results.csv.')
  layers = sorted(found, key=lambda l: (LAYER_ORDER.index(l) if l in LAYER_ORDER
                                        else len(LAYER_ORDER), l))
  fig = Figure(figsize=(5.5, 3.6))
  ax = fig.add_subplot()
  for row in rows:
    points = [(i, row[f'{spec.evaluator}/{l}/top1']) for i, l in enumerate(layers)
              if f'{spec.evaluator}/{l}/top1' in row]
    if points:
      ax.plot([p[0] for p in points], [p[1] for p in points], marker='o',
              label=_label(row, spec.series) or row['cell'])
  ax.set_xticks(range(len(layers)), layers, rotation=20)
  ax.set_xlabel('end point')
  ax.set_ylabel(f'{spec.evaluator} top-1')
  return _finish(fig, ax, spec)


def draw_fewshot(rows: Sequence[Mapping[str, Any]], spec: ConfigDict) -> Figure:
  """The mean accuracy of each N-way K-shot setting of evaluator ``spec.evaluator``, with
  its 95% interval as error bars, grouped by ``spec.series``."""
  pattern = re.compile(rf'^{re.escape(spec.evaluator)}/(\d+)way(\d+)shot/accuracy$')
  settings = sorted({(int(m.group(1)), int(m.group(2))) for r in rows for k in r
                     if (m := pattern.match(k))})
  if not settings:
    raise ValueError(f'figure {spec.name!r}: no finished cell has {spec.evaluator}/'
                     'NwayKshot/accuracy; check evaluator= against results.csv.')
  categories = [f'{n}-way {k}-shot' for n, k in settings]
  values: dict[str, dict[str, float]] = {}
  errors: dict[str, dict[str, float]] = {}
  for row in rows:
    label = _label(row, spec.series) or row['cell']
    for (n, k), name in zip(settings, categories):
      key = f'{spec.evaluator}/{n}way{k}shot'
      if f'{key}/accuracy' in row:
        values.setdefault(label, {})[name] = row[f'{key}/accuracy']
        errors.setdefault(label, {})[name] = row.get(f'{key}/ci95', 0.0)
  return _grouped_bars(categories, values, errors, spec, 'setting', 'accuracy')


def _finish(fig: Figure, ax, spec: ConfigDict) -> Figure:
  ax.set_title(textwrap.fill(spec.title, 55), fontsize=9)
  ax.grid(alpha=0.3)
  if ax.get_legend_handles_labels()[1]:
    ax.legend(fontsize=7, title=spec.series.replace(',', ', ') or None, title_fontsize=7)
  fig.tight_layout()
  return fig


DRAW = {'lines': draw_lines, 'bars': draw_bars, 'layers': draw_layers,
        'fewshot': draw_fewshot}


def write_png(fig: Figure, path: str) -> None:
  """Saves ``fig`` as PNG through the path layer (a local file or gs://)."""
  data = io.BytesIO()
  fig.savefig(data, format='png', dpi=120)
  files.Path(path).write_bytes(data.getvalue())


def report(study: ConfigDict, cells: Sequence[Cell], workdir: str) -> list[str]:
  """Writes results.csv, results.md and the figures; returns the files written. A figure
  without data is skipped with a message (the other outputs are still written)."""
  rows = gather(cells, workdir)
  columns = columns_of(study)
  root = files.Path(workdir)
  root.mkdir(parents=True, exist_ok=True)
  files.write_text(root / 'results.csv', to_csv(rows, columns))
  files.write_text(root / 'results.md', to_markdown(rows, columns, study.table_metrics))
  written = ['results.csv', 'results.md']
  for spec in study.figures:
    try:
      fig = DRAW[spec.kind](select(rows, spec.where), spec)
    except ValueError as e:
      print(f'Skipped: {e}')
      continue
    write_png(fig, os.fspath(root / f'{spec.name}.png'))
    written.append(f'{spec.name}.png')
  print(f'{len(rows)} of {len(cells)} cells finished; wrote {", ".join(written)} in {workdir}')
  return written


# Command line.

def define_flags() -> None:
  """The command line's flags; defined only when this module runs as the program (config
  files import it too)."""
  flags.DEFINE_string('config', None, 'Study config file, argument after a colon: '
                      'configs/studies/NAME.py[:runlocal].')
  flags.DEFINE_string('workdir', None, 'The study folder (local or gs://): one folder per '
                      'cell, results.csv, results.md, figures.')
  flags.DEFINE_enum('launch', 'run', ['run', 'print', 'gather'],
                    'run: each cell here, in turn; print: each cell\'s command, one line per '
                    'cell (for a pod); gather: only the tables and figures.')
  flags.DEFINE_string('main_module', 'ssl_jax.main', 'The module each cell runs with '
                      'python -m (tests give a stand-in).')


def repo_root(study_path: str) -> str:
  """The folder above configs/ of 'configs/studies/NAME.py': where the cells run from."""
  return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(study_path))))


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  config_arg, launch, main_module = FLAGS.config, FLAGS.launch, FLAGS.main_module
  if not config_arg or not FLAGS.workdir:
    sys.exit('ssl_jax.study: --config=configs/studies/NAME.py[:runlocal] and --workdir=W '
             'are required.')
  workdir = os.fspath(files.absolute(FLAGS.workdir))
  path, colon, arg = config_arg.partition(':')
  root = repo_root(path)
  try:
    study = load_config(os.path.abspath(path) + colon + arg, root)
    cells = expand(study, workdir)
    if launch != 'gather':
      check_keys(cells, root)  # A misspelt key fails here, not in every cell.
    if launch == 'print':
      for cell in cells:
        print(shlex.join(['python'] + command(cell, workdir, main_module)[1:]))
      return
    if launch == 'run':
      failed = run_all(cells, workdir, root, main_module)
    else:
      failed = []
    report(study, cells, workdir)
  except (ValueError, KeyError, FileNotFoundError) as e:
    sys.exit(f'ssl_jax.study: {type(e).__name__}: {e}')
  if failed:
    sys.exit(f'ssl_jax.study: {len(failed)} cell(s) failed: {", ".join(failed)} (see their '
             'log.txt); run the same command to retry them.')


if __name__ == '__main__':
  define_flags()
  app.run(main)
