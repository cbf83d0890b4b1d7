"""ssl_jax.export: npz by Flax path, torchvision's resnet50 (checked against torchvision
itself) and a jax.export function, each against ssl_jax.load_encoder."""

import json
import subprocess
import sys
import types

import jax
import numpy as np
import pytest
from conftest import tiny_config

import ssl_jax
from ssl_jax import checkpoint
from ssl_jax import config_lib
from ssl_jax import export
from ssl_jax import step as step_lib
from ssl_jax import train
from ssl_jax import writers
from ssl_jax.data import cifar10_5k
from ssl_jax.data import input_pipeline


def _images(n: int) -> np.ndarray:
  """n real 32-px CIFAR-10 images (uint8) from the shipped file."""
  with np.load(cifar10_5k.FILE) as data:
    return data['image'][:n]


def _calibrated_variables(model_config, images: np.ndarray, seed: int) -> dict:
  """Encoder variables that exercise every mapped array: He-normal kernels, random BN
  scales and biases, then running statistics set to one batch's (a train-mode pass with
  momentum 0), so that means and variances differ per channel and the activations stay
  in range. Drawn with numpy: jitting the init would cost a second compilation."""
  model = step_lib.build_encoder(model_config)
  x = images.astype(np.float32) / 127.5 - 1.0
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  rng = np.random.default_rng(seed)

  def draw(path, shape):
    name, size = path[-1].key, shape.shape
    if name == 'kernel':
      return rng.normal(0, np.sqrt(2 / np.prod(size[:-1])), size).astype(np.float32)
    if name == 'scale':
      return rng.uniform(0.5, 1.5, size).astype(np.float32)
    return rng.normal(0, 0.1, size).astype(np.float32)

  params = jax.tree_util.tree_map_with_path(draw, shapes['params'])
  stats = jax.tree.map(lambda s: np.ones(s.shape, s.dtype), shapes['batch_stats'])
  with model_config.unlocked():
    model_config.bn_momentum = 0.0
  calibrate = step_lib.build_encoder(model_config)
  _, stats = jax.jit(lambda p, s, x: calibrate.apply(
      {'params': p, 'batch_stats': s}, x, train=True, mutable=['batch_stats']))(
          params, stats, x)
  return {'params': params, 'batch_stats': stats['batch_stats']}


def _workdir(path, images: np.ndarray | None, **model) -> str:
  """A workdir as a run leaves it (config.json, an orbax checkpoint of step 3) with a
  ResNet of the ``model`` fields at 32 px, ImageNet mean/std inputs; without ``images``
  only its config.json."""
  config = config_lib.run_config('rotation')
  config.input.image_size = 32
  config.augment.normalize = 'imagenet'
  for key, value in model.items():
    config.model[key] = value
  config_lib.lock(config)
  workdir = str(path)
  train.save_config(config, workdir, 3)
  if images is None:
    return workdir
  variables = _calibrated_variables(config.model.copy_and_resolve_references(), images, 0)
  ckpt = checkpoint.Checkpointer(workdir)
  ckpt.save(3, {'step': np.int32(3),
                'params': {'encoder': variables['params']},
                'batch_stats': {'encoder': variables['batch_stats']}})
  ckpt.close()
  return workdir


@pytest.fixture(scope='module')
def tiny_workdir(tmp_path_factory) -> str:
  """A small ResNet v1 (k=0.25, one unit per stage) at 32 px, trained on 6 images."""
  return _workdir(tmp_path_factory.mktemp('tiny'), _images(6), variant='v1', k=0.25,
                  units=(1, 1, 1, 1))


# The torchvision side runs in its own process: torchvision's C++ ops crash (SIGSEGV) when
# TensorFlow was imported first, as it is in the test process; this is also how a user
# loads the file, with neither JAX nor ssl_jax.
TORCHVISION_FEATURES = """
import json, sys
import numpy as np, torch, torchvision
from safetensors import torch as safetensors_torch
weights, images, output = sys.argv[1:]
model = torchvision.models.resnet50()
result = model.load_state_dict(safetensors_torch.load_file(weights), strict=False)
model.fc = torch.nn.Identity()
model.eval()
sidecar = json.load(open(weights + '.json'))
norm = sidecar['input']
x = (np.load(images) / 255.0 - np.array(norm['mean'])) / np.array(norm['std'])
with torch.no_grad():
  features = model(torch.from_numpy(x.transpose(0, 3, 1, 2)).float()).numpy()
np.save(output, features)
print(json.dumps({'missing': sorted(result.missing_keys),
                  'unexpected': sorted(result.unexpected_keys), 'eps': model.bn1.eps,
                  'sidecar_eps': sidecar['bn_epsilon'],
                  'trained_eps': sidecar['trained_bn_epsilon']}))
"""


def test_torchvision_resnet50_gives_load_encoders_features(tmp_path):
  """k=4 ResNet50 v1: torchvision.models.resnet50() loads the export with only fc
  missing and, fed the images normalised as the JSON says, gives ssl_jax's pre_logits.
  bn_epsilon=0.01 (not 1e-5) so that a lost epsilon correction fails the comparison."""
  images = _images(8)
  workdir = _workdir(tmp_path / 'run', images, variant='v1', k=4.0, bn_epsilon=0.01)
  output = str(tmp_path / 'resnet50.safetensors')
  assert export.export(workdir, 'torchvision', output) == [output, output + '.json']
  config = config_lib.from_json(open(f'{workdir}/config.json').read())
  cropped = input_pipeline.eval_array_images(images, config.input)  # The same crop.
  np.save(tmp_path / 'images.npy', cropped)
  done = subprocess.run([sys.executable, '-c', TORCHVISION_FEATURES, output,
                         str(tmp_path / 'images.npy'), str(tmp_path / 'features.npy')],
                        capture_output=True, text=True, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  report = json.loads(done.stdout.strip().splitlines()[-1])
  assert report == {'missing': ['fc.bias', 'fc.weight'], 'unexpected': [], 'eps': 1e-5,
                    'sidecar_eps': 1e-5, 'trained_eps': 0.01}
  theirs = np.load(tmp_path / 'features.npy')
  ours = np.asarray(ssl_jax.load_encoder(workdir)(images)['pre_logits'])
  assert ours.shape == (8, 2048) and ours.std() > 0.1
  np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-4 * np.abs(ours).max())


def test_torchvision_refuses_what_resnet50_cannot_hold(tmp_path):
  workdir = _workdir(tmp_path / 'run', None, variant='v2', k=0.25, units=(1, 1, 1, 1))
  with pytest.raises(ValueError, match=r"model.variant='v2' \(torchvision: 'v1'\), "
                     r"model.k=0.25 \(torchvision: 4.0\), model.units=\(1, 1, 1, 1\).*"
                     '--format=npz or --format=jax_export'):
    export.export(workdir, 'torchvision', str(tmp_path / 'x.safetensors'))


def test_torchvision_names_cover_every_variable_once():
  """Every variable of a k=4 ResNet50 v1 maps to a distinct torchvision key (the shapes
  are checked against torchvision by the test above)."""
  model_config = config_lib.run_config('rotation').model
  model_config.variant = 'v1'
  model = step_lib.build_encoder(model_config)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros((1, 32, 32, 3)),
                                             train=False))
  names = export.torchvision_state_dict(
      jax.tree.map(lambda s: np.ones(s.shape, s.dtype), shapes), 1e-3)
  leaves = len(jax.tree.leaves(shapes))
  assert len(names) == leaves + 53  # + num_batches_tracked of each of the 53 BNs.
  assert names['layer4.2.bn3.running_var'][0] == pytest.approx(1 + 1e-3 - 1e-5)
  assert names['layer2.0.downsample.0.weight'].shape == (512, 256, 1, 1)
  assert names['conv1.weight'].shape == (64, 3, 7, 7)


def test_npz_holds_each_array_by_flax_path_and_the_config(tiny_workdir, tmp_path):
  """Every restored array under its Flax path, and config.json."""
  workdir = tiny_workdir
  output = str(tmp_path / 'encoder.npz')
  assert export.export(workdir, 'npz', output) == [output]
  restored = ssl_jax.encoder.restore(workdir)
  expected = jax.tree_util.tree_flatten_with_path(restored.variables)[0]
  with np.load(output) as data:
    assert json.loads(str(data[export.CONFIG_KEY])) == json.loads(
        open(f'{workdir}/config.json').read())
    assert len(data.files) == len(expected) + 1
    for path, value in expected:
      name = '/'.join(p.key for p in path)
      np.testing.assert_array_equal(data[name], value)
  assert 'params/block1_0/conv1/conv/kernel' in data.files


def test_command_line_error_is_one_line(tmp_path):
  """``python -m ssl_jax.export`` on a folder that is not a workdir."""
  done = subprocess.run([sys.executable, '-m', 'ssl_jax.export', f'--workdir={tmp_path}',
                         '--format=npz', f'--output={tmp_path}/x.npz'],
                        capture_output=True, text=True, check=False)
  assert done.returncode == 1
  assert done.stderr.strip().splitlines()[-1].startswith(
      'ssl_jax.export: FileNotFoundError:'), done.stderr[-2000:]
  assert 'is ' in done.stderr and 'the workdir of a run' in done.stderr


def test_jax_export_round_trip_gives_load_encoders_features(tiny_workdir, tmp_path):
  """The serialised function, deserialised, on two batch sizes (a symbolic batch)."""
  images = _images(6)
  workdir = tiny_workdir
  output = str(tmp_path / 'encoder.jaxexport')
  export.export(workdir, 'jax_export', output)
  with open(output, 'rb') as f:
    exported = jax.export.deserialize(f.read())  # As the README says.
  config = config_lib.from_json(open(f'{workdir}/config.json').read())
  cropped = input_pipeline.eval_array_images(images, config.input)
  ours = np.asarray(ssl_jax.load_encoder(workdir)(images)['pre_logits'])
  for n in (2, 6):
    # Not bitwise: XLA folds the embedded weights' constants differently.
    np.testing.assert_allclose(np.asarray(exported.call(cropped[:n])), ours[:n],
                               rtol=1e-5, atol=1e-5 * np.abs(ours).max())


class FakeWandb(types.ModuleType):
  """A stand-in ``wandb`` module that records what a run logs."""

  def __init__(self):
    super().__init__('wandb')
    self.inits, self.logs, self.finished = [], [], 0
    self.Image = lambda array: ('image', np.asarray(array).shape)  # noqa: N803
    self.Histogram = lambda values, num_bins=64: ('histogram', len(values), num_bins)

  def init(self, **kwargs):
    self.inits.append(kwargs)
    fake = self

    class Run:
      config = types.SimpleNamespace(update=lambda values, **_: fake.inits[-1].update(
          hparams=values))

      def log(self, data, step):
        fake.logs.append((step, data))

      def finish(self):
        fake.finished += 1

    return Run()


def test_wandb_writer_gets_the_runs_metrics_images_and_results(tmp_path, monkeypatch):
  """A tiny pretraining with writers.wandb_project set: W&B receives what metrics.jsonl
  and TensorBoard do, then the results, under one run id per workdir."""
  fake = FakeWandb()
  monkeypatch.setitem(sys.modules, 'wandb', fake)
  workdir = str(tmp_path / 'run')
  config = tiny_config(evals=(), total_steps=2, **{'writers.wandb_project': 'ssl'})
  assert train.train(config, workdir)
  assert len(fake.inits) == 1 and fake.inits[0]['project'] == 'ssl'
  assert fake.inits[0]['id'] == writers.wandb_run_id(workdir)
  assert fake.inits[0]['name'] == 'run' and fake.inits[0]['resume'] == 'allow'
  assert fake.inits[0]['config']['task'] == 'rotation' and fake.finished == 1
  rows = [json.loads(line) for line in open(f'{workdir}/metrics.jsonl')]
  logged = {}
  for step, data in fake.logs:
    logged.setdefault(step, {}).update(data)
  for row in rows:
    step = row.pop('step')
    assert logged[step].keys() >= row.keys()
    np.testing.assert_allclose([logged[step][k] for k in row], list(row.values()), rtol=1e-6)
  assert logged[2]['augmented_inputs'][0] == ('image', (16, 16, 3))
  writers.write_results({'lbfgs/top1': 0.25}, workdir, 2, config.writers)  # As main does.
  assert fake.logs[-1] == (2, {'lbfgs/top1': 0.25})
  assert [i['id'] for i in fake.inits] == [writers.wandb_run_id(workdir)] * 2


def test_wandb_only_on_process_0_and_off_by_default(tmp_path, monkeypatch):
  fake = FakeWandb()
  monkeypatch.setitem(sys.modules, 'wandb', fake)
  section = writers.config()
  writers.create(str(tmp_path / 'a'), section=section).close()  # Off by default.
  section.wandb_project = 'ssl'
  monkeypatch.setattr(jax, 'process_index', lambda: 1)
  writers.create(str(tmp_path / 'b'), section=section).close()
  assert not fake.inits


def test_missing_wandb_is_a_clear_error(monkeypatch):
  monkeypatch.setitem(sys.modules, 'wandb', None)  # `import wandb` raises ImportError.
  with pytest.raises(ValueError, match='wandb is not installed: `pip install wandb`'):
    config_lib.validate(tiny_config(**{'writers.wandb_project': 'ssl'}))
  config_lib.validate(tiny_config())  # Not needed when off.
