r"""Cole et al. 2022, Figure 6: accuracy at each level of a label hierarchy.

    python -m ssl_jax.study \
        --config=configs/studies/cole_granularity.py:taxonomy=gs://BUCKET/inat21/train.json \
        --workdir=gs://BUCKET/studies/cole_granularity --launch=print

Grid 1 pretrains SimCLR and the supervised baseline on iNat21 (`i_naturalist2021`). Grid 2
evaluates each of those encoders (``encoder_workdir``: no training) by the linear probe,
L-BFGS and kNN at each taxonomic level, the labels mapped from species to the level by
each evaluator's ``label_map`` (kingdom ... genus from iNat21's taxonomy file, the
competition's train.json, given as ``taxonomy=PATH``; species is the dataset's own
labels). Grid 1's cells run first, so the runner's order is the dependency.
What the paper found (reference contrastive.md §5): SimCLR is close to supervised at the
kingdom level and falls behind quickly towards species (a coarse-grained bias of the
contrastive loss; colour jitter's loss of fine cues is judged not the whole story).

    python -m ssl_jax.study --config=configs/studies/cole_granularity.py:runlocal \
        --workdir=/tmp/granularity

runlocal: the shipped CIFAR-10 subset, SimCLR and supervised at k=0.25 for 300 steps, each
probed on CIFAR-10's 10 classes, on 5 groups (label_map 'cifar10_five_groups': air or
water vehicle, road vehicle, bird, amphibian, mammal) and on 2 (animal or vehicle;
'cifar10_vehicle_animal'): 2 + 6 cells, 12 minutes on this project's 2-core CPU
(2026-12-01). The supervised baseline leads SimCLR at every level by 6.0-7.9 points of the
probe (10 classes: 30.9% against 24.9%), a gap that does not grow towards the finer
level at this scale; the table and figures are in docs/studies/cole_granularity/ and the
README.
"""

from ssl_jax import config_lib
from ssl_jax import study
from ssl_jax.data import label_map

# The paper's Fig. 6 is the linear probe; L-BFGS and kNN at each level are a check on it.
MAPPED_EVALUATORS = ('linear', 'lbfgs', 'knn')
RUNLOCAL_LEVELS = {'animal or vehicle': 'cifar10_vehicle_animal',
                   '5 groups': 'cifar10_five_groups', '10 classes': ''}


def _levels(taxonomy: str) -> dict[str, str]:
  """Level -> the probe's label_map ('' : the dataset's own labels, iNat21's species)."""
  levels = {level: f'taxonomy:{level}:{taxonomy}' for level in label_map.TAXONOMY_LEVELS
            if level != 'species'}
  levels['species'] = ''
  return levels


def _methods(arg: str) -> dict[str, dict[str, str]]:
  """The two pretrainings (config file and argument)."""
  return {'SimCLR': {'arg': arg},
          'supervised': {'config': 'configs/supervised_v1_resnet50.py', 'arg': arg}}


def get_config(arg: str | None = None):
  """The full study, or with ``runlocal`` its CPU version."""
  args = config_lib.parse_arg(arg, runlocal=False, taxonomy='')
  runlocal = args.runlocal
  if not runlocal and not args.taxonomy:
    raise ValueError('cole_granularity needs taxonomy=PATH, iNat21\'s metadata file (the '
                     'competition\'s train.json, local or gs://), or runlocal.')
  methods = _methods('' if runlocal else 'dataset=i_naturalist2021')
  levels = RUNLOCAL_LEVELS if runlocal else _levels(args.taxonomy)
  # The evaluation cells: the same config, the pretrained cell's encoder.
  evaluated = {name: dict(overrides, encoder_workdir=f'{{study}}/method-{name}')
               for name, overrides in methods.items()}
  grids = [
      [study.variants('method', methods)],
      [study.variants('method', evaluated),
       study.variants('level', {name: {f'evals.{evaluator}.label_map': label_map
                                       for evaluator in MAPPED_EVALUATORS}
                                for name, label_map in levels.items()})],
  ]
  figures = study.probe_figures('bars', 'granularity', x='level', series='method',
                                caption='by label level (Cole Fig. 6)')
  return study.study_config('configs/simclr_resnet50.py', 'runlocal' if runlocal else '', grids,
                            overrides={'total_steps': 300} if runlocal else {},
                            figures=figures)
