r"""Revisiting §4: method x architecture x width, and the representation size (§4.6).

    python -m ssl_jax.study --config=configs/studies/revisiting_width.py \
        --workdir=gs://BUCKET/studies/revisiting_width --launch=print

Grid 1: the four pretext tasks (Rotation, Exemplar, Jigsaw, Relative Patch Location) on
ResNet50 v1, v2, v2(-), RevNet50 and VGG19-BN at k = 4, 8, 12, 16 (the paper stops the
patch tasks at k = 8 and Exemplar at k = 12 for memory; the grid asks for all and lets a
cell that does not fit fail on its own). Grid 2: Rotation on RevNet50 with an extra linear
layer setting the representation size to 512 ... 8192 (§4.6, Figure 6). Evaluation:
L-BFGS on every end point (Table 1, Figure 5's per-layer curves) and the SGD probe.
What the paper found (reference revisiting.md §5): wider is always better, more so than
for supervised learning; neither the ranking of architectures nor of methods holds across
the other axis (RevNet50 excels with Rotation, VGG19-BN is worst throughout); a larger
representation helps, most of all a thin network (31% -> 43%), and width and
representation size together help most; the best layer is often below pre_logits for
the patch tasks and VGG (§4.5).

    python -m ssl_jax.study --config=configs/studies/revisiting_width.py:runlocal \
        --workdir=/tmp/width

runlocal: Rotation on ResNet50 v2 at k = 0.125 and 0.25 with its own representation
(representation_size 0: 64-d and 128-d), and at k = 0.125 with a 256-d one, 300 steps each
on the shipped CIFAR-10 subset at 32 px, L-BFGS on every end point (pooled to at most
2,048 features, l2 from 3 values): 3 cells, what a 2-core CPU shared with other runs gets
through in under an hour. Results: docs/studies/revisiting_width/.
"""

from ssl_jax import study

METHODS = {name: {'config': f'configs/{name}_resnet50.py'}
           for name in ('rotation', 'exemplar', 'jigsaw', 'relative_patch')}
ARCHITECTURES = {'ResNet50 v1': {'arg': 'variant=v1'}, 'ResNet50 v2': {'arg': 'variant=v2'},
                 'ResNet50 v2(-)': {'arg': 'variant=v2,last_relu=False'},
                 'RevNet50': {'arg': 'model=revnet'}, 'VGG19-BN': {'arg': 'model=vgg'}}
ALL_LAYERS = ('after_root', 'block1', 'block2', 'block3', 'block4', 'pre_logits')


def get_config(arg: str | None = None):
  """The full study, or with ``runlocal`` its CPU version."""
  runlocal = arg == 'runlocal'
  if arg not in (None, '', 'runlocal'):
    raise ValueError(f'revisiting_width takes no argument but runlocal, not {arg!r}.')
  overrides = {'evals.lbfgs.layers': ALL_LAYERS}
  method, revnet = {'rotation': METHODS['rotation']}, {'RevNet50': ARCHITECTURES['RevNet50']}
  grids = [
      [study.variants('method', METHODS), study.variants('architecture', ARCHITECTURES),
       study.axis('model.k', (4, 8, 12, 16))],
      [study.variants('method', method), study.variants('architecture', revnet),
       study.axis('model.k', (4, 8, 16)),
       study.axis('model.representation_size', (512, 1024, 2048, 4096, 8192))],
  ]
  if runlocal:
    resnet = {'ResNet50 v2': ARCHITECTURES['ResNet50 v2']}
    grids = [
        [study.variants('method', method), study.variants('architecture', resnet),
         study.axis('model.k', (0.125, 0.25)), study.axis('model.representation_size', (0,))],
        [study.variants('method', method), study.variants('architecture', resnet),
         study.axis('model.k', (0.125,)), study.axis('model.representation_size', (256,))],
    ]
    overrides.update({'total_steps': 300, 'checkpoint_every': 100,
                      # The SGD probe's 20 runlocal epochs on six end points, and L-BFGS
                      # on 9,000 features with 6 values of l2, would take longer than the
                      # pretraining on this CPU.
                      'evals.linear.total_epochs': 2.0, 'evals.linear.layers': ('pre_logits',),
                      'evals.lbfgs.max_features': 2048,
                      'evals.lbfgs.l2_grid': (1e-4, 1e-3, 1e-2)})
  metric = 'lbfgs/pre_logits/top1'
  figures = [
      study.figure('lines', 'width', metric=metric, x='k', series='method,architecture',
                   log_x=True, where={'representation_size': 0 if runlocal else ''},
                   title='Width (Revisiting Table 1, Figure 3)'),
      # In runlocal, representation_size 0 is the network's own (512k: 64-d at k=0.125).
      study.figure('lines', 'representation_size', metric=metric, x='representation_size',
                   series='k', log_x=not runlocal,
                   title='Representation size, Rotation (Figure 6)'),
      study.figure('layers', 'layers', evaluator='lbfgs',
                   series='method,architecture,k,representation_size',
                   title='L-BFGS top-1 per end point (Figure 5)'),
  ]
  return study.study_config('configs/rotation_resnet50.py', 'runlocal' if runlocal else '',
                            grids, overrides=overrides, figures=figures)
