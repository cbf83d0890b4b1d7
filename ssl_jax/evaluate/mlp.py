"""MLP probe (Revisiting §3.3): the SGD linear-evaluation protocol of
ssl_jax/evaluate/linear.py with one hidden layer of ``config.mlp.hidden`` ReLU units,
the paper's check that a non-linear probe does not change the ranking."""

from __future__ import annotations

import ml_collections

from ssl_jax.evaluate import linear


def run(config: ml_collections.ConfigDict, workdir: str, devices=None) -> dict[str, float]:
  """MLP probes on every layer of ``config.linear.layers``."""
  return linear.train_probe(config, workdir, hidden=config.mlp.hidden,
                            dropout=config.mlp.dropout, prefix='mlp', devices=devices)
