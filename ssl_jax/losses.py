"""Losses and normalisations shared by several tasks and evaluators."""

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


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """x / max(||x||, eps) over the last axis, in float32 (reference §7.3)."""
  x = x.astype(jnp.float32)
  norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True))
  return x / jnp.maximum(norm, eps)
