r"""Rotation on RevNet50 k=16, the paper's best model (Revisiting Tables 1 and 2).

    python -m ssl_jax.main --config=configs/rotation_revnet50.py --workdir=gs://BUCKET/rot16

Recipe as configs/rotation_resnet50.py (the released config: last_relu True, input 224,
batch 64 images per 8 cores). Expected: L-BFGS on pre_logits 53.7 (Table 1, held-out
split); SGD linear evaluation, ~500 epochs, 55.4 top-1 / 77.9 top-5 on ImageNet
validation (Table 2; configs/linear_eval.py). 85.8M parameters.

Arguments as configs/rotation_resnet50.py (k default 16).
"""

from configs import common
from ssl_jax import config_lib


def get_config(arg: str | None = None):
  """Rotation on RevNet50 k=16."""
  config, args = common.revisiting(arg, task='rotation', model='revnet', k=16.0,
                                   variant='v2', batch=64)
  return config_lib.lock(config)
