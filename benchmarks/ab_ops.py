"""Times the device ops of this tree against their form at a git revision, in one process
and alternating old and new, so that a CPU shared with other work slows both alike: the
SimCLR/BYOL colour jitter and the Revisiting brightness/saturation jitter (vmapped over a
batch of images, as the tasks call them) and layers.BatchNorm in train mode (forward and
backward, float32 and bfloat16). Prints min and median milliseconds and XLA's estimate
of the bytes each compiled function accesses.

    python benchmarks/ab_ops.py --base=89d6928 --batch=64 --size=64 --repeats=15
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import types

import jax
import jax.numpy as jnp
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from ssl_jax.data import augment  # noqa: E402
from ssl_jax.models import layers  # noqa: E402


def module_at(revision: str, path: str) -> types.ModuleType:
  """The module of ``path`` as it was at git ``revision`` (its imports: this tree's)."""
  source = subprocess.run(['git', 'show', f'{revision}:{path}'], cwd=REPO, check=True,
                          capture_output=True, text=True).stdout
  module = types.ModuleType(f'_ab_{revision}_' + path.replace('/', '_')[:-3])
  sys.modules[module.__name__] = module  # Flax's dataclasses look their module up.
  exec(compile(source, f'{revision}:{path}', 'exec'), module.__dict__)  # noqa: S102
  return module


def bn_step(module_cls, groups: int, dtype):
  """jit of (variables, x) -> gradients of sum(BN(x)^2) w.r.t. the parameters and x."""
  bn = module_cls(groups=groups, dtype=dtype)

  def loss(params, stats, x):
    y, _ = bn.apply({'params': params, 'batch_stats': stats}, x, True,
                    mutable=['batch_stats'])
    return jnp.sum(jnp.square(y.astype(jnp.float32)))

  return jax.jit(jax.grad(loss, argnums=(0, 2))), bn


def time_pair(fns: dict, args: tuple, repeats: int) -> dict:
  """{name: (min ms, median ms, GB accessed)}, the functions called alternately."""
  compiled = {name: jax.jit(fn).lower(*args).compile() for name, fn in fns.items()}
  for fn in compiled.values():
    jax.block_until_ready(fn(*args))
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in compiled.items():
      t0 = time.perf_counter()
      jax.block_until_ready(fn(*args))
      times[name].append(1e3 * (time.perf_counter() - t0))
  rows = {}
  for name, fn in compiled.items():
    cost = fn.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    rows[name] = (min(times[name]), statistics.median(times[name]),
                  cost.get('bytes accessed', 0.0) / 1e9)
  return rows


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--base', default='89d6928', help='git revision of the old forms')
  parser.add_argument('--batch', type=int, default=64, help='images')
  parser.add_argument('--size', type=int, default=64, help='image side')
  parser.add_argument('--repeats', type=int, default=15)
  args = parser.parse_args()
  old_augment = module_at(args.base, 'ssl_jax/data/augment.py')
  old_layers = module_at(args.base, 'ssl_jax/models/layers.py')
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.uniform(size=(args.batch, args.size, args.size, 3)), jnp.float32)
  keys = jax.random.split(jax.random.key(0), args.batch)
  cases = {
      'colour jitter (SimCLR s=1)': (
          lambda m: jax.vmap(lambda x, k: m.color_jitter(x, k, 0.8, 0.8, 0.8, 0.2)),
          (images, keys)),
      'brightness/saturation (Revisiting)': (
          lambda m: jax.vmap(lambda x, k: m.brightness_saturation(x, k, 32 / 255, (0.5, 1.5))),
          (images, keys)),
  }
  print(f'{jax.devices()[0].device_kind}, {args.batch} images of {args.size} px; '
        f'BatchNorm on [256, 16, 16, 64]; {args.repeats} alternating calls each')
  print('| op | old (%s) ms min / median | new ms min / median | GB accessed old -> new |'
        % args.base)
  print('|---|---|---|---|')
  for name, (make, fn_args) in cases.items():
    rows = time_pair({'old': make(old_augment), 'new': make(augment)}, fn_args, args.repeats)
    print(f'| {name} | {rows["old"][0]:.1f} / {rows["old"][1]:.1f} | '
          f'{rows["new"][0]:.1f} / {rows["new"][1]:.1f} | '
          f'{rows["old"][2]:.3f} -> {rows["new"][2]:.3f} |')
  for dtype in (jnp.float32, jnp.bfloat16):
    x = jnp.asarray(rng.normal(size=(256, 16, 16, 64)) + 1.0, dtype)
    for groups in (1, 8):
      fns = {}
      for label, module in (('old', old_layers), ('new', layers)):
        grad, bn = bn_step(module.BatchNorm, groups, dtype)
        variables = bn.init(jax.random.key(0), x, False)
        fns[label] = (lambda g, v: lambda x: g(v['params'], v['batch_stats'], x))(grad, variables)
      rows = time_pair(fns, (x,), args.repeats)
      print(f'| BatchNorm train fwd+bwd, {jnp.dtype(dtype).name}, groups={groups} | '
            f'{rows["old"][0]:.1f} / {rows["old"][1]:.1f} | '
            f'{rows["new"][0]:.1f} / {rows["new"][1]:.1f} | '
            f'{rows["old"][2]:.3f} -> {rows["new"][2]:.3f} |')


if __name__ == '__main__':
  main()
