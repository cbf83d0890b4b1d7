r"""MoCo v2 on ResNet50 (Chen et al. 2020; reference contrastive.md §2); with ``exemplar``,
Exemplar-v2 (Zhao et al. 2021; see configs/exemplar_v2_resnet50.py).

    python -m ssl_jax.main --config=configs/moco_v2_resnet50.py --workdir=gs://BUCKET/moco2

MoCo v1's recipe (configs/moco_v1_resnet50.py) with the v2 changes: an MLP head
(Dense 2048 -> ReLU -> Dense 128), T=0.2, "aug+" (colour jitter (0.4, 0.4, 0.4, 0.1)
with p 0.8, then grayscale p 0.2, Gaussian blur sigma 0.1-2 with p 0.5), cosine decay.
Expected: 67.5% ImageNet linear top-1 at 200 epochs (repository, 67.5 +- 0.1); 71.1% at
800 epochs (epochs=800).

Arguments: exemplar, k, dataset, batch, epochs, runlocal.

    python -m ssl_jax.main --config=configs/moco_v2_resnet50.py:runlocal --workdir=/tmp/moco2

runlocal (queue 256, m=0.99, k=0.25 with identity-initialised residual units, SGD peak lr
0.2, 1,000 steps): L-BFGS 20.4% -> 36.7%, the paper's linear probe 21.2% -> 28.2%, kNN
18.9% -> 31.8% (pre_logits top-1 on the 1,000 test images, random initialisation ->
pretrained; measured 2026-11-30 with benchmarks/runlocal_evidence.sh, the 2-core CPU
shared with other runs: 8.5 minutes).
"""

from configs import common
from ssl_jax import config_lib


def get_config(arg: str | None = None):
  """MoCo v2 (or Exemplar-v2) on ResNet50."""
  return config_lib.lock(common.moco(arg, version=2))
