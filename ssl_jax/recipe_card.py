r"""Recipe cards: a config's pretraining and evaluation values beside the official ones,
with the file each official value comes from.

    python -m ssl_jax.recipe_card configs/moco_v2_resnet50.py
    python -m ssl_jax.recipe_card configs/simclr_resnet50.py:version=1
    python -m ssl_jax.recipe_card --all   # every card; exits 1 if any value differs

Each card is a list of (field, official value, source) for one config and argument;
tests/test_recipe_card.py holds every config to its card. Sources name the official
repository's file (snapshots: reference/contrastive.md, revisiting.md): google-research/
simclr (383d414), facebookresearch/moco (132aea9), facebookresearch/simsiam,
google-deepmind/deepmind-research byol/, google/revisiting-self-supervised (b530e3b),
pytorch/vision and pytorch/examples for the supervised baseline.
"""

from __future__ import annotations

import os
import sys
from typing import Any, NamedTuple

from ssl_jax import config_lib


class Row(NamedTuple):
  field: str  # Dotted path in the run config.
  official: Any
  source: str


def _rows(*rows: tuple[str, Any, str]) -> list[Row]:
  return [Row(*row) for row in rows]


# The papers' SGD linear probes (evaluate/linear.py preset): (source, {field: value}),
# read from the official code (snapshots: moco 132aea9,
# simclr 383d414, simsiam a7bc177, revisiting-self-supervised b530e3b).
PROBES: dict[str, tuple[str, dict[str, Any]]] = {
    'revisiting': ('revisiting config/evaluation/rotation_or_exemplar.sh; trainer.py:72-80', {
        'batch_size': 512, 'total_epochs': 70.0, 'crop': 'resize_small', 'resize': 256,
        'head_init': 'glorot', 'optimizer.base_lr': 0.1, 'optimizer.lr_scaling': 'linear',
        'optimizer.schedule': 'step', 'optimizer.decay_epochs': (30.0, 50.0),
        'optimizer.weight_decay': 0.0, 'optimizer.nesterov': False,
        'optimizer.warmup_steps': 0,
        'layers': ('after_root', 'block1', 'block2', 'block3', 'block4', 'pre_logits')}),
    'moco': ('moco main_lincls.py:56-100, 240-241, 354-355', {
        'batch_size': 256, 'total_epochs': 100.0, 'crop': 'inception',
        'crop_area': (0.08, 1.0), 'head_init': 'normal', 'optimizer.name': 'sgd',
        'optimizer.base_lr': 30.0, 'optimizer.lr_scaling': 'none',
        'optimizer.schedule': 'step', 'optimizer.decay_epochs': (60.0, 80.0),
        'optimizer.momentum': 0.9, 'optimizer.nesterov': False,
        'optimizer.weight_decay': 0.0, 'optimizer.warmup_steps': 0,
        'layers': ('pre_logits',)}),
    'simclr': ('simclr README.md:136-144; model_util.py:46-90; data_util.py:316-322, 469-472', {
        'batch_size': 4096, 'total_epochs': 90.0, 'crop': 'inception',
        'crop_area': (0.08, 1.0), 'head_init': 'zeros', 'optimizer.name': 'sgd',
        'optimizer.base_lr': 0.1, 'optimizer.lr_scaling': 'linear',
        'optimizer.schedule': 'cosine', 'optimizer.momentum': 0.9,
        'optimizer.nesterov': True, 'optimizer.weight_decay': 1e-6,
        'optimizer.weight_decay_on': 'all', 'optimizer.warmup_steps': 0,
        'layers': ('pre_logits',)}),
    'byol': ('byol/configs/eval.py:29-44; main_loop.py:37; utils/dataset.py:192-217', {
        'batch_size': 4096, 'total_epochs': 80.0, 'crop': 'inception',
        'crop_area': (0.08, 1.0), 'head_init': 'truncated_fan_in', 'optimizer.name': 'sgd',
        'optimizer.base_lr': 0.2, 'optimizer.lr_scaling': 'linear',
        'optimizer.schedule': 'cosine', 'optimizer.momentum': 0.9,
        'optimizer.nesterov': True, 'optimizer.weight_decay': 0.0,
        'optimizer.warmup_steps': 0, 'layers': ('pre_logits',)}),
    'simsiam': ('simsiam main_lincls.py:44-57, 160-161, 188, 226-232, 267-268, 491-495', {
        'batch_size': 4096, 'total_epochs': 90.0, 'crop': 'inception',
        'crop_area': (0.08, 1.0), 'head_init': 'normal', 'optimizer.name': 'lars',
        'optimizer.lars_eta': 1e-3, 'optimizer.base_lr': 0.1,
        'optimizer.lr_scaling': 'linear', 'optimizer.schedule': 'cosine',
        'optimizer.momentum': 0.9, 'optimizer.nesterov': False,
        'optimizer.weight_decay': 0.0, 'optimizer.warmup_steps': 0,
        'layers': ('pre_logits',)}),
}
# Peak learning rates the sources state or compute: rotation_or_exemplar.sh (0.1 x 512 /
# 256), MoCo's README.md:62 (--lr 30.0 at 256), SimCLR paper B.6 (1.6), BYOL's
# schedules.py:34 (0.2 x 4096 / 256), SimSiam's init_lr (0.1 x 4096 / 256).
PROBE_PEAK_LR = {'revisiting': 0.2, 'moco': 30.0, 'simclr': 1.6, 'byol': 3.2, 'simsiam': 1.6}


def _probe(name: str) -> list[Row]:
  """The card rows of the paper's linear probe, the run's ``evals.linear``."""
  source, values = PROBES[name]
  return [Row(f'evals.linear.{field}', value, source) for field, value in values.items()]


# SimCLR v2: the README's pretraining command and issue #77 (v2's settings).
_SIMCLR_V2 = _rows(
    ('batch_size', 4096, 'simclr README.md: --train_batch_size=4096'),
    ('total_epochs', 800.0, 'simclr issue #77: 800 epochs for the v2 checkpoints'),
    ('simclr.temperature', 0.1, 'simclr README.md: --temperature=0.1'),
    ('simclr.proj_layers', 3, 'tf2/run.py: --num_proj_layers=3'),
    ('simclr.proj_hidden', 0, 'tf2/model.py ProjectionHead: width = input_shape[-1]'),
    ('simclr.proj_dim', 128, 'tf2/run.py: --proj_out_dim=128'),
    ('optimizer.name', 'lars', 'simclr README.md: --optimizer=lars'),
    ('optimizer.base_lr', 0.1, 'simclr issue #77: 0.1 x sqrt(B)'),
    ('optimizer.lr_scaling', 'sqrt', 'simclr issue #77: --learning_rate_scaling=sqrt'),
    ('optimizer.weight_decay', 1e-4, 'simclr README.md: --weight_decay=1e-4'),
    ('optimizer.warmup_epochs', 40.0, 'simclr issue #77: 5% warm-up'),
    ('optimizer.schedule', 'cosine', 'tf2/model.py WarmUpAndCosineDecay'),
    ('model.variant', 'v1', 'tf2/resnet.py: ResNet v1'),
    ('model.bn_momentum', 0.9, 'tf2/run.py: --batch_norm_decay=0.9'),
    ('model.bn_epsilon', 1e-5, 'tf2/resnet.py: BATCH_NORM_EPSILON = 1e-5'),
    ('model.zero_init_last_bn', True, 'tf2/resnet.py: gamma_initializer zeros on the last BN'),
    ('model.conv_init', 'fan_in_truncated', 'tf2/resnet.py: VarianceScaling()'),
    ('input.crop_area', (0.08, 1.0), 'tf2/data_util.py: area_range=(0.08, 1.0)'),
    ('input.resize', 'bicubic', 'tf2/data_util.py: tf.image.resize BICUBIC'),
    ('augment.normalize', 'unit', 'tf2/data_util.py: inputs in [0, 1]'),
    ('augment.brightness', 0.8, 'tf2/data_util.py color_jitter: 0.8 x strength 1.0'),
    ('augment.brightness_mode', 'multiplicative', 'tf2/run.py: --color_jitter_strength, '
     'data_util.random_brightness (v2)'),
    ('augment.hue', 0.2, 'tf2/data_util.py color_jitter: 0.2 x strength'),
    ('augment.grayscale_prob', 0.2, 'tf2/data_util.py random_color_jitter: p 0.2'),
    ('augment.blur_prob', (0.5, 0.5), 'tf2/data_util.py random_blur: p 0.5'),
    ('evals.finetune_1pct.from_projection_layers', 1, 'simclr README.md: --ft_proj_selector=1'),
    ('evals.finetune_1pct.optimizer.name', 'lars', 'simclr README.md: --optimizer=lars'),
    ('evals.finetune_1pct.optimizer.base_lr', 0.005, 'simclr README.md: --learning_rate=0.005'),
    ('evals.finetune_1pct.optimizer.lr_scaling', 'sqrt',
     'simclr README.md: --learning_rate_scaling=sqrt'),
    ('evals.finetune_1pct.optimizer.weight_decay', 0.0, 'simclr README.md: --weight_decay=0'),
    ('evals.finetune_1pct.batch_size', 1024, 'simclr README.md: --train_batch_size=1024'),
    ('evals.finetune_1pct.total_epochs', 60.0, 'simclr README.md: --train_epochs=60'),
    ('evals.finetune_1pct.dataset', 'imagenet2012_subset/1pct',
     'simclr README.md: --dataset=imagenet2012_subset/1pct'),
    ('evals.finetune_10pct.total_epochs', 30.0, 'SimCLR v2 paper §A: 30 epochs for 10%'),
) + _probe('simclr')

_SIMCLR_V1 = _rows(
    ('batch_size', 4096, 'SimCLR paper §B.1: batch 4096'),
    ('total_epochs', 1000.0, 'SimCLR paper Table 6: 1000 epochs'),
    ('simclr.proj_layers', 2, 'simclr be133b3 model_util.py: 2-layer head'),
    ('optimizer.base_lr', 0.3, 'SimCLR paper §B.1: 0.3 x B/256'),
    ('optimizer.lr_scaling', 'linear', 'SimCLR paper §B.1'),
    ('optimizer.weight_decay', 1e-6, 'SimCLR paper §B.1: 1e-6'),
    ('optimizer.warmup_epochs', 10.0, 'SimCLR paper §B.1: 10 warm-up epochs'),
    ('augment.brightness_mode', 'additive', 'simclr be133b3 data_util.py: additive'),
) + _probe('simclr')


def _moco(version: int) -> list[Row]:
  rows = _rows(
      ('batch_size', 256, 'moco README.md: --batch-size 256'),
      ('total_epochs', 200.0, 'moco main_moco.py: --epochs 200'),
      ('moco.queue_size', 65_536, 'moco main_moco.py: --moco-k 65536'),
      ('moco.momentum', 0.999, 'moco main_moco.py: --moco-m 0.999'),
      ('moco.proj_dim', 128, 'moco main_moco.py: --moco-dim 128'),
      ('moco.proj_hidden', 0, 'moco/builder.py: dim_mlp = fc.weight.shape[1]'),
      ('optimizer.name', 'sgd', 'moco main_moco.py: torch.optim.SGD'),
      ('optimizer.base_lr', 0.03, 'moco README.md: --lr 0.03 at batch 256'),
      ('optimizer.momentum', 0.9, 'moco main_moco.py: --momentum 0.9'),
      ('optimizer.weight_decay', 1e-4, 'moco main_moco.py: --wd 1e-4'),
      ('optimizer.weight_decay_on', 'all', 'moco main_moco.py: model.parameters()'),
      ('optimizer.warmup_epochs', 0.0, 'moco main_moco.py adjust_learning_rate: no warm-up'),
      ('model.variant', 'v1', 'torchvision resnet50'),
      ('model.bn_momentum', 0.9, 'torch BatchNorm2d: momentum 0.1'),
      ('model.bn_epsilon', 1e-5, 'torch BatchNorm2d: eps 1e-5'),
      ('model.conv_init', 'fan_out_normal', 'torchvision resnet.py: kaiming_normal_ fan_out'),
      ('input.crop_area', (0.2, 1.0), 'moco main_moco.py: RandomResizedCrop scale=(0.2, 1.)'),
      ('input.resize', 'bilinear_antialias', 'moco main_moco.py: PIL bilinear resize'),
      ('augment.normalize', 'imagenet', 'moco main_moco.py: Normalize(ImageNet mean, std)'),
      ('augment.brightness', 0.4, 'moco main_moco.py: ColorJitter(0.4, 0.4, 0.4, .)'),
      ('augment.grayscale_prob', 0.2, 'moco main_moco.py: RandomGrayscale(p=0.2)'),
  ) + _probe('moco')
  if version == 1:
    return rows + _rows(
        ('moco.temperature', 0.07, 'moco main_moco.py: --moco-t 0.07'),
        ('moco.mlp', False, 'moco README.md: MoCo v1 without --mlp'),
        ('optimizer.schedule', 'step', 'moco main_moco.py: --schedule 120 160'),
        ('optimizer.decay_epochs', (120.0, 160.0), 'moco main_moco.py: --schedule 120 160'),
        ('augment.hue', 0.4, 'moco main_moco.py: ColorJitter(0.4, 0.4, 0.4, 0.4)'),
        ('augment.jitter_prob', 1.0, 'moco main_moco.py: ColorJitter always (v1)'),
        ('augment.grayscale_first', True, 'moco main_moco.py: RandomGrayscale first (v1)'),
        ('augment.blur_prob', (0.0, 0.0), 'moco main_moco.py: no blur (v1)'),
    )
  return rows + _rows(
      ('moco.temperature', 0.2, 'moco README.md: --moco-t 0.2'),
      ('moco.mlp', True, 'moco README.md: --mlp'),
      ('optimizer.schedule', 'cosine', 'moco README.md: --cos'),
      ('augment.hue', 0.1, 'moco main_moco.py: ColorJitter(0.4, 0.4, 0.4, 0.1)'),
      ('augment.jitter_prob', 0.8, 'moco main_moco.py: RandomApply(ColorJitter, p=0.8)'),
      ('augment.blur_prob', (0.5, 0.5), 'moco main_moco.py: GaussianBlur p=0.5'),
  )


_BYOL = _rows(
    ('batch_size', 4096, 'byol/configs/byol.py: batch_size 4096'),
    ('total_epochs', 1000.0, 'byol/configs/byol.py: num_epochs 1000'),
    ('byol.proj_hidden', 4096, 'byol/configs/byol.py: mlp_hidden_size 4096'),
    ('byol.proj_dim', 256, 'byol/configs/byol.py: projection_size 256'),
    ('byol.base_ema', 0.996, 'byol/configs/byol.py: base_target_ema 0.996 (1000 epochs)'),
    ('byol.per_view_bn', True, 'byol/byol_experiment.py _forward: one pass per view'),
    ('byol.online_classifier', True, 'byol/byol_experiment.py: classifier on '
     'stop_gradient(embedding)'),
    ('optimizer.name', 'lars', 'byol/utils/optimizers.py: lars'),
    ('optimizer.base_lr', 0.2, 'byol/configs/byol.py: base_learning_rate 0.2 (1000 epochs)'),
    ('optimizer.lr_scaling', 'linear', 'byol/byol_experiment.py: base lr x B/256'),
    ('optimizer.weight_decay', 1.5e-6, 'byol/configs/byol.py: weight_decay 1.5e-6'),
    ('optimizer.warmup_epochs', 10.0, 'byol/configs/byol.py: warmup_epochs 10'),
    ('model.bn_momentum', 0.9, 'byol/configs/byol.py: decay_rate 0.9'),
    ('model.bn_epsilon', 1e-5, 'byol/configs/byol.py: eps 1e-5'),
    ('model.zero_init_last_bn', False, 'byol/README.md: the paper used gamma = 1'),
    ('model.conv_init', 'fan_in_truncated', 'haiku Conv2D default w_init'),
    ('input.resize', 'bicubic', 'byol/utils/dataset.py: bicubic resize'),
    ('augment.brightness_mode', 'additive', 'byol/utils/augmentations.py: additive'),
    ('augment.brightness', 0.4, 'byol/utils/augmentations.py: brightness 0.4'),
    ('augment.saturation', 0.2, 'byol/utils/augmentations.py: saturation 0.2'),
    ('augment.hue', 0.1, 'byol/utils/augmentations.py: hue 0.1'),
    ('augment.blur_prob', (1.0, 0.1), 'byol/utils/augmentations.py: blur p 1.0 / 0.1'),
    ('augment.solarize_prob', (0.0, 0.2), 'byol/utils/augmentations.py: solarize 0 / 0.2'),
) + _probe('byol')

_SIMSIAM = _rows(
    ('batch_size', 512, 'simsiam README.md: -b 512'),
    ('total_epochs', 100.0, 'simsiam main_simsiam.py: --epochs 100'),
    ('optimizer.base_lr', 0.05, 'simsiam main_simsiam.py: --lr 0.05 x B/256'),
    ('optimizer.weight_decay', 1e-4, 'simsiam main_simsiam.py: --wd 1e-4'),
    ('optimizer.schedule', 'cosine', 'simsiam main_simsiam.py adjust_learning_rate'),
    ('optimizer.constant_lr_modules', ('predictor',), 'simsiam README.md: --fix-pred-lr'),
    ('model.zero_init_last_bn', True, 'simsiam main_simsiam.py: zero_init_residual=True'),
    ('model.bn_momentum', 0.9, 'torch BatchNorm2d: momentum 0.1'),
    ('model.conv_init', 'fan_out_normal', 'torchvision resnet.py: kaiming_normal_ fan_out'),
    ('input.crop_area', (0.2, 1.0), 'simsiam main_simsiam.py: RandomResizedCrop(0.2, 1.)'),
) + _probe('simsiam')

# Revisiting: the released 8-core configs (config/<task>/imagenet.sh, reference §3).
_REVISITING = _rows(
    ('optimizer.name', 'sgd', 'revisiting trainer.py:100: tf.train.MomentumOptimizer'),
    ('optimizer.base_lr', 0.1, 'revisiting config/*/imagenet.sh: --lr 0.1'),
    ('optimizer.lr_scaling', 'linear',
     'revisiting trainer.py:72-73: x batch / lr_scale_batch_size (256)'),
    ('optimizer.weight_decay', 1e-4, 'revisiting models/utils.py:60: weight_decay default 1e-4'),
    ('optimizer.warmup_epochs', 5.0, 'revisiting config/*/imagenet.sh: --warmup_epochs 5'),
    ('optimizer.decay_epochs', (15.0, 25.0), 'revisiting config/*/imagenet.sh: '
     '--decay_epochs 15,25'),
    ('total_epochs', 35.0, 'revisiting config/*/imagenet.sh: --epochs 35'),
    ('model.bn_momentum', 0.99, 'revisiting models/resnet.py:44-45: tf.layers BN default 0.99'),
    ('model.bn_epsilon', 1e-3, 'revisiting models/resnet.py:44-45: tf.layers BN default 1e-3'),
    ('input.resize', 'bilinear_tf1', 'revisiting preprocess.py: tf.image.resize_images'),
    ('input.eval_resize', 'area', 'revisiting preprocess.py:62 resize_small: area'),
    ('dataset.holdout_examples', 50_000, 'Revisiting §3: 50,000 held-out train images'),
    ('evals.lbfgs.test_split', 'holdout', 'Revisiting §3: L-BFGS reported on the own split'),
) + _probe('revisiting')

_SUPERVISED_V1 = _rows(
    ('batch_size', 256, 'pytorch/examples imagenet/main.py: -b 256'),
    ('total_epochs', 90.0, 'pytorch/examples imagenet/main.py: --epochs 90'),
    ('optimizer.base_lr', 0.1, 'pytorch/examples imagenet/main.py: --lr 0.1'),
    ('optimizer.weight_decay', 1e-4, 'pytorch/examples imagenet/main.py: --wd 1e-4'),
    ('optimizer.weight_decay_on', 'all', 'pytorch/examples imagenet/main.py: '
     'model.parameters()'),
    ('optimizer.decay_epochs', (30.0, 60.0), 'pytorch/examples imagenet/main.py: '
     'StepLR(step_size=30)'),
    ('optimizer.warmup_epochs', 0.0, 'pytorch/examples imagenet/main.py: no warm-up'),
    ('model.variant', 'v1', 'torchvision resnet50'),
    ('model.conv_init', 'fan_out_normal', 'torchvision resnet.py: kaiming_normal_ fan_out'),
    ('input.crop_area', (0.08, 1.0), 'torchvision RandomResizedCrop default scale'),
    ('supervised.augment', 'none', 'pytorch/examples imagenet/main.py: crop and flip only'),
    ('augment.normalize', 'imagenet', 'pytorch/examples imagenet/main.py: Normalize'),
) + _probe('moco')

# (config file, argument) -> card.
CARDS: dict[tuple[str, str], list[Row]] = {
    ('simclr_resnet50', ''): _SIMCLR_V2,
    ('simclr_resnet50', 'version=1'): _SIMCLR_V1,
    ('moco_v1_resnet50', ''): _moco(1),
    ('moco_v2_resnet50', ''): _moco(2),
    ('exemplar_v2_resnet50', ''): _moco(2) + _rows(
        ('moco.filter_negatives_by_label', True, 'Zhao et al. §3: same-class keys removed')),
    ('byol_resnet50', ''): _BYOL,
    ('simsiam_resnet50', ''): _SIMSIAM,
    ('supervised_v1_resnet50', ''): _SUPERVISED_V1,
    ('rotation_revnet50', ''): _REVISITING + _rows(
        ('model.name', 'revnet', 'Revisiting Table 1: RevNet50'),
        ('model.k', 16.0, 'revisiting config/rotation/imagenet.sh: width 16'),
        ('batch_size', 64, 'revisiting config/rotation/imagenet.sh: 8-core batch 64'),
        ('bn_group_images', 8, 'revisiting models/resnet.py:44-45: BN per core, 64 / 8')),
    ('exemplar_resnet50', ''): _REVISITING + _rows(
        ('model.variant', 'v1', 'Revisiting Table 2: ResNet50 v1'),
        ('model.k', 12.0, 'revisiting config/exemplar/imagenet.sh: width 12'),
        ('exemplar.copies', 8, 'revisiting config/exemplar/imagenet.sh: 8 copies'),
        ('exemplar.margin', 0.5, 'revisiting exemplar.py: triplet margin 0.5'),
        ('exemplar.group_images', 8, 'revisiting exemplar.py:91: mined per core (8 images)'),
        ('exemplar.normalize', 'batch', 'revisiting exemplar.py:133: l2_normalize(axis=0)'),
        ('bn_group_images', 8, 'revisiting models/resnet.py:44-45: BN per core, 64 / 8'),
        ('input.eval_standardize', False, 'revisiting config/evaluation/'
         'rotation_or_exemplar.sh:31: -1_to_1')),
    ('jigsaw_resnet50', ''): _REVISITING + _rows(
        ('model.k', 8.0, 'revisiting config/jigsaw/imagenet.sh: width 8'),
        ('batch_size', 128, 'revisiting config/jigsaw/imagenet.sh: batch 128'),
        ('jigsaw.grayscale', 0.66, 'revisiting config/jigsaw/imagenet.sh: grayscale 0.66'),
        ('jigsaw.grayscale_per', 'image', 'revisiting preprocess.py: one coin per image'),
        ('jigsaw.grayscale_weights', 'mean', 'revisiting preprocess.py: RGB mean'),
        ('bn_group_images', 16, 'revisiting models/resnet.py:44-45: BN per core, 128 / 8')),
    ('relative_patch_resnet50', ''): _REVISITING + _rows(
        ('model.k', 8.0, 'revisiting config/relative_patch_location/imagenet.sh: width 8'),
        ('batch_size', 128, 'revisiting config/relative_patch_location/imagenet.sh: 128'),
        ('relative_patch.grayscale', 0.66, 'revisiting config/relative_patch_location/'
         'imagenet.sh: grayscale 0.66'),
        ('bn_group_images', 16, 'revisiting models/resnet.py:44-45: BN per core, 128 / 8')),
}


def value(config: config_lib.ConfigDict, field: str) -> Any:
  """The value of a dotted field; tuples and lists compare as tuples."""
  node = config
  for name in field.split('.'):
    node = node[name]
  return tuple(node) if isinstance(node, (list, tuple)) else node


def load(name: str, arg: str) -> config_lib.ConfigDict:
  """The run config of configs/<name>.py with ``arg``."""
  config_lib.add_config_root_to_path(os.path.join('configs', f'{name}.py'))
  module = __import__(f'configs.{name}', fromlist=['get_config'])
  return module.get_config(arg or None)


def differences(name: str, arg: str) -> list[tuple[Row, Any]]:
  """(row, our value) for every field of the card that differs from the official one."""
  config = load(name, arg)
  return [(row, value(config, row.field)) for row in CARDS[(name, arg)]
          if value(config, row.field) != row.official]


def format_card(name: str, arg: str) -> str:
  """The card of configs/<name>.py:<arg> as a Markdown table."""
  config = load(name, arg)
  lines = [f'### {name}{":" + arg if arg else ""}', '',
           '| field | ssl_jax | official | source |', '|---|---|---|---|']
  for row in CARDS[(name, arg)]:
    ours = value(config, row.field)
    mark = '' if ours == row.official else ' **(differs)**'
    lines.append(f'| `{row.field}` | {ours!r}{mark} | {row.official!r} | {row.source} |')
  return '\n'.join(lines)


def main(argv: list[str]) -> int:
  """Prints the cards asked for; 1 if any value differs from its source."""
  if len(argv) != 2:
    print(__doc__)
    return 2
  if argv[1] == '--all':
    keys = list(CARDS)
  else:
    path, _, arg = argv[1].partition(':')
    name = os.path.splitext(os.path.basename(path))[0]
    if (name, arg) not in CARDS:
      known = ', '.join(f'{n}{":" + a if a else ""}' for n, a in CARDS)
      print(f'No recipe card for {argv[1]}; cards: {known}.', file=sys.stderr)
      return 2
    keys = [(name, arg)]
  for key in keys:
    print(format_card(*key), end='\n\n')
  return int(any(differences(*key) for key in keys))


if __name__ == '__main__':
  sys.exit(main(sys.argv))
