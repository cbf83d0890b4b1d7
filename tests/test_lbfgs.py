"""L-BFGS logistic regression against scikit-learn on the same features and objective."""

import jax.numpy as jnp
import numpy as np
from sklearn.linear_model import LogisticRegression

from ssl_jax import encoder as encoder_lib
from ssl_jax.evaluate import lbfgs


def _data(n=600, d=20, classes=4, seed=0):
  rng = np.random.default_rng(seed)
  centers = rng.normal(size=(classes, d))
  y = rng.integers(0, classes, n)
  x = centers[y] + 1.5 * rng.normal(size=(n, d))
  return x.astype(np.float32), y


def test_matches_sklearn_on_same_objective():
  x, y = _data()
  xt, yt = _data(seed=1)
  for l2 in (1e-3, 1e-1):
    w, b = lbfgs.fit(x, y, l2, tol=1e-6)
    # sklearn minimises C * sum CE + 0.5 ||W||^2: the same optimum when C = 1 / (n * l2).
    ref = LogisticRegression(C=1.0 / (len(y) * l2), tol=1e-10, max_iter=10_000).fit(x, y)
    ours = float(lbfgs.objective((w, b), x, y, l2))
    theirs = float(lbfgs.objective((jnp.asarray(ref.coef_.T, jnp.float32),
                                    jnp.asarray(ref.intercept_, jnp.float32)), x, y, l2))
    np.testing.assert_allclose(ours, theirs, rtol=1e-4)
    assert abs(lbfgs.accuracy(w, b, xt, yt) - ref.score(xt, yt)) <= 2 / len(yt)
    assert np.mean(lbfgs.predict(w, b, xt).argmax(1) == ref.predict(xt)) >= 0.99


def test_select_l2_prefers_regularisation_when_overfitting():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(80, 200)).astype(np.float32)  # More dimensions than examples.
  y = (x[:, 0] > 0).astype(np.int64)
  best, scores = lbfgs.select_l2(x, y, (1e-6, 1.0), 0.25)
  assert set(scores) == {1e-6, 1.0}
  assert scores[best] == max(scores.values())


def test_pool_to_size_follows_the_9000_rule():
  x = jnp.arange(2 * 14 * 14 * 100, dtype=jnp.float32).reshape(2, 14, 14, 100)
  pooled = encoder_lib.pool_to_size(x, 9000)
  # ceil(sqrt(19600 / 9000)) = 2: 7 x 7 x 100 = 4900 features.
  assert pooled.shape == (2, 4900)
  np.testing.assert_array_equal(pooled.reshape(2, 7, 7, 100)[:, 0, 0],
                                np.maximum.reduce([x[:, i, j] for i in (0, 1) for j in (0, 1)]))
  assert encoder_lib.pool_to_size(jnp.ones((2, 8)), 9000).shape == (2, 8)
