r"""Supervised ResNet50 baseline (Revisiting reference §3: ResNet50 v2, k=4, batch 256,
LR 0.1, 5-epoch warm-up, x0.1 at epochs 30, 60, 80 of 90, weight decay 1e-4, Inception
crop at 224).

    python -m ssl_jax.main --config=configs/supervised_resnet50.py --workdir=gs://BUCKET/sup

Expected: about 76% top-1 on the ImageNet validation set for ResNet50 v2 (Revisiting §5,
unverified); L-BFGS on its pre_logits is a linear probe of a supervised representation.
Arguments: k, variant, dataset, batch, runlocal.
"""

from ssl_jax import config_lib


def get_config(arg: str | None = None):
  """Supervised ResNet50; see the module docstring for the arguments."""
  args = config_lib.parse_arg(arg, k=4.0, variant='v2', dataset='imagenet2012', batch=256,
                              runlocal=False)
  config = config_lib.base_config()
  config.task = 'supervised'
  config.model.k = args.k
  config.model.variant = args.variant
  config.dataset.name = args.dataset
  config.batch_size = args.batch
  config.total_epochs = 90.0
  config.optimizer.decay_epochs = (30.0, 60.0, 80.0)
  if args.dataset == 'imagenet2012':
    config.dataset.test_split = 'validation'
    config.model.dtype = 'bfloat16'
    config.lbfgs.num_train_examples = 100_000
  if args.runlocal:
    config_lib.apply_runlocal(config)
    config.model.k = 0.5 if args.k == 4.0 else args.k
  return config_lib.lock(config)
