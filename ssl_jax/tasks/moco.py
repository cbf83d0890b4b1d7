"""MoCo v1 / v2 (He et al. 2020; Chen et al. 2020) and Exemplar-v1 / v2 (Zhao et al. 2021):
InfoNCE between a query and the key of the other view of its image, against a queue of
keys from past batches made by a momentum (EMA) key encoder (reference contrastive.md §2).

Step order as the official code, expressed in the one training loop:
  1. the key encoder's parameters are the EMA of the query encoder's, m = 0.999. The code
     updates them at the start of a step with the current query parameters; we update
     them at the end of the previous step with the parameters the optimiser just made,
     which are the same numbers (and a copy at step 0 is the code's first update).
  2. keys: the second views through the key encoder (the loop's second network, ``TARGET =
     'copy'``) in train mode, with shuffled BN (below), without gradient (``targets``).
  3. logits [q.k+, q.queue] / T in float32, label 0; cross-entropy over the global batch.
  4. after the optimiser step, the batch's keys replace the oldest B keys of the queue
     (``update_task_state``), so a key is never its own negative.

BatchNorm leak (MoCo §3.3): BN statistics are taken over ``moco.bn_groups`` slices of the
batch in both encoders (the reference's 8 GPUs of 32 images), and the keys are permuted
across the slices before the key encoder and put back after, so a query and its positive
key never share BN statistics. Under jit this is a gather on the global batch; the same
numbers on any number of devices.

Exemplar (Zhao et al. 2021, reference §4) with ``moco.filter_negatives_by_label``: the
queue also stores each key's label, and keys of the query's class are dropped from the
denominator: L = -log exp(q.k+/T) / (exp(q.k+/T) + sum over queue keys of another class
of exp(q.k/T)). We implement this form (label-filtered negatives, no extra positives)
because the paper describes Exemplar as instance discrimination "without explicit
constraints among the instances within the same category" that uses labels only to
remove same-class negatives; adding them as positives would be SupCon. The exact equation
is marked unverified in the reference. With all labels distinct it equals MoCo.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from ssl_jax import losses
from ssl_jax import tasks
from ssl_jax.tasks import contrastive

preprocess = contrastive.preprocess
input_shapes = contrastive.input_shapes
TARGET = 'copy'  # The key encoder starts as a copy of the query encoder.
SHARDED_STATE = ('queue', 'queue_labels')  # Split over the devices along the queue axis.
NO_LABEL = -1  # The initial random keys belong to no class.


def config() -> ml_collections.ConfigDict:
  """The ``moco`` section (reference §2; Exemplar, §4)."""
  c = ml_collections.ConfigDict()
  c.temperature = 0.07  # v1 0.07; v2 0.2.
  c.momentum = 0.999
  c.queue_size = 65_536  # Must be a multiple of batch_size.
  c.mlp = False  # v2: Dense(2048) -> ReLU -> Dense(dim).
  # 0: the width of pre_logits (moco/builder.py: dim_mlp = fc.weight.shape[1], 2048).
  c.proj_hidden = 0
  c.proj_dim = 128
  # BN in both encoders takes its statistics over bn_groups equal slices of the batch
  # (the reference's 8 GPUs of 32 images; 0: one group per device). The BatchNorm leak
  # remedy (shuffling BN, MoCo §3.3) under jit: the keys are permuted across the groups
  # before the key encoder and put back after, so a query and its key never share BN
  # statistics.
  c.bn_groups = 8
  c.shuffle_keys = True
  # Exemplar (Zhao et al.): drop queue keys of the query's class from the denominator.
  c.filter_negatives_by_label = False
  return c


def validate(task_config: ml_collections.ConfigDict, *, batch_size: int) -> None:
  """Raises ValueError naming the field and the fix."""
  if task_config.queue_size % batch_size:
    raise ValueError(f'moco.queue_size={task_config.queue_size} must be a multiple of '
                     f'batch_size={batch_size} (MoCo enqueues whole batches).')


def bn_groups(s: tasks.Sections, num_devices: int) -> int:
  """BN groups of both encoders: ``moco.bn_groups``, or one per device if 0."""
  return s.task.bn_groups or num_devices


def views(batch: dict, rng: jax.Array, s: tasks.Sections) -> dict:
  """The first views are the queries (``inputs``), the second the keys."""
  augmented = contrastive.augmented_views(batch, rng, s)
  return {'inputs': augmented[:, 0], 'key_inputs': augmented[:, 1],
          'labels': batch['label'].astype(jnp.int32)}


def make_head(s: tasks.Sections, num_classes: int) -> nn.Module:
  """v1: a linear layer to ``proj_dim`` (the fc replaced); v2 (``moco.mlp``):
  Dense(proj_hidden) -> ReLU -> Dense(proj_dim); biases, no BN (reference §2.1)."""
  del num_classes
  c = s.task
  return contrastive.ProjectionHead(contrastive.MLP(
      hidden=(c.proj_hidden,) if c.mlp else (), output=c.proj_dim, hidden_bn=False,
      hidden_bias=True, output_bn=False, output_bias=True))


def init_task_state(s: tasks.Sections, params, rng: jax.Array) -> dict:
  """A queue of random unit keys (the key encoder is the loop's ``target_params``)."""
  del params
  queue = jax.random.normal(rng, (s.task.queue_size, s.task.proj_dim), jnp.float32)
  return {'queue': losses.l2_normalize(queue),
          'queue_labels': jnp.full((s.task.queue_size,), NO_LABEL, jnp.int32),
          'queue_ptr': jnp.zeros((), jnp.int32)}


def shuffled_keys(apply_key_encoder: Callable[[jax.Array], jax.Array], inputs: jax.Array,
                  rng: jax.Array, shuffle: bool) -> jax.Array:
  """Key projections of ``inputs``, the batch permuted before the key encoder and put back
  after (shuffling BN), l2-normalised."""
  order = jax.random.permutation(rng, inputs.shape[0]) if shuffle else jnp.arange(
      inputs.shape[0])
  keys = apply_key_encoder(inputs[order])
  return losses.l2_normalize(keys[jnp.argsort(order)])


def targets(task_state: dict, views: dict, rng: jax.Array, s: tasks.Sections,
            apply_target: Callable) -> dict:
  """The keys of the second views, from the key encoder in train mode."""
  return {'keys': shuffled_keys(
      lambda inputs: apply_target(task_state['target_params'], inputs),
      views['key_inputs'], rng, s.task.shuffle_keys)}


def info_nce(queries: jax.Array, keys: jax.Array, queue: jax.Array, temperature: float,
             labels: jax.Array | None = None, queue_labels: jax.Array | None = None
             ) -> tuple[jax.Array, jax.Array]:
  """(mean loss, accuracy): -log softmax of the positive among [q.k+, q.queue] / T, in
  float32. With labels, queue keys of the query's class are removed (Exemplar)."""
  q = losses.l2_normalize(queries)
  positive = jnp.sum(q * keys, axis=-1, keepdims=True)
  negatives = q @ queue.T.astype(jnp.float32)
  if labels is not None:
    negatives = jnp.where(labels[:, None] == queue_labels[None, :], -jnp.inf, negatives)
  logits = jnp.concatenate([positive, negatives], axis=1) / temperature
  zeros = jnp.zeros((q.shape[0],), jnp.int32)
  value = optax.softmax_cross_entropy_with_integer_labels(logits, zeros).mean()
  return value, jnp.mean(jnp.argmax(logits, axis=1) == 0)


def loss(outputs: jax.Array, views: dict, task_state: dict, s: tasks.Sections,
         progress: tasks.Progress):
  """InfoNCE at ``moco.temperature`` against the queue (label-filtered for Exemplar)."""
  del progress
  filtered = s.task.filter_negatives_by_label
  value, accuracy = info_nce(
      outputs, views['keys'], task_state['queue'], s.task.temperature,
      views['labels'] if filtered else None,
      task_state['queue_labels'] if filtered else None)
  return value, {'contrastive_accuracy': accuracy}


def enqueue(task_state: dict, keys: jax.Array, labels: jax.Array) -> dict:
  """The queue with the B oldest keys (and labels) replaced by ``keys``: FIFO, the
  pointer advancing by B modulo the queue size (which B divides)."""
  ptr = task_state['queue_ptr']
  queue = jax.lax.dynamic_update_slice(task_state['queue'],
                                       keys.astype(task_state['queue'].dtype), (ptr, 0))
  queue_labels = jax.lax.dynamic_update_slice(task_state['queue_labels'],
                                              labels.astype(jnp.int32), (ptr,))
  return dict(task_state, queue=queue, queue_labels=queue_labels,
              queue_ptr=(ptr + keys.shape[0]) % task_state['queue'].shape[0])


def update_task_state(task_state: dict, params, views: dict, s: tasks.Sections,
                      progress: tasks.Progress) -> tuple[dict, dict]:
  """Enqueue this step's keys; key parameters <- EMA with the updated query parameters."""
  del progress
  task_state = enqueue(task_state, views['keys'], views['labels'])
  target = contrastive.ema(task_state['target_params'], params, s.task.momentum)
  return dict(task_state, target_params=target), params
