r"""Relative Patch Location on ResNet50 v1 k=8 (Revisiting §2.4; Table 1: 50.5 L-BFGS,
Table 2: 51.4 top-1, 74.0 top-5).

    python -m ssl_jax.main --config=configs/relative_patch_resnet50.py --workdir=gs://BUCKET/rpl

The patch pipeline of Jigsaw (configs/jigsaw_resnet50.py); all 8 (neighbour, centre) pairs
of every image, the two 1000-d embeddings concatenated, head 2000 -> 4096 (BN, ReLU,
dropout 0.5) -> 8. Batch 128 images. Expected: 50.5 (L-BFGS on pre_logits, Table 1) and
51.4 top-1 (SGD linear, Table 2).

Arguments as configs/rotation_resnet50.py (model resnet, variant v1, k default 8).

    python -m ssl_jax.main --config=configs/relative_patch_resnet50.py:runlocal --workdir=/tmp/rpl

runlocal (24-px patches, k=0.25 with identity-initialised residual units, 600 steps): the
9-patch-average pre_logits on the 1,000 test images, random initialisation -> pretrained:
L-BFGS 27.5% -> 32.6%, the paper's linear probe 15.3% -> 23.0% (measured 2026-11-30 with
benchmarks/runlocal_evidence.sh, the 2-core CPU shared with other runs: 10.8 minutes).
Without the identity initialisation 1,000 steps fell below random initialisation (31.2% ->
29.2%, 2026-11-22).
"""

from configs import common
from ssl_jax import config_lib


def get_config(arg: str | None = None):
  """Relative Patch Location on ResNet50 v1 k=8."""
  config, args = common.revisiting(arg, task='relative_patch', model='resnet', k=8.0,
                                   variant='v1', batch=128)
  if args.runlocal:
    config.total_steps = 600  # 1,000 steps take 11-12 minutes on a 2-core CPU.
  return config_lib.lock(config)
