"""SGD linear evaluation on the frozen encoder (Revisiting Table 2, reference §4), and the
linear probes of the contrastive papers as presets (:func:`preset`).

Every end point of the instance's ``layers`` gets its own head (flatten, dense with bias),
all trained together with summed cross-entropies, which equals training each alone on
frozen features. Large maps are max-pooled to at most ``max_features``. Training sees
random crops: ``crop='resize_small'`` (Revisiting: shorter side to ``resize``, random
``input.image_size`` crop, no flip) or ``'inception'`` (the contrastive papers: a random
resized crop of ``crop_area``, aspect 3/4-4/3, and a flip); the test split the run's
central crop. The head starts as ``head_init``; the instance's own ``optimizer`` section
(ssl_jax/optim.py) sets the schedule: by default SGD with momentum, no weight decay, x0.1
decays. The probe trains
through the one loop (ssl_jax/loop.py): it checkpoints in ``WORKDIR/evals/<name>``,
resumes and stops on SIGTERM like pretraining. Reports top-1 and top-5 per layer.
``ssl_jax/evaluate/mlp.py`` is the same protocol with one hidden layer.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Callable, Sequence

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ssl_jax import config_lib
from ssl_jax import loop
from ssl_jax import optim
from ssl_jax import step as step_lib
from ssl_jax.evaluate import context as context_lib


HEAD_INITS = ('glorot', 'zeros', 'normal', 'truncated_fan_in')
CROPS = ('resize_small', 'inception')


def _truncated_fan_in(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
  """Haiku's hk.Linear default: TruncatedNormal(stddev=1/sqrt(fan_in)), cut at 2 stddev
  and not rescaled (haiku/_src/basic.py Linear)."""
  return jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype) / math.sqrt(shape[0])


def head_initializer(name: str) -> Callable:
  """The kernel initialiser of a probe head (the bias starts at 0 in every recipe)."""
  return {
      # tf.layers.conv2d's default (self_supervision/linear_eval.py add_linear_heads).
      'glorot': nn.initializers.glorot_uniform(),
      # SimCLR --zero_init_logits_layer=True (README.md:137, model.py:170-179).
      'zeros': nn.initializers.zeros,
      # MoCo main_lincls.py:240 and SimSiam main_lincls.py:160: N(0, 0.01).
      'normal': nn.initializers.normal(stddev=0.01),
      # BYOL eval_experiment.py:151 hk.Linear with its default initialiser.
      'truncated_fan_in': _truncated_fan_in,
  }[name]


class Probe(nn.Module):
  """One classifier per layer: dense (or hidden ReLU layer, then dense), optionally on
  features standardised by a parameter-free BatchNorm."""
  num_classes: int
  hidden: int = 0
  dropout: float = 0.0
  head_init: str = 'glorot'
  standardize: bool = False

  @nn.compact
  def __call__(self, features: dict, train: bool) -> dict:
    logits = {}
    for name, x in features.items():
      if self.standardize:
        x = nn.BatchNorm(use_running_average=not train, use_scale=False, use_bias=False,
                         momentum=0.9, name=f'{name}_standardize')(x)
      if self.hidden:
        x = nn.relu(nn.Dense(self.hidden, name=f'{name}_hidden')(x))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
      logits[name] = nn.Dense(self.num_classes, kernel_init=head_initializer(self.head_init),
                              name=name)(x)
    return logits


def config() -> ml_collections.ConfigDict:
  """An evaluator instance of type 'linear': Revisiting's released 8-core protocol
  (config/evaluation/rotation_or_exemplar.sh): batch 512, lr 0.1 x B/256 (0.2), 70 epochs,
  x0.1 at 30 and 50, resize_small 256 then a random crop, glorot heads."""
  c = ml_collections.ConfigDict()
  c.every = 0  # > 0: also every N pretraining steps.
  c.layers = ('after_root', 'block1', 'block2', 'block3', 'block4', 'pre_logits')
  c.max_features = 9000  # Larger end points are max-pooled to at most this (§4.2).
  c.hidden = 0  # > 0: one hidden ReLU layer of this width (the MLP probe).
  c.dropout = 0.0
  c.batch_size = 512
  c.total_epochs = 70.0
  c.total_steps = -1  # >= 0 overrides total_epochs.
  c.crop = 'resize_small'  # Or 'inception' (random resized crop of crop_area, flip).
  c.resize = 256  # 'resize_small': shorter side before the random input.image_size crop.
  c.crop_area = (0.08, 1.0)  # 'inception': the crop's area range.
  c.head_init = 'glorot'  # 'glorot', 'zeros', 'normal' (N(0, 0.01)), 'truncated_fan_in'.
  # Standardise each feature (BatchNorm without scale or offset: batch statistics in
  # training, their running mean at test). No paper probe does; the MLP probe needs it.
  c.standardize_features = False
  # The low-data regime (Revisiting §4.6, Fig. 7): > 0, or < 1, trains on a fixed seeded
  # subset of each class (input_pipeline.labelled_subset_ids: nested, deterministic).
  c.examples_per_class = 0
  c.label_fraction = 1.0
  # '': the dataset's labels; else a map to coarser ones (ssl_jax/data/label_map.py).
  c.label_map = ''
  c.log_every = 100
  c.checkpoint_every = 1000
  c.optimizer = optim.config()
  # rotation_or_exemplar.sh:36,39 --lr 0.1 --lr_scale_batch_size 256; trainer.py:72-80
  # multiplies by batch_size / 256: 0.2 at the script's batch 512 (:28).
  c.optimizer.base_lr = 0.1
  c.optimizer.lr_scaling = 'linear'
  c.optimizer.weight_decay = 0.0  # Reference §4: no weight decay on the heads.
  c.optimizer.warmup_steps = 0
  c.optimizer.decay_epochs = (30.0, 50.0)
  return c


def validate(section: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the field and the fix."""
  optim.validate(section.optimizer)
  if not section.layers:
    raise ValueError('A probe needs at least one end point in layers.')
  config_lib.check_choice(section, 'evals.<probe>', 'crop', CROPS)
  config_lib.check_choice(section, 'evals.<probe>', 'head_init', HEAD_INITS)
  if not 0.0 < section.crop_area[0] <= section.crop_area[1] <= 1.0:
    raise ValueError(f'crop_area={tuple(section.crop_area)}: use (low, high) with '
                     '0 < low <= high <= 1.')
  config_lib.check_class_subset('evals.<probe>', section.examples_per_class,
                                section.label_fraction)


def topk_correct(logits: jax.Array, labels: jax.Array, mask: jax.Array, k: int) -> jax.Array:
  """How many unmasked examples have their label among the k largest logits."""
  top = jax.lax.top_k(logits, k)[1]
  return jnp.sum(jnp.any(top == labels[:, None], axis=1) * mask)


def train_crop(section: ml_collections.ConfigDict,
               inp: ml_collections.ConfigDict) -> Callable:
  """The probe's ``(image, seed) -> uint8 image`` training crop (of a decoded or an
  encoded image, ``preprocess.decode``) of ``inp.image_size``: Revisiting's resize_small
  then random crop, no flip (rotation_or_exemplar.sh:31-33), or the contrastive papers'
  random resized crop of ``section.crop_area`` at aspect 3/4-4/3 with a flip
  (preprocess.train_crop on a copy of the run's ``input`` section, so the run's resize
  method carries over)."""
  from ssl_jax.data import preprocess  # TensorFlow only where the host pipeline runs.
  if section.crop == 'resize_small':
    return lambda image, seed: preprocess.resize_small_random_crop(
        image, seed, section.resize, inp.image_size)
  crop_input = ml_collections.ConfigDict(inp.to_dict())
  crop_input.crop = 'inception'
  crop_input.crop_area = tuple(section.crop_area)
  crop_input.crop_aspect = (3 / 4, 4 / 3)
  crop_input.flip = True
  return lambda image, seed: preprocess.train_crop(image, seed, crop_input)


def _moco(c: ml_collections.ConfigDict) -> None:
  """MoCo v1/v2 main_lincls.py (facebookresearch/moco)."""
  c.batch_size = 256  # main_lincls.py:68-70 --batch-size 256 (moco 132aea9).
  c.total_epochs = 100.0  # :56-57 --epochs 100.
  c.head_init = 'normal'  # :240-241 fc.weight N(0, 0.01), fc.bias 0.
  c.crop = 'inception'  # :354-355 RandomResizedCrop(224) (scale 0.08-1) + flip.
  c.optimizer.base_lr = 30.0  # :77-80 --lr 30, not scaled by the batch.
  c.optimizer.lr_scaling = 'none'
  c.optimizer.schedule = 'step'
  c.optimizer.decay_epochs = (60.0, 80.0)  # :86-88 --schedule 60 80, x0.1 each (:604-608).
  c.optimizer.momentum = 0.9  # :92.
  c.optimizer.weight_decay = 0.0  # :94-100 --wd 0.


def _simclr(c: ml_collections.ConfigDict) -> None:
  """SimCLR's README ImageNet linear eval (google-research/simclr, TF1 run.py)."""
  c.batch_size = 4096  # README.md:140 --train_batch_size=4096.
  c.total_epochs = 90.0  # README.md:140 --train_epochs=90.
  c.head_init = 'zeros'  # README.md:137 --zero_init_logits_layer=True.
  # data.py:164 color_distort only in pretraining: the fine-tune input is
  # data_util.py:469-472 random_crop_with_resize (area 0.08-1, :316-322) and a flip.
  c.crop = 'inception'
  c.optimizer.base_lr = 0.1  # README.md:139 --learning_rate=0.1.
  c.optimizer.lr_scaling = 'linear'  # run.py:46-47 default; model_util.py:64-65.
  c.optimizer.schedule = 'cosine'  # model_util.py:75-81.
  c.optimizer.warmup_steps = 0  # README.md:140 --warmup_epochs=0.
  c.optimizer.nesterov = True  # README.md:139 --optimizer=momentum; model_util.py:89-90.
  c.optimizer.momentum = 0.9  # run.py:174-176.
  # README.md:139 --weight_decay=1e-6, on every non-BN variable, biases included
  # (model_util.py:46-49): here the head's kernel and bias.
  c.optimizer.weight_decay = 1e-6
  c.optimizer.weight_decay_on = 'all'


def _byol(c: ml_collections.ConfigDict) -> None:
  """BYOL's linear evaluation (deepmind-research byol/configs/eval.py)."""
  c.batch_size = 4096  # byol/main_loop.py:37 --batch_size 4096 (the paper's C.1: 1024).
  c.total_epochs = 80.0  # configs/eval.py:29 max_steps = 80 epochs.
  c.head_init = 'truncated_fan_in'  # eval_experiment.py:151 hk.Linear defaults.
  c.crop = 'inception'  # utils/dataset.py:192-194, :206-217 area 0.08-1, flip.
  c.optimizer.base_lr = 0.2  # configs/eval.py:43.
  c.optimizer.lr_scaling = 'linear'  # utils/schedules.py:34 base x batch / 256.
  c.optimizer.schedule = 'cosine'  # utils/schedules.py:39-43.
  c.optimizer.warmup_steps = 0  # configs/eval.py:44.
  c.optimizer.momentum = 0.9  # configs/eval.py:39-40.
  c.optimizer.nesterov = True
  c.optimizer.weight_decay = 0.0  # eval_experiment.py:299-301 plain optax.sgd.


def _simsiam(c: ml_collections.ConfigDict) -> None:
  """SimSiam main_lincls.py --lars (facebookresearch/simsiam README.md:43-51)."""
  c.batch_size = 4096  # main_lincls.py:48.
  c.total_epochs = 90.0  # :44.
  c.head_init = 'normal'  # :160-161 N(0, 0.01), bias 0.
  c.crop = 'inception'  # :267-268 RandomResizedCrop(224) + flip.
  c.optimizer.name = 'lars'  # :229-232 apex LARC, trust 0.001, clip=False.
  c.optimizer.lars_eta = 1e-3
  c.optimizer.base_lr = 0.1  # :53 --lr 0.1; :188 init_lr = lr x batch / 256 (1.6).
  c.optimizer.lr_scaling = 'linear'
  # :491-495 cosine per epoch (here per step); LARC also trust-scales the bias once it is
  # non-zero (here only kernels, optim.is_kernel).
  c.optimizer.schedule = 'cosine'
  c.optimizer.momentum = 0.9  # :55.
  c.optimizer.weight_decay = 0.0  # :57.


PRESETS = {'revisiting': lambda c: None, 'moco': _moco, 'simclr': _simclr, 'byol': _byol,
           'simsiam': _simsiam}


def preset(name: str) -> ml_collections.ConfigDict:
  """An evaluator instance of type 'linear' (``type`` included): the paper's own linear
  probe on pre_logits ('moco', 'simclr', 'byol', 'simsiam'), or Revisiting's on every end
  point ('revisiting', the defaults of :func:`config`). No preset standardises features;
  the test input is the run's central crop (224 of 256 in every recipe)."""
  if name not in PRESETS:
    raise ValueError(f'Unknown linear-probe preset {name!r}; use one of '
                     f'{", ".join(PRESETS)}.')
  c = config()
  c.type = 'linear'
  if name != 'revisiting':
    c.layers = ('pre_logits',)  # The avgpool output (MoCo's fc input; SimCLR's h).
    c.optimizer.warmup_steps = 0
    c.optimizer.decay_epochs = ()
  PRESETS[name](c)
  return c


def make_train_step(probe: Probe, represent, variables: dict, tx, seed: int):
  """The jitted ``(state, batch) -> (state, {'loss'})`` of the probes on frozen
  features (the summed cross-entropy of the layers)."""
  base_key = jax.random.key(seed + 2)

  @functools.partial(jax.jit, donate_argnums=0)
  def train_step(state: step_lib.TrainState, batch: dict):
    features = jax.lax.stop_gradient(represent(variables, batch['image']))

    def loss_fn(params):
      logits, updated = probe.apply(
          {'params': params, 'batch_stats': state.batch_stats}, features, train=True,
          rngs={'dropout': jax.random.fold_in(base_key, state.step)},
          mutable=['batch_stats'])
      loss = sum(optax.softmax_cross_entropy_with_integer_labels(v, batch['label']).mean()
                 for v in logits.values())
      return loss, updated.get('batch_stats', {})

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                         batch_stats=batch_stats, opt_state=opt_state), {'loss': loss}

  return train_step


def test_accuracy(probe: Probe, represent, variables: dict, probe_variables: dict,
                  data: context_lib.DataSpec, layers: Sequence[str],
                  table: np.ndarray | None = None) -> dict[str, float]:
  """``{layer}/top1`` and ``{layer}/top5`` of the probes (``probe_variables``: params and
  batch_stats) on the central crops of the test split, its labels mapped by ``table``
  (ssl_jax/data/label_map.py) when given."""
  from ssl_jax.data import input_pipeline  # TensorFlow only where the host pipeline runs.

  @jax.jit
  def eval_step(probe_variables, batch):
    logits = probe.apply(probe_variables, represent(variables, batch['image']), train=False)
    mask = batch['mask'].astype(jnp.float32)
    labels = batch['label'] if table is None else jnp.asarray(table)[batch['label']]
    return {k: (topk_correct(v, labels, mask, 1),
                topk_correct(v, labels, mask, min(5, v.shape[-1])))
            for k, v in logits.items()}

  correct = {k: [0.0, 0.0] for k in layers}
  count = 0.0
  batches, _ = input_pipeline.eval_batches(data.dataset, data.input, data.builder, data.mesh,
                                           data.dataset.test_split, data.eval_batch_size)
  for batch in batches:
    for layer, (top1, top5) in eval_step(probe_variables, batch).items():
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
  from ssl_jax.data import label_map
  import tensorflow as tf

  mesh, replicated = data.mesh, step_lib.replicated(data.mesh)
  layers: Sequence[str] = tuple(section.layers)
  variables = jax.device_put(encoder.variables, replicated)
  represent = encoder.features_fn(data, layers, section.max_features)
  keep_ids = input_pipeline.class_subset_ids(data.dataset, data.builder,
                                            section.examples_per_class,
                                            section.label_fraction, data.seed)
  num_examples = data.num_train_examples if keep_ids is None else len(keep_ids)
  tx, _, total = optim.for_run(
      section.optimizer, batch_size=section.batch_size, num_examples=num_examples,
      steps=section.total_steps, epochs=section.total_epochs)
  table = label_map.load(section.label_map, data.dataset, data.builder)
  num_classes = data.num_classes if table is None else int(table.max()) + 1
  probe = Probe(num_classes, section.hidden, section.dropout, section.head_init,
                section.standardize_features)
  size = data.input.image_size

  def init():
    images = jnp.zeros((1, size, size, 3), jnp.uint8)
    probe_variables = probe.init(jax.random.key(data.seed), represent(variables, images),
                                 train=False)
    params = probe_variables['params']
    return step_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                               batch_stats=probe_variables.get('batch_stats', {}),
                               opt_state=tx.init(params), task_state=None)

  state = jax.jit(init, out_shardings=replicated)()
  crop_image = train_crop(section, data.input)

  def crop(features: dict, seed) -> dict:
    label = features['label']
    if table is not None:  # The probe learns the coarse labels.
      label = tf.gather(tf.constant(table), label)
    return {'image': crop_image(features['image'], seed), 'label': label}

  def batches_from(start: int):
    return input_pipeline.train_batches(data.dataset, data.builder, mesh, crop,
                                        batch_size=section.batch_size, seed=data.seed,
                                        start_step=start, keep_ids=keep_ids,
                                        encoded_images=True)

  state, finished = loop.run(
      state, make_train_step(probe, represent, variables, tx, data.seed), batches_from,
      total_steps=total, workdir=workdir, name=f'probe {os.path.basename(workdir)}',
      log_every=section.log_every, checkpoint_every=section.checkpoint_every,
      keep_checkpoints=1)
  if not finished:
    return None
  probe_variables = {'params': state.params}
  if state.batch_stats:
    probe_variables['batch_stats'] = state.batch_stats
  results = test_accuracy(probe, represent, variables, probe_variables, data, layers, table)
  for layer in layers:
    logging.info('probe %s: top-1 %.4f, top-5 %.4f', layer, results[f'{layer}/top1'],
                 results[f'{layer}/top5'])
  return results
