"""SGD linear evaluation on the frozen encoder (Revisiting Table 2, reference §4).

Every end point of ``config.linear.layers`` gets its own head (flatten, dense with bias),
all trained together with summed cross-entropies, which equals training each alone on
frozen features. Large maps are max-pooled to at most ``config.max_features``. Training
sees random crops (shorter side to ``linear.resize``, random ``input.image_size`` crop),
the test split the central crop. SGD with momentum, no weight decay, x0.1 decays.
Reports top-1 and top-5 per layer. ``ssl_jax/evaluate/mlp.py`` is the same protocol with
one hidden layer.
"""

from __future__ import annotations

import functools
from typing import Sequence

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from ssl_jax import encoder as encoder_lib
from ssl_jax import optim
from ssl_jax import step as step_lib


class Probe(nn.Module):
  """One classifier per layer: dense (or hidden ReLU layer, then dense)."""
  num_classes: int
  hidden: int = 0
  dropout: float = 0.0

  @nn.compact
  def __call__(self, features: dict, train: bool) -> dict:
    logits = {}
    for name, x in features.items():
      if self.hidden:
        x = nn.relu(nn.Dense(self.hidden, name=f'{name}_hidden')(x))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
      logits[name] = nn.Dense(self.num_classes, kernel_init=nn.initializers.glorot_uniform(),
                              name=name)(x)
    return logits


def probe_optimizer_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """``config`` with the optimiser fields of the linear protocol, for ssl_jax.optim."""
  probe = ml_collections.ConfigDict(config.to_dict())
  probe.batch_size = config.linear.batch_size
  probe.total_epochs = config.linear.total_epochs
  probe.total_steps = config.linear.total_steps
  probe.optimizer.base_lr = config.linear.base_lr
  probe.optimizer.lr_scaling = config.linear.lr_scaling
  probe.optimizer.momentum = config.linear.momentum
  probe.optimizer.nesterov = False
  probe.optimizer.weight_decay = 0.0  # Reference §4: no weight decay on the heads.
  probe.optimizer.fc_weight_decay = -1.0
  probe.optimizer.schedule = 'step'
  probe.optimizer.warmup_steps = 0
  probe.optimizer.decay_steps = ()
  probe.optimizer.decay_epochs = tuple(config.linear.decay_epochs)
  return probe


def topk_correct(logits: jax.Array, labels: jax.Array, mask: jax.Array, k: int) -> jax.Array:
  """How many unmasked examples have their label among the k largest logits."""
  top = jax.lax.top_k(logits, k)[1]
  return jnp.sum(jnp.any(top == labels[:, None], axis=1) * mask)


def train_probe(config: ml_collections.ConfigDict, workdir: str, *, hidden: int,
                dropout: float, prefix: str, devices=None) -> dict[str, float]:
  """Trains probes on the frozen encoder of ``workdir``; returns
  ``{prefix/layer/top1, prefix/layer/top5}`` on the test split."""
  from ssl_jax.data import input_pipeline  # TensorFlow only where the host pipeline runs.
  from ssl_jax.data import preprocess

  mesh = step_lib.make_mesh(devices)
  layers: Sequence[str] = tuple(config.linear.layers)
  _, encoder, variables, _ = encoder_lib.restore_encoder(workdir)
  variables = jax.device_put(variables, step_lib.replicated(mesh))
  represent = encoder_lib.representation(config, encoder, layers, config.max_features)
  builder = input_pipeline.get_builder(config)
  info = input_pipeline.dataset_info(config, builder)
  probe_config = probe_optimizer_config(config)
  tx, schedule = optim.make(probe_config, info.num_train_examples)
  total = optim.total_steps(probe_config, info.num_train_examples)
  probe = Probe(info.num_classes, hidden, dropout)
  size = config.input.image_size

  def init():
    images = jnp.zeros((1, size, size, 3), jnp.uint8)
    params = probe.init(jax.random.key(config.seed), represent(variables, images),
                        train=False)['params']
    return params, tx.init(params)

  params, opt_state = jax.jit(init, out_shardings=step_lib.replicated(mesh))()
  base_key = jax.random.key(config.seed + 2)

  @functools.partial(jax.jit, donate_argnums=(0, 1),
                     out_shardings=step_lib.replicated(mesh))
  def train_step(params, opt_state, batch, step):
    features = jax.lax.stop_gradient(represent(variables, batch['image']))

    def loss_fn(params):
      logits = probe.apply({'params': params}, features, train=True,
                           rngs={'dropout': jax.random.fold_in(base_key, step)})
      losses = {k: optax.softmax_cross_entropy_with_integer_labels(v, batch['label']).mean()
                for k, v in logits.items()}
      return sum(losses.values()), losses

    (loss, losses), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  def crop(features: dict, seed, config) -> dict:
    return {'image': preprocess.resize_small_random_crop(
                features['image'], seed, config.linear.resize, size),
            'label': features['label']}

  batches = input_pipeline.train_batches(config, builder, mesh, crop,
                                         batch_size=config.linear.batch_size)
  for step in range(total):
    params, opt_state, loss = train_step(params, opt_state, next(batches), step)
    if (step + 1) % config.linear.log_every == 0 or step + 1 == total:
      logging.info('%s probe step %d/%d | summed loss %.4f | lr %.4g', prefix, step + 1,
                   total, float(loss), float(schedule(step)))

  @jax.jit
  def eval_step(params, batch):
    logits = probe.apply({'params': params}, represent(variables, batch['image']), train=False)
    mask = batch['mask'].astype(jnp.float32)
    return {k: (topk_correct(v, batch['label'], mask, 1),
                topk_correct(v, batch['label'], mask, min(5, v.shape[-1])))
            for k, v in logits.items()}

  correct = {k: [0.0, 0.0] for k in layers}
  count = 0.0
  test_batches, _ = input_pipeline.eval_batches(config, builder, mesh, config.dataset.test_split)
  for batch in test_batches:
    for layer, (top1, top5) in eval_step(params, batch).items():
      correct[layer][0] += float(top1)
      correct[layer][1] += float(top5)
    count += float(jnp.sum(batch['mask']))
  results = {}
  for layer in layers:
    results[f'{prefix}/{layer}/top1'] = correct[layer][0] / count
    results[f'{prefix}/{layer}/top5'] = correct[layer][1] / count
    logging.info('%s %s: top-1 %.4f, top-5 %.4f', prefix, layer, results[f'{prefix}/{layer}/top1'],
                 results[f'{prefix}/{layer}/top5'])
  return results


def run(config: ml_collections.ConfigDict, workdir: str, devices=None) -> dict[str, float]:
  """Linear heads on every layer of ``config.linear.layers``."""
  return train_probe(config, workdir, hidden=0, dropout=0.0, prefix='linear',
                     devices=devices)
