r"""BYOL on ResNet50 (Grill et al. 2020; reference contrastive.md §3, the official
deepmind-research code).

    python -m ssl_jax.main --config=configs/byol_resnet50.py --workdir=gs://BUCKET/byol

The 1000-epoch preset: batch 4096, LARS (eta 1e-3; biases and BN excluded) with lr 0.2 x
B/256 (3.2), weight decay 1.5e-6, 10 warm-up epochs then cosine, target EMA from
tau_base 0.996 to 1 on a cosine schedule; ResNet50 v1 with global BN (decay 0.9, eps
1e-5, gamma initialised to 1 as in the paper's runs); projector and predictor 4096 ->
256; asymmetric augmentation: crops of area 0.08-1, colour jitter (additive brightness
0.4, contrast 0.4, saturation 0.2, hue 0.1) with p 0.8, grayscale p 0.2, blur p 1.0 / 0.1,
solarisation p 0 / 0.2; ImageNet mean/std; each view through the online and the target
network on its own, so BN statistics are per view (byol_experiment.py `_forward`); the
online classifier on the stop-gradient representation of view 1, its cross-entropy added
to the loss, its top-1 on the training batch (``classifier_top1``) the code's progress
monitor. Expected: 74.3% ImageNet linear top-1
(paper); 72.5% for the 300-epoch preset (epochs=300 sets lr 0.3, wd 1e-6, tau 0.99).

Arguments: k, dataset, batch, epochs, multicrop (SwAV's 2 x 224 + 6 x 96 views: every
view predicts the target projections of the two large ones, which alone go through the
target), runlocal.

    python -m ssl_jax.main --config=configs/byol_resnet50.py:runlocal --workdir=/tmp/byol

runlocal (k=0.25 with identity-initialised residual units, LARS peak 3.2, tau_base 0.99,
1,000 steps): L-BFGS 21.2% -> 29.2%, the paper's linear probe 19.0% -> 28.9%, kNN 17.8% ->
26.6% (pre_logits top-1 on the 1,000 test images, random initialisation -> pretrained;
measured 2026-11-30 with benchmarks/runlocal_evidence.sh, the 2-core CPU shared with other
runs: 15.0 minutes). With multicrop also four 16-px small crops (common.py): L-BFGS 21.2%
-> 30.8%, probe 19.0% -> 26.1%, kNN 17.8% -> 25.2% (2026-12-01, an idle CPU: 8.6 minutes).
"""

from configs import common
from ssl_jax import config_lib

# Reference §3: the code's presets by epochs: (base lr, weight decay, tau_base).
PRESETS = {40: (0.45, 1e-6, 0.97), 100: (0.45, 1e-6, 0.99), 300: (0.3, 1e-6, 0.99),
           1000: (0.2, 1.5e-6, 0.996)}


def get_config(arg: str | None = None):
  """BYOL on ResNet50 v1."""
  c, args = common.contrastive(arg, task='byol', batch=4096, epochs=1000.0, probe='byol',
                                multicrop=False)
  lr, wd, tau = PRESETS.get(int(c.total_epochs), PRESETS[1000])
  c.model.bn_momentum = 0.9
  c.model.bn_epsilon = 1e-5
  c.model.conv_init = 'fan_in_truncated'  # Haiku's Conv2D default.
  # The last BN gamma of each unit starts at one (the default; the paper did not use
  # Haiku's zero init); runlocal zero-initialises it (common.runlocal_contrastive).
  c.byol.base_ema = tau
  # Bicubic crops and test crops (byol/utils/dataset.py:201); the host rounds them to uint8
  # for the transfer (at most 0.5/255 after BYOL's own clip; preprocess.py).
  c.input.resize = c.input.eval_resize = 'bicubic'
  c.byol.per_view_bn = True  # byol_experiment.py:183-185: one network pass per view.
  c.byol.online_classifier = True  # byol_experiment.py:175, 256-276.
  c.augment.normalize = 'imagenet'
  c.augment.brightness_mode = 'additive'
  c.augment.brightness, c.augment.contrast = 0.4, 0.4
  c.augment.saturation, c.augment.hue = 0.2, 0.1
  c.augment.jitter_prob = 0.8
  c.augment.grayscale_prob = 0.2
  c.augment.blur_per = 'image'
  c.augment.blur_prob = (1.0, 0.1)
  c.augment.solarize_prob = (0.0, 0.2)
  c.optimizer.name = 'lars'
  c.optimizer.base_lr = lr
  c.optimizer.lr_scaling = 'linear'
  c.optimizer.weight_decay = wd
  c.optimizer.weight_decay_on = 'kernels'
  c.optimizer.warmup_epochs = 10.0
  if args.multicrop:
    common.multicrop(c, args.runlocal)
  if args.runlocal:
    common.runlocal_contrastive(c, args.k)
    c.byol.base_ema = 0.99
    # LARS: the peak LR of the paper's batch 4096 (3.2), as configs/simclr_resnet50.py.
    c.optimizer.base_lr = 3.2
    c.optimizer.lr_scaling = 'none'
    c.optimizer.weight_decay = 1e-4
  return config_lib.lock(c)
