r"""Supervised ResNet50 baseline (Revisiting reference §3: ResNet50 v2, k=4, batch 256,
LR 0.1, 5-epoch warm-up, x0.1 at epochs 30, 60, 80 of 90, weight decay 1e-4, Inception
crop at 224).

    python -m ssl_jax.main --config=configs/supervised_resnet50.py --workdir=gs://BUCKET/sup

Expected: about 76% top-1 on the ImageNet validation set for ResNet50 v2 (Revisiting §5,
unverified); L-BFGS on its pre_logits is a linear probe of a supervised representation.
Arguments as configs/rotation_resnet50.py (batch default 256).

The supervised baseline of the contrastive studies (Cole et al., Zhao et al.) uses the
same encoder and augmentation as the contrastive methods: for example ResNet50 v1 with
MoCo v2's views (the augment fields of configs/moco_v2_resnet50.py apply to the one view):

    python -m ssl_jax.main --config=configs/supervised_resnet50.py:variant=v1 \
        --config.supervised.augment=contrastive --config.augment.normalize=imagenet \
        --config.input.crop_area='(0.2, 1.0)' --workdir=gs://BUCKET/sup_v1
"""

from configs import common
from ssl_jax import config_lib


def get_config(arg: str | None = None):
  """Supervised ResNet50 v2."""
  config, args = common.revisiting(arg, task='supervised', model='resnet', k=4.0,
                                   variant='v2', batch=256)
  if not args.runlocal:
    config.total_epochs = 90.0
    config.optimizer.decay_epochs = (30.0, 60.0, 80.0)
  return config_lib.lock(config)
