r"""SimCLR on ResNet50 (Chen et al. 2020; reference contrastive.md §1), the main method of
Cole et al. 2022 ("When Does Contrastive Visual Representation Learning Work?").

    python -m ssl_jax.main --config=configs/simclr_resnet50.py --workdir=gs://BUCKET/simclr

version=2 (default; Cole et al. follow the SimCLR v2 configuration): 3-layer projection
head, LARS with lr 0.1 x sqrt(B) (6.4 at B=4096), weight decay 1e-4, 800 epochs with a
5% (40-epoch) warm-up, multiplicative brightness. Expected: 71.1% linear top-1 on
ImageNet for ResNet50 1x without a memory buffer (google-research/simclr issue #77; the
README's 71.7% needs SimCLR v2's MoCo-style memory, which ssl_jax does not add); after
fine-tuning from the first projection layer on 1% / 10% of the labels (the evaluator
instances finetune_1pct and finetune_10pct), 57.9% / 68.4% (the README's table for
its released R50 1x checkpoint).
version=1: the paper's recipe: 2-layer head, LARS lr 0.3 x B/256 (4.8), weight decay
1e-6, 1000 epochs, 10 warm-up epochs, additive brightness. Expected: 69.3% (paper, Table
6); 64.5% for the 100-epoch ablation (epochs=100).
Both: batch 4096, T=0.1, ResNet50 v1 with zero-initialised last BN gammas, BN decay 0.9,
inputs in [0, 1], Inception crops of area 0.08-1, colour jitter s=1 with p 0.8, grayscale
p 0.2, blur p 0.5 (sigma drawn per batch, as the code).

Arguments: version, k, dataset, batch, epochs, runlocal.

    python -m ssl_jax.main --config=configs/simclr_resnet50.py:runlocal --workdir=/tmp/simclr

runlocal: the shipped CIFAR-10 subset at 32 px (SimCLR's CIFAR settings: s=0.5, no blur,
T=0.5), ResNet50 v1 at k=0.25 with a stride-1 root, batch 64, LARS at peak LR 3, 1,000
steps. pre_logits top-1 on the 1,000 test images, random initialisation -> pretrained:
L-BFGS 19.1% -> 36.0%, the paper's linear probe 13.2% -> 29.0%, kNN 19.0% -> 32.6%; SimCLR
v2's fine-tuning from the first projection layer on 10% of the labels (407 images) 17.3%
-> 22.7% (measured 2026-11-30 with benchmarks/runlocal_evidence.sh, the 2-core CPU shared
with other runs: 14.6 minutes).
"""

from configs import common
from ssl_jax import config_lib
from ssl_jax.evaluate import finetune


def get_config(arg: str | None = None):
  """SimCLR v1 or v2 on ResNet50 v1."""
  c, args = common.contrastive(arg, task='simclr', batch=4096, epochs=800.0,
                                probe='simclr', version=2)
  if args.version not in (1, 2):
    raise ValueError(f'version={args.version}: SimCLR has versions 1 and 2.')
  c.model.bn_momentum = 0.9
  c.model.bn_epsilon = 1e-5
  c.model.conv_init = 'fan_in_truncated'  # resnet.py: VarianceScaling().
  c.model.zero_init_last_bn = True
  # Bicubic crops and test crops on float images (tf2/data_util.py:240-241, 319-320);
  # the host rounds them to uint8 for the transfer (at most 0.5/255; preprocess.py).
  c.input.resize = c.input.eval_resize = 'bicubic'
  c.augment.normalize = 'unit'
  c.augment.blur_per = 'batch'  # The augment section's defaults are SimCLR v2's (p 0.5).
  common.colour_strength(c, 1.0)
  c.optimizer.name = 'lars'
  c.optimizer.weight_decay_on = 'kernels'  # LARS: BN and biases excluded.
  if args.version == 2:
    c.simclr.proj_layers = 3
    c.optimizer.base_lr = 0.1
    c.optimizer.lr_scaling = 'sqrt'
    c.optimizer.weight_decay = 1e-4
    c.optimizer.warmup_epochs = 0.05 * c.total_epochs
    c.augment.brightness_mode = 'multiplicative'
    # SimCLR v2's semi-supervised evaluation: fine-tuning from the first projection layer
    # on ImageNet's 1 % and 10 % subsets (on another dataset, that fraction per class).
    for percent in (1, 10):
      section = c.evals[f'finetune_{percent}pct'] = finetune.simclr_v2(percent)
      if args.dataset != 'imagenet2012':
        section.dataset = ''
        section.label_fraction = percent / 100
  else:
    c.total_epochs = args.epochs or 1000.0
    c.simclr.proj_layers = 2
    c.optimizer.base_lr = 0.3
    c.optimizer.lr_scaling = 'linear'
    c.optimizer.weight_decay = 1e-6
    c.optimizer.warmup_epochs = 10.0
    c.augment.brightness_mode = 'additive'
  if args.runlocal:
    common.runlocal_contrastive(c, args.k)
    common.colour_strength(c, 0.5)
    c.simclr.temperature = 0.5
    # LARS moves each kernel by about lr x eta x its norm per step: 1,000 steps need the
    # peak LR of a large batch (4.8 in the paper), not a batch-64 scaling of it.
    c.optimizer.base_lr = 3.0
    c.optimizer.lr_scaling = 'none'
    c.optimizer.weight_decay = 1e-4
    if args.version == 2:
      # 10 % of the shipped images (408) at batch 64; 1 % would be 4 per class.
      del c.evals['finetune_1pct']
      c.evals.finetune_10pct.dataset = ''
      c.evals.finetune_10pct.label_fraction = 0.1
      c.evals.finetune_10pct.batch_size = 64
      c.evals.finetune_10pct.log_every = 50
  return config_lib.lock(c)
