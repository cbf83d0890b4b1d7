"""What every evaluator receives: the frozen encoder and the data it is measured on.

The evaluator contract (documented in ssl_jax/evaluate/__init__.py) is
``run(section, encoder: Encoder, data: DataSpec, workdir) -> dict | None``; this module
builds both arguments, from a trained workdir or from a live pretraining state, and runs
named instances (:func:`run_evaluator`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax import config_lib
from ssl_jax import encoder as encoder_lib


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """The dataset and its evaluation preprocessing, as the pretraining run saw them."""
  dataset: ml_collections.ConfigDict  # The dataset section.
  input: ml_collections.ConfigDict  # The input section (crops, patch grid).
  normalize: str  # augment.normalize: the network input of pretraining.
  eval_batch_size: int
  seed: int
  builder: Any  # tfds.core.DatasetBuilder
  mesh: jax.sharding.Mesh
  num_classes: int
  num_train_examples: int
  task: str = ''  # The pretext task, and what it reads of the run config (its Sections):
  sections: Any = None  # the held-out pretext evaluator (evaluate/pretext.py) needs them.


def data_spec(config: ml_collections.ConfigDict, builder: Any,
              mesh: jax.sharding.Mesh) -> DataSpec:
  """The :class:`DataSpec` of a run config."""
  from ssl_jax import step as step_lib
  from ssl_jax.data import input_pipeline  # TensorFlow only where the host pipeline runs.
  info = input_pipeline.dataset_info(config.dataset, builder)
  return DataSpec(dataset=config.dataset, input=config.input,
                  normalize=config.augment.normalize, eval_batch_size=config.eval_batch_size,
                  seed=config.seed, builder=builder, mesh=mesh,
                  num_classes=info.num_classes, num_train_examples=info.num_train_examples,
                  task=config.task, sections=step_lib.task_sections(config))


class Encoder:
  """A frozen encoder: the module, its variables, and its jitted feature functions
  (compiled once per set of layers and reused, also across :meth:`with_variables`).
  ``head`` is the task's head module and ``head_variables`` its trained variables, where
  the run has them (SimCLR v2 fine-tunes from the first layer of the projection head)."""

  def __init__(self, module: nn.Module, variables: dict, cache: dict | None = None,
               head: nn.Module | None = None, head_variables: dict | None = None):
    self.module = module
    self.variables = variables
    self.head = head
    self.head_variables = head_variables
    self._cache = {} if cache is None else cache

  def with_variables(self, variables: dict, head_variables: dict | None = None) -> Encoder:
    """The same encoder and compiled functions with other variables (a later step)."""
    return Encoder(self.module, variables, self._cache, self.head, head_variables)

  def features_fn(self, data: DataSpec, layers: Sequence[str] | None,
                  max_features: int | None) -> Callable:
    """The jitted ``(variables, uint8 images) -> {layer: features}`` with the evaluation
    preprocessing of ``data`` (see :func:`ssl_jax.encoder.representation`)."""
    inp = data.input
    key = (tuple(layers or ()), max_features, inp.eval_patch_grid, inp.eval_standardize,
           data.normalize)
    if key not in self._cache:
      self._cache[key] = jax.jit(encoder_lib.representation(
          inp, data.normalize, self.module, layers, max_features))
    return self._cache[key]


class ConcatEncoder(Encoder):
  """Two frozen encoders side by side (Cole et al. 2022, §4.2 and Table 3): at every layer
  the features are the first encoder's, then the second's, concatenated (each max-pooled
  to ``max_features`` on its own). Each encoder sees the run's evaluation crop in its own
  network input range (``second_normalize``: the second run's augment.normalize). Only
  the evaluators on features (lbfgs, linear, mlp, knn) can use it; fine-tuning and the
  pretext evaluator need one network."""

  def __init__(self, first: Encoder, second: Encoder, second_normalize: str):
    # No Encoder.__init__: there is no one module.
    self.variables = (first.variables, second.variables)
    self.head, self.head_variables = None, None
    self.first, self.second, self.second_normalize = first, second, second_normalize
    self._cache = {}

  @property
  def module(self) -> nn.Module:
    """Read only by the evaluators that train the network itself: refused."""
    raise ValueError('concat_encoder_workdir concatenates features for the lbfgs, linear, '
                     'mlp and knn evaluators; fine-tuning and the pretext evaluator need '
                     'one encoder: drop them or concat_encoder_workdir.')

  def features_fn(self, data: DataSpec, layers: Sequence[str] | None,
                  max_features: int | None) -> Callable:
    """The jitted ``((first variables, second variables), uint8 images) -> {layer:
    [first features, second features]}``."""
    key = (tuple(layers or ()), max_features, data.input.to_json(), data.normalize)
    if key in self._cache:
      return self._cache[key]
    first = self.first.features_fn(data, layers, max_features)
    second = self.second.features_fn(
        dataclasses.replace(data, normalize=self.second_normalize), layers, max_features)

    def both(variables: tuple[dict, dict], images: jax.Array) -> dict:
      a, b = first(variables[0], images), second(variables[1], images)
      return {name: jnp.concatenate([a[name], b[name]], axis=-1) for name in a}

    self._cache[key] = jax.jit(both)
    return self._cache[key]


def with_concatenated(encoder: Encoder, workdir: str, mesh: jax.sharding.Mesh) -> ConcatEncoder:
  """``encoder`` beside the encoder of the newest checkpoint in ``workdir``."""
  from ssl_jax import step as step_lib
  restored = encoder_lib.restore(workdir)
  variables = jax.device_put(restored.variables, step_lib.replicated(mesh))
  return ConcatEncoder(encoder, Encoder(restored.encoder, variables),
                       restored.config.augment.normalize)


def from_workdir(workdir: str, config: ml_collections.ConfigDict | None = None,
                 devices: Sequence[jax.Device] | None = None) -> tuple[Encoder, DataSpec]:
  """The encoder of the newest checkpoint in ``workdir``, and the data of ``config``
  (default: the run's own config.json), on a mesh over ``devices`` (default: all)."""
  from ssl_jax import step as step_lib
  from ssl_jax.data import input_pipeline  # TensorFlow only where the host pipeline runs.
  restored = encoder_lib.restore(workdir)
  config = config or restored.config
  mesh = step_lib.make_mesh(devices)
  variables, head_variables = jax.device_put(
      (restored.variables, restored.head_variables), step_lib.replicated(mesh))
  data = data_spec(config, input_pipeline.get_builder(config.dataset), mesh)
  # The trained head fits its own dataset's classes; on another dataset it is left out.
  same_data = config.dataset.name == restored.config.dataset.name
  head = encoder_lib.build_head(restored.config, data.num_classes) if same_data else None
  return Encoder(restored.encoder, variables, head=head,
                 head_variables=head_variables if same_data else None), data


def run_evaluator(name: str, section: ml_collections.ConfigDict, encoder: Encoder,
                  data: DataSpec, workdir: str) -> dict[str, float] | None:
  """Runs the evaluator instance ``name`` (its module is ``section.type``) and prefixes its
  results with the name: ``{name}/{layer}/{metric}``. None if SIGTERM stopped it."""
  module = config_lib.import_component('evaluate', section.type)
  results = module.run(section, encoder, data, workdir)
  if results is None:
    return None
  results = {f'{name}/{key}': value for key, value in results.items()}
  logging.info('%s: %s', name, format_results(results))
  return results


def format_results(results: dict[str, float]) -> str:
  """'key value, ...' for a log line."""
  return ', '.join(f'{key} {value:.4f}' for key, value in sorted(results.items()))
