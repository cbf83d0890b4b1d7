"""The study runner (ssl_jax/study.py): grid expansion, launch commands parsed back by
config_flags, skip/resume/isolation of cells with a stand-in main, the tables and figures."""

import csv
import glob
import io
import json
import os
import shlex
import subprocess
import sys
import textwrap

from absl import flags
from matplotlib import container
from ml_collections import config_flags
import pytest

from ssl_jax import files
from ssl_jax import study

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROTATION = os.path.join(REPO, 'configs', 'rotation_resnet50.py')
# A full study's required argument.
FULL_ARGS = {'cole_granularity.py': 'taxonomy=gs://b/inat21/train.json'}
STUDY_CONFIGS = sorted(glob.glob(os.path.join(REPO, 'configs', 'studies', '*.py')))

# A stand-in for ssl_jax.main: appends its argv to WORKDIR/calls.txt, finishes a cell
# that an earlier run left interrupted (WORKDIR/checkpoint holds its step), fails when
# seed is 13, and otherwise writes config.json and results.json.
FAKE_MAIN = textwrap.dedent('''
    import json, os, sys
    args = dict(a[2:].split('=', 1) for a in sys.argv[1:])
    workdir = args['workdir']
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, 'calls.txt'), 'a') as f:
      f.write(' '.join(sys.argv[1:]) + '\\n')
    print('fake main running')
    if args.get('config.seed') == '13':
      sys.exit('crashed on purpose')
    checkpoint = os.path.join(workdir, 'checkpoint')
    resumed_from = int(open(checkpoint).read()) if os.path.exists(checkpoint) else 0
    k = float(args['config.model.k'])
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      json.dump({'model': {'k': k}, 'seed': int(args['config.seed'])}, f)
    with open(os.path.join(workdir, 'results.json'), 'w') as f:
      json.dump({'lbfgs/pre_logits/top1': k / 10, 'resumed_from': resumed_from}, f)
''')


def _study(**overrides):
  grids = overrides.pop('grids', [[study.axis('model.k', (0.5, 1.0)),
                                   study.axis('seed', (0, 13))]])
  return study.study_config(ROTATION, 'runlocal', grids,
                            overrides={'total_steps': 3}, **overrides)


def _write_study_file(root, body):
  """A study config file at ROOT/configs/studies/s.py (the cells run from ROOT)."""
  folder = root / 'configs' / 'studies'
  folder.mkdir(parents=True)
  (folder / 's.py').write_text(textwrap.dedent(body))
  return str(folder / 's.py')


def test_expand_orders_cells_and_names_them():
  s = study.study_config('configs/x.py', 'runlocal', [
      [study.variants('method', {'flip only': {'input.crop': 'resize'},
                                 '+ crop': {'config': 'configs/y.py', 'arg': 'k=2'}}),
       study.axis('model.k', (0.5, 1.0))],
      [study.variants('method', {'flip only': {'input.crop': 'resize'}}),
       study.axis('model.k', (0.5,)),
       study.axis('encoder_workdir', ('{study}/a',), name='encoder')],
  ], overrides={'total_steps': 3})
  cells = study.expand(s, '/w')
  assert [c.name for c in cells] == [
      'method-flip-only_k-0.5', 'method-flip-only_k-1.0', 'method-+-crop_k-0.5',
      'method-+-crop_k-1.0', 'method-flip-only_k-0.5_encoder-study-a']
  assert cells[0].config == 'configs/x.py:runlocal'
  assert cells[0].overrides == {'total_steps': 3, 'input.crop': 'resize', 'model.k': 0.5}
  assert cells[3].config == 'configs/y.py:runlocal,k=2'
  assert cells[3].overrides == {'total_steps': 3, 'model.k': 1.0}
  assert cells[4].overrides['encoder_workdir'] == '/w/a'  # {study} is the workdir.
  assert study.columns_of(s) == ['method', 'k', 'encoder']


def test_expand_rejects_ambiguous_grids():
  with pytest.raises(ValueError, match='share a column name'):
    study.expand(_study(grids=[[study.axis('model.k', (1,)), study.axis('k', (2,))]]), '/w')
  with pytest.raises(ValueError, match='both named'):
    study.expand(_study(grids=[[study.variants('m', {'a b': {'seed': 1},
                                                     'a-b': {'seed': 2}})]]), '/w')
  with pytest.raises(ValueError, match='kind='):
    study.figure('pie', 'x')


def test_check_keys_names_the_cell_and_key():
  cells = study.expand(_study(grids=[[study.axis('model.kk', (1,))]]), '/w')
  with pytest.raises(ValueError, match=r"Cell kk-1: 'model.kk' is not a field"):
    study.check_keys(cells, REPO)
  study.check_keys(study.expand(_study(), '/w'), REPO)  # Every key exists.


# A run config with the field types the overrides exercise, importing nothing heavy (the
# runner loads each cell's config to check its keys).
BASE = textwrap.dedent('''
    import ml_collections
    def get_config(arg=None):
      assert arg == 'runlocal'
      return ml_collections.ConfigDict({
          'seed': 0, 'total_steps': -1, 'model': {'k': 4.0},
          'input': {'flip': True, 'crop_area': (0.05, 1.0)},
          'evals': {'lbfgs': {'layers': ('pre_logits',)}}})
''')


def test_print_commands_parse_back_with_config_flags(tmp_path):
  path = _write_study_file(tmp_path, f'''
      from ssl_jax import study
      def get_config(arg=None):
        return study.study_config('configs/base.py', 'runlocal', [[
            study.variants('layers', {{'all': {{'evals.lbfgs.layers': ('block1', 'pre_logits'),
                                               'input.crop_area': (0.2, 1.0)}}}}),
            study.axis('model.k', (0.5, 1.0)), study.axis('seed', (0, 13))]],
            overrides={{'total_steps': 3, 'input.flip': False}})
      ''')
  (tmp_path / 'configs' / 'base.py').write_text(BASE)
  printed = subprocess.run([sys.executable, '-m', 'ssl_jax.study', f'--config={path}',
                            f'--workdir={tmp_path}/w', '--launch=print'], cwd=REPO,
                           capture_output=True, text=True)
  assert printed.returncode == 0, printed.stderr
  out = printed.stdout.splitlines()
  assert len(out) == 4 and not (tmp_path / 'w').exists()  # Nothing runs.
  for line, (k, seed) in zip(out, [(0.5, 0), (0.5, 13), (1.0, 0), (1.0, 13)]):
    argv = shlex.split(line)
    assert argv[:4] == ['python', '-m', 'ssl_jax.main', '--config=configs/base.py:runlocal']
    assert argv[4] == f'--workdir={tmp_path}/w/layers-all_k-{k}_seed-{seed}'
    # config_flags, as ssl_jax.main parses them, from the root the cells run in.
    parsed = ['main', f'--config={tmp_path}/configs/base.py:runlocal'] + argv[5:]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file('config', None, '', flag_values=values, sys_argv=parsed)
    values(parsed)
    config = values.config
    assert (config.model.k, config.seed, config.total_steps) == (k, seed, 3)
    assert config.evals.lbfgs.layers == ('block1', 'pre_logits')
    assert config.input.crop_area == (0.2, 1.0) and config.input.flip is False
  typo = path.replace('s.py', 't.py')
  (tmp_path / 'configs' / 'studies' / 't.py').write_text(
      (tmp_path / 'configs' / 'studies' / 's.py').read_text().replace("'seed'", "'sed'"))
  bad = subprocess.run([sys.executable, '-m', 'ssl_jax.study', f'--config={typo}',
                        f'--workdir={tmp_path}/w', '--launch=print'], cwd=REPO,
                       capture_output=True, text=True)
  assert bad.returncode == 1 and not bad.stdout
  assert "Cell layers-all_k-0.5_sed-0: 'sed' is not a field" in bad.stderr


def test_runner_skips_done_resumes_interrupted_and_isolates_a_crash(tmp_path, capsys):
  # The cells run from the root, so python -m fake_main finds tmp_path/fake_main.py.
  (tmp_path / 'fake_main.py').write_text(FAKE_MAIN)
  s = _study(figures=[study.figure('lines', 'width', metric='lbfgs/pre_logits/top1', x='k',
                                   series='seed')])
  work = str(tmp_path / 'w')
  cells = study.expand(s, work)
  done, interrupted = tmp_path / 'w' / 'k-0.5_seed-0', tmp_path / 'w' / 'k-1.0_seed-0'
  done.mkdir(parents=True)
  (done / 'results.json').write_text('{"lbfgs/pre_logits/top1": 0.9}')
  interrupted.mkdir()
  (interrupted / 'checkpoint').write_text('2')
  assert [study.status(work, c) for c in cells] == ['done', 'new', 'resume', 'new']
  failed = study.run_all(cells, work, str(tmp_path), 'fake_main')
  assert failed == ['k-0.5_seed-13', 'k-1.0_seed-13']  # The others still ran.
  assert not (done / 'calls.txt').exists()  # Skipped.
  assert json.loads((interrupted / 'results.json').read_text())['resumed_from'] == 2
  crashed = (tmp_path / 'w' / 'k-0.5_seed-13' / 'log.txt').read_text()
  assert 'fake main running' in crashed and 'crashed on purpose' in crashed
  assert '--config.seed=13' in crashed.splitlines()[1]  # The command heads its log.
  study.report(s, cells, work)
  rows = list(csv.DictReader(io.StringIO((tmp_path / 'w' / 'results.csv').read_text())))
  assert [r['cell'] for r in rows] == ['k-0.5_seed-0', 'k-1.0_seed-0']  # The finished.
  assert (tmp_path / 'w' / 'width.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  assert study.run_all(cells, work, str(tmp_path), 'fake_main') == failed
  calls = {p.parent.name: len(p.read_text().splitlines())
           for p in (tmp_path / 'w').glob('*/calls.txt')}
  assert calls == {'k-1.0_seed-0': 1, 'k-0.5_seed-13': 2, 'k-1.0_seed-13': 2}
  assert '[1/4] k-0.5_seed-0: done' in capsys.readouterr().out


def _fabricate(tmp_path):
  return _fabricate_on(str(tmp_path))


def _fabricate_on(workdir):
  """A two-method, two-width study with results.json and config.json for three cells."""
  s = study.study_config('configs/x.py', '', [[
      study.variants('method', {'rotation': {}, 'jigsaw': {}}),
      study.axis('model.k', (0.5, 1.0))]])
  cells = study.expand(s, workdir)
  for i, cell in enumerate(cells[:3]):
    folder = files.Path(workdir) / cell.name
    folder.mkdir(parents=True, exist_ok=True)
    k = cell.overrides['model.k']
    files.write_text(folder / 'config.json', json.dumps({'model': {'k': k}}))
    results = {'lbfgs/pre_logits/top1': 0.3 + 0.1 * i, 'lbfgs/block1/top1': 0.2,
               'lbfgs/pre_logits/train_top1': 0.9, 'step': 300,
               'fewshot/5way1shot/accuracy': 0.4, 'fewshot/5way1shot/ci95': 0.02,
               'fewshot/5way5shot/accuracy': 0.6, 'fewshot/5way5shot/ci95': 0.01}
    files.write_text(folder / 'results.json', json.dumps(results))
  return s, cells


def test_gather_writes_csv_and_markdown(tmp_path):
  s, cells = _fabricate(tmp_path)
  written = study.report(s, cells, str(tmp_path))
  assert written == ['results.csv', 'results.md']
  rows = list(csv.reader(io.StringIO((tmp_path / 'results.csv').read_text())))
  assert rows[0][:4] == ['cell', 'method', 'k', 'fewshot/5way1shot/accuracy']
  assert 'lbfgs/pre_logits/train_top1' in rows[0] and len(rows) == 4
  assert rows[1][:3] == ['method-rotation_k-0.5', 'rotation', '0.5']
  table = (tmp_path / 'results.md').read_text().splitlines()
  assert table[0] == ('| method | k | fewshot/5way1shot/accuracy | fewshot/5way1shot/ci95 | '
                      'fewshot/5way5shot/accuracy | fewshot/5way5shot/ci95 | '
                      'lbfgs/block1/top1 | lbfgs/pre_logits/top1 |')
  assert table[4] == ('| jigsaw | 0.5 | 0.4000 | 0.0200 | 0.6000 | 0.0100 | 0.2000 | '
                      '0.5000 |')


def test_figures_have_the_expected_axes(tmp_path):
  s, cells = _fabricate(tmp_path)
  rows = study.gather(cells, str(tmp_path))
  assert rows[0]['k'] == 0.5  # Read back from config.json, typed.
  lines = study.draw_lines(rows, study.figure('lines', 'q', metric='lbfgs/pre_logits/top1',
                                              x='k', series='method', log_x=True))
  ax = lines.axes[0]
  assert ax.get_xscale() == 'log' and ax.get_xlabel() == 'k'
  assert {l.get_label(): list(l.get_ydata()) for l in ax.get_lines()} == {
      'rotation': [0.3, pytest.approx(0.4)], 'jigsaw': [0.5]}
  bars = study.draw_bars(rows, study.figure('bars', 'c', metric='lbfgs/pre_logits/top1',
                                            x='method', series='k'))
  ax = bars.axes[0]
  assert [t.get_text() for t in ax.get_xticklabels()] == ['rotation', 'jigsaw']
  assert sorted(p.get_height() for p in ax.patches) == pytest.approx([0.3, 0.4, 0.5])
  layers = study.draw_layers(rows, study.figure('layers', 'l', evaluator='lbfgs'))
  ax = layers.axes[0]
  assert [t.get_text() for t in ax.get_xticklabels()] == ['block1', 'pre_logits']
  assert len(ax.get_lines()) == 3
  few = study.draw_fewshot(rows[:1], study.figure('fewshot', 'f', evaluator='fewshot'))
  ax = few.axes[0]
  assert [t.get_text() for t in ax.get_xticklabels()] == ['5-way 1-shot', '5-way 5-shot']
  assert [p.get_height() for p in ax.patches] == [0.4, 0.6]
  errors = [c for c in ax.containers if isinstance(c, container.ErrorbarContainer)]
  error_bar = errors[0].lines[2][0].get_segments()
  assert [round(seg[1][1] - seg[0][1], 6) for seg in error_bar] == [0.04, 0.02]  # +- ci95.
  assert study.select(rows, (('method', 'jigsaw'),)) == rows[2:]
  with pytest.raises(ValueError, match="no finished cell has 'nope'"):
    study.draw_lines(rows, study.figure('lines', 'q', metric='nope', x='k'))


def test_probe_figures_are_the_probe_and_lbfgs_pair():
  """probe_figures equals the two figures written out by hand."""
  by_hand = [study.figure('bars', 'q', metric='linear/pre_logits/top1', x='c', series='m',
                          title='linear/pre_logits/top1 by c'),
             study.figure('bars', 'q_lbfgs', metric='lbfgs/pre_logits/top1', x='c', series='m',
                          title='lbfgs/pre_logits/top1 by c')]
  assert study.probe_figures('bars', 'q', x='c', series='m', caption='by c') == by_hand


@pytest.mark.parametrize('path', STUDY_CONFIGS, ids=os.path.basename)
def test_study_configs_expand(path):
  """Every shipped study, full and runlocal, expands, and its figures name its columns."""
  from ssl_jax.data import label_map
  root = REPO
  full = FULL_ARGS.get(os.path.basename(path), '')
  for arg in (full, 'runlocal'):
    s = study.load_config(path + (':' + arg if arg else ''), root)
    cells = study.expand(s, 'gs://b/w')
    study.check_keys(cells, root)  # every override names a key of its cell's config
    assert cells and all(c.config.split(':')[0].startswith('configs/') for c in cells)
    maps = {v for c in cells for k, v in c.overrides.items() if k.endswith('label_map')}
    assert {m for m in maps if m and ':' not in m} <= set(label_map.shipped_names())
    columns = set(study.columns_of(s))
    for spec in s.figures:
      named = {spec.x, *spec.series.split(','), *(c for c, _ in spec.where)} - {''}
      assert named <= columns, (spec.name, named - columns)


def test_study_on_gs(storage_emulator, tmp_path):
  """A gs:// study folder (a local GCS emulator): the cells' states, a cell's log written
  whole at its end, results.csv, results.md and a figure, all through the path layer."""
  (tmp_path / 'fake_main.py').write_text('print("fake main on gs")\n')
  work = f'{storage_emulator}/study'
  s, cells = _fabricate_on(work)
  assert [study.status(work, c) for c in cells] == ['done', 'done', 'done', 'new']
  files.write_text(f'{work}/{cells[3].name}/checkpoint', '2')
  assert study.status(work, cells[3]) == 'resume'
  assert study.run_cell(cells[3], work, str(tmp_path), 'fake_main', study._Stop()) == 0
  assert 'fake main on gs' in files.read_text(f'{work}/{cells[3].name}/log.txt')
  spec = study.figure('lines', 'q', metric='lbfgs/pre_logits/top1', x='k', series='method')
  s = study.study_config('configs/x.py', '', s.grids, figures=[spec])
  assert study.report(s, cells, work) == ['results.csv', 'results.md', 'q.png']
  assert files.read_text(f'{work}/results.csv').count('\n') == 4
  assert files.Path(f'{work}/q.png').read_bytes()[:4] == b'\x89PNG'
