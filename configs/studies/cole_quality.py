r"""Cole et al. 2022, Figure 5: corruptions of the pretraining images.

    python -m ssl_jax.study --config=configs/studies/cole_quality.py \
        --workdir=gs://BUCKET/studies/cole_quality --launch=print

SimCLR and the supervised baseline pretrained on ImageNet with each corruption of the
pretraining images (the `corruption` section, ssl_jax/data/corruption.py): none,
downsampling by 2 and by 4 (down, then back up to the original size), JPEG and
salt-and-pepper noise (their strengths are the section's defaults; the paper does not
give them), evaluated on clean test images by the linear probe and L-BFGS.
What the paper found (reference contrastive.md §5): resolution matters most, so
downsampling hurts SimCLR most (2x about -15%, 4x about -34%); JPEG and salt-and-pepper
hurt much less; supervised pretraining reacts differently ("disparate impact").

    python -m ssl_jax.study --config=configs/studies/cole_quality.py:runlocal --workdir=/tmp/quality

runlocal: the same 2 x 5 grid on the shipped CIFAR-10 subset (32 px: a 4x downsample keeps
8 x 8 pixels), k=0.25, 300 steps each: 10 cells, 23 minutes on this project's 2-core CPU
(2026-12-01). No corruption moves SimCLR's probe by more than 1.5 points (24.9% clean),
within the noise of 1,000 test images: at 32 px and 300 steps the paper's effect of
resolution does not show; the table and figures are in docs/studies/cole_quality/ and the
README.
"""

from ssl_jax import study

METHODS = {'SimCLR': {}, 'supervised': {'config': 'configs/supervised_v1_resnet50.py'}}
CORRUPTIONS = {'none': {'corruption.name': 'none'},
               'downsample 2x': {'corruption.name': 'downsample',
                                 'corruption.downsample_factor': 2},
               'downsample 4x': {'corruption.name': 'downsample',
                                 'corruption.downsample_factor': 4},
               'JPEG': {'corruption.name': 'jpeg'},
               'salt and pepper': {'corruption.name': 'salt_pepper'}}


def get_config(arg: str | None = None):
  """The full study, or with ``runlocal`` its CPU version."""
  if arg not in (None, '', 'runlocal'):
    raise ValueError(f'cole_quality takes no argument but runlocal, not {arg!r}.')
  grid = [study.variants('method', METHODS), study.variants('corruption', CORRUPTIONS)]
  figures = study.probe_figures(
      'bars', 'quality', x='corruption', series='method',
      caption='by corruption of the pretraining images (Cole Fig. 5)')
  return study.study_config('configs/simclr_resnet50.py', arg or '', [grid],
                            overrides={'total_steps': 300} if arg else {}, figures=figures)
