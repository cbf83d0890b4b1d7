"""MLP probe (Revisiting §3.3): the SGD linear-evaluation protocol of
ssl_jax/evaluate/linear.py with one hidden layer of 1000 ReLU units, the paper's check that
a non-linear probe does not change the ranking."""

from __future__ import annotations

import ml_collections

from ssl_jax.evaluate import linear

run = linear.run
validate = linear.validate


def config() -> ml_collections.ConfigDict:
  """An evaluator instance of type 'mlp': the linear protocol with a hidden layer."""
  c = linear.config()
  c.hidden = 1000
  c.dropout = 0.0  # The code's probe had 0.5; the paper mentions none.
  return c
