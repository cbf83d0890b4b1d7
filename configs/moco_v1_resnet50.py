r"""MoCo v1 on ResNet50 (He et al. 2020; reference contrastive.md §2); with ``exemplar``,
Exemplar-v1 (Zhao et al. 2021, "What Makes Instance Discrimination Good for Transfer
Learning?": MoCo v1 whose negatives exclude the query's class).

    python -m ssl_jax.main --config=configs/moco_v1_resnet50.py --workdir=gs://BUCKET/moco1

The official recipe: ResNet50 (v1) with a linear 128-d head, key encoder EMA m=0.999, a
queue of 65,536 keys, T=0.07, batch 256, SGD lr 0.03 (x B/256) momentum 0.9, weight decay
1e-4 on every parameter, 200 epochs with x0.1 at 120 and 160, no warm-up; BN over 8
groups of 32 with shuffled keys (the 8-GPU shuffling BN); InstDisc augmentation: crops of
area 0.2-1, grayscale p 0.2, then colour jitter 0.4 always, flip; ImageNet mean/std.
Expected: 60.6% ImageNet linear top-1 (paper; 60.8 +- 0.2 in the repository).
Exemplar-v1 (``exemplar``, labels filter the queue): 64.6% (Zhao et al., secondary
source).

Arguments: exemplar, k, dataset, batch, epochs, runlocal.

    python -m ssl_jax.main --config=configs/moco_v1_resnet50.py:runlocal --workdir=/tmp/moco1

runlocal (the shipped CIFAR-10 subset at 32 px, k=0.25 with identity-initialised residual
units, batch 64, a queue of 256 keys, m=0.99, 1,000 steps): L-BFGS 20.4% -> 29.9%, the
paper's linear probe 21.2% -> 23.3%, kNN 18.9% -> 28.2% (pre_logits top-1 on the 1,000
test images, random initialisation -> pretrained; measured 2026-11-30 with
benchmarks/runlocal_evidence.sh, the 2-core CPU shared with other runs: 7.8 minutes).
"""

from configs import common
from ssl_jax import config_lib


def get_config(arg: str | None = None):
  """MoCo v1 (or Exemplar-v1) on ResNet50."""
  return config_lib.lock(common.moco(arg, version=1))
