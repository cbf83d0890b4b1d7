"""MLP probe (Revisiting §3.3): the SGD linear-evaluation protocol of
ssl_jax/evaluate/linear.py with one hidden layer of 1000 ReLU units, the paper's check that
a non-linear probe does not change the ranking.

Unlike the linear probe it standardises its input features and trains at a tenth of the
linear probe's rate. At the linear probe's lr 0.2 on raw features the two-layer probe
diverges: a Rotation runlocal encoder's max-pooled after_root features have norm ~400
(lr x |x|^2 ~ 10^4), the loss reached 1e18 in 20 steps, then NaN, and NaN logits score
the frequency of class 0 (10.3%, chance). The softmax of the linear probe bounds its
gradient, so it oscillates but survives. Standardised features alone still diverge at lr
0.1 (|x|^2 = D = 1024). With both, linear_eval.py:protocol=linear+mlp on a 100-step
Rotation runlocal workdir gives mlp 44.1% / linear 38.1% on after_root and 26.9% / 24.4%
on pre_logits (runlocal probes, 300 steps; measured 2026-11-30). The released MLP head
(self_supervision/linear_eval.py add_mlp_heads) cannot run as released (reference §4).
"""

from __future__ import annotations

import ml_collections

from ssl_jax.evaluate import linear

run = linear.run
validate = linear.validate


def config() -> ml_collections.ConfigDict:
  """An evaluator instance of type 'mlp': the linear protocol with a hidden layer, on
  standardised features, at base lr 0.01 x B/256."""
  c = linear.config()
  c.hidden = 1000
  c.dropout = 0.0  # The code's probe had 0.5; the paper mentions none.
  c.standardize_features = True
  c.optimizer.base_lr = 0.01
  return c
