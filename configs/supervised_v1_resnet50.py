r"""The supervised ResNet50 v1 baseline of the contrastive papers (Cole et al. 2022; Zhao et
al. 2021): torchvision's ImageNet recipe (pytorch/examples imagenet/main.py) on the
network the contrastive methods train.

    python -m ssl_jax.main --config=configs/supervised_v1_resnet50.py --workdir=gs://BUCKET/sup1

ResNet50 v1 (torchvision BN 0.9 / 1e-5, kaiming fan-out convs), SGD momentum 0.9, lr 0.1
x B/256 at batch 256, weight decay 1e-4 on every parameter, 90 epochs, x0.1 at epochs 30
and 60, no warm-up; RandomResizedCrop(224) of area 0.08-1 and a flip, ImageNet mean/std
normalisation; evaluation: resize 256, centre 224. Expected: about 76.1-76.5% top-1 on
ImageNet validation (torchvision's ResNet-50 weights: 76.13; SimCLR Table B.1's crop-only
supervised baseline 76.5, reference contrastive.md).

augment=mocov2: Zhao et al.'s supervised model trained with MoCo v2's augmentation
(colour jitter (0.4, 0.4, 0.4, 0.1) p 0.8, grayscale p 0.2, blur p 0.5, crops of area
0.2-1; their Table 1 ablates it cumulatively, each set with MoCo v2 and supervised).
Evaluation: MoCo's linear probe (the protocol of the models it is compared with), kNN and
L-BFGS on pre_logits, as the contrastive configs; the trained classifier's own accuracy is
the metric ``accuracy``.

Arguments: augment (crop or mocov2), k, dataset, batch, epochs, runlocal.

    python -m ssl_jax.main --config=configs/supervised_v1_resnet50.py:runlocal --workdir=/tmp/sup1

runlocal (the shipped CIFAR-10 subset at 32 px, ResNet50 v1 k=0.25, batch 64, 1,000
steps): L-BFGS 20.4% -> 43.5%, the paper's linear probe 19.9% -> 34.7%, kNN 18.9% -> 41.4%
(pre_logits top-1 on the 1,000 test images, random initialisation -> pretrained; measured
2026-11-30 with benchmarks/runlocal_evidence.sh, the 2-core CPU shared with other runs:
6.2 minutes).
"""

from configs import common
from ssl_jax import config_lib


def get_config(arg: str | None = None):
  """Supervised ResNet50 v1, torchvision's recipe."""
  # Evaluated as the MoCo models it is compared with (Zhao et al.): MoCo's linear probe.
  c, args = common.contrastive(arg, task='supervised', batch=256, epochs=90.0, probe='moco',
                               augment='crop')
  if args.augment not in ('crop', 'mocov2'):
    raise ValueError(f'augment={args.augment!r}: use crop (torchvision) or mocov2.')
  common.pytorch_resnet(c.model)
  c.augment.normalize = 'imagenet'
  if args.augment == 'mocov2':
    common.moco_views(c, version=2)
    c.supervised.augment = 'contrastive'
  else:
    c.supervised.augment = 'none'
  common.pytorch_sgd(c.optimizer, base_lr=0.1)
  c.optimizer.schedule = 'step'
  c.optimizer.decay_epochs = (30.0, 60.0)
  if args.runlocal:
    common.runlocal_contrastive(c, args.k)
    c.evals.knn.every = 0
  return config_lib.lock(c)
