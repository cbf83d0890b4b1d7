r"""SimSiam on ResNet50 (Chen & He, "Exploring Simple Siamese Representation Learning",
CVPR 2021; the official facebookresearch/simsiam code).

    python -m ssl_jax.main --config=configs/simsiam_resnet50.py --workdir=gs://BUCKET/simsiam

The paper's ImageNet recipe and the official code's (facebookresearch/simsiam): batch
512, SGD momentum 0.9 with lr 0.05 x B/256 (0.1), weight decay 1e-4 (every parameter, as
PyTorch's SGD), cosine decay without warm-up, the predictor at the constant peak lr
(--fix-pred-lr, paper Table 1: 68.1% against 67.7% with the decayed rate), 100 epochs;
ResNet50 v1 with synchronised (global) BN (PyTorch's momentum 0.1 and eps 1e-5), the
last BN of each residual unit zero-initialised (zero_init_residual=True); projector
2048-2048-2048 with BN on every layer (no affine on the output), predictor 2048 -> 512 ->
2048; MoCo v2's augmentation (crops of area 0.2-1, colour jitter (0.4, 0.4, 0.4, 0.1)
with p 0.8, grayscale p 0.2, blur p 0.5, flip). Expected, ImageNet linear top-1 (paper
Table 4, linear probe with LARS at batch 4096): 68.1% at 100 epochs, 70.0% at 200, 70.8%
at 400, 71.3% at 800 (epochs=N).

Arguments: k, dataset, batch, epochs, multicrop (SwAV's 2 x 224 + 6 x 96 views, the
large crops at area 0.14-1), runlocal.

    python -m ssl_jax.main --config=configs/simsiam_resnet50.py:runlocal --workdir=/tmp/simsiam

runlocal: the shipped CIFAR-10 subset at 32 px (no blur), ResNet50 v1 at k=0.25, projector
128-128-512, predictor 512 -> 128 -> 512, SGD peak lr 0.2, 1,000 steps. pre_logits top-1
on the 1,000 test images, random initialisation -> pretrained: L-BFGS 20.4% -> 31.9%, the
paper's linear probe 14.7% -> 23.2%, kNN 18.9% -> 27.6% (measured 2026-11-30 with
benchmarks/runlocal_evidence.sh, the 2-core CPU shared with other runs: 7.9 minutes). With
multicrop also four 16-px small crops (common.py): L-BFGS 20.4% -> 29.8%, probe 14.7% ->
20.7%, kNN 18.9% -> 24.8% (2026-12-01, an idle CPU: 6.4 minutes).
"""

from configs import common
from ssl_jax import config_lib


def get_config(arg: str | None = None):
  """SimSiam on ResNet50 v1."""
  c, args = common.contrastive(arg, task='simsiam', batch=512, epochs=100.0, probe='simsiam',
                                multicrop=False)
  common.pytorch_resnet(c.model)
  c.model.zero_init_last_bn = True
  c.input.crop_area = (0.2, 1.0)
  c.input.resize = c.input.eval_resize = 'bilinear_antialias'  # PIL, as MoCo (common.py).
  c.augment.normalize = 'imagenet'
  c.augment.brightness_mode = 'multiplicative'  # torchvision ColorJitter.
  c.augment.brightness = c.augment.contrast = c.augment.saturation = 0.4
  c.augment.hue = 0.1  # Jitter p 0.8, grayscale p 0.2, blur p 0.5: the section defaults.
  c.optimizer.base_lr = 0.05  # SGD, linear scaling, weight decay 1e-4: the defaults.
  c.optimizer.weight_decay_on = 'all'
  c.optimizer.warmup_epochs = 0.0
  c.optimizer.constant_lr_modules = ('predictor',)
  if args.multicrop:
    common.multicrop(c, args.runlocal)
  if args.runlocal:
    common.runlocal_contrastive(c, args.k)
    c.simsiam.proj_dim = 512
    c.simsiam.pred_hidden = 128
    c.optimizer.base_lr = 0.8  # Peak 0.2 at batch 64, as MoCo's runlocal.
  return config_lib.lock(c)
