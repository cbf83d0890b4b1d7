r"""Rotation on RevNet50 k=16, the paper's best model (Revisiting Tables 1 and 2).

    python -m ssl_jax.main --config=configs/rotation_revnet50.py --workdir=gs://BUCKET/rot16

Recipe as configs/rotation_resnet50.py (the released config: last_relu True, input 224,
batch 64 images per 8 cores). Expected: L-BFGS on pre_logits 53.7 (Table 1, held-out
split); SGD linear evaluation, ~500 epochs, 55.4 top-1 / 77.9 top-5 on ImageNet
validation (Table 2; configs/linear_eval.py). 85.8M parameters.

Arguments as configs/rotation_resnet50.py (k default 16).

runlocal (k=0.25, 32 px, 1,000 steps) does not beat random initialisation on the shipped
data (L-BFGS pre_logits 37.3% against 39.2%; every end point from block2 on is lower after
pretraining; with the code's 8-image BN groups 37.1% against 39.2%, and the paper's linear
probe 21.4% -> 22.1%, measured 2026-11-30). The architecture matches the released
models/resnet.py (revnet, bottleneck_rev, pool_and_double_channels); the cause is the
scale (measured, see the README's runlocal notes). The random RevNet is a strong random-
feature model: its parameter-free transitions carry the root conv's 16 random 7x7 filters,
pooled, into 16 of the 128 pre_logits channels (33.3% alone; the 112 channels written only
by the random residual functions give 36.0%), and its end points after_root to block4
score 45.6-48.1%. The root conv has neither weight decay nor BN (as released): its kernel
norm grows from 2.2 to 16.1 in 1,000 steps at peak lr 0.1 (to 5.6 at the released
effective lr 0.025, which gives 38.3%), after which it makes up the whole variance of
block3 and block4, and its filters, now fitted to rotation, probe at 28.5% instead of
36.0%. Neither of the two remedies measured since reaches the project's 2-point floor:
3,000 steps give L-BFGS 40.3% (+1.1; the paper's probe 18.2%, rotation accuracy 65%);
residual functions that start at zero (--config.model.zero_init_last_bn=True, as the
patch tasks' runlocal) leave only the random root's features at initialisation, 35.6%,
and 1,000 steps give 36.4% (probe 21.4% -> 21.5%) (measured 2026-11-30). The trained
RevNet scores what the trained ResNet50 v2 does (35-37% at 1,000 steps, 40% at 3,000);
its random initialisation is the stronger baseline.
"""

from configs import common
from ssl_jax import config_lib


def get_config(arg: str | None = None):
  """Rotation on RevNet50 k=16."""
  config, args = common.revisiting(arg, task='rotation', model='revnet', k=16.0,
                                   variant='v2', batch=64)
  return config_lib.lock(config)
