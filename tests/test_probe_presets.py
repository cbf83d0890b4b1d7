"""The papers' SGD linear probes (ssl_jax/evaluate/linear.py preset) against their
sources, the contrastive configs' default evaluation, and the MLP probe on large
non-negative features (the after_root case where it scored chance)."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import optim
from ssl_jax import recipe_card
from ssl_jax import step as step_lib
from ssl_jax.evaluate import linear
from ssl_jax.evaluate import mlp

SOURCES = {name: values for name, (_, values) in recipe_card.PROBES.items()}
PEAK_LR = recipe_card.PROBE_PEAK_LR


def _field(section, dotted):
  for key in dotted.split('.'):
    section = section[key]
  return tuple(section) if isinstance(section, (tuple, list)) else section


@pytest.mark.parametrize('name', sorted(SOURCES))
def test_preset_holds_its_sources_values(name):
  section = linear.preset(name)
  linear.validate(section)
  assert section.type == 'linear'
  assert not section.standardize_features  # No paper normalises its probe's features.
  for field, value in SOURCES[name].items():
    assert _field(section, field) == value, (name, field)
  assert optim.peak_lr(section.optimizer, section.batch_size) == pytest.approx(PEAK_LR[name])


@pytest.mark.parametrize('config_name,probe', [
    ('simclr_resnet50', 'simclr'), ('moco_v1_resnet50', 'moco'),
    ('moco_v2_resnet50', 'moco'), ('exemplar_v2_resnet50', 'moco'),
    ('byol_resnet50', 'byol'), ('simsiam_resnet50', 'simsiam')])
def test_contrastive_configs_evaluate_with_their_papers_probe(config_name, probe):
  module = importlib.import_module(f'configs.{config_name}')
  assert module.get_config().evals.linear.to_dict() == linear.preset(probe).to_dict()
  small = module.get_config('runlocal').evals.linear
  full = linear.preset(probe)
  assert (small.batch_size, small.total_epochs) == (256, 20.0)
  for field in ('crop', 'head_init', 'layers', 'optimizer.name', 'optimizer.schedule',
                'optimizer.nesterov', 'optimizer.momentum', 'optimizer.weight_decay'):
    assert _field(small, field) == _field(full, field), field
  # Step decays at the same fractions of training.
  np.testing.assert_allclose(np.array(small.optimizer.decay_epochs) / 20.0,
                             np.array(full.optimizer.decay_epochs) / full.total_epochs)


def test_exemplar_is_evaluated_on_symmetric_inputs():
  # rotation_or_exemplar.sh:31 --preprocessing resize_small,crop,-1_to_1.
  config = importlib.import_module('configs.exemplar_resnet50').get_config()
  assert not config.input.eval_standardize and config.augment.normalize == 'symmetric'


def test_mlp_probe_learns_large_nonnegative_features():
  """Separable max-pooled-ReLU-like features of norm ~400 (a Rotation runlocal
  encoder's after_root): the MLP probe at its config fits them; before the fix (raw
  features at lr 0.1) its loss went to NaN and it scored chance."""
  rng = np.random.default_rng(0)
  classes, dim, n = 4, 512, 1024
  centres = rng.uniform(0.0, 30.0, (classes, dim))
  labels = rng.integers(0, classes, n)
  x = np.maximum(centres[labels] + rng.normal(0.0, 8.0, (n, dim)), 0.0).astype(np.float32)
  assert np.linalg.norm(x, axis=1).mean() > 300
  section = mlp.config()
  probe = linear.Probe(classes, section.hidden, section.dropout, section.head_init,
                       section.standardize_features)
  tx, _, _ = optim.for_run(section.optimizer, batch_size=256, num_examples=n, steps=60,
                           epochs=0.0)
  variables = probe.init(jax.random.key(0), {'f': jnp.asarray(x[:2])}, train=False)
  state = step_lib.TrainState(step=jnp.zeros((), jnp.int32), params=variables['params'],
                              batch_stats=variables.get('batch_stats', {}),
                              opt_state=tx.init(variables['params']), task_state=None)
  train_step = linear.make_train_step(probe, lambda _, images: {'f': images}, {}, tx, 0)
  for step in range(60):
    batch = rng.integers(0, n, 256)
    state, metrics = train_step(state, {'image': jnp.asarray(x[batch]),
                                        'label': jnp.asarray(labels[batch])})
  assert np.isfinite(float(metrics['loss']))
  logits = probe.apply({'params': state.params, **({'batch_stats': state.batch_stats}
                        if state.batch_stats else {})},
                       {'f': jnp.asarray(x)}, train=False)['f']
  assert float(jnp.mean(jnp.argmax(logits, -1) == labels)) > 0.95
