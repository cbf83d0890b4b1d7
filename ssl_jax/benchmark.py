"""Prints a table of training throughput and of L-BFGS time against scikit-learn.

    python -m ssl_jax.benchmark --config=configs/rotation_resnet50.py:k=4 \
        --batch=64 --image_size=224 --steps=20

Training: the config's jitted train step (its task, model, optimiser, on-device
augmentation) on a synthetic uint8 batch already on the devices, so the figure is the
accelerator's, not the input pipeline's. Images/s counts images, not network inputs
(Rotation feeds 4 inputs per image). L-BFGS: ``ssl_jax.evaluate.lbfgs.fit`` and
scikit-learn's LogisticRegression with the same objective on the same random features.
Needs JAX, flax, optax, orbax-checkpoint and ml_collections, not TensorFlow, TFDS or clu
(tests/test_benchmark.py), so it runs on an accelerator host without them;
``--input_only`` needs them.

``--input_only`` times the host input pipeline instead (ssl_jax/input_benchmark.py):
each config of ``--input_configs`` through its training stream on ImageNet-sized JPEGs
made from the shipped images, at ``--image_size`` (default 224), beside the device rates
of ``--device_images_per_s`` (this benchmark's images/s/device on the accelerator):

    python -m ssl_jax.benchmark --input_only --input_configs=rotation_resnet50,simclr_resnet50 \
        --device_images_per_s=rotation=5328,simclr=2900 --host=dgx_h100

``--profile=DIR`` also traces a few steps with ``jax.profiler`` into DIR (TensorBoard's
profile plugin or Perfetto open it) and prints the step's XLA cost analysis and its top
ops by time, each with the JAX name stack it came from, and the time per part of the
step (augmentation, BatchNorm, convolutions; ssl_jax/step_profile.py):

    python -m ssl_jax.benchmark --config=configs/simclr_resnet50.py:runlocal \
        --steps=5 --lbfgs_features=0 --profile=/tmp/profile

``--memory`` prints instead the compiled memory per device of the config's train step
(``jit(step).lower(...).compile().memory_analysis()``: arguments, outputs, temporaries,
and their total less the donated state that the outputs reuse) for ResNet50 v1 and RevNet50
at width ``--memory_k`` (16), with the train state replicated or split over
``--memory_fsdp`` devices (``mesh.fsdp``), and with each unit's activations stored for the
backward pass, recomputed (``model.remat``) or, for RevNet, rebuilt from the unit's output
(``model.reversible_backward``), at
``--batch`` images (default: 8 per device, the released Revisiting configs' 64 images on 8
TPU cores). Nothing is allocated: the step is lowered from abstract arrays.
``--memory_topology`` compiles it for a TPU topology instead of the attached devices,
ahead of time on any host (XLA's TPU compiler from libtpu; no TPU needed), which answers
"does it fit" before a pod is rented:

    python -m ssl_jax.benchmark --config=configs/rotation_revnet50.py --memory
    pip install libtpu==0.0.42.1  # jax[tpu]==0.10.2's; non-TPU hosts then print its errors
    python -m ssl_jax.benchmark --config=configs/rotation_revnet50.py --memory \
        --memory_topology=v3:2x2
"""

from __future__ import annotations

import shutil
import tempfile
import time

from absl import app
from absl import flags
import jax
import numpy as np
from ml_collections import config_flags

from ssl_jax import compilation_cache
from ssl_jax import config_lib
from ssl_jax import input_benchmark
from ssl_jax import memory_benchmark
from ssl_jax import recipe_card
from ssl_jax import step as step_lib
from ssl_jax import step_profile
from ssl_jax.evaluate import lbfgs

config_flags.DEFINE_config_file('config', 'configs/rotation_resnet50.py', 'Config file.',
                                lock_config=False)
BATCH = flags.DEFINE_integer('batch', 0, 'Global batch in images (0: the config\'s).')
IMAGE_SIZE = flags.DEFINE_integer('image_size', 0, 'Image side (0: the config\'s).')
STEPS = flags.DEFINE_integer('steps', 20, 'Timed steps (after 2 warm-up steps).')
DTYPE = flags.DEFINE_string('dtype', '', 'Model dtype (default: the config\'s).')
LBFGS_N = flags.DEFINE_integer('lbfgs_examples', 10_000, 'Examples for the L-BFGS timing.')
LBFGS_D = flags.DEFINE_integer('lbfgs_features', 2048, 'Feature size for L-BFGS (0: skip).')
PROFILE = flags.DEFINE_string('profile', '', 'Directory: trace --profile_steps steps into '
                              'it and print the top ops by time (empty: no profile).')
PROFILE_STEPS = flags.DEFINE_integer('profile_steps', 3, 'Steps traced by --profile.')
PROFILE_TOP = flags.DEFINE_integer('profile_top', 15, 'Ops listed by --profile.')
MEMORY = flags.DEFINE_bool('memory', False, 'Print the compiled memory per device of the '
                           'train step for ResNet50 v1 and RevNet50, with and without '
                           'mesh.fsdp, model.remat and model.reversible_backward, instead '
                           'of timing it.')
MEMORY_K = flags.DEFINE_float('memory_k', 16.0, 'Width k of the models of --memory.')
MEMORY_FSDP = flags.DEFINE_integer('memory_fsdp', 0, 'mesh.fsdp of the split rows of '
                                   '--memory (0: all devices).')
MEMORY_TOPOLOGY = flags.DEFINE_string(
    'memory_topology', '', 'TPU topology (e.g. v3:2x2, v5e:2x2) that --memory compiles for '
    'ahead of time, on any host, instead of the attached devices; needs libtpu '
    f'(`pip install {memory_benchmark.LIBTPU_PIN}`).')
COMPILATION_CACHE_DIR = flags.DEFINE_string(
    'compilation_cache_dir', '', 'Persistent XLA compilation cache (local or gs://), as '
    'ssl_jax.main\'s: a second benchmark of the same step skips its compilation.')

INPUT_ONLY = flags.DEFINE_bool('input_only', False, 'Time the host input pipeline of '
                               '--input_configs instead of the train step.')
INPUT_CONFIGS = flags.DEFINE_list(
    'input_configs', ['rotation_resnet50', 'supervised_v1_resnet50', 'simclr_resnet50',
                      'byol_resnet50:multicrop', 'exemplar_resnet50', 'jigsaw_resnet50'],
    'Configs (configs/NAME.py[:ARG]) whose task preprocessing --input_only times.')
INPUT_IMAGES = flags.DEFINE_integer('input_images', 512, 'JPEG images made for --input_only.')
INPUT_SHAPE = flags.DEFINE_list('input_shape', ['350', '400'], 'Their height,width.')
INPUT_BATCH = flags.DEFINE_integer('input_batch', 64, 'Global batch of the timed stream.')
INPUT_BATCHES = flags.DEFINE_integer('input_batches', 8, 'Timed batches per config.')
INPUT_WARMUP = flags.DEFINE_integer('input_warmup', 2, 'Untimed batches first.')
INPUT_REPEATS = flags.DEFINE_integer('input_repeats', 3, 'Timings per config; the fastest '
                                     'is reported.')
INPUT_THREADS = flags.DEFINE_integer('input_threads', 0, 'dataset.threads (0: all cores).')
INPUT_DATA_DIR = flags.DEFINE_string('input_data_dir', '', 'Where to write the JPEGs (empty: '
                                     'a temporary folder, removed after).')
INPUT_DECODE_WHOLE = flags.DEFINE_bool('input_decode_whole', False, 'Also time each config '
                                       'decoding whole images (before decode-and-crop).')
DEVICE_RATES = flags.DEFINE_string('device_images_per_s', '', 'NAME=IMAGES_PER_S,...: one '
                                   'device\'s rate per config or task (this benchmark\'s).')
HOST = flags.DEFINE_enum('host', 'tpu_v5e', sorted(input_benchmark.HOST_CORES_PER_CHIP),
                         'Host whose cores per chip the ratio assumes.')


def build_training(config) -> tuple:
  """(jitted train step, state, synthetic batch on the devices, mesh) of ``config``."""
  mesh = step_lib.make_mesh(fsdp=config.mesh.fsdp)
  task, model, tx, step_for = memory_benchmark.training_parts(config, mesh)
  state = step_lib.create_state(config, model, tx, task, mesh)
  train_step = step_for(step_lib.shardings_of(state))
  rng = np.random.default_rng(0)
  batch = {key: rng.integers(0, 256, (config.batch_size,) + shape, np.uint8)
           for key, shape in step_lib.input_shapes(config, task).items()}
  batch['label'] = rng.integers(0, 1000, (config.batch_size,), np.int32)
  batch = jax.device_put(batch, step_lib.batch_sharding(mesh))
  return train_step, state, batch, mesh


def time_training(train_step, state, batch, steps: int, batch_size: int,
                  devices: int) -> tuple[dict, object]:
  """(images/s per device of ``train_step`` on ``batch`` after 2 warm-up steps, the
  state it leaves: the step donates its input state). ``first_2_steps_s`` includes the
  compilation when ``train_step`` is not compiled yet."""
  t0 = time.perf_counter()
  for _ in range(2):
    state, metrics = train_step(state, batch)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  for _ in range(steps):
    state, metrics = train_step(state, batch)
  jax.block_until_ready(metrics)
  seconds = (time.perf_counter() - t0) / steps
  return {'step_ms': 1e3 * seconds, 'images_per_s_per_device': batch_size / seconds / devices,
          'first_2_steps_s': compile_s, 'devices': devices}, state


def time_lbfgs(n: int, d: int, classes: int = 10, l2: float = 1e-4) -> dict:
  """Seconds for ssl_jax's L-BFGS and scikit-learn's on the same problem."""
  rng = np.random.default_rng(0)
  centers = rng.normal(size=(classes, d)) / np.sqrt(d) * 4
  y = rng.integers(0, classes, n)
  x = (centers[y] + rng.normal(size=(n, d))).astype(np.float32)
  t0 = time.perf_counter()
  jax.block_until_ready(lbfgs.fit(x, y, l2, num_classes=classes, tol=1e-4))
  first = time.perf_counter() - t0
  t0 = time.perf_counter()
  w, b = jax.block_until_ready(lbfgs.fit(x, y, l2, num_classes=classes, tol=1e-4))
  ours = time.perf_counter() - t0
  row = {'ssl_jax_s': ours, 'ssl_jax_first_call_s': first,
         'ssl_jax_objective': float(lbfgs.objective((w, b), x, y, l2))}
  try:
    from sklearn.linear_model import LogisticRegression
  except ImportError:
    return row
  t0 = time.perf_counter()
  ref = LogisticRegression(C=1.0 / (n * l2), max_iter=1000).fit(x, y)
  row['sklearn_s'] = time.perf_counter() - t0
  row['sklearn_objective'] = float(lbfgs.objective(
      (ref.coef_.T.astype(np.float32), ref.intercept_.astype(np.float32)), x, y, l2))
  return row


def main_input() -> None:
  """--input_only: the host pipeline table of --input_configs."""
  height, width = (int(v) for v in INPUT_SHAPE.value)
  data_dir = INPUT_DATA_DIR.value or tempfile.mkdtemp(prefix='ssl_jax_jpeg_')
  rates = input_benchmark.parse_rates(DEVICE_RATES.value)
  try:
    from ssl_jax.data import jpeg_images  # Registers the builder.
    builder = jpeg_images.prepare(data_dir, height=height, width=width,
                                  count=INPUT_IMAGES.value)
    configs = {}
    for spec in INPUT_CONFIGS.value:
      name, _, arg = spec.partition(':')
      config = recipe_card.load(name, arg)
      if IMAGE_SIZE.value:
        config.input.image_size = IMAGE_SIZE.value
      configs[spec] = input_benchmark.benchmark_config(
          config, batch=INPUT_BATCH.value, threads=INPUT_THREADS.value,
          shuffle_buffer=INPUT_BATCH.value * 4)
    rows = input_benchmark.run(configs, builder, batches=INPUT_BATCHES.value,
                               warmup=INPUT_WARMUP.value, device_images_per_s=rates,
                               repeats=INPUT_REPEATS.value,
                               decode_whole=INPUT_DECODE_WHOLE.value)
  finally:
    if not INPUT_DATA_DIR.value:
      shutil.rmtree(data_dir, ignore_errors=True)
  size = next(iter(configs.values())).input.image_size
  print(f'\nHost input pipeline: {INPUT_IMAGES.value} JPEGs of {height}x{width} '
        f'({builder.info.splits["train"].num_bytes / INPUT_IMAGES.value / 1e3:.0f} kB each), '
        f'crops of {size} px, batch {INPUT_BATCH.value}, {INPUT_BATCHES.value} batches timed, '
        f'best of {INPUT_REPEATS.value}, on {rows[0].host_cores if rows else 0} host cores')
  print(input_benchmark.format_table(rows, HOST.value,
                                     input_benchmark.HOST_CORES_PER_CHIP[HOST.value]))


def main(argv):
  del argv
  if INPUT_ONLY.value:
    main_input()
    return
  config = flags.FLAGS.config
  if BATCH.value:
    config.batch_size = BATCH.value
  if IMAGE_SIZE.value:
    config.input.image_size = IMAGE_SIZE.value
  if DTYPE.value:
    config.model.dtype = DTYPE.value
  if MEMORY_TOPOLOGY.value and not MEMORY.value:
    raise app.UsageError('--memory_topology compiles the --memory table for a TPU slice: '
                         'add --memory.')
  if COMPILATION_CACHE_DIR.value:
    compilation_cache.enable(COMPILATION_CACHE_DIR.value)
  if MEMORY.value:
    devices = (memory_benchmark.topology_devices(MEMORY_TOPOLOGY.value)
               if MEMORY_TOPOLOGY.value else jax.devices())
    config.batch_size = (BATCH.value or
                         memory_benchmark.PAPER_IMAGES_PER_DEVICE * len(devices))
    print(f'\nCompiled memory per device (GiB), {config.task}, k={MEMORY_K.value:g}, '
          f'{config.input.image_size} px, {config.model.dtype}, batch {config.batch_size} '
          f'images on {len(devices)} x {devices[0].device_kind}')
    print('| model | mesh.fsdp | backward | arguments | outputs | temporaries | total | '
          'compile s |')
    print('|---|---|---|---|---|---|---|---|')
    memory_benchmark.memory_table(config, MEMORY_K.value,
                                  MEMORY_FSDP.value or len(devices), devices)
    return
  device = jax.devices()[0].device_kind
  train_step, state, batch, mesh = build_training(config)
  # Compiled ahead of time, so that the timing and the profile run one executable.
  compiled = train_step.lower(state, batch).compile()
  train, state = time_training(compiled, state, batch, STEPS.value, config.batch_size,
                               mesh.size)
  print(f'\nTraining throughput on {train["devices"]} x {device}')
  print('| task | model | k | dtype | image | batch (images) | step ms | images/s/device |')
  print('|---|---|---|---|---|---|---|---|')
  print(f'| {config.task} | {config.model.name} {config.model.variant} | {config.model.k:g} | '
        f'{config.model.dtype} | {config.input.image_size} | {config.batch_size} | '
        f'{train["step_ms"]:.1f} | {train["images_per_s_per_device"]:.1f} |')
  if PROFILE.value:
    cost, ops = step_profile.profile_step(compiled, state, batch, PROFILE_STEPS.value,
                                          PROFILE.value)
    step_profile.print_profile(cost, ops, PROFILE_TOP.value, mesh.size)
  if LBFGS_D.value:
    row = time_lbfgs(LBFGS_N.value, LBFGS_D.value)
    print(f'\nL-BFGS, {LBFGS_N.value} x {LBFGS_D.value} features, 10 classes, l2=1e-4, '
          f'on {device}')
    print('| solver | seconds | objective |')
    print('|---|---|---|')
    print(f'| ssl_jax.evaluate.lbfgs (jit, after compile) | {row["ssl_jax_s"]:.2f} | '
          f'{row["ssl_jax_objective"]:.5f} |')
    if 'sklearn_s' in row:
      print(f'| scikit-learn LogisticRegression (CPU) | {row["sklearn_s"]:.2f} | '
            f'{row["sklearn_objective"]:.5f} |')


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing, the config file's repository root on sys.path first."""
  config_lib.add_config_root_to_path(argv)
  return flags.FLAGS(argv)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
