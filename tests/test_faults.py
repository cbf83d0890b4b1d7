"""Faults and bad input: damaged checkpoints, changed configs, failed saves, unprepared
datasets, unusable workdirs and bad overrides, each with a clear outcome."""

import json
import os
import shutil
import subprocess
import sys
import time

import jax
import ml_collections
import numpy as np
import pytest

from conftest import ONE_STAGE
from conftest import tiny_config
from ssl_jax import checkpoint
from ssl_jax import main as main_lib
from ssl_jax import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def faults_config(task: str = 'rotation', **overrides) -> ml_collections.ConfigDict:
  """The tiny run on a one-stage encoder (conftest.ONE_STAGE): these tests check what
  is saved, refused and resumed, which no more stages would change."""
  return tiny_config(task, **ONE_STAGE, **overrides)


def _params(workdir):
  return jax.tree.leaves(checkpoint.restore_raw(workdir)[1]['params'])


@pytest.fixture(scope='module')
def straight(tmp_path_factory):
  """An uninterrupted 6-step run (checkpoints at 2, 4, 6)."""
  workdir = str(tmp_path_factory.mktemp('straight'))
  assert train.train(faults_config(total_steps=6), workdir)
  return workdir


@pytest.fixture(scope='module')
def trained_four_steps(tmp_path_factory):
  """A 4-step run (checkpoints at 2, 4), trained once for the module's tests."""
  workdir = str(tmp_path_factory.mktemp('four_steps') / 'run')
  assert train.train(faults_config(total_steps=4), workdir)
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2', '4']
  return workdir


@pytest.fixture
def four_steps(trained_four_steps, tmp_path):
  """A copy of the 4-step run's workdir, this test's to damage, resume or refuse."""
  workdir = str(tmp_path / 'run')
  shutil.copytree(trained_four_steps, workdir)
  return workdir


def _damage(workdir, step, how):
  folder = os.path.join(workdir, 'checkpoints', str(step), 'default')
  if how == 'metadata':
    os.remove(os.path.join(folder, '_METADATA'))
    return
  data = [os.path.join(root, f) for root, _, files in os.walk(os.path.join(folder, 'd'))
          for f in files]
  for path in data:  # Truncate every array file of the checkpoint.
    with open(path, 'r+b') as f:
      f.truncate(max(1, os.path.getsize(path) // 3))


@pytest.mark.parametrize('how', ['truncated', 'metadata'])
def test_damaged_newest_checkpoint_falls_back_to_the_previous(four_steps, straight, how, caplog):
  workdir = four_steps
  _damage(workdir, 4, how)
  assert train.train(faults_config(total_steps=6), workdir)  # Resumes from step 2.
  assert 'Skipped a damaged checkpoint: step 4' in caplog.text
  for a, b in zip(_params(straight), _params(workdir)):
    np.testing.assert_array_equal(a, b)


def test_leftover_temporary_checkpoint_is_cleaned(four_steps):
  workdir = four_steps
  leftover = os.path.join(workdir, 'checkpoints', '6.orbax-checkpoint-tmp-1234')
  os.makedirs(os.path.join(leftover, 'default'))
  assert train.train(faults_config(total_steps=6), workdir)
  assert not any('tmp' in name for name in os.listdir(os.path.join(workdir, 'checkpoints')))


def test_another_task_in_the_same_workdir_is_refused_naming_the_field(four_steps):
  workdir = four_steps
  other = faults_config('supervised', total_steps=6)
  with pytest.raises(ValueError, match="another task \\('rotation', now 'supervised'\\)"):
    train.train(other, workdir)


def test_another_layout_in_the_checkpoint_is_refused_with_the_paths(four_steps):
  workdir = four_steps
  os.remove(os.path.join(workdir, 'config.json'))  # No record: the checkpoint speaks.
  with pytest.raises(checkpoint.CheckpointError, match='does not fit this run: .*head'):
    train.train(faults_config('supervised', total_steps=6), workdir)


def test_changed_config_resumes_and_keeps_the_history(four_steps, caplog):
  workdir = four_steps
  assert train.train(faults_config(total_steps=6, **{'optimizer.base_lr': 0.2}), workdir)
  history = sorted(os.listdir(os.path.join(workdir, 'configs')))
  assert history == ['step_0.json', 'step_4.json']
  with open(os.path.join(workdir, 'configs', 'step_0.json')) as f:
    first = json.load(f)
  assert first['total_steps'] == 4 and first['optimizer']['base_lr'] == 0.4
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['optimizer']['base_lr'] == 0.2
  assert 'Config change at step 4: optimizer.base_lr 0.4 -> 0.2' in caplog.text


def test_failed_save_stops_at_once_and_keeps_the_checkpoints(four_steps, monkeypatch):
  workdir = four_steps
  original = checkpoint.ocp.CheckpointManager.save

  def no_space(self, step, *args, **kwargs):
    if step >= 6:
      raise OSError(28, 'No space left on device')
    return original(self, step, *args, **kwargs)

  monkeypatch.setattr(checkpoint.ocp.CheckpointManager, 'save', no_space)
  with pytest.raises(checkpoint.CheckpointError, match='step 6 .*No space left on device'):
    train.train(faults_config(total_steps=8), workdir)
  assert checkpoint.Checkpointer(workdir).latest_step() == 4
  assert len(_params(workdir)) > 0


def test_unprepared_dataset_names_it_and_the_fixes(tmp_path):
  config = faults_config(**{'dataset.name': 'cifar10', 'dataset.data_dir': str(tmp_path),
                          'dataset.cache': False})
  with pytest.raises(ValueError, match=("Dataset 'cifar10' has no prepared split 'train' .*"
                                        'tfds build cifar10.*runlocal')):
    train.train(config, str(tmp_path / 'run'))


def test_unusable_workdir_fails_before_anything_is_built():
  with pytest.raises(ValueError, match="Cannot create or write the workdir '/proc/x'"):
    main_lib.run(faults_config(), '/proc/x')


@pytest.mark.parametrize('field,value,message', [
    ('optimizer.schedule', 'cosin', 'use step, cosine or constant'),
    ('batch_size', -8, 'must be positive'),
    ('augment.normalize', 'none', 'use one of unit, imagenet, symmetric'),
])
def test_bad_overrides_are_refused_before_training(tmp_path, field, value, message):
  config = faults_config()
  config.unlock()
  section, _, name = field.rpartition('.')
  (config[section] if section else config)[name] = value
  with pytest.raises(ValueError, match=message):
    main_lib.run(config, str(tmp_path))
  assert not os.path.exists(tmp_path / 'checkpoints')


def test_command_line_user_error_is_one_line(tmp_path):
  """A user error prints one line (no traceback), exits non-zero, and keeps the
  traceback in WORKDIR/error.log."""
  workdir = str(tmp_path / 'run')
  result = subprocess.run(
      [sys.executable, '-m', 'ssl_jax.main',
       f'--config={REPO}/configs/rotation_resnet50.py:runlocal', f'--workdir={workdir}',
       '--config.optimizer.schedule=cosin'],
      cwd=REPO, capture_output=True, text=True, timeout=300,
      env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert result.returncode != 0
  assert 'ssl_jax: ValueError: optimizer.schedule=' in result.stderr
  assert 'Traceback' not in result.stderr
  with open(os.path.join(workdir, 'error.log')) as f:
    assert 'Traceback' in f.read()


KILL_CONFIG = dict(total_steps=10, checkpoint_every=1, log_every=3, keep_checkpoints=2,
                   **ONE_STAGE)
DRIVER = ('import sys; sys.path[:0] = sys.argv[2:]; from conftest import tiny_config; '
          'from ssl_jax import train; '
          f'train.train(tiny_config(**{KILL_CONFIG!r}), sys.argv[1])')


def _driver(workdir: str, log: str) -> subprocess.Popen:
  tests = os.path.dirname(os.path.abspath(__file__))
  with open(log, 'w') as out:
    return subprocess.Popen([sys.executable, '-c', DRIVER, workdir, tests, REPO],
                            stdout=out, stderr=subprocess.STDOUT)


def _wait_for(path: str, process: subprocess.Popen, log: str, timeout: float = 300) -> float:
  """The time at which ``path`` appeared; fails with the run's log if ``process`` ended
  or ``timeout`` seconds passed first."""
  deadline = time.time() + timeout
  while not os.path.exists(path):
    if process.poll() is not None or time.time() > deadline:
      with open(log) as f:
        pytest.fail(f'{path} never appeared (exit status {process.poll()}):\n'
                    f'{f.read()[-3000:]}')
    time.sleep(0.01)
  return time.time()


def test_kill_9_at_random_moments_resumes_bit_identically(tmp_path):
  """4 trials: a run killed with SIGKILL at a random moment, then resumed, ends with the
  parameters of an uninterrupted run. The moments follow the run's own progress, not a
  clock (a warm compilation cache or another machine would move a clock's moments past
  the run's end): one within 2 s of the run writing its config (while it builds the
  step, before or around its first checkpoint), three within one step's time of
  checkpoints 2-3, 4-5 and 6, while it trains and saves the next (every step saves; 10
  steps leave a margin before the end for a step faster than the one timed).
  The draws are seeded: the same moments relative to the run on every test run."""
  # The uninterrupted run trains in this process, as the resumes do (the same programs).
  reference = str(tmp_path / 'reference')
  assert train.train(tiny_config(**KILL_CONFIG), reference)
  expected = _params(reference)
  rng = np.random.default_rng(0)
  resumed_from = []
  for trial, step in enumerate([0, rng.integers(2, 4), rng.integers(4, 6), 6]):
    workdir, log = str(tmp_path / f'trial{trial}'), str(tmp_path / f'trial{trial}.log')
    process = _driver(workdir, log)
    if step:  # A step's time: between the checkpoint before and this one.
      before = _wait_for(os.path.join(workdir, 'checkpoints', str(step - 1)), process, log)
      window = _wait_for(os.path.join(workdir, 'checkpoints', str(step)), process, log) - before
    else:
      _wait_for(os.path.join(workdir, 'config.json'), process, log)
      window = 2.0
    time.sleep(rng.uniform(0, window))
    assert process.poll() is None, f'trial {trial} ended before its kill'
    process.kill()
    process.wait()
    resumed_from.append(checkpoint.latest_step(workdir) or 0)
    assert train.train(tiny_config(**KILL_CONFIG), workdir)
    for a, b in zip(expected, _params(workdir)):
      np.testing.assert_array_equal(a, b)
  print('resumed from steps', resumed_from)
  # Killed before the run ended, and the later trials after their checkpoints.
  assert all(step < KILL_CONFIG['total_steps'] for step in resumed_from), resumed_from
  assert all(step >= 2 for step in resumed_from[1:]), resumed_from


def test_resume_after_a_kill_does_not_repeat_metrics_rows(four_steps):
  workdir = four_steps
  path = os.path.join(workdir, 'metrics.jsonl')
  with open(path, 'a') as f:  # What a run killed after step 5's log would have left.
    f.write(json.dumps({'step': 5, 'loss': 1.0}) + '\n')
  assert train.train(faults_config(total_steps=6), workdir)
  with open(path) as f:
    steps = [json.loads(line)['step'] for line in f if 'loss' in line]
  assert len(steps) == len(set(steps)) and steps[-1] == 6


def test_load_encoder_refuses_an_empty_batch(tmp_path):
  import ssl_jax
  workdir = str(tmp_path / 'init')
  assert train.train(faults_config(total_steps=0), workdir)
  with pytest.raises(ValueError, match='empty batch'):
    ssl_jax.load_encoder(workdir)(np.zeros((0, 16, 16, 3), np.uint8))


def test_preempted_exit_code_is_an_option(monkeypatch):
  from absl import flags
  argv = ['prog', f'--config={REPO}/configs/rotation_resnet50.py:runlocal',
          '--workdir=/tmp/unused', '--preempted_exit_code=3']
  monkeypatch.setattr('sys.argv', argv)
  monkeypatch.setattr(main_lib, 'run', lambda config, workdir: None)  # As after SIGTERM.
  # This process's backend is up, and pytest keeps its own SIGTERM handler.
  monkeypatch.setattr(main_lib.processes, 'start', lambda *args: None)
  monkeypatch.setattr(main_lib.loop, 'catch_sigterm', lambda: None)
  try:
    main_lib.parse_flags(argv)
    with pytest.raises(SystemExit) as exit_info:
      main_lib.main(['prog'])
    assert exit_info.value.code == 3
  finally:
    flags.FLAGS.unparse_flags()


def test_library_info_lines_are_filtered_and_warnings_kept():
  import logging as std_logging

  def record(path, level):
    return std_logging.LogRecord('x', level, path, 1, 'message', None, None)

  orbax = '/venv/site-packages/orbax/checkpoint/manager.py'
  assert not main_lib._quiet_libraries(record(orbax, std_logging.INFO))
  assert main_lib._quiet_libraries(record(orbax, std_logging.WARNING))
  assert main_lib._quiet_libraries(record('/repo/ssl_jax/loop.py', std_logging.INFO))
