"""The held-out pretext evaluator (Revisiting Fig. 4) against a direct computation, and
its refusal of tasks whose loss needs training-time state."""

import jax
import numpy as np
import pytest

from conftest import ONE_STAGE
from conftest import tiny_config
from ssl_jax import train
from ssl_jax.data import input_pipeline
from ssl_jax.evaluate import context
from ssl_jax.evaluate import pretext


def test_supervised_pretext_accuracy_equals_the_classifier_on_the_test_split(tmp_path):
  # The supervised task's pretext is classification: with the whole image resized (no
  # random crop, no flip) the evaluator's accuracy over the 1,000 test images must equal
  # argmax(pre_logits @ W + b) computed from the central crops of the test split.
  config = tiny_config('supervised', evals=('pretext',), total_steps=3,
                       **{'task.augment': 'none', 'input.flip': False,
                          'evals.pretext.batch_size': 200})
  workdir = str(tmp_path / 'sup')
  assert train.train(config, workdir)
  encoder, data = context.from_workdir(workdir, config)
  results = pretext.run(config.evals.pretext, encoder, data, str(tmp_path / 'ev'))
  assert set(results) == {'loss', 'accuracy'}

  features_fn = encoder.features_fn(data, ('pre_logits',), None)
  batches, _ = input_pipeline.eval_batches(data.dataset, data.input, data.builder,
                                           data.mesh, 'test', 200)
  head = encoder.head_variables['params']['logits']
  correct = total = 0
  for batch in batches:
    x = np.asarray(jax.device_get(features_fn(encoder.variables, batch['image'])
                                  ['pre_logits']))
    logits = x @ np.asarray(head['kernel']) + np.asarray(head['bias'])
    mask = np.asarray(batch['mask']) > 0
    correct += np.sum((logits.argmax(1) == np.asarray(batch['label']))[mask])
    total += mask.sum()
  assert total == 1000
  np.testing.assert_allclose(results['accuracy'], correct / total, atol=1e-6)


def test_tasks_with_a_second_network_are_refused(tmp_path):
  config = tiny_config('byol', evals=('pretext',), total_steps=0, **ONE_STAGE)
  workdir = str(tmp_path / 'byol')
  assert train.train(config, workdir)
  encoder, data = context.from_workdir(workdir, config)
  with pytest.raises(ValueError, match='second network'):
    pretext.run(config.evals.pretext, encoder, data, str(tmp_path / 'ev'))
