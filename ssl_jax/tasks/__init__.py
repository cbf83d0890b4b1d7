"""Tasks: what a method adds to the one training loop (ssl_jax/train.py, ssl_jax/step.py).

A task is a module ``ssl_jax/tasks/<name>.py``, chosen by ``config.task`` and imported by
name. Its functions receive :class:`Sections`: the task's own section ``config.<name>``
and the ``input``, ``augment`` and ``model`` sections, never the whole run config.
tests/test_task_contract.py checks every module against this contract.

Required:

``preprocess(features, seed, s) -> dict[str, tf.Tensor]``
    Host side, inside tf.data: the example (``features['image']``, ``features['label']``)
    to the arrays that travel to the devices, usually uint8 crops. The training stream
    gives the image encoded (a scalar string), elsewhere it may be decoded (uint8
    [H, W, 3]): ``ssl_jax.data.preprocess.train_crop`` takes either, and decodes only the
    window of a JPEG's one crop; a task that takes several crops decodes once with
    ``preprocess.decode`` (a no-op on a decoded image) and crops that.
    Random ops must be stateless and use ``seed`` (a [2] int tensor unique to the example),
    so that a resumed run sees the same stream.

``views(batch, rng, s) -> dict[str, jax.Array]``
    Device side, inside the jitted step: pixel augmentation and the network inputs.
    ``inputs`` is one array [M, H, W, 3] (M may be a multiple of the batch, e.g. 4
    rotations per image) or a tuple of such arrays, each encoded on its own (one per
    resolution for multi-crop; one per view for BYOL's per-view BN): the encoder then runs
    on each and the head sees the pooled end points (``pre_logits``) concatenated along
    the batch axis in that order.
    Rows are image-major: an image's inputs (its rotations, copies, patches, views) are
    adjacent, so that equal slices of the batch (BN groups, devices) hold whole images.
    Whatever else the loss reads goes beside ``inputs``.

``make_head(s, num_classes) -> flax.linen.Module``
    ``head(end_points, views, train=...)``: the encoder's end points (of ``views['inputs']``)
    to the task's outputs; the views carry what the head needs besides (a jigsaw's
    permutations).

``loss(outputs, views, task_state, s, progress) -> (loss, metrics)``
    Pure: a scalar averaged over the global batch and a dict of scalar metrics.
    ``progress`` (:class:`Progress`) holds the step and the run's total steps, for
    schedules inside the loss (a teacher temperature).

Optional:

``config() -> ConfigDict``
    The defaults of the task's section ``config.<name>`` (absent: the task has no fields).
``config_from(values) -> ConfigDict``
    The section for saved ``values`` (a dict, from config.json) where its fields depend
    on them: multitask holds the sections of the tasks it names.
``validate(task_config, *, batch_size)``
    Raises ValueError naming the field and the fix.
``input_shapes(s) -> dict[str, tuple]``
    The shape of each image-like array of one example after ``preprocess`` (default
    ``{'image': (S, S, 3)}``, S = ``input.image_size``); used to initialise the model.
``MULTICROP = True``
    The task's ``views`` use the small crops of multi-crop (``input.local_crops`` > 0 is
    refused for other tasks).
``bn_groups(s, num_devices) -> int``
    How many equal slices of the batch BatchNorm takes its statistics over, in the online
    and the second network alike (default: ``batch_size / bn_group_images``, or 1, global
    BN, with ``bn_group_images=0``). MoCo's shuffled BN sets it.
``TARGET = 'copy' | 'fresh'``
    A second network (the same encoder, BN groups and head), built by the loop: its
    parameters are ``task_state['target_params']``, at the start a copy of the online
    parameters ('copy': MoCo's key encoder) or initialised from ``seed + 1`` ('fresh':
    BYOL's target). It runs in train mode on its batch's statistics, which it does not keep.
``init_task_state(s, params, rng) -> dict``
    More state between steps (a queue), held in ``TrainState.task_state`` beside
    ``target_params`` and checkpointed. Entries named in the module constant
    ``SHARDED_STATE`` are split over the devices along their first axis.
``targets(task_state, views, rng, s, apply_target) -> dict[str, jax.Array]``
    Computed before the loss, without gradient, and merged into the views:
    ``apply_target(params, inputs)`` runs the second network (MoCo's keys, BYOL's target
    projections).
``update_task_state(task_state, params, views, s, progress) -> (task_state, params)``
    After the optimiser step, inside the jitted step, with the updated parameters: an
    EMA, an enqueue; it may also return changed parameters (SwAV's normalised prototypes).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import ml_collections


class Sections(NamedTuple):
  """What a task reads of the run config."""
  task: ml_collections.ConfigDict  # config.<task>; empty if the task has no fields.
  input: ml_collections.ConfigDict
  augment: ml_collections.ConfigDict
  model: ml_collections.ConfigDict


class Progress(NamedTuple):
  """Where the run is: ``step`` (traced inside the step) of ``total_steps``."""
  step: jax.Array
  total_steps: int
