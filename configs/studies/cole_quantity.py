r"""Cole et al. 2022, Figure 2: accuracy against the number of pretraining images.

    python -m ssl_jax.study --config=configs/studies/cole_quantity.py \
        --workdir=gs://BUCKET/studies/cole_quantity --launch=print

SimCLR (configs/simclr_resnet50.py, SimCLR v2's recipe, as Cole et al. follow) and the
supervised baseline (configs/supervised_v1_resnet50.py) pretrained on nested, static
subsets of 50k, 125k, 250k, 500k and 1M images (dataset.subset_examples: the first n ids
of one seeded permutation, so a smaller subset lies inside a larger one) of ImageNet,
iNat21 and Places365, each evaluated by its linear probe, kNN and L-BFGS on the dataset's
test split. Epochs stay the recipe's, so a smaller subset trains fewer steps.
What the paper found (reference contrastive.md §5): 500k and 1M pretraining images
differ by under 1-2% top-1, 50k and 250k often by over 10%; the gap to supervised stays
large unless well over 100k labels are used. Cole's second axis, 10k or 50k labelled
images for the probe, is the probes' examples_per_class (10 or 50 on ImageNet); it is not
a grid axis here (each value would pretrain again).

    python -m ssl_jax.study --config=configs/studies/cole_quantity.py:runlocal --workdir=/tmp/quantity

runlocal: SimCLR and supervised on nested subsets of 500, 1,000, 2,000 and 4,085 (all)
images of the shipped CIFAR-10 subset, 300 steps each (the same steps for every size),
k=0.25 at 32 px: 8 cells.
"""

from ssl_jax import study

METHODS = {'SimCLR': {}, 'supervised': {'config': 'configs/supervised_v1_resnet50.py'}}
DATASETS = {'ImageNet': {'arg': 'dataset=imagenet2012'},
            'iNat21': {'arg': 'dataset=i_naturalist2021'},
            'Places365': {'arg': 'dataset=places365_small'}}


def get_config(arg: str | None = None):
  """The full study, or with ``runlocal`` its CPU version."""
  if arg not in (None, '', 'runlocal'):
    raise ValueError(f'cole_quantity takes no argument but runlocal, not {arg!r}.')
  if arg == 'runlocal':
    grid = [study.variants('method', METHODS),
            study.axis('dataset.subset_examples', (500, 1000, 2000, 4085), name='images')]
    overrides = {'total_steps': 300}
  else:
    grid = [study.variants('dataset', DATASETS), study.variants('method', METHODS),
            study.axis('dataset.subset_examples',
                       (50_000, 125_000, 250_000, 500_000, 1_000_000), name='images')]
    overrides = {}
  series = 'method' if arg == 'runlocal' else 'dataset,method'
  figures = study.probe_figures('lines', 'quantity', x='images', series=series, log_x=True,
                                caption='against pretraining images (Cole Fig. 2)')
  return study.study_config('configs/simclr_resnet50.py', arg or '', [grid],
                            overrides=overrides, figures=figures)
