"""Pretrains a representation, then evaluates it frozen.

    python -m ssl_jax.main --config=configs/rotation_resnet50.py:runlocal --workdir=/tmp/rot

Arguments after the colon are the config's own (see its docstring); any field can be
overridden with --config.FIELD=VALUE. Running the same command again resumes.
"""

from __future__ import annotations

import os
import sys
import traceback

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from ssl_jax import checkpoint
from ssl_jax import compilation_cache
from ssl_jax import config_lib
from ssl_jax import loop
from ssl_jax import train
from ssl_jax import writers
from ssl_jax.evaluate import context as context_lib

config_flags.DEFINE_config_file('config', None, 'Config file, arguments after a colon.',
                                lock_config=True)
WORKDIR = flags.DEFINE_string('workdir', None, 'Checkpoints, logs, config.json, results.')
VERBOSE = flags.DEFINE_bool('verbose', False, 'Print the traceback of an error (it is '
                            'always written to WORKDIR/error.log).')
PREEMPTED_EXIT_CODE = flags.DEFINE_integer(
    'preempted_exit_code', 0, 'Exit status after SIGTERM saved a checkpoint: non-zero makes '
    'a scheduler that restarts failed jobs restart a preempted one.')
COMPILATION_CACHE_DIR = flags.DEFINE_string(
    'compilation_cache_dir', '', 'Persistent XLA compilation cache, a local or gs:// '
    'directory: a rerun or another process loads the compiled step instead of compiling '
    'it (ssl_jax/compilation_cache.py).')
flags.mark_flags_as_required(['config', 'workdir'])

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
  results = {}
  for name, section in config.evals.items():
    evaluated = context_lib.run_evaluator(name, section, encoder, data,
                                          os.path.join(workdir, 'evals', name))
    if evaluated is None:
      return None
    results.update(evaluated)
  writers.write_results(results, workdir, step)
  return results


def _quiet_libraries(record) -> bool:
  """Keeps our INFO lines; libraries (orbax, TFDS) speak at WARNING and above."""
  return record.levelno >= logging.WARNING or not any(
      name in record.pathname for name in ('orbax', 'tensorflow_datasets', 'clu'))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().python_handler.addFilter(_quiet_libraries)
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
  """Appends the current exception's traceback to WORKDIR/error.log, if it can."""
  try:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, 'error.log'), 'a') as f:
      f.write(traceback.format_exc() + '\n')
  except OSError:
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
