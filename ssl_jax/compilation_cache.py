"""XLA's persistent compilation cache: compiled programs kept in a directory, local or
gs://, so that a second process (a resumed or restarted run, another host of a pod, the
evaluation after training) loads the train step instead of compiling it again.

    python -m ssl_jax.main --config=... --workdir=... --compilation_cache_dir=gs://BUCKET/xla

JAX's own switch (https://docs.jax.dev/en/latest/persistent_compilation_cache.html) with
the thresholds set for this codebase's few, large programs. The cache is trusted input:
whoever can write to the directory can run code in the process, so keep it private.
"""

from __future__ import annotations

import jax


def enable(path: str, min_compile_time_secs: float = 1.0) -> None:
  """Caches in ``path`` (created if missing; gs:// through etils.epath, which orbax
  installs) every program whose compilation took at least ``min_compile_time_secs``
  (JAX's default, 1 s, leaves out the many small jitted helpers; 0 caches all). Call
  before the first compilation: JAX reads the setting once."""
  if not path:
    raise ValueError('compilation_cache.enable needs a directory (a local path or '
                     'gs://BUCKET/DIR).')
  jax.config.update('jax_compilation_cache_dir', path)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', min_compile_time_secs)
  # Any size: the train step is large, and a small entry costs no more than its file.
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
