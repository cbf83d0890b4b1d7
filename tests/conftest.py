"""Test setup: 8 simulated CPU devices (set before JAX is imported) and a private TFDS
data directory, so tests neither download nor touch ~/tensorflow_datasets."""

import atexit
import functools
import os
import shutil
import tempfile

# The tiny test models spend far longer compiling than running. LLVM optimisation level 0
# (a 1-vs-8-device SimCLR test: 60 s at the default level, 35 s at 0; same results), and
# XLA:CPU's older elemental emitters instead of the fusion emitters (a 1-device BYOL
# multi-crop step, tracing included: 31 s -> 21 s on the 2-core CPU, 2026-12-01). Test
# subprocesses that set their own device count take these too (:func:`xla_flags`).
def xla_flags(device_count: int) -> str:
  """XLA_FLAGS for a test process of ``device_count`` simulated CPU devices."""
  return (f'--xla_force_host_platform_device_count={device_count}'
          ' --xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false')


os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' ' + xla_flags(8)).strip()
os.environ['JAX_PLATFORMS'] = 'cpu'
os.environ['TF_CPP_MIN_LOG_LEVEL'] = '2'

# Many tests build the same tiny train step; XLA's persistent cache compiles it once per
# session (CPU compilation dominates the suite's time). The process that makes these
# folders (pytest's controller under xdist, whose workers inherit the variables) removes
# them at exit: a suite run leaves about 100 MB in /tmp otherwise.
for _variable, _prefix in (('TFDS_DATA_DIR', 'ssl_jax_tfds_'),
                           ('JAX_COMPILATION_CACHE_DIR', 'ssl_jax_xla_')):
  if _variable not in os.environ:
    os.environ[_variable] = tempfile.mkdtemp(prefix=_prefix)
    atexit.register(shutil.rmtree, os.environ[_variable], ignore_errors=True)
os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
# pytest-xdist's workers inherit the controller's environment: each prepares the shipped
# dataset and keeps its compilation cache in folders of its own (two workers preparing one
# dataset race on its final rename; one may read a cache entry the other is writing).
# A test's subprocess that imports this file again (tests/test_faults.py's driver) keeps
# its worker's folders: the same prepared data, the programs its test already compiled.
_worker = os.environ.get('PYTEST_XDIST_WORKER')
if _worker:
  for variable in ('TFDS_DATA_DIR', 'JAX_COMPILATION_CACHE_DIR'):
    if os.path.basename(os.environ[variable]) != _worker:
      os.environ[variable] = os.path.join(os.environ[variable], _worker)
os.environ['JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'] = '0'
# gs:// through gcsfs, which a local GCS emulator can stand in for (tests/test_paths.py);
# TensorFlow's GCS client, epath's default, has no endpoint setting. Read once per process,
# at the first path, so set here. Local paths go through os either way.
os.environ['EPATH_USE_TF'] = 'false'

import jax  # noqa: E402
import pytest  # noqa: E402

from ssl_jax import config_lib  # noqa: E402
import tiny  # noqa: E402


def tiny_config(task: str = 'rotation', evals: tuple[str, ...] = ('lbfgs',),
                **overrides) -> config_lib.ConfigDict:
  """The tiny run of tests/tiny.py (a ResNet of a few channels per layer, one unit per
  stage, on 16-px shipped images); ``evals`` names evaluator instances of those types.
  Override keys are dotted field names; ``task.X`` is the task's own section."""
  config = tiny.build(task, evals)
  for key, value in overrides.items():
    node = config
    *path, last = key.split('.')
    path = [task if name == 'task' and i == 0 else name for i, name in enumerate(path)]
    for name in path:
      node = node[name]
    node[last] = value
  config.lock()
  return config


def one_train_step(config, devices, batch):
  """(state, metrics) after one train step of a fresh model of ``config`` on a mesh over
  ``devices``: the 1-vs-8-device tests compare these."""
  from ssl_jax import step as step_lib
  mesh = step_lib.make_mesh(devices)
  task = step_lib.import_task(config)
  tx, schedule = make_optimizer(config)
  model = step_lib.build_model(config, task, 10, mesh)
  state = step_lib.create_state(config, model, tx, task, mesh)
  train_step = step_lib.make_train_step(config, model, tx, task, schedule, mesh,
                                        max(config.total_steps, 1),
                                        step_lib.shardings_of(state))
  return train_step(state, jax.device_put(batch, step_lib.batch_sharding(mesh)))


def make_optimizer(config, num_train_examples: int = 1000):
  """(tx, schedule) of the config's optimizer section for a run on that many images."""
  from ssl_jax import optim
  tx, schedule, _ = optim.for_run(config.optimizer, batch_size=config.batch_size,
                                  num_examples=num_train_examples,
                                  steps=config.total_steps, epochs=config.total_epochs)
  return tx, schedule


def sections(config):
  """What the task of ``config`` reads (tasks.Sections)."""
  from ssl_jax import step as step_lib
  return step_lib.task_sections(config)


def progress(step: int = 0, total_steps: int = 1):
  """A tasks.Progress for calling a task's loss directly."""
  from ssl_jax import tasks
  return tasks.Progress(jax.numpy.asarray(step), total_steps)


def init_variables(module, inputs, seed: int = 0):
  """``module.init(jax.random.key(seed), inputs, train=False)``, jitted: op by op, a tiny
  model's first call would compile each of its operations on its own."""
  return jax.jit(functools.partial(module.init, train=False))(jax.random.key(seed), inputs)


def random_encoder(model_config, mesh, seed: int = 0):
  """The encoder of ``model_config`` at a random init (from 16-px inputs), its variables
  replicated on ``mesh``: what evaluators take from a workdir."""
  import jax.numpy as jnp
  from ssl_jax import step as step_lib
  from ssl_jax.evaluate import context
  module = step_lib.build_encoder(model_config)
  variables = init_variables(module, jnp.zeros((1, 16, 16, 3)), seed)
  return context.Encoder(module, jax.device_put(variables, step_lib.replicated(mesh)))


# For tests whose check does not depend on the encoder's depth: the 1-vs-8-device tests
# (sums over devices of BN statistics, losses, gradients), resumption and faults, BN of
# the first layers. One residual stage traces and compiles in about 0.6 of the time of
# four (XLA's compilation of BYOL's multi-crop train step on the 2-core CPU: 19.3 s with
# four stages, 12.0 s with one; 2026-12-02).
ONE_STAGE = {'model.units': (1,), 'model.stage_strides': (1,)}


def compare_1_and_8_devices(config, batch, metric_keys=('loss', 'grad_norm'), rtol=1e-5):
  """One train step on 1 and on 8 devices from the same state and global batch: the
  metrics agree to ``rtol`` and the new parameters to rtol 1e-4 / atol 1e-6. Returns
  (state, metrics) of the 1-device step."""
  import numpy as np
  state1, metrics1 = one_train_step(config, jax.devices()[:1], batch)
  state8, metrics8 = one_train_step(config, jax.devices(), batch)
  assert len(jax.devices()) == 8
  for key in metric_keys:
    np.testing.assert_allclose(metrics1[key], metrics8[key], rtol=rtol)
  for a, b in zip(jax.tree.leaves(state1.params), jax.tree.leaves(state8.params)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  return state1, metrics1


GCS_BUCKET = 'ssl-jax-test'  # The bucket of the local GCS emulators' fixtures.


def point_gcs_clients_at(url: str, monkeypatch) -> None:
  """gcsfs and tensorstore, in this process and the subprocesses it starts, to the GCS
  emulator at ``url``."""
  import gcsfs
  monkeypatch.setenv('STORAGE_EMULATOR_HOST', url)
  monkeypatch.setenv('TENSORSTORE_GCS_HTTP_URL', url)
  monkeypatch.setenv('GOOGLE_AUTH_TOKEN_FOR_TESTING', 'test')  # No credential search.
  gcsfs.GCSFileSystem.clear_instance_cache()  # An instance keeps its endpoint.


@pytest.fixture
def storage_emulator(monkeypatch):
  """gcp-storage-emulator, in memory, with the bucket: 'gs://BUCKET' (gcsfs works against
  it, tensorstore does not; tests/test_paths.py)."""
  import socket
  from gcp_storage_emulator import server as emulator
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  server = emulator.create_server('127.0.0.1', port, in_memory=True,
                                  default_bucket=GCS_BUCKET)
  server.start()
  point_gcs_clients_at(f'http://127.0.0.1:{port}', monkeypatch)
  yield f'gs://{GCS_BUCKET}'
  server.stop()


def gcs_objects(url: str) -> list[str]:
  """Every object under the gs:// ``url``, as paths relative to it, from the emulator's
  JSON API (STORAGE_EMULATOR_HOST) through urllib, with a timeout: a gcsfs listing once
  hung for good against fake-gcs-server, its connections open (a CI run, 2026-12-01)."""
  import json
  import urllib.parse
  import urllib.request
  bucket, _, prefix = url[len('gs://'):].partition('/')
  names, page_token = [], None
  while True:
    query = {'prefix': prefix + '/', **({'pageToken': page_token} if page_token else {})}
    request = (f'{os.environ["STORAGE_EMULATOR_HOST"]}/storage/v1/b/{bucket}/o?'
               f'{urllib.parse.urlencode(query)}')
    with urllib.request.urlopen(request, timeout=60) as response:
      page = json.load(response)
    names += [item['name'] for item in page.get('items', [])]
    page_token = page.get('nextPageToken')
    if not page_token:
      return sorted(name[len(prefix) + 1:] for name in names)
