"""Pretrains a representation, then evaluates it frozen.

    python -m ssl_jax.main --config=configs/rotation_resnet50.py:runlocal --workdir=/tmp/rot

Arguments after the colon are the config's own (see its docstring); any field can be
overridden with --config.FIELD=VALUE. Running the same command again resumes.

Several processes (one per TPU host, per GPU host or per GPU) run the same command: on
Cloud TPU and SLURM they find each other from the environment; elsewhere give each
--coordinator_address=HOST:PORT, --num_processes and --process_id. The workdir must then
be one that every process reaches (gs://BUCKET/PATH on a pod).
"""

from __future__ import annotations

import logging as std_logging
import sys
import traceback

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from ssl_jax import checkpoint
from ssl_jax import compilation_cache
from ssl_jax import config_lib
from ssl_jax import files
from ssl_jax import loop
from ssl_jax import processes
from ssl_jax import train
from ssl_jax import writers
from ssl_jax.evaluate import context as context_lib

config_flags.DEFINE_config_file('config', None, 'Config file, arguments after a colon.',
                                lock_config=True)
WORKDIR = flags.DEFINE_string('workdir', None, 'Checkpoints, logs, config.json, results: '
                              'a folder, or gs://BUCKET/PATH (on a pod, one every host reaches).')
VERBOSE = flags.DEFINE_bool('verbose', False, 'Print the traceback of an error (it is '
                            'always written to WORKDIR/error.log).')
PREEMPTED_EXIT_CODE = flags.DEFINE_integer(
    'preempted_exit_code', 0, 'Exit status after SIGTERM saved a checkpoint: non-zero makes '
    'a scheduler that restarts failed jobs restart a preempted one.')
# As jax.distributed.initialize names them; unset on Cloud TPU and SLURM (jax finds them).
COORDINATOR_ADDRESS = flags.DEFINE_string(
    'coordinator_address', None, 'HOST:PORT of process 0, where the processes of one run '
    'meet (several processes outside Cloud TPU and SLURM).')
NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'How many processes run this '
                                     'command together.', lower_bound=1)
PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process: 0 .. num_processes - 1.',
                                  lower_bound=0)
flags.mark_flags_as_required(['config'])
# No default workdir: a local default on a pod would scatter one run over the hosts' disks,
# lost with the VMs, and a bucket cannot be guessed. Said in one line, not absl's usage.
MISSING_WORKDIR = ('ssl_jax: --workdir is required: the folder for checkpoints, logs and '
                   'results (gs://BUCKET/PATH on a TPU pod); the same command resumes from it.')
COMPILATION_CACHE_DIR = flags.DEFINE_string(
    'compilation_cache_dir', '', 'Persistent XLA compilation cache, a local or gs:// '
    'directory: a rerun or another process loads the compiled step instead of compiling '
    'it (ssl_jax/compilation_cache.py).')

# What a user can fix: printed as one line (the traceback goes to WORKDIR/error.log).
USER_ERRORS = (ValueError, KeyError, FileNotFoundError, checkpoint.CheckpointError,
               loop.NonFiniteLossError)


def run(config, workdir: str) -> dict[str, float] | None:
  """Trains (unless ``config.encoder_workdir`` names a trained encoder), then runs every
  evaluator instance of ``config.evals``; returns the results (None if preempted).
  Evaluators that train checkpoint in ``WORKDIR/evals/<name>``, so a rerun resumes them."""
  config_lib.validate(config)  # Command-line overrides are checked too.
  train.prepare_workdir(workdir)
  source = config.encoder_workdir or workdir
  if config.encoder_workdir:
    train.save_config(config, workdir)
  elif not train.train(config, workdir):
    return None
  step = checkpoint.latest_step(source)
  encoder, data = context_lib.from_workdir(source, config)
  if config.concat_encoder_workdir:  # Cole et al. §4.2: two encoders' features side by side.
    encoder = context_lib.with_concatenated(encoder, config.concat_encoder_workdir, data.mesh)
  results = {}
  for name, section in config.evals.items():
    evaluated = context_lib.run_evaluator(name, section, encoder, data,
                                          str(files.Path(workdir) / 'evals' / name))
    if evaluated is None:
      return None
    results.update(evaluated)
  writers.write_results(results, workdir, step, config.writers)
  return results


def _quiet_libraries(record) -> bool:
  """Keeps our INFO lines; libraries (orbax, TFDS) speak at WARNING and above."""
  # record.levelno is on Python's scale; absl's logging.WARNING is -1, its verbosity.
  return record.levelno >= std_logging.WARNING or not any(
      name in record.pathname for name in ('orbax', 'tensorflow_datasets', 'clu'))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if not WORKDIR.value:
    sys.exit(MISSING_WORKDIR)
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().python_handler.addFilter(_quiet_libraries)
  loop.catch_sigterm()  # Before the slow start, so that no SIGTERM kills one host of many.
  try:
    processes.start(COORDINATOR_ADDRESS.value, NUM_PROCESSES.value, PROCESS_ID.value)
  except ValueError as e:
    sys.exit(f'ssl_jax: {e}')
  if COMPILATION_CACHE_DIR.value:
    compilation_cache.enable(COMPILATION_CACHE_DIR.value)
  try:
    results = run(flags.FLAGS.config, WORKDIR.value)
  except USER_ERRORS as e:
    if VERBOSE.value:
      raise
    _log_traceback(WORKDIR.value)
    sys.exit(f'ssl_jax: {type(e).__name__}: {e}')
  if results is None:
    print('Stopped by SIGTERM after saving a checkpoint; run the same command to resume.')
    sys.exit(PREEMPTED_EXIT_CODE.value)
  for key, value in sorted(results.items()):
    if key.endswith('/top1') and not key.endswith('train_top1'):
      print(f'{key} = {value:.4f}')


def _log_traceback(workdir: str) -> None:
  """Appends the current exception's traceback to WORKDIR/error.log (process 0) or
  WORKDIR/error_process<i>.log, if it can."""
  index = jax.process_index()
  name = f'error_process{index}.log' if index else 'error.log'
  try:
    files.Path(workdir).mkdir(parents=True, exist_ok=True)
    files.append_text(files.Path(workdir) / name, traceback.format_exc() + '\n')
  except Exception:  # OSError locally; each gs:// backend raises its own types.
    pass


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing, after checking that every --config.KEY override names a field of
  the config file's config; an unknown one lists the valid keys. The folder above the
  config file goes on sys.path, so that config files import ``configs.common`` from any
  working directory."""
  paths = [a.split('=', 1)[1] for a in argv[1:] if a.startswith('--config=')]
  keys = [a.split('=')[0][len('--config.'):] for a in argv[1:] if a.startswith('--config.')]
  config_lib.add_config_root_to_path(argv)
  if paths and keys:
    valid = config_lib.field_names(_load_config(paths[0]))
    unknown = [key for key in keys if key not in valid]
    if unknown:
      raise app.UsageError(f'Unknown config key {unknown[0]!r}; valid keys: '
                           f'{", ".join(sorted(valid))}.')
  return flags.FLAGS(argv)


def _load_config(path_and_arg: str) -> config_lib.ConfigDict:
  """The config of ``configs/x.py:arg``, loaded as config_flags does."""
  import importlib.util
  path, _, arg = path_and_arg.partition(':')
  spec = importlib.util.spec_from_file_location('_config_file', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
