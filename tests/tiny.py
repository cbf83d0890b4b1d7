"""The tests' tiny run, as a config file for ``python -m ssl_jax.main`` subprocesses:

    python -m ssl_jax.main --config=tests/tiny.py:task=moco,evals=lbfgs --workdir=...

A ResNet of a few channels per layer, one unit per stage, on 16-px shipped images, 4
steps of batch 16; ``evals`` names evaluator instances of those types ('+'-separated,
none by default). conftest.tiny_config builds on :func:`build`.
"""

from configs import common
from ssl_jax import config_lib


def build(task: str = 'rotation', evals: tuple[str, ...] = ()) -> config_lib.ConfigDict:
  """The tiny run of ``task`` with evaluator instances of the types ``evals`` (unlocked)."""
  config = config_lib.run_config(task)
  for name in evals:
    config.evals[name] = config_lib.evaluator(name)
  common.runlocal(config)
  config.model.k = 0.125
  config.model.units = (1, 1, 1, 1)
  config.input.image_size = 16
  config.batch_size = 16
  config.eval_batch_size = 64
  config.total_steps = 4
  config.optimizer.warmup_steps = 1
  config.log_every = 2
  config.checkpoint_every = 2
  config.image_summary_every = 2
  if 'lbfgs' in config.evals:
    config.evals.lbfgs.l2_grid = (1e-3, 1e-1)
    config.evals.lbfgs.max_iter = 100
  return config


def get_config(arg: str | None = None) -> config_lib.ConfigDict:
  """``task=NAME,evals=TYPE+TYPE``."""
  args = config_lib.parse_arg(arg, task='rotation', evals='')
  return config_lib.lock(build(args.task, tuple(filter(None, args.evals.split('+')))))
