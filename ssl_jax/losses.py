"""Losses shared by several tasks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def classification(outputs: jax.Array, labels: jax.Array,
                   metric: str) -> tuple[jax.Array, dict]:
  """Mean softmax cross-entropy in float32 over all rows, and the accuracy as ``metric``."""
  logits = outputs.astype(jnp.float32)
  xent = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  return xent, {metric: jnp.mean(jnp.argmax(logits, -1) == labels)}
