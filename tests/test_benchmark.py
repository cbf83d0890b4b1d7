"""``python -m ssl_jax.benchmark`` times and profiles the train step on a host without
TensorFlow, TFDS or clu, as the lent GPU machine is (JAX and PyTorch alone;
benchmarks/step_vs_pytorch.sh): every training config loads, the step compiles and runs,
and the throughput table and the profile's parts and top ops are printed."""

import glob
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# As if these packages were not installed: an import of one raises ImportError, and
# importlib.util.find_spec gives None (etils asks it).
WITHOUT_TENSORFLOW = '''
import sys
for name in ('tensorflow', 'tensorflow_datasets', 'clu'):
  sys.modules[name] = None
'''

# The benchmark with argv[1:].
PROGRAM = WITHOUT_TENSORFLOW + '''
import runpy
sys.argv = ['ssl_jax.benchmark'] + sys.argv[1:]
runpy.run_module('ssl_jax.benchmark', run_name='__main__')
'''

# The configs named in argv[1:], each with its default argument and with runlocal where
# it takes it; prints each name once loaded.
LOAD_CONFIGS = WITHOUT_TENSORFLOW + '''
from ssl_jax import recipe_card
for name in sys.argv[1:]:
  recipe_card.load(name, '')
  try:
    recipe_card.load(name, 'runlocal')
  except ValueError as error:  # A config without runlocal says so.
    assert 'runlocal' in str(error), error
  print(name)
'''


def test_step_benchmark_and_profile_run_without_tensorflow(tmp_path):
  """A one-stage tiny Rotation step on the 8 CPU devices: its row (8 images of 32 px) and
  the profile's convolution part, from a process that cannot import TensorFlow."""
  args = ['--config=configs/rotation_resnet50.py:runlocal', '--config.model.units=(1,)',
          '--config.model.stage_strides=(1,)', '--batch=8', '--image_size=32', '--steps=1',
          '--lbfgs_features=0', f'--profile={tmp_path}', '--profile_steps=1']
  result = subprocess.run([sys.executable, '-c', PROGRAM, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  row = re.search(r'^\| rotation \| resnet v2 \| 0.25 \| float32 \| 32 \| 8 \| ([\d.]+) \| '
                  r'([\d.]+) \|$', result.stdout, re.MULTILINE)
  assert row and float(row[1]) > 0 and float(row[2]) > 0, result.stdout
  assert re.search(r'^Profile: [\d.]+ ms of ops per step', result.stdout, re.MULTILINE)
  assert re.search(r'^\| convolution \| [\d.]+ \|', result.stdout, re.MULTILINE), result.stdout


def test_every_config_loads_without_tensorflow():
  """The configs' sections, their evaluators' and the recipes import no TensorFlow, TFDS
  or clu."""
  # linear_eval.py reads a trained workdir's config.json: not a training config.
  expected = [name for name in sorted(os.path.basename(path)[:-3]
                                      for path in glob.glob(f'{REPO}/configs/*.py'))
              if name not in ('__init__', 'common', 'linear_eval')]
  result = subprocess.run([sys.executable, '-c', LOAD_CONFIGS, *expected], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert len(expected) >= 15 and result.stdout.split() == expected, result.stdout
