"""Every configuration field and its default, in one place.

A config file (``configs/*.py``) starts from :func:`base_config`, overrides the fields of
its recipe and returns :func:`lock`-ed result, so that a misspelt key fails instead of
being silently added. Arguments after the colon (``configs/x.py:k=16,runlocal``) are
parsed by :func:`parse_arg` against the defaults the config file declares.
"""

from __future__ import annotations

import json
from typing import Any

import ml_collections

ConfigDict = ml_collections.ConfigDict


def base_config() -> ConfigDict:
  """Returns the default value of every field; config files override some of them."""
  c = ConfigDict()
  c.seed = 0
  c.task = 'rotation'  # Module in ssl_jax/tasks/.
  c.batch_size = 64  # Global, in images (not network inputs).
  c.eval_batch_size = 256  # Global, for feature extraction.
  c.total_epochs = 35.0  # Used when total_steps < 0.
  c.total_steps = -1  # >= 0 overrides total_epochs; 0 saves the random initialisation.
  c.per_device_bn = False  # True: BN statistics per device, as the original TPU code.
  c.log_every = 100
  c.checkpoint_every = 1000
  c.keep_checkpoints = 3
  c.image_summary_every = 1000  # 0 disables the image summary of augmented inputs.
  c.evals = ('lbfgs',)  # Modules in ssl_jax/evaluate/, run after training.
  # Non-empty: do not train; evaluate the encoder of this workdir (configs/linear_eval.py).
  c.encoder_workdir = ''
  c.max_features = 9000  # Evaluated end points larger than this are max-pooled (§4.2).

  c.dataset = ConfigDict()
  c.dataset.name = 'cifar10_5k'  # Any TFDS image dataset; cifar10_5k ships with ssl_jax.
  c.dataset.data_dir = ''  # '' is the TFDS default; gs://... works too.
  c.dataset.train_split = 'train'
  c.dataset.test_split = 'test'
  c.dataset.image_key = 'image'
  c.dataset.label_key = 'label'
  c.dataset.shuffle_buffer = 10_000
  c.dataset.cache = False  # Cache encoded examples in memory (small datasets).
  c.dataset.prefetch = 2  # Batches prefetched to the devices.

  # Host-side crops (tf.data) and device-side pixel augmentation (jitted).
  c.input = ConfigDict()
  c.input.image_size = 224
  c.input.crop = 'inception'  # 'inception' (distorted bounding box) or 'resize'.
  c.input.crop_area = (0.05, 1.0)  # Revisiting §2.1: slim Inception crop, fast mode.
  c.input.crop_aspect = (0.75, 1.333)
  c.input.flip = True
  c.input.eval_crop_fraction = 0.875  # Central crop for evaluation.
  c.input.brightness = 32.0 / 255.0  # Max additive delta; 0 disables.
  c.input.saturation = (0.5, 1.5)  # Multiplicative range; (1, 1) disables.
  # Supervised task's device augmentation: 'revisiting' (brightness and saturation above)
  # or 'contrastive' (the augment section: a supervised baseline with the same views).
  c.input.device_augment = 'revisiting'
  # Patch tasks' evaluation representation (Revisiting §2.3): > 0 averages every end point
  # over the eval_patch_grid^2 contiguous patches of a central crop (3: 9 patches of 64
  # px from a 192-px crop of the image resized to 224 on its shorter side).
  c.input.eval_patch_grid = 0
  # Evaluation input: [-1, 1] (Rotation; the released linear-eval code for every task) or
  # per-image (per-patch) standardisation, as the Exemplar and patch pretext inputs.
  c.input.eval_standardize = False

  # Exemplar (Revisiting §2.2): 8 augmented copies per image, triplet loss.
  c.exemplar = ConfigDict()
  c.exemplar.copies = 8
  c.exemplar.embedding = 1000
  c.exemplar.margin = 0.5
  c.exemplar.normalize = 'vector'  # 'vector' (per embedding) or 'batch' (original code).
  c.exemplar.grayscale = 0.66  # Probability that all copies of an image are grey.

  # Jigsaw and Relative Patch Location (Revisiting §2.3, §2.4).
  c.patches = ConfigDict()
  c.patches.resize = 292  # Squashed resize before the crop.
  c.patches.crop = 255  # Random crop (central for evaluation), split into grid^2 cells.
  c.patches.grid = 3
  c.patches.size = 64  # Random patch in each cell (random gaps).
  c.patches.grayscale = 2.0 / 3.0
  c.patches.grayscale_per = 'patch'  # 'patch' (paper) or 'image' (code, p=0.66).
  c.patches.embedding = 1000  # Per-patch linear embedding (the backbone's logits layer).
  c.patches.hidden = 4096  # FC head: hidden units (BN, ReLU, dropout).
  c.patches.dropout = 0.5
  c.patches.num_permutations = 100  # Jigsaw: size of the maximal-Hamming set.
  c.patches.permutation_subset = 8  # Jigsaw: permutations sampled per step.

  # Contrastive views (SimCLR, MoCo, BYOL; reference contrastive.md §1.3, §2.3, §3): the
  # random resized crop and flip are made on the host (input.crop_area, input.flip), the
  # rest on the device, one key per image. Defaults: SimCLR v2 at strength s=1.
  c.augment = ConfigDict()
  c.augment.jitter_prob = 0.8  # Colour jitter (random order, clip after each op).
  c.augment.brightness = 0.8  # 0.8s; multiplicative U[1-b, 1+b] or additive U[-b, b].
  c.augment.brightness_mode = 'multiplicative'  # SimCLR v2; 'additive': v1, BYOL.
  c.augment.contrast = 0.8  # x U[1-c, 1+c] about the per-channel mean.
  c.augment.saturation = 0.8  # x U[1-s, 1+s].
  c.augment.hue = 0.2  # + U[-h, h] turns.
  c.augment.grayscale_prob = 0.2
  c.augment.grayscale_first = False  # MoCo v1 (InstDisc): grayscale before the jitter.
  c.augment.blur_prob = (0.5, 0.5)  # Per view; BYOL (1.0, 0.1).
  c.augment.blur_sigma = (0.1, 2.0)  # sigma ~ U[lo, hi] in pixels.
  c.augment.blur_per = 'image'  # 'image' (BYOL, MoCo) or 'batch' (SimCLR's code).
  c.augment.solarize_prob = (0.0, 0.0)  # Per view; BYOL (0.0, 0.2).
  # Network input, in pretraining and evaluation: 'symmetric' [-1, 1] (the Revisiting
  # models), 'unit' [0, 1] (SimCLR) or 'imagenet' mean/std (MoCo, BYOL).
  c.augment.normalize = 'symmetric'

  # SimCLR (Chen et al. 2020; reference §1).
  c.simclr = ConfigDict()
  c.simclr.temperature = 0.1
  c.simclr.proj_layers = 3  # v1 released head: 2; v2: 3.
  c.simclr.proj_hidden = 2048
  c.simclr.proj_dim = 128

  # MoCo v1/v2 (He et al. 2020; Chen et al. 2020; reference §2) and Exemplar-v1/v2 (Zhao
  # et al. 2021; reference §4): a queue of keys from an EMA key encoder.
  c.moco = ConfigDict()
  c.moco.temperature = 0.07  # v1 0.07; v2 0.2.
  c.moco.momentum = 0.999
  c.moco.queue_size = 65_536  # Must be a multiple of batch_size.
  c.moco.mlp = False  # v2: Dense(2048) -> ReLU -> Dense(dim).
  c.moco.proj_hidden = 2048
  c.moco.proj_dim = 128
  # BN in both encoders takes its statistics over bn_groups equal slices of the batch
  # (the reference's 8 GPUs of 32 images; 0: one group per device). The BatchNorm leak
  # remedy (shuffling BN, MoCo §3.3) under jit: the keys are permuted across the groups
  # before the key encoder and put back after, so a query and its key never share BN
  # statistics.
  c.moco.bn_groups = 8
  c.moco.shuffle_keys = True
  # Exemplar (Zhao et al.): drop queue keys of the query's class from the denominator.
  c.moco.filter_negatives_by_label = False

  # BYOL (Grill et al. 2020; reference §3).
  c.byol = ConfigDict()
  c.byol.proj_hidden = 4096
  c.byol.proj_dim = 256
  c.byol.base_ema = 0.996  # tau_k = 1 - (1 - base) (cos(pi k / K) + 1) / 2.

  # Weighted kNN on frozen features (Wu et al. 2018's monitor): as an evaluator ('knn' in
  # evals) and, every knn.every steps, during pretraining (0: never).
  c.knn = ConfigDict()
  c.knn.every = 0
  c.knn.k = 200
  c.knn.temperature = 0.1
  c.knn.layer = 'pre_logits'

  # Fine-tuning (evaluator 'finetune'): the whole encoder with a new linear head, on all
  # labels or a subset of the train split (Cole et al.: 10k and 50k labelled images).
  c.finetune = ConfigDict()
  c.finetune.labels_per_class = -1  # > 0: this many labelled images per class.
  c.finetune.label_fraction = 1.0  # < 1: this fraction of the train split (per class).
  c.finetune.batch_size = 256
  c.finetune.base_lr = 0.05  # x batch / 256 (SimCLR B.5 semi-supervised: 0.05).
  c.finetune.momentum = 0.9
  c.finetune.nesterov = True
  c.finetune.weight_decay = 0.0
  c.finetune.total_epochs = 30.0
  c.finetune.total_steps = -1  # >= 0 overrides total_epochs.
  c.finetune.warmup_epochs = 0.0
  c.finetune.log_every = 100

  c.model = ConfigDict()
  c.model.name = 'resnet'  # Module in ssl_jax/models/.
  c.model.variant = 'v2'  # 'v1' or 'v2'.
  c.model.k = 4.0  # Widening factor: k=4 is the standard ResNet50.
  c.model.units = (3, 4, 6, 3)  # Bottleneck units per stage (ResNet50).
  c.model.last_relu = True  # False is the paper's "(-)" variant (v2 only).
  c.model.root_stride = 2  # 1 with stage_strides (1, 2, 2, 1): patch mode (§1.4).
  c.model.stage_strides = (1, 2, 2, 2)
  c.model.dtype = 'float32'  # 'bfloat16' on accelerators.
  c.model.bn_momentum = 0.99
  c.model.bn_epsilon = 1e-3
  c.model.zero_init_last_bn = False  # SimCLR's code: last BN gamma of each unit starts at 0.
  # Revisiting §4.6: a bias-free linear layer that sets the pre_logits size independently
  # of k (0: none, pre_logits is the pooled block4).
  c.model.representation_size = 0
  c.model.vgg_names = 'paper'  # VGG end points named as the paper ('paper') or code ('code').

  c.optimizer = ConfigDict()
  c.optimizer.name = 'sgd'  # 'sgd' (momentum) or 'lars' (SimCLR, BYOL; reference §1.4).
  c.optimizer.lars_eta = 1e-3  # LARS trust coefficient.
  # 'kernels': decay conv and dense kernels only (Revisiting §3; LARS excludes BN and
  # biases from decay and trust scaling); 'all': every parameter (MoCo's SGD).
  c.optimizer.weight_decay_on = 'kernels'
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = False
  c.optimizer.weight_decay = 1e-4  # On kernels only (Revisiting §3).
  c.optimizer.fc_weight_decay = -1.0  # Kernels of modules named *_fcwd; -1: weight_decay.
  c.optimizer.base_lr = 0.1
  # 'linear': base_lr * batch_size / 256; 'sqrt': base_lr * sqrt(batch_size); 'none'.
  c.optimizer.lr_scaling = 'linear'
  c.optimizer.schedule = 'step'  # 'step', 'cosine' or 'constant'.
  c.optimizer.warmup_epochs = 5.0  # Used when warmup_steps < 0.
  c.optimizer.warmup_steps = -1
  c.optimizer.decay_epochs = (15.0, 25.0)  # For 'step'; used when decay_steps is empty.
  c.optimizer.decay_steps = ()
  c.optimizer.decay_factor = 0.1

  # L-BFGS logistic regression on frozen features (Revisiting Table 1).
  c.lbfgs = ConfigDict()
  c.lbfgs.layers = ('pre_logits',)  # End points to evaluate.
  c.lbfgs.l2_grid = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
  c.lbfgs.holdout_fraction = 0.2  # Part of the train split that picks l2.
  c.lbfgs.num_train_examples = -1  # -1: the whole train split.
  c.lbfgs.standardize = True  # Zero mean, unit variance features (train statistics).
  c.lbfgs.max_iter = 1000
  c.lbfgs.tol = 1e-5  # On the largest absolute gradient entry.

  # SGD linear evaluation (Revisiting Table 2, reference §4): one head per end point,
  # trained together on the frozen encoder with random crops; the released 8-core
  # schedule (70 epochs, x0.1 at 30 and 50) at the paper's effective LR of 0.1.
  c.linear = ConfigDict()
  c.linear.layers = ('after_root', 'block1', 'block2', 'block3', 'block4', 'pre_logits')
  c.linear.batch_size = 512
  c.linear.base_lr = 0.1
  c.linear.lr_scaling = 'none'  # 'linear' gives the code's 0.1 x B/256 (0.8 at 2048).
  c.linear.momentum = 0.9
  c.linear.total_epochs = 70.0
  c.linear.total_steps = -1  # >= 0 overrides total_epochs.
  c.linear.decay_epochs = (30.0, 50.0)
  c.linear.resize = 256  # Shorter side before the random (train) crop of input.image_size.
  c.linear.log_every = 100

  # MLP probe (Revisiting §3.3): one hidden layer of 1000 ReLU units, same protocol.
  c.mlp = ConfigDict()
  c.mlp.hidden = 1000
  c.mlp.dropout = 0.0  # The code's probe had 0.5; the paper mentions none.
  return c


def lock(config: ConfigDict) -> ConfigDict:
  """Validates and locks ``config``; returns it."""
  validate(config)
  config.lock()
  return config


def validate(config: ConfigDict) -> None:
  """Raises ValueError naming the field and the fix for values that cannot work."""
  if config.batch_size <= 0 or config.eval_batch_size <= 0:
    raise ValueError('batch_size and eval_batch_size must be positive.')
  if config.model.variant not in ('v1', 'v2'):
    raise ValueError(f"model.variant={config.model.variant!r}: use 'v1' or 'v2'.")
  if config.model.vgg_names not in ('paper', 'code'):
    raise ValueError(f"model.vgg_names={config.model.vgg_names!r}: use 'paper' or 'code'.")
  if config.model.representation_size < 0:
    raise ValueError('model.representation_size must be >= 0 (0: no extra layer).')
  if (config.model.name == 'resnet' and config.model.variant == 'v1'
      and not config.model.last_relu):
    raise ValueError('model.last_relu=False (the "(-)" variant) exists only for v2 and '
                     'RevNet: ResNet50 v1 ends in a ReLU after every unit.')
  if config.optimizer.schedule not in ('step', 'cosine', 'constant'):
    raise ValueError(f'optimizer.schedule={config.optimizer.schedule!r}: use step, '
                     'cosine or constant.')
  if config.optimizer.lr_scaling not in ('linear', 'sqrt', 'none'):
    raise ValueError(f'optimizer.lr_scaling={config.optimizer.lr_scaling!r}: use linear, '
                     'sqrt or none.')
  _check_choice(config, 'optimizer.name', ('sgd', 'lars'))
  _check_choice(config, 'input.device_augment', ('revisiting', 'contrastive'))
  _check_choice(config, 'optimizer.weight_decay_on', ('kernels', 'all'))
  _check_choice(config, 'augment.brightness_mode', ('multiplicative', 'additive'))
  _check_choice(config, 'augment.blur_per', ('image', 'batch'))
  _check_choice(config, 'augment.normalize', ('unit', 'imagenet', 'symmetric'))
  for name in ('augment.blur_prob', 'augment.solarize_prob'):
    if len(config.augment[name.split('.')[1]]) != 2:
      raise ValueError(f'{name} holds one probability per view: (view 1, view 2).')
  if config.task == 'moco' and config.moco.queue_size % config.batch_size:
    raise ValueError(f'moco.queue_size={config.moco.queue_size} must be a multiple of '
                     f'batch_size={config.batch_size} (MoCo enqueues whole batches).')
  if config.knn.every < 0 or config.knn.k <= 0:
    raise ValueError('knn.every must be >= 0 (0: no monitor) and knn.k positive.')
  if config.input.crop not in ('inception', 'resize'):
    raise ValueError(f"input.crop={config.input.crop!r}: use 'inception' or 'resize'.")
  if config.exemplar.normalize not in ('vector', 'batch'):
    raise ValueError(f"exemplar.normalize={config.exemplar.normalize!r}: use 'vector' or "
                     "'batch'.")
  if config.exemplar.copies < 2:
    raise ValueError('exemplar.copies must be >= 2: the triplet loss needs positives.')
  for name in ('exemplar.grayscale', 'patches.grayscale'):
    section, field = name.split('.')
    if not 0.0 <= config[section][field] <= 1.0:
      raise ValueError(f'{name}={config[section][field]} is a probability: use 0..1.')
  if not 0.0 < config.lbfgs.holdout_fraction < 1.0:
    raise ValueError('lbfgs.holdout_fraction must lie strictly between 0 and 1.')


def _check_choice(config: ConfigDict, name: str, choices: tuple[str, ...]) -> None:
  section, field = name.split('.')
  if config[section][field] not in choices:
    raise ValueError(f'{name}={config[section][field]!r}: use one of {", ".join(choices)}.')


def parse_arg(arg: str | None, **defaults: Any) -> ConfigDict:
  """Parses ``'k=16,runlocal'`` into a ConfigDict, typed by ``defaults``.

  A bare name sets a boolean to True. Unknown names fail with the list of valid ones.
  """
  result = ConfigDict(defaults)
  for item in filter(None, (arg or '').split(',')):
    name, _, value = item.partition('=')
    if name not in defaults:
      raise ValueError(f'Unknown config argument {name!r}; valid arguments: '
                       f'{", ".join(sorted(defaults))}.')
    default = defaults[name]
    if not value:
      if not isinstance(default, bool):
        raise ValueError(f'Config argument {name!r} needs a value: {name}=...')
      result[name] = True
    elif isinstance(default, bool):
      result[name] = value.lower() in ('1', 'true', 'yes')
    else:
      result[name] = type(default)(value)
  return result


def apply_runlocal(config: ConfigDict) -> None:
  """Shrinks ``config`` in place to a CPU run of a few minutes on the shipped data:
  32-px images of the shipped CIFAR-10 subset, a ResNet of k=0.25 whose root conv keeps
  stride 1 (a 32-px image would otherwise be 8 px after the root), whole images (no
  random crop) and 1000 steps of batch 64 at the paper's effective LR of 0.1."""
  config.dataset.name = 'cifar10_5k'
  config.dataset.data_dir = ''
  config.dataset.train_split = 'train'
  config.dataset.test_split = 'test'
  config.dataset.shuffle_buffer = 5_000
  config.dataset.cache = True
  config.input.image_size = 32
  config.input.crop = 'resize'
  config.input.eval_crop_fraction = 1.0
  config.model.k = 0.25
  config.model.root_stride = 1
  config.model.dtype = 'float32'
  config.batch_size = 64
  config.eval_batch_size = 512
  config.total_steps = 1000
  config.optimizer.base_lr = 0.4
  config.optimizer.warmup_steps = 20
  config.optimizer.schedule = 'cosine'
  config.lbfgs.num_train_examples = -1
  config.linear.batch_size = 256
  config.linear.total_epochs = 20.0
  config.linear.decay_epochs = (12.0, 16.0)
  config.linear.resize = 36  # Random 32-px crops of the image resized to 36 px.
  config.linear.log_every = 50
  config.log_every = 50
  config.checkpoint_every = 200
  config.image_summary_every = 200


# Test splits of the datasets the Revisiting study uses (TFDS names).
TEST_SPLITS = {'imagenet2012': 'validation', 'places365_small': 'validation',
               'cifar10_5k': 'test'}
PATCH_TASKS = ('jigsaw', 'relative_patch')


def revisiting_pretext(arg: str | None, *, task: str, model: str, k: float, variant: str,
                       batch: int) -> tuple[ConfigDict, ConfigDict]:
  """(config, parsed arguments): a Revisiting pretext config (reference §3 recipe),
  unlocked, from the arguments ``model, k, variant, last_relu, representation_size,
  dataset, batch, runlocal`` with the given defaults (k=0 means the default ``k``, or
  0.25 with runlocal)."""
  args = parse_arg(arg, model=model, k=0.0, variant=variant, last_relu=True,
                   representation_size=0, dataset='imagenet2012', batch=batch,
                   runlocal=False)
  c = base_config()
  c.task = task
  c.model.name = args.model
  c.model.k = args.k or k
  c.model.variant = args.variant
  c.model.last_relu = args.last_relu
  c.model.representation_size = args.representation_size
  c.dataset.name = args.dataset
  c.dataset.test_split = TEST_SPLITS.get(args.dataset.split(':')[0], 'test')
  c.batch_size = args.batch
  c.model.dtype = 'bfloat16'  # Accelerators; runlocal sets float32.
  c.lbfgs.num_train_examples = 100_000  # Features of 100k training images (memory).
  if task in PATCH_TASKS:
    if args.model != 'vgg':  # Reference §1.4: VGG keeps its strides on patches.
      c.model.root_stride = 1
      c.model.stage_strides = (1, 2, 2, 1)
    # Evaluation: resize_small 224 -> central 192 crop -> 9 patches of 64 px (§2.3).
    c.input.image_size = 192
    c.input.eval_crop_fraction = 192 / 224
    c.input.eval_patch_grid = 3
    c.input.eval_standardize = True
    c.linear.resize = 224
    c.optimizer.fc_weight_decay = 5e-4
  if args.runlocal:
    apply_runlocal(c)
    c.model.k = args.k or c.model.k
    if task in PATCH_TASKS:
      # 32-px images squashed to 96, a random 90 crop, 3 x 3 cells of 30, 24-px patches;
      # evaluation: the whole image resized to 72, 9 contiguous patches of 24.
      c.patches.resize, c.patches.crop, c.patches.size = 96, 90, 24
      c.patches.hidden = 512
      c.patches.embedding = 128
      # A few CPU minutes are too few for dropout 0.5: with it the pretext loss stays at
      # chance, ln 100, for 450 steps; without it the 100-permutation task learns, and
      # its representation beats 10 permutations' (measured).
      c.patches.dropout = 0.0
      c.patches.num_permutations = 100
      c.patches.permutation_subset = 16
      c.input.image_size = 72
      c.input.eval_crop_fraction = 1.0
      c.linear.resize = 80
  return c, args


def contrastive_pretext(arg: str | None, *, task: str, batch: int, epochs: float,
                        **extra: Any) -> tuple[ConfigDict, ConfigDict]:
  """(config, parsed arguments): the common part of the contrastive recipes (reference
  contrastive.md), unlocked: ResNet50 v1 (the methods' encoder), 224-px random resized
  crops and flips on the host, colour/blur/solarise on the device, cosine schedule,
  evaluation by kNN and L-BFGS on pre_logits. Arguments: ``k, dataset, batch, epochs,
  runlocal`` (k=0 means 4, or 0.25 with runlocal; epochs=0 the recipe's) and the
  config's own ``extra`` arguments with their defaults."""
  args = parse_arg(arg, k=0.0, dataset='imagenet2012', batch=batch, epochs=0.0,
                   runlocal=False, **extra)
  c = base_config()
  c.task = task
  c.model.name = 'resnet'
  c.model.variant = 'v1'
  c.model.k = args.k or 4.0
  c.model.dtype = 'bfloat16'
  c.dataset.name = args.dataset
  c.dataset.test_split = TEST_SPLITS.get(args.dataset.split(':')[0], 'test')
  c.batch_size = args.batch
  c.total_epochs = args.epochs or epochs
  c.input.crop = 'inception'
  c.input.crop_area = (0.08, 1.0)
  c.input.crop_aspect = (3 / 4, 4 / 3)
  c.input.eval_crop_fraction = 0.875
  c.optimizer.schedule = 'cosine'
  c.optimizer.decay_epochs = ()
  c.evals = ('knn', 'lbfgs')
  c.lbfgs.num_train_examples = 100_000
  c.knn.every = 5_000
  if args.runlocal:
    apply_runlocal(c)
    c.model.k = args.k or c.model.k
    # Random crops are the core of these methods: keep them (32 px, CIFAR settings of
    # SimCLR: colour strength 0.5, no blur; reference §1.3, §1.5).
    c.input.crop = 'inception'
    c.input.eval_crop_fraction = 1.0
    c.augment.blur_prob = (0.0, 0.0)
    # Residual units that start as the identity (Goyal et al. 2017; SimCLR's code; MoCo's
    # and BYOL's papers start gamma at one). Without it this 16-unit, k=0.25 network's
    # features collapse: MoCo's kNN stays at its random-init level after 500 steps
    # (21.5% -> 23.3%), with it 17.5% -> 28.1%; BYOL likewise (measured).
    c.model.zero_init_last_bn = True
    c.knn.every = 250
    c.knn.k = 20
  return c, args


def colour_strength(config: ConfigDict, s: float) -> None:
  """SimCLR's colour jitter of strength ``s``: brightness, contrast and saturation 0.8s,
  hue 0.2s (reference §1.3)."""
  config.augment.brightness = config.augment.contrast = config.augment.saturation = 0.8 * s
  config.augment.hue = 0.2 * s


def moco_recipe(c: ConfigDict, args: ConfigDict, version: int) -> ConfigDict:
  """The MoCo v1 or v2 recipe (reference contrastive.md §2.1-2.3) on a
  :func:`contrastive_pretext` config, with Exemplar's label filter if ``args.exemplar``."""
  c.moco.filter_negatives_by_label = args.exemplar
  c.moco.temperature = 0.07 if version == 1 else 0.2
  c.moco.mlp = version == 2
  c.moco.momentum = 0.999
  c.moco.queue_size = 65_536
  c.moco.bn_groups = 8
  c.input.crop_area = (0.2, 1.0)
  c.input.crop_aspect = (3 / 4, 4 / 3)
  c.augment.normalize = 'imagenet'
  c.augment.brightness_mode = 'multiplicative'  # torchvision ColorJitter.
  c.augment.brightness = c.augment.contrast = c.augment.saturation = 0.4
  c.augment.grayscale_prob = 0.2
  c.augment.blur_per = 'image'
  c.augment.solarize_prob = (0.0, 0.0)
  if version == 1:
    c.augment.hue = 0.4
    c.augment.jitter_prob = 1.0
    c.augment.grayscale_first = True
    c.augment.blur_prob = (0.0, 0.0)
  else:
    c.augment.hue = 0.1
    c.augment.jitter_prob = 0.8
    c.augment.grayscale_first = False
    c.augment.blur_prob = c.augment.blur_prob if args.runlocal else (0.5, 0.5)
  c.optimizer.name = 'sgd'
  c.optimizer.base_lr = 0.03
  c.optimizer.lr_scaling = 'linear'
  c.optimizer.weight_decay = 1e-4
  c.optimizer.weight_decay_on = 'all'
  c.optimizer.warmup_epochs = 0.0
  if version == 1:
    c.optimizer.schedule = 'step'
    c.optimizer.decay_epochs = (120.0, 160.0)
  else:
    c.optimizer.schedule = 'cosine'
  if args.runlocal:
    # A queue of 4 batches: while it still holds its initial random vectors the loss has
    # no real negatives, and at lr 0.2 the encoder collapses within those steps (keys'
    # mean pairwise cosine 0.82 -> 0.99 in 25 steps with a queue of 16 batches; measured).
    # 1,000 steps: with m=0.999 the key encoder would stay 37% its random initialisation
    # (0.999^1000), and lr 0.03 x 64/256 barely moves the query encoder.
    c.moco.queue_size = 256
    c.moco.momentum = 0.99
    c.moco.bn_groups = 2  # BN over 32 images, as the reference's per-GPU batch.
    c.optimizer.schedule = 'cosine'
    c.optimizer.base_lr = 0.8  # Peak 0.2 at batch 64.
  return c


def field_names(config: ConfigDict, prefix: str = '') -> set[str]:
  """Every field as a dotted name ('model.k'), sections included ('model')."""
  names = set()
  for key, value in config.items():
    names.add(prefix + key)
    if isinstance(value, ConfigDict):
      names |= field_names(value, prefix + key + '.')
  return names


def to_json(config: ConfigDict) -> str:
  """Serialises ``config`` (tuples become lists)."""
  return json.dumps(config.to_dict(), indent=2, sort_keys=True)


def from_json(text: str) -> ConfigDict:
  """Reads a config saved by :func:`to_json`, restoring tuples where the base has them."""
  loaded = json.loads(text)
  config = base_config()
  _merge(config, loaded, path='')
  config.lock()
  return config


def _merge(config: ConfigDict, values: dict, path: str) -> None:
  for key, value in values.items():
    if key not in config:
      raise KeyError(f'Unknown config key {path + key!r}; valid keys here: '
                     f'{", ".join(sorted(config.keys()))}.')
    if isinstance(config[key], ConfigDict):
      _merge(config[key], value, path + key + '.')
    elif isinstance(config[key], tuple):
      config[key] = tuple(value)
    else:
      config[key] = value
