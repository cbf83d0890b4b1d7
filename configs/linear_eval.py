r"""Evaluates the frozen encoder of an existing workdir, without training.

    python -m ssl_jax.main --workdir=/tmp/rot_linear \
        --config=configs/linear_eval.py:workdir=/tmp/rot,protocol=linear

Reads WORKDIR/config.json of the trained run (its model, dataset and preprocessing) and
writes results.json to --workdir. Arguments: workdir (required), protocol (lbfgs, linear, fewshot,
mlp, knn, or a paper's SGD linear probe by name: revisiting, moco, simclr, byol or
simsiam, each an instance ``linear_<name>`` (ssl_jax/evaluate/linear.py preset(); all
but revisiting on pre_logits); several joined by '+', e.g. protocol=moco+knn), layers
(end points joined by '+'; default: the protocol's), dataset (a TFDS name; default: the
run's), epochs (SGD protocols), runlocal (true, false or auto: the SGD probes at
runlocal's scale, 20 epochs of batch 256, in the preset's form; auto, the default, is
true for a run on the shipped cifar10_5k). linear and mlp train on random crops of the
image resized to the scale of the run's test crop; the contrastive presets on random
resized crops. Every other protocol becomes an evaluator instance of its name.

Cole et al.'s axes: label_map (a map to coarser labels for every lbfgs, linear, mlp and
knn instance, ssl_jax/data/label_map.py, e.g. label_map=cifar10_vehicle_animal or
feature:coarse_label) and concat (the workdir of a second trained encoder whose features
are concatenated after the first's, §4.2).

Expected, Revisiting Table 2 (SGD linear, ~500 epochs at batch 2048): Rotation RevNet50
k=16 55.4, Exemplar ResNet50 v1 k=12 46.0, Rel. Patch Loc. ResNet50 v1 k=8 51.4, Jigsaw
ResNet50 v1 k=8 44.6 top-1 on ImageNet validation; with the 70-epoch default schedule a
few points less (reference §4). Add `--config.evals.linear.total_epochs=520
--config.evals.linear.optimizer.decay_epochs='(480,500)'
--config.evals.linear.batch_size=2048` for the table.
"""

from configs import common
from ssl_jax import config_lib
from ssl_jax import encoder
from ssl_jax.evaluate import linear


def get_config(arg: str | None = None):
  """The trained run's config with the evaluator instances of ``protocol``; see the
  docstring."""
  args = config_lib.parse_arg(arg, workdir='', protocol='linear', layers='', dataset='',
                              epochs=0.0, runlocal='auto', label_map='', concat='')
  if not args.workdir:
    raise ValueError('configs/linear_eval.py needs workdir=PATH, the workdir of a trained '
                     'run (it reads PATH/config.json).')
  if args.runlocal not in ('auto', 'true', 'false'):
    raise ValueError(f'runlocal={args.runlocal}: use true, false or auto.')
  config = encoder.read_config(args.workdir)
  config.unlock()
  runlocal = (config.dataset.name == 'cifar10_5k' if args.runlocal == 'auto'
              else args.runlocal == 'true')
  config.encoder_workdir = args.workdir
  config.concat_encoder_workdir = args.concat
  config.evals = config_lib.ConfigDict()
  for protocol in args.protocol.split('+'):
    if protocol in linear.PRESETS:
      name, section = f'linear_{protocol}', linear.preset(protocol)
    else:
      name, section = protocol, config_lib.evaluator(protocol)
    if args.layers and 'layers' in section:
      section.layers = tuple(args.layers.split('+'))
    if args.label_map and 'label_map' in section:
      section.label_map = args.label_map
    if args.layers and 'layer' in section:
      section.layer = args.layers.split('+')[-1]
    if section.type in ('linear', 'mlp'):
      common.probe_crops(section, config.input, runlocal)
      if runlocal:
        common.runlocal_probe(section)
      if args.epochs:
        section.total_epochs = args.epochs
    config.evals[name] = section
  if args.dataset:
    config.dataset.name = args.dataset
    # The run's test split may not exist in another dataset (iNat21's is 'val').
    config.dataset.test_split = common.TEST_SPLITS.get(args.dataset.split(':')[0], 'test')
  return config_lib.lock(config)
