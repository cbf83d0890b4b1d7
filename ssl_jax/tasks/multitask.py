"""Multi-task pretext: several tasks' losses, weighted and summed, on one trunk (the goal
Revisiting names in its conclusion: combining the self-supervised tasks).

``multitask.tasks`` names task modules of ssl_jax/tasks/ (default Rotation and Exemplar)
and ``multitask.weights`` their weights; the loss is sum_i weights[i] * loss_i. Each task
keeps everything of its own: its host preprocessing (with its own seed, split from the
example's), its device views (with its own key, ``fold_in(rng, i)``), its head and its
loss, on the one shared encoder. Its section is nested in this one, ``multitask.<task>``
(``--config.multitask.exemplar.copies=4``), because a task reads only its own section
(:class:`ssl_jax.tasks.Sections`); ``input``, ``augment`` and ``model`` are shared.

Each task's inputs go through the encoder in a pass of their own, so BatchNorm takes its
statistics over that task's inputs, as when the task trains alone: with the same
parameters, batch and keys, task i's loss inside the sum is the loss it computes alone
(tested). The heads see ``pre_logits`` (every task's head reads only that end point),
the per-task rows of the pooled end points. Metrics are prefixed with the task's name
(``rotation/rotation_accuracy``, ``exemplar/loss``).

Tasks with a second network or state between steps (MoCo, BYOL: ``TARGET``,
``init_task_state``) or their own BN groups (``bn_groups``) are refused: their state is
defined for one task; so are views of several input arrays (multi-crop: ``input.local_crops``
is refused for this task anyway).

A config file builds the section with :func:`section` for other combinations
(configs/multitask_resnet50.py takes ``tasks=rotation+jigsaw,weights=1+0.5``).
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Sequence

import flax.linen as nn
import jax
import ml_collections

from ssl_jax import config_lib
from ssl_jax import tasks

if TYPE_CHECKING:
  import tensorflow as tf

# What a combined task cannot share (module attributes of the task contract).
UNSUPPORTED = ('TARGET', 'init_task_state', 'targets', 'update_task_state', 'bn_groups')


def section(names: Sequence[str], weights: Sequence[float]) -> ml_collections.ConfigDict:
  """The ``multitask`` section of ``names`` and ``weights``, holding each named task's own
  section (its ``config()`` defaults) under its name."""
  c = ml_collections.ConfigDict()
  c.tasks = tuple(names)
  c.weights = tuple(float(w) for w in weights)
  for name in names:
    module = config_lib.import_component('tasks', name)
    if hasattr(module, 'config'):
      c[name] = module.config()
  return c


def config() -> ml_collections.ConfigDict:
  """Rotation and Exemplar, weighted equally."""
  return section(('rotation', 'exemplar'), (1.0, 1.0))


def config_from(values: dict) -> ml_collections.ConfigDict:
  """The section of saved ``values`` (config.json): the defaults of the tasks they name,
  which config_lib.from_json then overwrites with the saved fields."""
  return section(values['tasks'], values['weights'])


def subtask(name: str) -> ModuleType:
  """The module of the combined task ``name``; ValueError for a name that is no task."""
  if name == 'multitask':
    raise ValueError("multitask.tasks cannot name 'multitask' itself.")
  module = config_lib.import_component('tasks', name)
  if not hasattr(module, 'loss'):
    raise ValueError(f'multitask.tasks: {name!r} is a helper module, not a task (it has no '
                     'loss); name task modules such as rotation, exemplar, jigsaw.')
  return module


def sub_sections(s: tasks.Sections, name: str) -> tasks.Sections:
  """What task ``name`` reads: its section ``multitask.<name>`` (empty if it has no
  fields) and the shared input, augment and model sections."""
  own = s.task[name] if name in s.task else ml_collections.ConfigDict()
  return tasks.Sections(task=own, input=s.input, augment=s.augment, model=s.model)


def validate(task_config: ml_collections.ConfigDict, *, batch_size: int) -> None:
  """Raises ValueError naming the field and the fix: unknown or unsupported tasks, one
  weight per task, each task's section present (and validated by its task)."""
  names, weights = tuple(task_config.tasks), tuple(task_config.weights)
  if not names or len(set(names)) != len(names):
    raise ValueError(f'multitask.tasks={names}: name one or more distinct tasks.')
  if len(weights) != len(names):
    raise ValueError(f'multitask.weights={weights} has {len(weights)} weights for '
                     f'{len(names)} tasks {names}: give one weight per task.')
  if any(w < 0 for w in weights) or not sum(weights) > 0:
    raise ValueError(f'multitask.weights={weights}: weights must be >= 0, not all 0.')
  for name in names:
    module = subtask(name)
    shared = [a for a in UNSUPPORTED if hasattr(module, a)]
    if shared:
      raise ValueError(f'multitask: task {name!r} has {", ".join(shared)}: a second network, '
                       'state or BN groups defined for one task alone; combine tasks without '
                       'them (rotation, exemplar, jigsaw, relative_patch, supervised, simclr, '
                       'simsiam).')
    if hasattr(module, 'config') and name not in task_config:
      raise ValueError(f'multitask.tasks names {name!r} but the section multitask.{name} is '
                       'missing: build the section in the config file with '
                       f'multitask.section({names}, weights) (configs/multitask_resnet50.py:'
                       f'tasks={"+".join(names)}).')
    if hasattr(module, 'validate'):
      module.validate(task_config[name], batch_size=batch_size)
  stray = set(task_config.keys()) - {'tasks', 'weights'} - set(names)
  if stray:
    raise ValueError(f'multitask has sections {sorted(stray)} of tasks not in multitask.tasks='
                     f'{names}: build the section with multitask.section(tasks, weights).')


def _own_shapes(module: ModuleType, s: tasks.Sections) -> dict[str, tuple]:
  # The default of the contract (ssl_jax/step.py:input_shapes): one crop as ``image``.
  if hasattr(module, 'input_shapes'):
    return dict(module.input_shapes(s))
  return {'image': (s.input.image_size, s.input.image_size, 3)}


def input_shapes(s: tasks.Sections) -> dict[str, tuple]:
  """Each task's image-like arrays, keyed ``<task>/<key>`` (``rotation/image``)."""
  return {f'{name}/{key}': shape for name in s.task.tasks
          for key, shape in _own_shapes(subtask(name), sub_sections(s, name)).items()}


def preprocess(features: dict, seed: tf.Tensor, s: tasks.Sections) -> dict:
  """Each task's host preprocessing of the example, task i with the i-th seed split from
  ``seed``; its arrays keyed ``<task>/<key>``."""
  import tensorflow as tf  # Where the host pipeline runs (see ssl_jax/tasks/rotation.py).
  names = tuple(s.task.tasks)
  seeds = tf.unstack(tf.random.experimental.stateless_split(seed, len(names)))
  out = {}
  for name, own_seed in zip(names, seeds):
    made = subtask(name).preprocess(features, own_seed, sub_sections(s, name))
    out.update({f'{name}/{key}': value for key, value in made.items()})
  return out


def task_batch(batch: dict, name: str) -> dict:
  """Task ``name``'s part of the batch, its keys unprefixed; the batch's ``label`` too
  where the task's preprocessing did not keep its own."""
  prefix = f'{name}/'
  own = {key[len(prefix):]: value for key, value in batch.items() if key.startswith(prefix)}
  if 'label' in batch:
    own.setdefault('label', batch['label'])
  return own


def views(batch: dict, rng: jax.Array, s: tasks.Sections) -> dict:
  """Each task's views of its part of the batch, task i with ``fold_in(rng, i)``:
  ``inputs`` is the tuple of the tasks' inputs (each encoded in a pass of its own) and
  ``views[<task>]`` the rest of task's views."""
  out, inputs = {}, []
  for i, name in enumerate(s.task.tasks):
    own = dict(subtask(name).views(task_batch(batch, name), jax.random.fold_in(rng, i),
                                   sub_sections(s, name)))
    x = own.pop('inputs')
    if isinstance(x, (tuple, list)):
      raise ValueError(f'multitask: the views of task {name!r} give several input arrays '
                       '(multi-crop, per-view BN); a combined task gives one.')
    inputs.append(x)
    out[name] = own
  out['inputs'] = tuple(inputs)
  return out


def own_views(views: dict, names: Sequence[str], name: str) -> dict:
  """Task ``name``'s views as it made them, its ``inputs`` included."""
  return dict(views[name], inputs=views['inputs'][list(names).index(name)])


class Head(nn.Module):
  """Each task's head on its rows of the pooled end points; outputs ``{task: output}``."""
  heads: dict  # {task: its head module}; parameters under ``heads_<task>``.
  names: tuple[str, ...]

  @nn.compact
  def __call__(self, end_points: dict, views: dict, train: bool) -> dict:
    outputs, start = {}, 0
    for name, x in zip(self.names, views['inputs']):
      rows = slice(start, start + x.shape[0])
      start += x.shape[0]
      own_points = {key: value[rows] for key, value in end_points.items()}
      outputs[name] = self.heads[name](own_points, own_views(views, self.names, name),
                                       train=train)
    return outputs


def make_head(s: tasks.Sections, num_classes: int) -> nn.Module:
  """Every task's own head."""
  names = tuple(s.task.tasks)
  return Head({name: subtask(name).make_head(sub_sections(s, name), num_classes)
               for name in names}, names)


def loss(outputs: dict, views: dict, task_state, s: tasks.Sections,
         progress: tasks.Progress):
  """sum_i weights[i] * loss_i, each task's loss on its own outputs and views; metrics
  ``<task>/loss`` and ``<task>/<metric>``."""
  del task_state  # Tasks with state are refused (validate).
  names = tuple(s.task.tasks)
  total, metrics = 0.0, {}
  for name, weight in zip(names, s.task.weights):
    value, own = subtask(name).loss(outputs[name], own_views(views, names, name), None,
                                    sub_sections(s, name), progress)
    total = total + weight * value
    metrics[f'{name}/loss'] = value
    metrics.update({f'{name}/{key}': v for key, v in own.items()})
  return total, metrics
