r"""Zhao et al. 2021, Table 1: the augmentation ablation, supervised and MoCo v2.

    python -m ssl_jax.study --config=configs/studies/zhao_augmentation.py \
        --workdir=gs://BUCKET/studies/zhao_augmentation --launch=print

Each of supervised ResNet50 (configs/supervised_v1_resnet50.py:augment=mocov2, its
augmentation on the device as MoCo's) and MoCo v2 (configs/moco_v2_resnet50.py) trained
with cumulative augmentation sets (reference contrastive.md §4): flip only (the whole
image resized, input.crop=resize), + random resized crop (input.crop=inception, area
0.2-1), + colour jitter (0.4, 0.4, 0.4, 0.1) with p 0.8 (augment.jitter_prob), +
grayscale p 0.2 (augment.grayscale_prob), + Gaussian blur p 0.5 (augment.blur_prob; the
last set is MoCo v2's aug+). Evaluated on ImageNet by MoCo's linear probe, kNN, L-BFGS
and 5-way 1- and 5-shot episodes on the validation classes (the configs' ``fewshot``
argument; the paper's few-shot study pretrains on mini-ImageNet's base classes instead);
the paper's transfer benchmarks (VOC, COCO detection) are not part of ssl_jax.
What the paper found: augmentation matters far more for the unsupervised model's
transfer than for the supervised one's.

    python -m ssl_jax.study --config=configs/studies/zhao_augmentation.py:runlocal \
        --workdir=/tmp/zhao

runlocal: the same 2 x 5 grid on the shipped CIFAR-10 subset at 32 px, k=0.25, 300 steps
each: 10 cells, 17 minutes on this project's 2-core CPU (2026-12-01). MoCo v2 gains 9.5
points of L-BFGS from the random crop (27.7% -> 37.2%) and little from the rest; the
supervised model loses with each added augmentation in its 300 steps; the table and
figures are in docs/studies/zhao_augmentation/ and the README.
"""

from ssl_jax import study

METHODS = {'supervised': {'config': 'configs/supervised_v1_resnet50.py', 'arg': 'augment=mocov2'},
           'MoCo v2': {'config': 'configs/moco_v2_resnet50.py'}}
_NONE = {'augment.jitter_prob': 0.0, 'augment.grayscale_prob': 0.0,
         'augment.blur_prob': (0.0, 0.0)}
AUGMENTATIONS = {
    'flip only': {'input.crop': 'resize', **_NONE},
    '+ crop': {'input.crop': 'inception', **_NONE},
    '+ colour': {'input.crop': 'inception', **_NONE, 'augment.jitter_prob': 0.8},
    '+ grayscale': {'input.crop': 'inception', **_NONE, 'augment.jitter_prob': 0.8,
                    'augment.grayscale_prob': 0.2},
    '+ blur': {'input.crop': 'inception', 'augment.jitter_prob': 0.8,
               'augment.grayscale_prob': 0.2, 'augment.blur_prob': (0.5, 0.5)},
}


def get_config(arg: str | None = None):
  """The full study, or with ``runlocal`` its CPU version."""
  if arg not in (None, '', 'runlocal'):
    raise ValueError(f'zhao_augmentation takes no argument but runlocal, not {arg!r}.')
  grid = [study.variants('method', METHODS),
          study.variants('augmentation', AUGMENTATIONS)]
  figures = study.probe_figures('bars', 'augmentation', x='augmentation', series='method',
                                caption='by augmentation (Zhao et al. Table 1)')
  figures += [study.figure('fewshot', f'fewshot_{method.split()[0].lower()}',
                           evaluator='fewshot', series='augmentation',
                           where={'method': method},
                           title=f'{method}: 5-way few-shot accuracy by augmentation')
              for method in METHODS]
  return study.study_config('configs/moco_v2_resnet50.py',
                            ','.join(a for a in (arg, 'fewshot') if a), [grid],
                            overrides={'total_steps': 300} if arg else {}, figures=figures)
