"""Encoders. Each module ``ssl_jax/models/<name>.py`` defines ``build(model_config, *,
bn_groups) -> flax.linen.Module``; the module maps images [N, H, W, 3] to a dict of end
points (``after_root``, ``block1``..``block4``, ``pre_logits``). The training loop finds
the module by ``config.model.name``. The ``model`` section below is shared by the families
(each reads the fields it has)."""

from __future__ import annotations

import ml_collections


def config() -> ml_collections.ConfigDict:
  """The ``model`` section: the family and its shape."""
  c = ml_collections.ConfigDict()
  c.name = 'resnet'  # Module in ssl_jax/models/.
  c.variant = 'v2'  # 'v1' or 'v2'.
  c.k = 4.0  # Widening factor: k=4 is the standard ResNet50.
  c.units = (3, 4, 6, 3)  # Bottleneck units per stage (ResNet50).
  c.last_relu = True  # False is the paper's "(-)" variant (v2 only).
  c.root_stride = 2  # 1 with stage_strides (1, 2, 2, 1): patch mode (§1.4).
  c.stage_strides = (1, 2, 2, 2)
  c.dtype = 'float32'  # 'bfloat16' on accelerators.
  c.bn_momentum = 0.99
  c.bn_epsilon = 1e-3
  # Residual units that start as the identity: the last BN gamma of each ResNet v1 unit at
  # 0 (SimCLR's code), or the last conv of each RevNet residual function at 0 (its F ends
  # in a conv); ResNet v2 and VGG ignore it.
  c.zero_init_last_bn = False
  # ResNet conv kernels: 'glorot_uniform' (Revisiting), 'fan_in_truncated' (SimCLR, BYOL)
  # or 'fan_out_normal' (torchvision: MoCo, SimSiam); see layers.CONV_INITS.
  c.conv_init = 'glorot_uniform'
  # Revisiting §4.6: a bias-free linear layer that sets the pre_logits size independently
  # of k (0: none, pre_logits is the pooled block4).
  c.representation_size = 0
  c.vgg_names = 'paper'  # VGG end points named as the paper ('paper') or code ('code').
  # Rematerialisation: each residual unit (ResNet bottleneck, RevNet unit) keeps only its
  # input for the backward pass and recomputes its inside (nn.remat): less activation
  # memory for one more forward per unit; the same outputs and gradients. VGG ignores it.
  c.remat = False
  # RevNet only: each reversible unit's input is rebuilt from its output in the backward
  # pass (Gomez et al. 2017) instead of stored, so a stage keeps one activation instead of
  # one per unit; one more forward per unit. Same outputs and statistics, gradients equal
  # up to the rounding of the rebuilt inputs (tested). Replaces remat for RevNet.
  c.reversible_backward = False
  return c


def validate(model: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the field and the fix."""
  if model.variant not in ('v1', 'v2'):
    raise ValueError(f"model.variant={model.variant!r}: use 'v1' or 'v2'.")
  if model.conv_init not in ('glorot_uniform', 'fan_in_truncated', 'fan_out_normal'):
    raise ValueError(f'model.conv_init={model.conv_init!r}: use glorot_uniform, '
                     'fan_in_truncated or fan_out_normal.')
  if model.vgg_names not in ('paper', 'code'):
    raise ValueError(f"model.vgg_names={model.vgg_names!r}: use 'paper' or 'code'.")
  if len(model.units) != len(model.stage_strides):  # ResNet and RevNet zip the two.
    raise ValueError(
        f'model.units={tuple(model.units)} and model.stage_strides='
        f'{tuple(model.stage_strides)} name different numbers of stages; give one '
        'stride per stage (ResNet50: units (3, 4, 6, 3), strides (1, 2, 2, 2)).')
  if model.representation_size < 0:
    raise ValueError('model.representation_size must be >= 0 (0: no extra layer).')
  if model.reversible_backward and model.name != 'revnet':
    raise ValueError(f'model.reversible_backward=True needs model.name=revnet (got '
                     f'{model.name!r}): only RevNet units can be inverted; use model.remat.')
  if model.reversible_backward and model.remat:
    raise ValueError('model.reversible_backward=True already recomputes each RevNet unit: '
                     'set model.remat=False.')
  if model.name == 'resnet' and model.variant == 'v1' and not model.last_relu:
    raise ValueError('model.last_relu=False (the "(-)" variant) exists only for v2 and '
                     'RevNet: ResNet50 v1 ends in a ReLU after every unit.')
