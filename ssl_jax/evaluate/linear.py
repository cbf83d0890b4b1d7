"""SGD linear evaluation on the frozen encoder (Revisiting Table 2, reference §4).

Every end point of the instance's ``layers`` gets its own head (flatten, dense with bias),
all trained together with summed cross-entropies, which equals training each alone on
frozen features. Large maps are max-pooled to at most ``max_features``. Training sees
random crops (shorter side to ``resize``, random ``input.image_size`` crop), the test
split the central crop. The instance's own ``optimizer`` section (ssl_jax/optim.py) sets
the schedule: by default SGD with momentum, no weight decay, x0.1 decays. The probe trains
through the one loop (ssl_jax/loop.py): it checkpoints in ``WORKDIR/evals/<name>``,
resumes and stops on SIGTERM like pretraining. Reports top-1 and top-5 per layer.
``ssl_jax/evaluate/mlp.py`` is the same protocol with one hidden layer.
"""

from __future__ import annotations

import functools
import os
from typing import Sequence

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from ssl_jax import loop
from ssl_jax import optim
from ssl_jax import step as step_lib
from ssl_jax.evaluate import context as context_lib


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


def config() -> ml_collections.ConfigDict:
  """An evaluator instance of type 'linear': the released 8-core schedule (70 epochs,
  x0.1 at 30 and 50) at the paper's effective LR of 0.1, batch 512."""
  c = ml_collections.ConfigDict()
  c.every = 0  # > 0: also every N pretraining steps.
  c.layers = ('after_root', 'block1', 'block2', 'block3', 'block4', 'pre_logits')
  c.max_features = 9000  # Larger end points are max-pooled to at most this (§4.2).
  c.hidden = 0  # > 0: one hidden ReLU layer of this width (the MLP probe).
  c.dropout = 0.0
  c.batch_size = 512
  c.total_epochs = 70.0
  c.total_steps = -1  # >= 0 overrides total_epochs.
  c.resize = 256  # Shorter side before the random (train) crop of input.image_size.
  c.log_every = 100
  c.checkpoint_every = 1000
  c.optimizer = optim.config()
  c.optimizer.base_lr = 0.1
  c.optimizer.lr_scaling = 'none'  # 'linear' gives the code's 0.1 x B/256 (0.8 at 2048).
  c.optimizer.weight_decay = 0.0  # Reference §4: no weight decay on the heads.
  c.optimizer.warmup_steps = 0
  c.optimizer.decay_epochs = (30.0, 50.0)
  return c


def validate(section: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the field and the fix."""
  optim.validate(section.optimizer)
  if not section.layers:
    raise ValueError('A probe needs at least one end point in layers.')


def topk_correct(logits: jax.Array, labels: jax.Array, mask: jax.Array, k: int) -> jax.Array:
  """How many unmasked examples have their label among the k largest logits."""
  top = jax.lax.top_k(logits, k)[1]
  return jnp.sum(jnp.any(top == labels[:, None], axis=1) * mask)


def make_train_step(probe: Probe, represent, variables: dict, tx, seed: int):
  """The jitted ``(state, batch) -> (state, {'loss'})`` of the probes on frozen
  features (the summed cross-entropy of the layers)."""
  base_key = jax.random.key(seed + 2)

  @functools.partial(jax.jit, donate_argnums=0)
  def train_step(state: step_lib.TrainState, batch: dict):
    features = jax.lax.stop_gradient(represent(variables, batch['image']))

    def loss_fn(params):
      logits = probe.apply({'params': params}, features, train=True,
                           rngs={'dropout': jax.random.fold_in(base_key, state.step)})
      return sum(optax.softmax_cross_entropy_with_integer_labels(v, batch['label']).mean()
                 for v in logits.values())

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                         opt_state=opt_state), {'loss': loss}

  return train_step


def test_accuracy(probe: Probe, represent, variables: dict, params: dict,
                  data: context_lib.DataSpec, layers: Sequence[str]) -> dict[str, float]:
  """``{layer}/top1`` and ``{layer}/top5`` of the probes on the central crops of the test
  split."""
  from ssl_jax.data import input_pipeline  # TensorFlow only where the host pipeline runs.

  @jax.jit
  def eval_step(params, batch):
    logits = probe.apply({'params': params}, represent(variables, batch['image']), train=False)
    mask = batch['mask'].astype(jnp.float32)
    return {k: (topk_correct(v, batch['label'], mask, 1),
                topk_correct(v, batch['label'], mask, min(5, v.shape[-1])))
            for k, v in logits.items()}

  correct = {k: [0.0, 0.0] for k in layers}
  count = 0.0
  batches, _ = input_pipeline.eval_batches(data.dataset, data.input, data.builder, data.mesh,
                                           data.dataset.test_split, data.eval_batch_size)
  for batch in batches:
    for layer, (top1, top5) in eval_step(params, batch).items():
      correct[layer][0] += float(top1)
      correct[layer][1] += float(top5)
    count += float(jnp.sum(batch['mask']))
  return {f'{layer}/{name}': correct[layer][i] / count
          for layer in layers for i, name in enumerate(('top1', 'top5'))}


def run(section: ml_collections.ConfigDict, encoder: context_lib.Encoder,
        data: context_lib.DataSpec, workdir: str) -> dict[str, float] | None:
  """Trains probes on ``section.layers`` of the frozen encoder (checkpoints in
  ``workdir``); top-1 and top-5 per layer on the test split, None if SIGTERM stopped it."""
  from ssl_jax.data import input_pipeline  # TensorFlow only where the host pipeline runs.
  from ssl_jax.data import preprocess

  mesh, replicated = data.mesh, step_lib.replicated(data.mesh)
  layers: Sequence[str] = tuple(section.layers)
  variables = jax.device_put(encoder.variables, replicated)
  represent = encoder.features_fn(data, layers, section.max_features)
  tx, _, total = optim.for_run(
      section.optimizer, batch_size=section.batch_size, num_examples=data.num_train_examples,
      steps=section.total_steps, epochs=section.total_epochs)
  probe = Probe(data.num_classes, section.hidden, section.dropout)
  size = data.input.image_size

  def init():
    images = jnp.zeros((1, size, size, 3), jnp.uint8)
    params = probe.init(jax.random.key(data.seed), represent(variables, images),
                        train=False)['params']
    return step_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats={},
                               opt_state=tx.init(params), task_state=None)

  state = jax.jit(init, out_shardings=replicated)()

  def crop(features: dict, seed) -> dict:
    return {'image': preprocess.resize_small_random_crop(
                features['image'], seed, section.resize, size),
            'label': features['label']}

  def batches_from(start: int):
    return input_pipeline.train_batches(data.dataset, data.builder, mesh, crop,
                                        batch_size=section.batch_size, seed=data.seed,
                                        start_step=start)

  state, finished = loop.run(
      state, make_train_step(probe, represent, variables, tx, data.seed), batches_from,
      total_steps=total, workdir=workdir, name=f'probe {os.path.basename(workdir)}',
      log_every=section.log_every, checkpoint_every=section.checkpoint_every,
      keep_checkpoints=1)
  if not finished:
    return None
  results = test_accuracy(probe, represent, variables, state.params, data, layers)
  for layer in layers:
    logging.info('probe %s: top-1 %.4f, top-5 %.4f', layer, results[f'{layer}/top1'],
                 results[f'{layer}/top5'])
  return results
