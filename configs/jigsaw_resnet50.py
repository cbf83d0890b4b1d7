r"""Jigsaw on ResNet50 v1 k=8 (Revisiting §2.3; Table 2: 44.6 top-1, 68.0 top-5).

    python -m ssl_jax.main --config=configs/jigsaw_resnet50.py --workdir=gs://BUCKET/jigsaw

292-px squashed resize, random 255 crop, 3 x 3 cells of 85 px, a random 64-px patch in
each (random gaps), the whole image grey (RGB mean) with probability 0.66 as the code
(ssl_jax's former per-patch form: --config.jigsaw.grayscale_per=patch
--config.jigsaw.grayscale_weights=luma --config.jigsaw.grayscale=0.6667), per-patch
standardisation of the 0-255 values; the patch backbone (root stride 1, stage strides
2, 2, 1), a 1000-d embedding per patch, 8 of the 100 maximal-Hamming permutations per
step, head 9000 -> 4096 (BN, ReLU, dropout 0.5) -> 100 with weight decay 5e-4. Batch 128
images. Evaluation: the mean over 9 contiguous 64-px patches of a 192-px crop of the
image area-resized to 224, for every end point. Expected: 44.6 top-1 (SGD linear, Table
2). The code's own permutation set: --config.jigsaw.permutations_file=PATH of
permutations_100_max.bin (MehdiNoroozi/JigsawPuzzleSolver); by default ssl_jax's greedy
set of the same construction and statistics.

Arguments as configs/rotation_resnet50.py (model resnet, variant v1, k default 8).

runlocal (k=0.25, 72-px images, 24-px patches, 100 permutations with 16 per step, residual
units that start as the identity, 1,000 steps): the 9-patch-average pre_logits on the
1,000 test images, random initialisation -> pretrained: L-BFGS 27.5% -> 35.2%, the paper's
linear probe 15.3% -> 25.5% (measured 2026-11-30 on the 2-core CPU shared with other runs:
16 minutes). With the usual initialisation the same run gave 30.6% -> 31.5% and 15.2% ->
20.1% (the pretext accuracy at step 1,000: 14% instead of 23%).
"""

from configs import common
from ssl_jax import config_lib


def get_config(arg: str | None = None):
  """Jigsaw on ResNet50 v1 k=8."""
  config, args = common.revisiting(arg, task='jigsaw', model='resnet', k=8.0,
                                   variant='v1', batch=128)
  return config_lib.lock(config)
