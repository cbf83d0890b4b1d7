"""The papers' recipes and runlocal, shared by the config files; each value is set once.

A config file builds its run config in this order: a family recipe (:func:`revisiting` or
:func:`contrastive`), its method's own recipe, then, with ``runlocal``, :func:`runlocal`
and its method's runlocal values, so that runlocal always has the last word and the full
recipe never depends on it.
"""

from __future__ import annotations

from typing import Any

from ssl_jax import config_lib
from ssl_jax import optim
from ssl_jax.evaluate import linear

ConfigDict = config_lib.ConfigDict

# Test splits of the datasets the papers use (TFDS names).
# iNat21's public_test holds no labels (TFDS gives -1): its labelled test split is val.
TEST_SPLITS = {'imagenet2012': 'validation', 'places365_small': 'validation',
               'i_naturalist2021': 'val', 'cifar10_5k': 'test'}
PATCH_TASKS = ('jigsaw', 'relative_patch')


def _dataset(c: ConfigDict, name: str) -> None:
  c.dataset.name = name
  c.dataset.test_split = TEST_SPLITS.get(name.split(':')[0], 'test')


def revisiting(arg: str | None, *, task: str, model: str, k: float, variant: str,
               batch: int, **extra: Any) -> tuple[ConfigDict, ConfigDict]:
  """(config, parsed arguments): a Revisiting pretext config (reference revisiting.md §3),
  unlocked, with runlocal applied if asked. Arguments: ``model, k, variant, last_relu,
  representation_size, dataset, batch, runlocal`` with the given defaults (k=0 means the
  default ``k``, or 0.25 with runlocal), and the config's own ``extra`` with theirs."""
  args = config_lib.parse_arg(arg, model=model, k=0.0, variant=variant, last_relu=True,
                              representation_size=0, dataset='imagenet2012', batch=batch,
                              runlocal=False, **extra)
  c = config_lib.run_config(task)
  c.model.name = args.model
  c.model.k = args.k or k
  c.model.variant = args.variant
  c.model.last_relu = args.last_relu
  c.model.representation_size = args.representation_size
  c.model.dtype = 'bfloat16'  # Accelerators; runlocal sets float32.
  _dataset(c, args.dataset)
  c.batch_size = args.batch
  # BN statistics per TPU core, as the released code (models/resnet.py:44-45:
  # tf.layers.batch_normalization, no cross-replica sum) on its 8-core setup (README.md:
  # 41-44): the recipe's batch / 8 images, a fixed group whatever the devices. 8 of 64
  # for Rotation and Exemplar, 16 of 128 for the patch tasks (config/*/imagenet.sh:24),
  # 32 of 256 supervised (config/supervised/imagenet.sh:27).
  c.bn_group_images = batch // 8
  # The code's resizes: TF1's bilinear for the pretext crops (slim Inception preprocessing
  # in fast mode; the patch tasks' squashed resize is their own, preprocess.py:140), and
  # for the linear evaluation resize_small's area resize, for the probe's training crops
  # and its test images alike (preprocess.py:62; config/evaluation/*.sh:31).
  c.input.resize = 'bilinear_tf1'
  c.input.eval_resize = 'area'
  # Table 1 (paper §3): the pretext trains without 50,000 random training images, the own
  # split L-BFGS is tested on; it fits on 100k of the rest, chosen by id before extraction.
  c.dataset.holdout_examples = 50_000
  c.evals.lbfgs = config_lib.evaluator('lbfgs', num_train_examples=100_000,
                                       test_split='holdout')
  # The pretext task's own accuracy on held-out images (Fig. 4 plots it against the probe).
  c.evals.pretext = config_lib.evaluator('pretext')
  # Table 2's SGD probe on every end point (config/evaluation/rotation_or_exemplar.sh);
  # it trains on the train split without the held-out images (Table 2: all of trainval).
  c.evals.linear = linear.preset('revisiting')
  if task in PATCH_TASKS:
    if args.model != 'vgg':  # Reference §1.4: VGG keeps its strides on patches.
      c.model.root_stride = 1
      c.model.stage_strides = (1, 2, 2, 1)
    # Evaluation: resize_small 224 -> central 192 crop -> 9 patches of 64 px (§2.3).
    c.input.image_size = 192
    c.input.eval_crop_fraction = 192 / 224
    c.input.eval_patch_grid = 3
    c.input.eval_standardize = True
    c.optimizer.fc_weight_decay = 5e-4
  if args.runlocal:
    runlocal(c, args.k)
    if task in PATCH_TASKS:
      runlocal_patches(c, c[task])
  return c, args


def contrastive(arg: str | None, *, task: str, batch: int, epochs: float, probe: str,
                **extra: Any) -> tuple[ConfigDict, ConfigDict]:
  """(config, parsed arguments): the common part of the contrastive recipes (reference
  contrastive.md), unlocked, without runlocal (the config file applies
  :func:`runlocal_contrastive` after its own recipe): ResNet50 v1, 224-px random resized
  crops and flips on the host, colour/blur/solarise on the device, cosine schedule,
  evaluation by the paper's SGD linear probe on pre_logits (``probe``: a preset of
  ssl_jax/evaluate/linear.py, instance ``evals.linear``), kNN (also every 5,000 steps)
  and L-BFGS. Arguments:
  ``k, dataset, batch, epochs, fewshot, runlocal`` (k=0 means 4, or 0.25 with runlocal;
  epochs=0 the recipe's; ``fewshot`` adds Zhao et al.'s few-shot evaluator, instance
  ``evals.fewshot``: 5-way 1- and 5-shot episodes on the test split's classes) and the
  config's own ``extra`` arguments with their defaults."""
  args = config_lib.parse_arg(arg, k=0.0, dataset='imagenet2012', batch=batch, epochs=0.0,
                              fewshot=False, runlocal=False, **extra)
  c = config_lib.run_config(task)
  c.model.name = 'resnet'
  c.model.variant = 'v1'
  c.model.k = args.k or 4.0
  c.model.dtype = 'bfloat16'
  _dataset(c, args.dataset)
  c.batch_size = args.batch
  c.total_epochs = args.epochs or epochs
  c.input.crop = 'inception'
  c.input.crop_area = (0.08, 1.0)
  c.input.crop_aspect = (3 / 4, 4 / 3)
  c.input.eval_crop_fraction = 0.875
  c.optimizer.schedule = 'cosine'
  c.optimizer.decay_epochs = ()
  c.evals.linear = linear.preset(probe)  # The protocol of the published numbers.
  c.evals.knn = config_lib.evaluator('knn', every=5_000)
  c.evals.lbfgs = config_lib.evaluator('lbfgs', num_train_examples=100_000)
  if args.fewshot:
    c.evals.fewshot = config_lib.evaluator('fewshot')
  return c, args


def runlocal(c: ConfigDict, k: float = 0.0) -> None:
  """Shrinks ``c`` in place to a CPU run of a few minutes on the shipped data: 32-px
  images of the shipped CIFAR-10 subset, a ResNet of k=0.25 (or ``k``) whose root conv
  keeps stride 1 (a 32-px image would otherwise be 8 px after the root), whole images (no
  random crop) and 1000 steps of batch 64 at the paper's effective LR of 0.1."""
  c.dataset.name = 'cifar10_5k'
  c.dataset.data_dir = ''
  c.dataset.train_split = 'train'
  c.dataset.test_split = 'test'
  c.dataset.shuffle_buffer = 5_000
  c.dataset.cache = True
  c.dataset.holdout_examples = 0  # Tested on the shipped test split.
  c.input.image_size = 32
  c.input.crop = 'resize'
  c.input.eval_crop_fraction = 1.0
  c.model.k = k or 0.25
  c.model.root_stride = 1
  c.model.dtype = 'float32'
  c.batch_size = 64
  c.eval_batch_size = 512
  c.total_steps = 1000
  c.optimizer.base_lr = 0.4
  c.optimizer.warmup_steps = 20
  c.optimizer.schedule = 'cosine'
  for section in c.evals.values():
    if section.type == 'lbfgs':
      section.num_train_examples = -1
      section.test_split = ''  # The dataset's.
    if section.type in ('linear', 'mlp'):
      runlocal_probe(section)
  c.log_every = 50
  c.checkpoint_every = 200
  c.image_summary_every = 200


def probe_crops(section: ConfigDict, inp: ConfigDict, runlocal: bool) -> None:
  """An SGD probe instance's (linear, mlp) training crops for a run's ``input`` section:
  random crops of the image resized to the scale of the test crop (224 -> 256 for the
  whole-image tasks, 192 -> 224 for the patch tasks, reference §4), or in runlocal 9/8
  of the crop (32 -> 36, 72 -> 81)."""
  if runlocal:
    section.resize = round(inp.image_size * 9 / 8)
  else:
    section.resize = round(inp.image_size / inp.eval_crop_fraction)


def runlocal_probe(section: ConfigDict) -> None:
  """An SGD probe instance (linear, mlp, a preset) at runlocal's scale, in the same form
  (optimiser, schedule, head, crop): 20 epochs of batch 256, step decays at the same
  fractions of training (MoCo's 60, 80 of 100 -> 12, 16), and LARS (SimSiam) at the peak
  LR of the preset's batch: its trust ratio moves a kernel by about lr x eta of its norm
  per step, too little in 400 steps at batch 256's rate (as the LARS pretraining in
  runlocal, configs/simclr_resnet50.py)."""
  opt = section.optimizer
  if opt.name == 'lars':
    opt.base_lr = optim.peak_lr(opt, section.batch_size)
    opt.lr_scaling = 'none'
  scale = 20.0 / section.total_epochs
  opt.decay_epochs = tuple(e * scale for e in opt.decay_epochs)
  section.batch_size = 256
  section.total_epochs = 20.0
  section.log_every = 50


def runlocal_patches(c: ConfigDict, p: ConfigDict) -> None:
  """runlocal for the patch tasks (``p``: the task's section): 32-px images squashed to
  96, a random 90 crop, 3 x 3 cells of 30, 24-px patches; evaluation: the whole image
  resized to 72, 9 contiguous patches of 24."""
  p.resize, p.crop, p.size = 96, 90, 24
  p.hidden = 512
  p.embedding = 128
  # A few CPU minutes are too few for dropout 0.5: with it the pretext loss stays at
  # chance, ln 100, for 450 steps; without it the 100-permutation task learns, and
  # its representation beats 10 permutations' (measured).
  p.dropout = 0.0
  if 'num_permutations' in p:
    p.num_permutations = 100
    p.permutation_subset = 16
  c.input.image_size = 72
  c.input.eval_crop_fraction = 1.0
  # ResNet units that start as the identity (Goyal et al. 2017: the last BN gamma at 0;
  # the paper's code starts it at 1). At 1,000 CPU steps it is what lets the patch tasks
  # on ResNet beat random initialisation: Jigsaw on ResNet50 v1 gives L-BFGS 30.6% ->
  # 31.5% without it, 27.5% -> 35.2% with it (pretext accuracy 14% -> 23% at step
  # 1,000); Relative Patch Location fell below its random init without it (31.2% ->
  # 29.2%). Not RevNet: zero residual functions there gave Jigsaw 34.0% -> 30.6%, against
  # 37.2% -> 38.5% without, at 1,000 steps (measured 2026-11-22 and 11-30).
  if c.model.name == 'resnet':
    c.model.zero_init_last_bn = True


def runlocal_contrastive(c: ConfigDict, k: float = 0.0) -> None:
  """:func:`runlocal` for the contrastive methods: random crops are the core of these
  methods, so they stay (32 px, CIFAR settings of SimCLR: no blur; reference §1.3, §1.5),
  identity-initialised residual units, and the kNN monitor every 250 steps with k=20."""
  runlocal(c, k)
  c.input.crop = 'inception'
  c.input.eval_crop_fraction = 1.0
  c.augment.blur_prob = (0.0, 0.0)
  # Residual units that start as the identity (Goyal et al. 2017; SimCLR's code; MoCo's
  # and BYOL's papers start gamma at one). Without it this 16-unit, k=0.25 network's
  # features collapse: MoCo's kNN stays at its random-init level after 500 steps
  # (21.5% -> 23.3%), with it 17.5% -> 28.1%; BYOL likewise (measured).
  c.model.zero_init_last_bn = True
  c.evals.knn.every = 250
  c.evals.knn.k = 20



def multicrop(c: ConfigDict, runlocal: bool) -> None:
  """SwAV's multi-crop (Caron et al. 2020, §3.2): the two large crops at area 0.14-1 and
  six 96-px crops at area 0.05-0.14; in runlocal four 16-px crops of the 32-px images,
  at area 0.1-0.3 (the 16-unit k=0.25 network sees too little of a 0.05 crop)."""
  c.input.crop_area = (0.14, 1.0)
  c.input.local_crops = 6
  c.input.local_size = 96
  c.input.local_crop_area = (0.05, 0.14)
  if runlocal:
    c.input.local_crops = 4
    c.input.local_size = 16
    c.input.local_crop_area = (0.1, 0.3)


def colour_strength(c: ConfigDict, s: float) -> None:
  """SimCLR's colour jitter of strength ``s``: brightness, contrast and saturation 0.8s,
  hue 0.2s (reference §1.3)."""
  c.augment.brightness = c.augment.contrast = c.augment.saturation = 0.8 * s
  c.augment.hue = 0.2 * s


def pytorch_resnet(model: ConfigDict) -> None:
  """torchvision's ResNet (MoCo, SimSiam, the contrastive papers' supervised baseline):
  BatchNorm2d's momentum 0.1 (a decay of 0.9) and epsilon 1e-5; convs initialised
  kaiming_normal_(mode='fan_out') (torchvision models/resnet.py)."""
  model.bn_momentum = 0.9
  model.bn_epsilon = 1e-5
  model.conv_init = 'fan_out_normal'


def pytorch_sgd(opt: ConfigDict, base_lr: float) -> None:
  """torch.optim.SGD as MoCo's main_moco.py and pytorch/examples' imagenet/main.py use
  it: momentum 0.9 (the section's default), ``base_lr`` x B/256, weight decay 1e-4 on
  every parameter (model.parameters(), BN and biases included), no warm-up."""
  opt.name = 'sgd'
  opt.base_lr = base_lr
  opt.lr_scaling = 'linear'
  opt.weight_decay = 1e-4
  opt.weight_decay_on = 'all'
  opt.warmup_epochs = 0.0


def moco_views(c: ConfigDict, version: int) -> None:
  """MoCo v1's or v2's ("aug+") augmentation (reference contrastive.md §2.1-2.3):
  torchvision RandomResizedCrop(224, scale=(0.2, 1)), ColorJitter, grayscale, and v2's
  blur, on ImageNet-normalised inputs."""
  c.input.crop_area = (0.2, 1.0)
  # torchvision's RandomResizedCrop and Resize on PIL images: PIL's anti-aliased bilinear
  # (main_moco.py:331, 348; main_lincls.py:354, 381).
  c.input.resize = c.input.eval_resize = 'bilinear_antialias'
  c.augment.normalize = 'imagenet'
  c.augment.brightness_mode = 'multiplicative'  # torchvision ColorJitter.
  c.augment.brightness = c.augment.contrast = c.augment.saturation = 0.4
  c.augment.grayscale_prob = 0.2
  c.augment.blur_per = 'image'
  c.augment.solarize_prob = (0.0, 0.0)
  c.augment.hue = 0.4 if version == 1 else 0.1
  c.augment.jitter_prob = 1.0 if version == 1 else 0.8
  c.augment.grayscale_first = version == 1
  c.augment.blur_prob = (0.0, 0.0) if version == 1 else (0.5, 0.5)


def moco(arg: str | None, version: int, exemplar: bool | None = None) -> ConfigDict:
  """The MoCo v1 or v2 recipe (reference contrastive.md §2.1-2.3), with Exemplar's label
  filter (Zhao et al.) if the ``exemplar`` argument (or ``exemplar=True``) asks for it;
  runlocal applied if asked. Unlocked."""
  extra = {} if exemplar is not None else {'exemplar': False}
  c, args = contrastive(arg, task='moco', batch=256, epochs=200.0, probe='moco', **extra)
  # The moco section's defaults are v1's key encoder (m 0.999), queue (65,536) and
  # shuffled BN over 8 groups.
  c.moco.filter_negatives_by_label = exemplar if exemplar is not None else args.exemplar
  c.moco.temperature = 0.07 if version == 1 else 0.2
  c.moco.mlp = version == 2
  moco_views(c, version)
  pytorch_resnet(c.model)
  pytorch_sgd(c.optimizer, base_lr=0.03)
  if version == 1:
    c.optimizer.schedule = 'step'
    c.optimizer.decay_epochs = (120.0, 160.0)
  if args.runlocal:
    runlocal_contrastive(c, args.k)
    # A queue of 4 batches: while it still holds its initial random vectors the loss has
    # no real negatives, and at lr 0.2 the encoder collapses within those steps (keys'
    # mean pairwise cosine 0.82 -> 0.99 in 25 steps with a queue of 16 batches; measured).
    # 1,000 steps: with m=0.999 the key encoder would stay 37% its random initialisation
    # (0.999^1000), and lr 0.03 x 64/256 barely moves the query encoder.
    c.moco.queue_size = 256
    c.moco.momentum = 0.99
    c.moco.bn_groups = 2  # BN over 32 images, as the reference's per-GPU batch.
    c.optimizer.base_lr = 0.8  # Peak 0.2 at batch 64.
  return c
