"""ssl_jax/memory_benchmark.py (benchmark --memory): XLA's compiled bytes per device
against the state's and batch's shards counted by hand (replicated and under FSDP), and the
same compilation for a TPU topology on this CPU host (--memory_topology). What needs the
TPU compiler (libtpu, not in requirements.txt: it makes every non-TPU JAX start print
errors) runs where it is installed; the error that names the fix runs everywhere."""

import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import make_optimizer
from conftest import tiny_config
from ssl_jax import memory_benchmark
from ssl_jax import step as step_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAS_LIBTPU = importlib.util.find_spec('libtpu') is not None
needs_libtpu = pytest.mark.skipif(
    not HAS_LIBTPU, reason=f'needs the TPU compiler: {memory_benchmark.LIBTPU_PIN}')


def _bytes_per_device(config, mesh: jax.sharding.Mesh) -> int:
  """The train state's and the batch's bytes on one device, from each array's shard shape
  under the run's shardings (the step's arguments, as XLA should count them)."""
  task = step_lib.import_task(config)
  model = step_lib.build_model(config, task, 1000, mesh)
  tx, _ = make_optimizer(config)
  abstract = jax.eval_shape(lambda: step_lib.init_state(config, model, tx, task))
  shardings = step_lib.state_sharding(abstract, mesh, task, config.mesh.fsdp_min_bytes)
  state = sum(int(np.prod(s.shard_shape(x.shape))) * x.dtype.itemsize
              for x, s in zip(jax.tree.leaves(abstract), jax.tree.leaves(shardings)))
  images = sum(int(np.prod(shape)) for shape in step_lib.input_shapes(config, task).values())
  per_device = config.batch_size // mesh.size
  return state + per_device * (images + np.dtype(np.int32).itemsize)


@pytest.mark.parametrize('fsdp', [1, 8])
def test_argument_bytes_are_the_shards(fsdp):
  """Replicated, every device holds the whole state; with mesh.fsdp=8 (no size floor)
  each holds its shards: XLA's argument bytes equal the hand count either way. Supervised,
  because it reads every array of the batch (jit drops an unused argument, such as the
  labels that Rotation makes itself)."""
  config = tiny_config('supervised', **{'mesh.fsdp': fsdp, 'mesh.fsdp_min_bytes': 0})
  mesh = step_lib.make_mesh(fsdp=fsdp)
  row = memory_benchmark.compiled_memory(config, mesh)
  assert row['argument'] == _bytes_per_device(config, mesh)
  assert row['temp'] > 0
  assert row['total'] == row['argument'] + row['output'] - row['alias'] + row['temp']


def test_libtpu_pin_is_jax_tpu_extra_and_in_the_readme():
  """The pin that --memory_topology's error and the README give is the libtpu that the
  installed jax asks for in its [tpu] extra (a jax upgrade must move it too)."""
  [requirement] = [r for r in importlib.metadata.requires('jax') if r.startswith('libtpu')]
  wanted = requirement.split(';')[0].replace('*', '')  # 'libtpu==0.0.42.'
  assert memory_benchmark.LIBTPU_PIN.startswith(wanted), (memory_benchmark.LIBTPU_PIN, wanted)
  with open(os.path.join(REPO, 'README.md')) as f:
    assert f'pip install {memory_benchmark.LIBTPU_PIN}' in f.read()


def test_topology_without_libtpu_names_the_install(monkeypatch):
  monkeypatch.setattr(memory_benchmark.importlib.util, 'find_spec', lambda name: None)
  with pytest.raises(ValueError, match=re.escape(f'pip install {memory_benchmark.LIBTPU_PIN}')):
    memory_benchmark.topology_devices('v5e:2x2')


@needs_libtpu
def test_tpu_topology_compiles_on_this_host(monkeypatch):
  """XLA's TPU compiler, no TPU attached: 4 v5e chips, and mesh.fsdp=4 leaves each chip
  less of the state than the replicated step (TPU tiles pad arrays, so no exact count)."""
  monkeypatch.setenv('ALLOW_MULTIPLE_LIBTPU_LOAD', '1')  # What topology_devices sets.
  devices = memory_benchmark.topology_devices('v5e:2x2')
  assert len(devices) == 4 and devices[0].platform == 'tpu'
  rows = {}
  for fsdp in (1, 4):
    config = tiny_config(**{'mesh.fsdp': fsdp, 'mesh.fsdp_min_bytes': 0})
    mesh = step_lib.make_mesh(devices, fsdp=fsdp)
    rows[fsdp] = memory_benchmark.compiled_memory(config, mesh)
  assert 0 < rows[4]['argument'] < rows[1]['argument']
  assert rows[1]['temp'] > 0
  with pytest.raises(ValueError, match='not a TPU topology'):
    memory_benchmark.topology_devices('v5e:3x3x3')


def _readme_libtpu_flags() -> list[str]:
  """The LIBTPU_INIT_ARGS flags README.md recommends (its "XLA flags" TPU item)."""
  with open(os.path.join(REPO, 'README.md')) as f:
    readme = f.read()
  item = readme.split('- **TPU**, `LIBTPU_INIT_ARGS`', 1)[1].split('\n- ', 1)[0]
  item = item.split('\n\n', 1)[0]
  return re.findall(r'--xla_\w+=\w+', item)


@needs_libtpu
def test_readme_libtpu_flags_are_known_to_the_pinned_libtpu():
  """libtpu exits at start on a flag it does not know: the README's set starts it, and an
  unknown flag, the check's control, does not."""
  flags = _readme_libtpu_flags()
  assert len(flags) >= 5, flags

  def start_libtpu(args: str) -> subprocess.CompletedProcess:
    program = "from ssl_jax import memory_benchmark; memory_benchmark.topology_devices('v5e:2x2')"
    return subprocess.run([sys.executable, '-c', program], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, LIBTPU_INIT_ARGS=args))

  started = start_libtpu(' '.join(flags))
  assert started.returncode == 0, started.stderr[-2000:]
  unknown = start_libtpu('--xla_tpu_no_such_flag=true')
  assert unknown.returncode != 0 and "Unknown command line flag" in unknown.stderr
