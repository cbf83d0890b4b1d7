"""Host pipeline: a JPEG's crop decoded alone equals the crop of the whole decode, the
training stream of encoded JPEGs equals the decode-whole stream and resumes exactly, the
device prefetch thread (order, errors, shutdown), and the input benchmark's table."""

import itertools
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import sections
from conftest import tiny_config
from ssl_jax import config_lib
from ssl_jax import input_benchmark
from ssl_jax import step as step_lib
from ssl_jax.data import input_pipeline
from ssl_jax.data import jpeg_images
from ssl_jax.data import prefetch
from ssl_jax.data import preprocess as pp


def _jpeg(rng, height, width, *, channels=3, subsample=True, progressive=False) -> tf.Tensor:
  """A smooth random image with texture, JPEG-encoded (scalar string)."""
  coarse = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, channels)).astype(np.float32)
  image = tf.image.resize(coarse, (height, width), 'bicubic') + rng.normal(0, 6, (height, width,
                                                                                 channels))
  image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
  return tf.io.encode_jpeg(image, quality=int(rng.integers(60, 100)),
                           chroma_downsampling=subsample, progressive=progressive)


def test_decode_crop_of_a_jpeg_equals_the_crop_of_the_whole_decode():
  rng = np.random.default_rng(0)
  raw_differs = 0
  for trial in range(60):
    height, width = (int(v) for v in rng.integers(17, 160, 2))
    encoded = _jpeg(rng, height, width, channels=1 if trial % 9 == 0 else 3,
                    subsample=trial % 3 > 0, progressive=trial % 5 == 0)
    # Windows at iMCU (16-px) boundaries too, where the chroma edge effect shows.
    top = int(rng.integers(0, height - 1)) // (16 if trial % 2 else 1) * (16 if trial % 2 else 1)
    left = int(rng.integers(0, width - 1)) // 16 * 16 if trial % 4 < 2 else int(
        rng.integers(0, width - 1))
    size = (int(rng.integers(1, height - top + 1)), int(rng.integers(1, width - left + 1)))
    window = lambda shape, t=top, l=left, s=size: (tf.constant([t, l, 0]),  # noqa: E731
                                                   tf.constant([s[0], s[1], -1]))
    whole = tf.io.decode_image(encoded, channels=3, expand_animations=False).numpy()
    expected = whole[top:top + size[0], left:left + size[1]]
    np.testing.assert_array_equal(pp.decode_crop(encoded, window).numpy(), expected)
    raw = tf.image.decode_and_crop_jpeg(encoded, [top, left, *size], channels=3).numpy()
    raw_differs += not np.array_equal(raw, expected)
  # The images exercise the edge effect the one-pixel margin removes.
  assert raw_differs > 0
  png = tf.io.encode_png(tf.io.decode_image(encoded, channels=3, expand_animations=False))
  np.testing.assert_array_equal(pp.decode_crop(png, window).numpy(), expected)


@pytest.mark.parametrize('task', ['rotation', 'simclr', 'exemplar', 'jigsaw'])
def test_every_task_preprocesses_an_encoded_jpeg_as_its_decoded_image(task):
  # The Inception crop (runlocal's 32-px default is the whole image).
  overrides = {'input.crop': 'inception', 'input.image_size': 32}
  if task == 'simclr':
    overrides.update({'input.local_crops': 2, 'input.local_size': 8})
  s = sections(tiny_config(task, **overrides))
  preprocess = step_lib.import_task(tiny_config(task)).preprocess
  encoded = _jpeg(np.random.default_rng(1), 75, 98)
  decoded = pp.decode(encoded)
  for seed in range(6):
    seed = tf.constant([3, seed], tf.int64)
    fused = preprocess({'image': encoded, 'label': tf.constant(3)}, seed, s)
    whole = preprocess({'image': decoded, 'label': tf.constant(3)}, seed, s)
    assert fused.keys() == whole.keys()
    for key in fused:
      np.testing.assert_array_equal(fused[key].numpy(), whole[key].numpy())
  inp = s.input
  np.testing.assert_array_equal(pp.eval_image(encoded, inp).numpy(),
                                pp.eval_image(decoded, inp).numpy())


@pytest.fixture(scope='module')
def jpegs(tmp_path_factory):
  """48 JPEGs of 40 x 56 in TFDS format."""
  return jpeg_images.prepare(str(tmp_path_factory.mktemp('jpeg')), height=40, width=56,
                             count=48)


def _stream(config, builder, encoded, start_step=0, num=4):
  s = sections(config)
  task = step_lib.import_task(config)
  stream = input_pipeline.train_batches(
      config.dataset, builder, step_lib.make_mesh(),
      lambda f, seed: task.preprocess(f, seed, s), batch_size=16, seed=config.seed,
      start_step=start_step, encoded_images=encoded)
  batches = [np.asarray(next(stream)['image']) for _ in range(num)]
  stream.close()
  return batches


def test_stream_of_encoded_jpegs_equals_decoding_whole_and_resumes(jpegs):
  # The old path: decode whole, then crop; no device prefetch, one tf.data thread.
  crops = {'input.crop': 'inception', 'input.image_size': 32, 'dataset.shuffle_buffer': 48}
  before = tiny_config(**crops, **{'dataset.prefetch': 0, 'dataset.threads': 1})
  after = tiny_config(**crops)
  old = _stream(before, jpegs, encoded=False)  # 4 batches of 16: into the second epoch.
  new = _stream(after, jpegs, encoded=True)
  for got, expected in zip(new, old):
    np.testing.assert_array_equal(got, expected)
  for got, expected in zip(_stream(after, jpegs, encoded=True, start_step=2, num=2), old[2:]):
    np.testing.assert_array_equal(got, expected)
  assert not np.array_equal(old[0], old[1])


def _ours() -> list[threading.Thread]:
  return [t for t in threading.enumerate() if t.name == 'ssl_jax.prefetch']


def test_prefetch_keeps_the_order_and_runs_ahead():
  pulled, putters = [], set()

  def source():
    for i in itertools.count():
      pulled.append(i)
      yield i

  def put(x):
    putters.add(threading.current_thread().name)
    return -x

  batches = prefetch.to_devices(source(), put, 3)
  assert [next(batches) for _ in range(5)] == [0, -1, -2, -3, -4]
  assert putters == {threading.current_thread().name}  # JAX is called from one thread.
  deadline = time.time() + 10
  while len(pulled) < 5 + 3 + 3 and time.time() < deadline:
    time.sleep(0.01)
  time.sleep(0.2)
  # 3 put ahead, 3 waiting in the thread's queue and one in its hand, never more.
  assert 5 + 3 + 3 <= len(pulled) <= 5 + 3 + 3 + 1
  batches.close()
  assert list(prefetch.to_devices(iter(range(4)), str, 2)) == ['0', '1', '2', '3']


@pytest.mark.parametrize('where', ['source', 'put'])
def test_prefetch_error_surfaces_in_the_main_thread_at_its_batch(where):
  def source():
    yield from (0, 1)
    if where == 'source':
      raise OSError('corrupt record in shard 3')
    yield 2

  def put(x):
    if where == 'put' and x == 2:
      raise OSError('corrupt record in shard 3')
    return x

  batches = prefetch.to_devices(source(), put, 2)
  assert [next(batches), next(batches)] == [0, 1]
  with pytest.raises(OSError, match='corrupt record in shard 3'):
    next(batches)
  assert not _ours()


def test_prefetch_close_stops_the_thread_and_zero_starts_none():
  before = len(_ours())
  batches = prefetch.to_devices(itertools.count(), lambda x: x, 2)
  next(batches)
  assert len(_ours()) == before + 1
  batches.close()
  assert len(_ours()) == before
  plain = prefetch.to_devices(itertools.count(), lambda x: x, 0)
  assert [next(plain), next(plain)] == [0, 1] and len(_ours()) == before


def test_abandoned_prefetch_does_not_hang_the_exit():
  code = ('import itertools, time\n'
          'from ssl_jax.data import prefetch\n'
          'batches = prefetch.to_devices(itertools.count(), lambda x: time.sleep(0.01) or x, 2)\n'
          'print(next(batches))\n')
  start = time.time()
  done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                        timeout=60)
  assert done.returncode == 0 and done.stdout.strip() == '0', done.stderr
  assert time.time() - start < 20


def test_input_benchmark_table_on_two_tasks(jpegs):
  configs = {name: input_benchmark.benchmark_config(
      tiny_config(task), batch=16, threads=2, shuffle_buffer=32)
      for name, task in (('rot', 'rotation'), ('sim', 'simclr'))}
  rows = input_benchmark.run(configs, jpegs, batches=2, warmup=1,
                             device_images_per_s={'rotation': 100.0}, decode_whole=True)
  assert [(r.name, r.task, r.images, r.host_cores) for r in rows] == [
      ('rot', 'rotation', 32, 2), ('sim', 'simclr', 32, 2)]
  rot = rows[0]
  assert rot.ratio(28) == pytest.approx(rot.images / rot.cpu_seconds * 28 / 100)
  assert 0 < rot.cpu_seconds <= os.cpu_count() * rot.seconds + 0.1
  assert rot.cores_needed() == pytest.approx(1.5 * 100 / rot.per_core)
  table = input_benchmark.format_table(rows, 'tpu_v5e', 28)
  print(table)
  lines = table.splitlines()
  assert len(lines) == 4 and lines[2].startswith('| rot | rotation | ')
  assert f'{rot.ratio(28):.2f}' in lines[2] and 'not given' in lines[3]
  assert f'| {rot.per_core:.1f} | {rot.per_core_decode_whole():.1f} |' in lines[2]
  with pytest.raises(ValueError, match='NAME=IMAGES_PER_S'):
    input_benchmark.parse_rates('rotation=fast')
  assert input_benchmark.parse_rates('rotation=5328, simclr_resnet50=2e3') == {
      'rotation': 5328.0, 'simclr_resnet50': 2000.0}


def test_negative_prefetch_or_threads_is_refused():
  """By the run config's validation, before any file is read."""
  for field in ('prefetch', 'threads'):
    with pytest.raises(ValueError, match=f'dataset.{field}=-1'):
      config_lib.validate(tiny_config(**{f'dataset.{field}': -1}))
