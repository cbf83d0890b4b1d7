"""ssl_jax: self-supervised visual representation learning in JAX.

``ssl_jax.load_encoder(workdir)`` returns a function from uint8 images to end points.
Imports are lazy, so ``import ssl_jax`` starts no framework.
"""


def load_encoder(workdir: str):
  """See :func:`ssl_jax.encoder.load_encoder`."""
  from ssl_jax import encoder  # Lazy: importing the package loads neither JAX nor TF.
  return encoder.load_encoder(workdir)
