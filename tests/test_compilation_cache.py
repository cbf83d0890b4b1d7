"""The persistent compilation cache: a second process with the same directory, local or
gs:// (a local GCS emulator), loads the program the first one compiled and wrote there."""

import os
import subprocess
import sys

import pytest

from conftest import gcs_objects
from ssl_jax import compilation_cache

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Compiles one small program with the cache in argv[1]; prints the JAX monitoring events
# of the cache (hits and misses).
PROGRAM = '''
import sys
import jax
import jax.numpy as jnp
from ssl_jax import compilation_cache

events = []
jax.monitoring.register_event_listener(lambda name, **kwargs: events.append(name))
compilation_cache.enable(sys.argv[1], min_compile_time_secs=0)
jax.jit(lambda x: jnp.sin(x) @ x.T + 1.0)(jnp.ones((8, 8))).block_until_ready()
print('hits', events.count('/jax/compilation_cache/cache_hits'),
      'misses', events.count('/jax/compilation_cache/cache_misses'))
'''


def _run(cache_dir: str) -> tuple[int, int]:
  """(cache hits, cache misses) of :data:`PROGRAM` in a fresh process."""
  env = {key: value for key, value in os.environ.items()
         if not key.startswith('JAX_COMPILATION_CACHE') and
         not key.startswith('JAX_PERSISTENT_CACHE')}
  result = subprocess.run([sys.executable, '-c', PROGRAM, cache_dir], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=True)
  _, hits, _, misses = result.stdout.strip().splitlines()[-1].split()
  return int(hits), int(misses)


def test_second_process_hits_the_cache(tmp_path):
  """Every program the first process compiled (the jitted function and jnp's helpers) is
  a file in the directory; the second process finds all of them and compiles none."""
  cache_dir = str(tmp_path / 'xla_cache')
  hits, compiled = _run(cache_dir)
  assert hits == 0 and compiled >= 1
  written = sorted(os.listdir(cache_dir))
  assert len(written) == compiled
  assert _run(cache_dir) == (compiled, 0)
  assert sorted(os.listdir(cache_dir)) == written  # Read, not written again.
  assert _run(str(tmp_path / 'other')) == (0, compiled)  # Another directory: compiled.


def test_second_process_hits_a_gs_cache(storage_emulator):
  """The same on gs:// (what a pod's hosts share): JAX writes the cache through
  etils.epath, here gcsfs against gcp-storage-emulator, which both processes inherit
  (tests/conftest.py)."""
  cache_dir = f'{storage_emulator}/xla_cache'
  hits, compiled = _run(cache_dir)
  assert hits == 0 and compiled >= 1
  written = gcs_objects(cache_dir)
  assert len(written) == compiled
  assert _run(cache_dir) == (compiled, 0)
  assert gcs_objects(cache_dir) == written


def test_enable_needs_a_directory():
  with pytest.raises(ValueError, match='needs a directory'):
    compilation_cache.enable('')
