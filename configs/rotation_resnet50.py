r"""Rotation on ResNet50 (Revisiting Self-Supervised Visual Representation Learning, §2.1).

    python -m ssl_jax.main --config=configs/rotation_resnet50.py:dataset=imagenet2012 \
        --workdir=gs://BUCKET/rotation_resnet50

The paper's recipe: slim Inception crop to 224, brightness/saturation jitter, 4 rotations
per image, batch 64 images (256 inputs) per 8 cores, SGD momentum 0.9, LR 0.1 x B/256,
5-epoch warm-up, x0.1 at epochs 15 and 25 of 35, weight decay 1e-4 on kernels.
Expected (L-BFGS on pre_logits, held-out split): Table 1's ResNet50 v2 k=4 Rotation cell
is not among the verified facts (reference revisiting.md §5); the best Rotation model,
RevNet50 k=16 (configs/rotation_revnet50.py), gives 53.7.

Arguments: model (resnet, revnet, vgg), k (default 4, the standard width; 0.25 with
runlocal), variant (v1, v2), last_relu (False: the "(-)" variant), representation_size,
dataset (imagenet2012, places365_small, cifar10_5k or any TFDS image dataset), batch,
runlocal.

    python -m ssl_jax.main --config=configs/rotation_resnet50.py:runlocal --workdir=/tmp/rot

runlocal: the shipped CIFAR-10 subset at 32 px, ResNet50 v2 at k=0.25 with a stride-1
root, 1,000 steps, 5.8 minutes on a 2-core CPU (training and evaluation): L-BFGS on
pre_logits 35.2% on the 1,000 held-out images, against 28.2% for the same encoder at
random initialisation (--config.total_steps=0); measured 2026-11-30, and again with the
code's 8-image BN groups (the same 35.2%; the paper's linear probe 13.7% -> 19.5%).
"""

from configs import common
from ssl_jax import config_lib


def get_config(arg: str | None = None):
  """Rotation on ResNet50 v2; see the module docstring for the arguments."""
  config, args = common.revisiting(arg, task='rotation', model='resnet', k=4.0,
                                   variant='v2', batch=64)
  return config_lib.lock(config)
