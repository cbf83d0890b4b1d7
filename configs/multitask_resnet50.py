r"""Multi-task pretext: Rotation + Exemplar on one ResNet50 v2 k=4 trunk (Revisiting's
conclusion names combining the tasks as the next step; it reports no multi-task number).

    python -m ssl_jax.main --config=configs/multitask_resnet50.py --workdir=gs://BUCKET/mt

The loss is 1.0 x Rotation's 4-way cross-entropy + 1.0 x Exemplar's semi-hard triplet
loss (ssl_jax/tasks/multitask.py); each task has its own host crops (one crop for
Rotation, 8 copies for Exemplar, each with its own seed), its own device views (colour
jitter; Exemplar's grey coin and per-copy standardisation) and its own head on
pre_logits, and its inputs go through the trunk in a pass of their own (BN statistics
per task, per group of 8 images as the released 8-core code). The rest is the Revisiting
recipe of configs/rotation_resnet50.py: batch 64 images (64 x 4 rotations + 64 x 8
copies = 768 inputs per step), SGD, 35 epochs, L-BFGS on the held-out 50k images, the
pretext evaluator (each task's held-out accuracy, prefixed) and Table 2's linear probe.
Evaluation inputs in [-1, 1], as both tasks' released evaluation. Expected: no paper
number; compare its L-BFGS and probe with configs/rotation_resnet50.py and
configs/exemplar_resnet50.py at the same width.

Arguments: those of configs/rotation_resnet50.py, and ``tasks`` (task modules joined by
'+', default rotation+exemplar; any without a second network, state or own BN groups)
and ``weights`` ('+'-joined, one per task, default 1 each):

    python -m ssl_jax.main \
        --config=configs/multitask_resnet50.py:tasks=rotation+jigsaw,weights=1+0.5 \
        --config.multitask.jigsaw.num_permutations=100 --workdir=...
    python -m ssl_jax.main --config=configs/multitask_resnet50.py:runlocal --workdir=/tmp/mt

runlocal: the shipped CIFAR-10 subset at 32 px, k=0.25, batch 32 images (128 rotation
inputs + 256 Exemplar inputs), Inception crops of 20-100 % of the image (Exemplar's
copies must differ by more than a flip), a 128-d embedding, 2,000 steps (Exemplar alone
needed 2,000 to rise above its random initialisation): 13.4 minutes on this project's
2-core CPU, idle (2.4-2.8 steps/s). pre_logits on the 1,000 test images, random
initialisation -> pretrained: L-BFGS 28.2% -> 39.4%, the paper's linear probe 13.7% ->
24.4%; held-out pretext accuracy: rotation 48.8%, Exemplar triplets 62.1% (measured
2026-12-01 with benchmarks/runlocal_evidence.sh). Both tasks alone, at the same width
and 32 px: Rotation (ResNet50 v2, 1,000 steps) 35.2%, Exemplar (v1, 2,000 steps) 37.3%.
"""

from configs import common
from ssl_jax import config_lib
from ssl_jax.tasks import multitask


def _weights(text: str, count: int) -> tuple[float, ...]:
  """'1+0.5' -> (1.0, 0.5); '' -> 1.0 for each of ``count`` tasks."""
  if not text:
    return (1.0,) * count
  try:
    return tuple(float(w) for w in text.split('+'))
  except ValueError:
    raise ValueError(f'weights={text!r}: give numbers joined by +, e.g. weights=1+0.5.') from None


def get_config(arg: str | None = None):
  """Multi-task Rotation + Exemplar on ResNet50 v2 k=4; see the module docstring."""
  config, args = common.revisiting(arg, task='multitask', model='resnet', k=4.0,
                                   variant='v2', batch=64, tasks='rotation+exemplar',
                                   weights='')
  names = tuple(args.tasks.split('+'))
  config.multitask = multitask.section(names, _weights(args.weights, len(names)))
  # The released evaluation of Rotation and Exemplar feeds [-1, 1]
  # (config/evaluation/rotation_or_exemplar.sh:31).
  config.input.eval_standardize = False
  if args.runlocal:
    config.batch_size = 32  # 384 inputs per step, as Exemplar's runlocal 32 x 8 + 128.
    config.total_steps = 2_000
    config.input.crop = 'inception'  # Exemplar's copies must differ by more than a flip.
    config.input.crop_area = (0.2, 1.0)
    if 'exemplar' in names:
      config.multitask.exemplar.embedding = 128
  return config_lib.lock(config)
