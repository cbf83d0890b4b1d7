"""Several processes, one run: two processes of 4 CPU devices each (jax.distributed over a
localhost coordinator, gloo collectives) train as one process of 8 devices on the same
global batches, and a SIGTERM to one of them stops both at the same step.

The pair is ``python -m ssl_jax.main`` in two subprocesses, as on a pod: every process
runs the same command with its --process_id, into one shared workdir. The one-process
reference trains in this process (8 devices, tests/conftest.py) meanwhile."""

import os
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import conftest
from conftest import tiny_config
from ssl_jax import checkpoint
from ssl_jax import train
from ssl_jax.data import input_pipeline

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 12  # Rotation's.
# The input shards fixed at 2: one process reads the stream that two read together.
OVERRIDES = {'checkpoint_every': 4, 'log_every': 4, 'image_summary_every': 0,
             'dataset.input_shards': 2}
# Rotation stays within 1e-6 of the one-process run for 12 steps (at k=0.125; at 0.0625,
# a one-channel root, round-off grew to 20 % in 16). The tiny MoCo does not: its first
# loss differs by 4e-6 (the cross-process sums in another order), and its BN over groups
# of 2 images and softmax at T=0.07 (gradient norms of 160-700) grew that to 1 % of the
# root kernel after the second update, 30 % of the queue after 12 steps (measured). So
# MoCo runs 2 steps (the queue and the EMA target updated twice, the parameters once: the
# warm-up's first step has a learning rate of 0) at the small learning rate with which
# tests/test_contrastive.py compares 1 and 8 devices.
# MoCo's encoder has one stage (conftest.ONE_STAGE: 79 -> 56 s for its test); Rotation's
# keeps four: with one, its round-off after 12 steps was 2e-6 (measured), past the 1e-6.
TASK_OVERRIDES = {'rotation': {'total_steps': STEPS},
                  'moco': {'total_steps': 2, 'optimizer.base_lr': 0.001,
                           'moco.queue_size': 64, 'moco.proj_dim': 16, **conftest.ONE_STAGE}}


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _start_pair(task: str, workdir: str, tag: str) -> tuple[list[subprocess.Popen], list[str]]:
  """Two processes of 4 CPU devices running ``python -m ssl_jax.main`` in ``workdir``;
  returns them and their log files."""
  port = _free_port()
  overrides = {**OVERRIDES, **TASK_OVERRIDES[task]}
  command = [sys.executable, '-m', 'ssl_jax.main', f'--config={REPO}/tests/tiny.py:task={task}',
             f'--workdir={workdir}', f'--coordinator_address=localhost:{port}',
             '--num_processes=2', *[f'--config.{k}={v}' for k, v in overrides.items()]]
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=conftest.xla_flags(4))
  procs, logs = [], [f'{workdir}.{tag}.{i}.log' for i in range(2)]
  for i, log in enumerate(logs):
    with open(log, 'w') as out:
      procs.append(subprocess.Popen(command + [f'--process_id={i}'], cwd=REPO, stdout=out,
                                    stderr=subprocess.STDOUT, env=env))
  return procs, logs


def _wait(procs: list[subprocess.Popen], logs: list[str]) -> list[str]:
  """The logs of ``procs``, after checking that both exited with status 0."""
  codes = [p.wait(timeout=300) for p in procs]
  texts = [open(log).read() for log in logs]
  assert codes == [0, 0], '\n'.join(t[-3000:] for t in texts)
  return texts


def _reference(task: str, workdir: str) -> list[np.ndarray]:
  """The parameters and task state of the same run in this process, on 8 devices."""
  config = tiny_config(task, evals=(), **OVERRIDES, **TASK_OVERRIDES[task])
  assert train.train(config, workdir)
  return _state(workdir)


def _state(workdir: str) -> dict[str, list[np.ndarray]]:
  """The parameters and the task state (MoCo's queue and key encoder) of a workdir."""
  state = checkpoint.restore_raw(workdir)[1]
  return {part: [np.asarray(x) for x in jax.tree.leaves(state[part])]
          for part in ('params', 'task_state')}


def _assert_close(expected: dict, actual: dict) -> None:
  """The parameters as tests/conftest.compare_1_and_8_devices compares them (the sums over
  devices differ in order); the task state (MoCo's queue of unit-norm keys from BN over
  2-image groups: 3e-5 apart, measured) within 1e-4. A key in the wrong slot of the queue,
  or a process's stale half, would be 0.1 off."""
  for part, atol in (('params', 1e-6), ('task_state', 1e-4)):
    assert len(expected[part]) == len(actual[part])
    for a, b in zip(expected[part], actual[part]):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=atol)
  assert expected['params']


@pytest.fixture(scope='module', autouse=True)
def prepared_data():
  """The shipped dataset, prepared before two processes race to prepare it."""
  input_pipeline.get_builder(tiny_config().dataset)


def test_two_processes_train_as_one_of_eight_devices(tmp_path):
  """MoCo (task state: an EMA key encoder, and a queue sharded over the devices of both
  processes) on two processes x 4 devices ends with the parameters and task state of one
  process x 8 devices on the same global batches; only process 0 writes the shared files."""
  workdir = str(tmp_path / 'pair')
  procs, logs = _start_pair('moco', workdir, 'train')
  expected = _reference('moco', str(tmp_path / 'one'))
  logs = _wait(procs, logs)
  assert 'This is process 1 of 2, 4 of 8 devices' in logs[1]
  assert checkpoint.Checkpointer(workdir).latest_step() == 2
  _assert_close(expected, _state(workdir))
  assert sorted(n for n in os.listdir(workdir) if not n.startswith('events')) == [
      'checkpoints', 'config.json', 'configs', 'metrics.jsonl', 'results.json']


def test_sigterm_to_one_process_stops_both_at_the_same_step(tmp_path):
  """Rotation on two processes, SIGTERM to process 1 after the first checkpoint: both
  save the same step and exit cleanly; the same command resumes, and the pair ends with
  the parameters of the uninterrupted run of one process x 8 devices."""
  workdir = str(tmp_path / 'pair')
  procs, logs = _start_pair('rotation', workdir, 'preempted')
  first = os.path.join(workdir, 'checkpoints', '4')
  deadline = time.time() + 240
  while not os.path.exists(first) and time.time() < deadline and procs[1].poll() is None:
    time.sleep(0.02)
  procs[1].send_signal(signal.SIGTERM)
  texts = _wait(procs, logs)
  saved = [re.findall(r'SIGTERM: train saved step (\d+)', text) for text in texts]
  assert saved[0] == saved[1] and len(saved[0]) == 1, saved
  stopped = int(saved[0][0])
  assert 4 <= stopped < STEPS
  assert all('Stopped by SIGTERM' in text for text in texts)
  assert checkpoint.Checkpointer(workdir).latest_step() == stopped
  procs, logs = _start_pair('rotation', workdir, 'resumed')
  expected = _reference('rotation', str(tmp_path / 'one'))
  texts = _wait(procs, logs)
  assert f'step {STEPS}/{STEPS}' in texts[0] and 'Stopped by SIGTERM' not in texts[0]
  _assert_close(expected, _state(workdir))
