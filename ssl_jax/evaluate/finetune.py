"""Fine-tuning: the whole pretrained encoder and a new linear head on the labels of the
train split, or of a labelled subset of it (Cole et al. 2022: 10k and 50k labelled
images; SimCLR §6: 1% and 10% of the labels).

The head is a dense layer on ``pre_logits``, zero-initialised as in SimCLR's fine-tuning
code, so the first steps do not disturb the encoder with a random head's gradient. SGD
with momentum (Nesterov per ``finetune.nesterov``), lr = ``finetune.base_lr`` x batch / 256,
optional linear warm-up, cosine decay to 0, weight decay on kernels. BatchNorm runs in
train mode with its statistics over the global batch (one group under jit) and its
running averages updated. Training inputs are the random crop and flip of the config's
pretraining input (``preprocess.train_crop``: the Inception crop with ``input.crop_area``,
or the whole image with ``input.crop='resize'``), as SimCLR fine-tunes with random crops
and flips and no colour augmentation; the test split is scored on the central crop.
Reports ``finetune/top1``, ``finetune/top5`` and ``finetune/num_labelled``.
"""

from __future__ import annotations

from typing import Callable

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ssl_jax import encoder as encoder_lib
from ssl_jax import optim
from ssl_jax import step as step_lib
from ssl_jax.data import augment
from ssl_jax.evaluate import linear


class Classifier(nn.Module):
  """The encoder and a zero-initialised dense head on its ``pre_logits`` end point."""
  encoder: nn.Module
  num_classes: int

  @nn.compact
  def __call__(self, inputs: jax.Array, train: bool) -> jax.Array:
    features = self.encoder(inputs, train=train)['pre_logits']
    features = features.reshape(features.shape[0], -1).astype(jnp.float32)
    return nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros,
                    bias_init=nn.initializers.zeros, name='head')(features)


def model_input(config: ml_collections.ConfigDict, images: jax.Array) -> jax.Array:
  """uint8 images -> the network input of pretraining (encoder.model_input); used for
  training and test alike."""
  return encoder_lib.model_input(config, augment.to_unit(images))


def optimizer_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """``config`` with the optimiser fields of fine-tuning, for ssl_jax.optim."""
  ft = ml_collections.ConfigDict(config.to_dict())
  ft.batch_size = config.finetune.batch_size
  ft.total_epochs = config.finetune.total_epochs
  ft.total_steps = config.finetune.total_steps
  ft.optimizer.name = 'sgd'
  ft.optimizer.base_lr = config.finetune.base_lr
  ft.optimizer.lr_scaling = 'linear'
  ft.optimizer.momentum = config.finetune.momentum
  ft.optimizer.nesterov = config.finetune.nesterov
  ft.optimizer.weight_decay = config.finetune.weight_decay
  ft.optimizer.weight_decay_on = 'kernels'
  ft.optimizer.fc_weight_decay = -1.0
  ft.optimizer.schedule = 'cosine'
  ft.optimizer.warmup_steps = -1
  ft.optimizer.warmup_epochs = config.finetune.warmup_epochs
  ft.optimizer.decay_steps = ()
  ft.optimizer.decay_epochs = ()
  return ft


def labelled_ids(config: ml_collections.ConfigDict, builder) -> np.ndarray | None:
  """The ``tfds_id``s of the labelled subset of ``config.finetune`` (seeded by
  ``config.seed``), or None to use the whole train split."""
  from ssl_jax.data import input_pipeline  # TensorFlow only where the host pipeline runs.
  ft = config.finetune
  if ft.labels_per_class <= 0 and ft.label_fraction == 1.0:
    return None
  return input_pipeline.labelled_subset_ids(config, builder, ft.labels_per_class,
                                            ft.label_fraction, config.seed)


def _train_crop(features: dict, seed, config: ml_collections.ConfigDict) -> dict:
  from ssl_jax.data import preprocess  # TensorFlow only where the host pipeline runs.
  return {'image': preprocess.train_crop(features['image'], seed, config),
          'label': features['label']}


def make_train_step(config: ml_collections.ConfigDict, model: Classifier,
                    tx: optax.GradientTransformation, mesh: jax.sharding.Mesh) -> Callable:
  """Jitted ``(params, batch_stats, opt_state, batch, step) -> (params, batch_stats,
  opt_state, loss)``: mean cross-entropy over the global batch, BN in train mode."""
  base_key = jax.random.key(config.seed + 3)

  def train_step(params, batch_stats, opt_state, batch, step):
    inputs = jax.lax.with_sharding_constraint(model_input(config, batch['image']),
                                              step_lib.batch_sharding(mesh))

    def loss_fn(params):
      logits, mutated = model.apply(
          {'params': params, 'batch_stats': batch_stats}, inputs, train=True,
          mutable=['batch_stats'], rngs={'dropout': jax.random.fold_in(base_key, step)})
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label']).mean()
      return loss, mutated['batch_stats']

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), batch_stats, opt_state, loss

  return jax.jit(train_step, donate_argnums=(0, 1, 2),
                 out_shardings=step_lib.replicated(mesh))


def evaluate(config: ml_collections.ConfigDict, model: Classifier, variables: dict,
             builder, mesh: jax.sharding.Mesh) -> dict[str, float]:
  """{'top1', 'top5'} of ``model`` on the central crops of the test split."""
  from ssl_jax.data import input_pipeline  # TensorFlow only where the host pipeline runs.

  @jax.jit
  def eval_step(variables, batch):
    logits = model.apply(variables, model_input(config, batch['image']), train=False)
    mask = batch['mask'].astype(jnp.float32)
    return (linear.topk_correct(logits, batch['label'], mask, 1),
            linear.topk_correct(logits, batch['label'], mask, min(5, logits.shape[-1])),
            jnp.sum(mask))

  totals = np.zeros(3)
  batches, _ = input_pipeline.eval_batches(config, builder, mesh, config.dataset.test_split)
  for batch in batches:
    totals += np.asarray(jax.device_get(eval_step(variables, batch)), np.float64)
  return {'top1': float(totals[0] / totals[2]), 'top5': float(totals[1] / totals[2])}


def fine_tune(config: ml_collections.ConfigDict, workdir: str, devices=None
              ) -> tuple[dict, dict[str, float]]:
  """Fine-tunes the encoder of ``workdir`` with a new head; returns (the fine-tuned
  variables {'params', 'batch_stats'} of encoder and head, results)."""
  from ssl_jax.data import input_pipeline  # TensorFlow only where the host pipeline runs.
  if config.input.eval_patch_grid > 0:
    raise ValueError(
        f'Fine-tuning takes whole images, but input.eval_patch_grid='
        f'{config.input.eval_patch_grid} represents an image by its patches (patch tasks); '
        'set --config.input.eval_patch_grid=0 to fine-tune on whole images.')
  mesh = step_lib.make_mesh(devices)
  _, encoder, restored, _ = encoder_lib.restore_encoder(workdir)
  builder = input_pipeline.get_builder(config)
  info = input_pipeline.dataset_info(config, builder)
  keep_ids = labelled_ids(config, builder)
  num_labelled = info.num_train_examples if keep_ids is None else len(keep_ids)
  ft_config = optimizer_config(config)
  tx, schedule = optim.make(ft_config, num_labelled)
  total = optim.total_steps(ft_config, num_labelled)
  model = Classifier(encoder, info.num_classes)

  replicated = step_lib.replicated(mesh)
  restored = jax.device_put(restored, replicated)
  size = config.input.image_size
  head = jax.jit(lambda: model.init(jax.random.key(config.seed), jnp.zeros((1, size, size, 3)),
                                    train=False)['params']['head'], out_shardings=replicated)()
  params = {'encoder': restored['params'], 'head': head}
  batch_stats = {'encoder': restored['batch_stats']}
  opt_state = jax.jit(tx.init, out_shardings=replicated)(params)
  train_step = make_train_step(config, model, tx, mesh)
  batches = input_pipeline.train_batches(config, builder, mesh, _train_crop,
                                         batch_size=config.finetune.batch_size,
                                         keep_ids=keep_ids)
  logging.info('Fine-tuning on %d labelled images: %d steps of batch %d, peak lr %.4g.',
               num_labelled, total, config.finetune.batch_size, optim.peak_lr(ft_config))
  for step in range(total):
    params, batch_stats, opt_state, loss = train_step(params, batch_stats, opt_state,
                                                      next(batches), step)
    if (step + 1) % config.finetune.log_every == 0 or step + 1 == total:
      logging.info('finetune step %d/%d | loss %.4f | lr %.4g', step + 1, total, float(loss),
                   float(schedule(step)))
  variables = {'params': params, 'batch_stats': batch_stats}
  scores = evaluate(config, model, variables, builder, mesh)
  results = {'finetune/top1': scores['top1'], 'finetune/top5': scores['top5'],
             'finetune/num_labelled': float(num_labelled)}
  logging.info('finetune on %d labels: top-1 %.4f, top-5 %.4f', num_labelled,
               scores['top1'], scores['top5'])
  return variables, results


def run(config: ml_collections.ConfigDict, workdir: str, devices=None) -> dict[str, float]:
  """Fine-tunes the encoder of ``workdir``; top-1 and top-5 on the test split."""
  return fine_tune(config, workdir, devices)[1]
