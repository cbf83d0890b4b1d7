"""How far RevNet's reversible backward (model.reversible_backward) moves the gradients:
each parameter's gradient norm error against the backward that stores every activation,
in float32 and bfloat16, beside bfloat16's own error against float32 (the yardstick: a
rebuild error below it is below the precision the run trains at). Prints the median, 90th
percentile and largest error over the parameters, and the parameter with the largest; then
how far bfloat16 moves the forward pass's pre_logits.

The model is RevNet50 (3/4/6/3 units) at width ``--k`` on ``--size`` px random images,
with random weights made to look trained: BN scales and biases moved off 1 and 0 (at bias
0 the zero-padded channels sit at ReLU's kink, where a rounding flips the gradient), and
running statistics set to the batch's (BN's shift, layers.batch_statistics).

    python benchmarks/reversible_gradients.py --k=0.5 --size=64 --batch=8
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from ssl_jax import models  # noqa: E402
from ssl_jax.models import layers  # noqa: E402
from ssl_jax.models import revnet  # noqa: E402


def model_config(k: float, **fields) -> ml_collections.ConfigDict:
  """The model section of RevNet50 at width ``k`` with ``fields`` set."""
  config = models.config()
  config.update(dict(name='revnet', k=k, **fields))
  return config


def trained_looking_variables(k: float, images: jax.Array) -> dict:
  """Initial variables with BN scales and biases moved by N(0, 0.1) and the running
  statistics of ``images``' batch (two train passes at momentum 0)."""
  variables = revnet.build(model_config(k)).init(jax.random.key(1), images, train=False)
  leaves, treedef = jax.tree_util.tree_flatten_with_path(variables['params'])
  keys = jax.random.split(jax.random.key(3), len(leaves))
  moved = [value + 0.1 * jax.random.normal(key, value.shape)
           if jax.tree_util.keystr(path).endswith(("['scale']", "['bias']")) else value
           for (path, value), key in zip(leaves, keys)]
  variables = dict(variables, params=jax.tree.unflatten(treedef, moved))
  at_batch = revnet.build(model_config(k, bn_momentum=0.0))
  for _ in range(2):
    _, new = at_batch.apply(variables, images, train=True, mutable=['batch_stats'])
    variables = dict(variables, batch_stats=new['batch_stats'])
  return variables


def gradients(k: float, variables: dict, images: jax.Array, weights: jax.Array,
              **fields) -> dict[str, np.ndarray]:
  """Each parameter's gradient (by path) of sum(pre_logits x ``weights``) in train mode."""
  model = revnet.build(model_config(k, **fields))

  def loss(params):
    out, _ = model.apply({'params': params, 'batch_stats': variables['batch_stats']},
                         images, train=True, mutable=['batch_stats'])
    return jnp.sum(out['pre_logits'] * weights)

  grads = jax.jit(jax.grad(loss))(variables['params'])
  return {jax.tree_util.keystr(path): np.asarray(g, np.float64)
          for path, g in jax.tree_util.tree_leaves_with_path(grads)}


def error_row(name: str, got: dict, reference: dict) -> str:
  """A table row: the relative norm errors of ``got`` against ``reference``."""
  errors = {path: np.linalg.norm(got[path] - reference[path])
            / max(np.linalg.norm(reference[path]), 1e-30) for path in reference}
  values = np.array(list(errors.values()))
  worst = max(errors, key=errors.get)
  return (f'| {name} | {np.median(values):.1e} | {np.percentile(values, 90):.1e} | '
          f'{values.max():.1e} | {worst} |')


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--k', type=float, default=0.5)
  parser.add_argument('--size', type=int, default=64)
  parser.add_argument('--batch', type=int, default=8)
  args = parser.parse_args()
  images = jax.random.normal(jax.random.key(0), (args.batch, args.size, args.size, 3))
  weights = jax.random.normal(jax.random.key(2),
                              (args.batch, layers.channels(512, args.k)))
  variables = trained_looking_variables(args.k, images)
  grads = {(dtype, backward): gradients(args.k, variables, images, weights, dtype=dtype,
                                        **fields)
           for dtype in ('float32', 'bfloat16')
           for backward, fields in (('stored', {}), ('remat', {'remat': True}),
                                    ('reversible', {'reversible_backward': True}))}
  print(f'RevNet50 k={args.k:g}, {args.batch} images of {args.size} px, on '
        f'{jax.devices()[0].device_kind}: relative norm error of each parameter\'s gradient')
  print('| backward, against | median | 90th percentile | largest | largest at |')
  print('|---|---|---|---|---|')
  for dtype in ('float32', 'bfloat16'):
    for backward in ('remat', 'reversible'):
      print(error_row(f'{dtype} {backward}, against {dtype} stored',
                      grads[(dtype, backward)], grads[(dtype, 'stored')]))
  print(error_row('bfloat16 stored, against float32 stored', grads[('bfloat16', 'stored')],
                  grads[('float32', 'stored')]))
  pre_logits = {dtype: np.asarray(revnet.build(model_config(args.k, dtype=dtype)).apply(
      variables, images, train=True, mutable=['batch_stats'])[0]['pre_logits'], np.float64)
      for dtype in ('float32', 'bfloat16')}
  drift = (np.linalg.norm(pre_logits['bfloat16'] - pre_logits['float32'])
           / np.linalg.norm(pre_logits['float32']))
  print(f'The forward pass in bfloat16: pre_logits {drift:.1e} (relative norm) off '
        'float32\'s.')


if __name__ == '__main__':
  main()
