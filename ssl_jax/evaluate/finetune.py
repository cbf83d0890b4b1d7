"""Fine-tuning: the whole pretrained encoder and a new linear head on the labels of the
train split, or of a labelled subset of it (Cole et al. 2022: 10k and 50k labelled
images; SimCLR v2 §4: 1% and 10% of ImageNet's labels).

The head is a dense layer on ``pre_logits``, or with ``from_projection_layers`` = n > 0 on
the output of the first n hidden layers of the task's trained projection head, kept and
fine-tuned with the encoder (SimCLR v2 §2: "fine-tuning from the middle layer of the
projection head"; tf2/model.py ProjectionHead returns ``hiddens_list[ft_proj_selector]``,
README's fine-tuning command ``--ft_proj_selector=1``). The head is zero-initialised
(``--zero_init_logits_layer=True``), so the first steps do not disturb the encoder with a
random head's gradient. The instance's own ``optimizer`` section (ssl_jax/optim.py) holds
the schedule: by default SGD with Nesterov momentum, lr 0.05 x batch / 256, cosine
(SimCLR v1 B.5); :func:`simclr_v2` gives SimCLR v2's LARS recipe. BatchNorm runs in
train mode with its statistics over the global batch (``--global_bn=True``) and its
running averages updated. Training inputs are the random crop and flip of the config's
pretraining input (``preprocess.train_crop``: the Inception crop with ``input.crop_area``,
or the whole image with ``input.crop='resize'``), as SimCLR fine-tunes with random crops
and flips and no colour augmentation; the test split is scored on the central crop.

The labelled images are the run's train split, a seeded per-class subset of it
(``labels_per_class``, ``label_fraction``), or another TFDS dataset (``dataset``), such as
``imagenet2012_subset/1pct``: the fixed 1% and 10% ImageNet subsets of SimCLR (its
``imagenet_subsets/`` files), tested on the run's test split.

Trains through the one loop (ssl_jax/loop.py): checkpoints in ``WORKDIR/evals/<name>``,
resume, SIGTERM. Reports ``top1``, ``top5`` and ``num_labelled`` (prefixed by the
instance's name: ``finetune_10/top1``).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ssl_jax import config_lib
from ssl_jax import encoder as encoder_lib
from ssl_jax import loop
from ssl_jax import optim
from ssl_jax import step as step_lib
from ssl_jax.data import augment
from ssl_jax.evaluate import context as context_lib
from ssl_jax.evaluate import linear


class Classifier(nn.Module):
  """The encoder, optionally the first hidden layers of the task's projection MLP
  (``projection``: a ``contrastive.MLP`` with ``hidden_only`` > 0), and a zero-initialised
  dense head."""
  encoder: nn.Module
  num_classes: int
  projection: nn.Module | None = None

  @nn.compact
  def __call__(self, inputs: jax.Array, train: bool) -> jax.Array:
    features = self.encoder(inputs, train=train)['pre_logits']
    features = features.reshape(features.shape[0], -1).astype(jnp.float32)
    if self.projection is not None:
      features = self.projection(features, train)
    return nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros,
                    bias_init=nn.initializers.zeros, name='head')(features)


def config() -> ml_collections.ConfigDict:
  """An evaluator instance of type 'finetune': SimCLR v1's fine-tuning recipe (B.5)."""
  c = ml_collections.ConfigDict()
  c.every = 0  # > 0: also every N pretraining steps.
  c.dataset = ''  # A TFDS name for the labelled images ('imagenet2012_subset/1pct').
  c.labels_per_class = -1  # > 0: this many labelled images per class.
  c.label_fraction = 1.0  # < 1: this fraction of the train split (per class).
  c.from_projection_layers = 0  # SimCLR v2's ft_proj_selector.
  c.batch_size = 256
  c.total_epochs = 30.0
  c.total_steps = -1  # >= 0 overrides total_epochs.
  c.log_every = 100
  c.checkpoint_every = 1000
  c.optimizer = optim.config()
  c.optimizer.base_lr = 0.05  # x batch / 256 (SimCLR B.5 semi-supervised: 0.05).
  c.optimizer.nesterov = True
  c.optimizer.weight_decay = 0.0
  c.optimizer.schedule = 'cosine'
  c.optimizer.warmup_epochs = 0.0
  c.optimizer.decay_epochs = ()
  return c


def simclr_v2(label_percent: int) -> ml_collections.ConfigDict:
  """SimCLR v2's fine-tuning on ``label_percent`` (1, 10 or 100) % of ImageNet's labels,
  the README's command (google-research/simclr README.md, "fine-tune the whole network"):
  from the first projection layer (``--ft_proj_selector=1``), LARS, lr 0.005 x sqrt(B)
  (``--learning_rate=0.005 --learning_rate_scaling=sqrt``), batch 1024, weight decay 0,
  no warm-up, 60 epochs for 1 % and 30 for 10 % and 100 % (SimCLR v2 §A.2), global BN;
  the labelled images are TFDS's ``imagenet2012_subset`` (SimCLR's subset files)."""
  if label_percent not in (1, 10, 100):
    raise ValueError(f'label_percent={label_percent}: SimCLR v2 fine-tunes on 1, 10 or 100.')
  c = config()
  c.type = 'finetune'
  c.dataset = '' if label_percent == 100 else f'imagenet2012_subset/{label_percent}pct'
  c.from_projection_layers = 1
  c.batch_size = 1024
  c.total_epochs = 60.0 if label_percent == 1 else 30.0
  c.optimizer.name = 'lars'
  c.optimizer.base_lr = 0.005
  c.optimizer.lr_scaling = 'sqrt'
  c.optimizer.nesterov = False
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 0.0
  c.optimizer.weight_decay_on = 'kernels'
  return c


def validate(section: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the field and the fix."""
  optim.validate(section.optimizer)
  config_lib.check_class_subset('finetune', section.labels_per_class, section.label_fraction)
  if section.from_projection_layers < 0:
    raise ValueError(f'finetune.from_projection_layers={section.from_projection_layers}: '
                     'use 0 (pre_logits) or the number of projection layers to keep.')


def labelled_data(section: ml_collections.ConfigDict, data: context_lib.DataSpec
                  ) -> context_lib.DataSpec:
  """``data`` with the instance's labelled dataset (``section.dataset``) if it names one,
  tested on the run's test split."""
  from ssl_jax.data import input_pipeline  # TensorFlow only where the host pipeline runs.
  if not section.dataset:
    return data
  dataset = ml_collections.ConfigDict(data.dataset.to_dict())
  dataset.name = section.dataset
  builder = input_pipeline.get_builder(dataset)
  info = input_pipeline.dataset_info(dataset, builder)
  if info.num_classes != data.num_classes:
    raise ValueError(f'finetune.dataset={section.dataset!r} has {info.num_classes} classes, '
                     f'the run\'s {data.dataset.name!r} {data.num_classes}: fine-tune on a '
                     'subset of the run\'s dataset, or set dataset.name to it as well.')
  return dataclasses.replace(data, dataset=dataset, builder=builder,
                             num_train_examples=info.num_train_examples)


def projection_layers(section: ml_collections.ConfigDict, encoder: context_lib.Encoder
                      ) -> tuple[nn.Module | None, dict]:
  """(the first ``section.from_projection_layers`` hidden layers of the run's projection
  MLP, their trained variables), or (None, {}) for a head on pre_logits."""
  layers = section.from_projection_layers
  if not layers:
    return None, {}
  proj = getattr(encoder.head, 'proj', None)
  hidden = getattr(proj, 'hidden', ())
  if proj is None or len(hidden) < layers or encoder.head_variables is None:
    raise ValueError(
        f'finetune.from_projection_layers={layers}, but this run\'s head '
        f'({type(encoder.head).__name__}) has {len(hidden)} hidden projection layers: '
        'use 0 (fine-tune from pre_logits), or a run with a projection MLP (SimCLR v2: 3 '
        'layers).')
  keep = {f'hidden{i}' for i in range(layers)} | {f'hidden{i}_bn' for i in range(layers)}
  variables = {kind: {name: value for name, value in tree.get('proj', {}).items()
                      if name in keep}
               for kind, tree in encoder.head_variables.items()}
  return proj.clone(hidden_only=layers, parent=None, name='projection'), variables


def make_train_step(model: Classifier, tx: optax.GradientTransformation,
                    data: context_lib.DataSpec) -> Callable:
  """Jitted ``(state, batch) -> (state, {'loss'})``: mean cross-entropy over the global
  batch, BN in train mode."""
  base_key = jax.random.key(data.seed + 3)
  inp, normalize = data.input, data.normalize

  def train_step(state: step_lib.TrainState, batch: dict):
    inputs = jax.lax.with_sharding_constraint(
        encoder_lib.model_input(inp, normalize, augment.to_unit(batch['image'])),
        step_lib.batch_sharding(data.mesh))

    def loss_fn(params):
      logits, mutated = model.apply(
          {'params': params, 'batch_stats': state.batch_stats}, inputs, train=True,
          mutable=['batch_stats'], rngs={'dropout': jax.random.fold_in(base_key, state.step)})
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label']).mean()
      return loss, mutated['batch_stats']

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                         batch_stats=batch_stats, opt_state=opt_state), {'loss': loss}

  return jax.jit(train_step, donate_argnums=0,
                 out_shardings=step_lib.replicated(data.mesh))


def evaluate(model: Classifier, variables: dict, data: context_lib.DataSpec
             ) -> dict[str, float]:
  """{'top1', 'top5'} of ``model`` on the central crops of the test split."""
  from ssl_jax.data import input_pipeline  # TensorFlow only where the host pipeline runs.

  @jax.jit
  def eval_step(variables, batch):
    inputs = encoder_lib.model_input(data.input, data.normalize,
                                     augment.to_unit(batch['image']))
    logits = model.apply(variables, inputs, train=False)
    mask = batch['mask'].astype(jnp.float32)
    return (linear.topk_correct(logits, batch['label'], mask, 1),
            linear.topk_correct(logits, batch['label'], mask, min(5, logits.shape[-1])),
            jnp.sum(mask))

  totals = np.zeros(3)
  batches, _ = input_pipeline.eval_batches(data.dataset, data.input, data.builder, data.mesh,
                                           data.dataset.test_split, data.eval_batch_size)
  for batch in batches:
    totals += np.asarray(jax.device_get(eval_step(variables, batch)), np.float64)
  return {'top1': float(totals[0] / totals[2]), 'top5': float(totals[1] / totals[2])}


def fine_tune(section: ml_collections.ConfigDict, encoder: context_lib.Encoder,
              data: context_lib.DataSpec, workdir: str) -> tuple[dict, dict] | None:
  """Fine-tunes ``encoder`` with a new head (checkpoints in ``workdir``); returns (the
  fine-tuned variables {'params', 'batch_stats'} of encoder and head, results), or None
  if SIGTERM stopped it."""
  from ssl_jax.data import input_pipeline  # TensorFlow only where the host pipeline runs.
  from ssl_jax.data import preprocess
  if data.input.eval_patch_grid > 0:
    raise ValueError(
        f'Fine-tuning takes whole images, but input.eval_patch_grid='
        f'{data.input.eval_patch_grid} represents an image by its patches (patch tasks); '
        'set --config.input.eval_patch_grid=0 to fine-tune on whole images.')
  data = labelled_data(section, data)
  keep_ids = input_pipeline.class_subset_ids(data.dataset, data.builder,
                                              section.labels_per_class,
                                              section.label_fraction, data.seed)
  num_labelled = data.num_train_examples if keep_ids is None else len(keep_ids)
  tx, _, total = optim.for_run(
      section.optimizer, batch_size=section.batch_size, num_examples=num_labelled,
      steps=section.total_steps, epochs=section.total_epochs)
  projection, projection_variables = projection_layers(section, encoder)
  model = Classifier(encoder.module, data.num_classes, projection)
  replicated = step_lib.replicated(data.mesh)
  size = data.input.image_size

  def init():
    head = model.init(jax.random.key(data.seed), jnp.zeros((1, size, size, 3)),
                      train=False)['params']['head']
    params = {'encoder': encoder.variables['params'], 'head': head}
    batch_stats = {'encoder': encoder.variables['batch_stats']}
    if projection is not None:
      params['projection'] = projection_variables['params']
      batch_stats['projection'] = projection_variables.get('batch_stats', {})
    return step_lib.TrainState(
        step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
        opt_state=tx.init(params), task_state=None)

  state = jax.jit(init, out_shardings=replicated)()

  def batches_from(start: int):
    crop = lambda features, seed: {  # noqa: E731
        'image': preprocess.train_crop(features['image'], seed, data.input),
        'label': features['label']}
    return input_pipeline.train_batches(data.dataset, data.builder, data.mesh, crop,
                                        batch_size=section.batch_size, seed=data.seed,
                                        start_step=start, keep_ids=keep_ids,
                                        encoded_images=True)

  logging.info('Fine-tuning on %d labelled images: %d steps of batch %d, peak lr %.4g.',
               num_labelled, total, section.batch_size,
               optim.peak_lr(section.optimizer, section.batch_size))
  state, finished = loop.run(
      state, make_train_step(model, tx, data), batches_from, total_steps=total,
      workdir=workdir, name=f'finetune {os.path.basename(workdir)}',
      log_every=section.log_every, checkpoint_every=section.checkpoint_every,
      keep_checkpoints=1)
  if not finished:
    return None
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  scores = evaluate(model, variables, data)
  return variables, {'top1': scores['top1'], 'top5': scores['top5'],
                     'num_labelled': float(num_labelled)}


def run(section: ml_collections.ConfigDict, encoder: context_lib.Encoder,
        data: context_lib.DataSpec, workdir: str) -> dict[str, float] | None:
  """Fine-tunes the encoder; top-1 and top-5 on the test split."""
  result = fine_tune(section, encoder, data, workdir)
  return None if result is None else result[1]
