"""Cole et al.'s data axes: nested static subsets (pretraining and the evaluators'),
corruptions of the pretraining images against PIL and their invariants, label maps,
concatenated encoders."""

import io
import pathlib

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from conftest import random_encoder
from conftest import tiny_config
from ssl_jax import main
from ssl_jax import step as step_lib
from ssl_jax import train
from ssl_jax.data import corruption
from ssl_jax.data import input_pipeline
from ssl_jax.data import label_map
from ssl_jax.evaluate import context
from ssl_jax.evaluate import features as features_lib
from ssl_jax.evaluate import knn
from ssl_jax.evaluate import lbfgs
from ssl_jax.evaluate import linear


@pytest.fixture(scope='module')
def builder():
  return input_pipeline.get_builder(tiny_config().dataset)


class AxesMock(tfds.core.GeneratorBasedBuilder):
  """A second tiny dataset to pool with the shipped one: 40 train images of 3 classes,
  image i a constant (i + 1, 0, 0), so a streamed image names its example."""
  name = 'axes_mock'
  VERSION = tfds.core.Version('1.0.0')
  pkg_dir_path = pathlib.Path(__file__).parent  # TFDS looks for metadata in a package.

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({
        'image': tfds.features.Image(shape=(32, 32, 3)),
        'label': tfds.features.ClassLabel(num_classes=3)}))

  def _split_generators(self, dl_manager):
    return {'train': self._generate_examples()}

  def _generate_examples(self):
    for i in range(40):
      image = np.zeros((32, 32, 3), np.uint8)
      image[..., 0] = i + 1
      yield i, {'image': image, 'label': i % 3}


POOLED = {'dataset.mixture_names': ('cifar10_5k', 'axes_mock'),
          'dataset.mixture_weights': (3.0, 1.0), 'dataset.subset_examples': 64}


@pytest.fixture(scope='module')
def workdirs(tmp_path_factory):
  """Two saved random initialisations: seed 0 pretraining on a subset of 48 images, and
  seed 1 on a pooled set of 64 (48 shipped, 16 mock)."""
  tfds.builder('axes_mock').download_and_prepare()
  first, second = (str(tmp_path_factory.mktemp(name)) for name in ('first', 'second'))
  assert train.train(tiny_config(total_steps=0, **{'dataset.subset_examples': 48}), first)
  assert train.train(tiny_config(total_steps=0, seed=1, **POOLED), second)
  return first, second


def _dataset(**fields):
  dataset = tiny_config().dataset.copy_and_resolve_references()
  dataset.unlock()
  dataset.update(fields)
  return dataset


# Subsets.

def test_pretraining_subsets_are_static_and_nested(builder):
  small = input_pipeline.pretrain_ids(_dataset(subset_examples=100), builder)
  large = input_pipeline.pretrain_ids(_dataset(subset_examples=1000), builder)
  assert len(small) == 100 and len(set(large.tolist())) == 1000
  assert list(large[:100]) == list(small)  # Nested: a prefix of the larger subset.
  again = input_pipeline.pretrain_ids(_dataset(subset_examples=100), builder)
  assert list(again) == list(small)  # Static.
  other = input_pipeline.pretrain_ids(_dataset(subset_examples=100, subset_seed=1), builder)
  assert set(other.tolist()) != set(small.tolist())
  assert input_pipeline.pretrain_ids(_dataset(), builder) is None
  # The held-out examples are never pretrained on.
  held = _dataset(subset_examples=1000, holdout_examples=500)
  assert not set(input_pipeline.pretrain_ids(held, builder).tolist()) & set(
      input_pipeline.holdout_ids(held, builder).tolist())


def test_subset_larger_than_the_split_is_refused(builder):
  num_train = builder.info.splits['train'].num_examples
  with pytest.raises(ValueError, match=f'exceeds the {num_train - 10} examples'):
    input_pipeline.pretrain_ids(_dataset(subset_examples=num_train, holdout_examples=10),
                                builder)


def test_evaluator_draws_are_nested(builder):
  dataset = _dataset()
  small = input_pipeline.random_subset_ids(dataset, builder, 200, seed=3)
  large = input_pipeline.random_subset_ids(dataset, builder, 800, seed=3)
  assert set(small.tolist()) <= set(large.tolist())
  assert list(input_pipeline.random_subset_ids(dataset, builder, 200, seed=3)) == list(small)


def test_run_on_a_subset_writes_its_ids_and_streams_only_them(builder, workdirs):
  config = tiny_config(total_steps=0, **{'dataset.subset_examples': 48})
  written = (pathlib.Path(workdirs[0]) / 'train_ids.txt').read_text().split()
  expected = input_pipeline.pretrain_ids(config.dataset, builder)
  assert written == [i.decode() for i in expected]
  # One epoch of the stream (3 batches of 16) holds exactly the subset's images.
  stream = input_pipeline.train_batches(
      config.dataset, builder, step_lib.make_mesh(), lambda f, seed: {'image': f['image']},
      batch_size=16, seed=0, keep_ids=expected)
  seen = sorted(bytes(im.tobytes()) for _ in range(3) for im in np.asarray(next(stream)['image']))
  read = builder.as_dataset(split='train', shuffle_files=False,
                            read_config=tfds.ReadConfig(
                                add_tfds_id=True))
  wanted = set(written)
  subset = sorted(bytes(ex['image'].tobytes()) for ex in read.as_numpy_iterator()
                  if ex['tfds_id'].decode() in wanted)
  assert seen == subset


def test_pooled_set_has_exact_proportions_nested_parts_and_one_pass_per_epoch(workdirs):
  assert input_pipeline.mixture_counts((3.0, 1.0), 64) == [48, 16]
  assert input_pipeline.mixture_counts((1, 1, 1), 100) == [34, 33, 33]
  config = tiny_config(**POOLED)
  parts = input_pipeline.mixture_parts(config.dataset)
  assert [len(p.keep_ids) for p in parts] == [48, 16]
  assert [p.label_offset for p in parts] == [0, 10]
  larger = tiny_config(**{**POOLED, 'dataset.subset_examples': 128})
  for small, large in zip(parts, input_pipeline.mixture_parts(larger.dataset)):
    assert set(small.keep_ids.tolist()) <= set(large.keep_ids.tolist())  # Nested.
  written = (pathlib.Path(workdirs[1]) / 'train_ids.txt').read_text().split()
  assert written == [f'{p.dataset.name}/{i.decode()}' for p in parts for i in p.keep_ids]
  read = parts[1].builder.as_dataset(split='train', read_config=tfds.ReadConfig(
      add_tfds_id=True))
  mock_values = {ex['tfds_id']: ex['image'][0, 0, 0] for ex in read.as_numpy_iterator()}
  stream = input_pipeline.train_batches(
      config.dataset, None, step_lib.make_mesh(), lambda f, seed: f, batch_size=16, seed=0,
      pooled=parts)
  for epoch in range(2):  # Each epoch: every pooled image once, 16 of them mock.
    batches = [next(stream) for _ in range(4)]
    labels = np.concatenate([np.asarray(b['label']) for b in batches])
    images = np.concatenate([np.asarray(b['image']) for b in batches])
    mock = labels >= 10
    assert mock.sum() == 16 and 0 < mock[:16].sum() < 16  # Mixed within batches.
    assert sorted(images[mock][:, 0, 0, 0]) == sorted(mock_values[i] for i in parts[1].keep_ids)
    assert len({bytes(i.tobytes()) for i in images[~mock]}) == 48


# Corruptions.

def _image(size=32, seed=0):
  """A smooth gradient with some noise: JPEG and resampling behave as on photographs."""
  yy, xx = np.mgrid[0:size, 0:size]
  image = np.stack([yy * 8, xx * 8, (xx + yy) * 4], -1)
  noise = np.random.default_rng(seed).integers(0, 20, image.shape)
  return np.clip(image + noise, 0, 255).astype(np.uint8)


def test_downsample_factor_one_is_the_identity_and_matches_pil():
  image = _image()
  np.testing.assert_array_equal(corruption.downsample(tf.constant(image), 1).numpy(), image)
  for factor in (2, 4):
    ours = corruption.downsample(tf.constant(image), factor).numpy().astype(int)
    # PIL: box average of factor x factor blocks, then bilinear back to 32 x 32.
    pil = Image.fromarray(image).reduce(factor).resize((32, 32), Image.BILINEAR)
    assert np.abs(ours - np.asarray(pil, int)).max() <= 1  # PIL rounds between the steps.
    assert ours.shape == image.shape and np.abs(ours - image).mean() > 2


def test_jpeg_equals_pil_encode_decode():
  image = _image()
  for quality in (10, 75):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, 'JPEG', quality=quality)
    pil = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert('RGB'))
    np.testing.assert_array_equal(corruption.jpeg(tf.constant(image), quality).numpy(), pil)


def test_salt_pepper_changes_about_rate_of_pixels_to_black_or_white():
  image = np.full((64, 64, 3), 128, np.uint8)
  seed = tf.constant([3, 7], tf.int64)
  noisy = corruption.salt_pepper(tf.constant(image), 0.1, seed).numpy()
  changed = (noisy != image).any(-1)
  assert abs(changed.mean() - 0.1) < 0.02  # 4,096 pixels: the std is 0.005.
  assert set(np.unique(noisy[changed])) == {0, 255}
  assert (noisy[changed] == noisy[changed][:, :1]).all()  # All channels together.
  np.testing.assert_array_equal(
      corruption.salt_pepper(tf.constant(image), 0.1, seed).numpy(), noisy)  # Seeded.
  assert (corruption.salt_pepper(tf.constant(image), 0.0, seed).numpy() == image).all()


def test_corruption_reaches_the_pretraining_stream_only(builder):
  config = tiny_config(**{'corruption.name': 'salt_pepper', 'corruption.salt_pepper_rate': 0.5})
  corrupt = corruption.corrupt_fn(config.corruption)
  mesh = step_lib.make_mesh()
  identity = lambda f, seed: {'image': f['image']}  # noqa: E731
  clean = next(input_pipeline.train_batches(config.dataset, builder, mesh, identity,
                                            batch_size=16, seed=0))['image']
  noisy = next(input_pipeline.train_batches(config.dataset, builder, mesh, identity,
                                            batch_size=16, seed=0, corrupt_fn=corrupt))['image']
  clean, noisy = np.asarray(clean), np.asarray(noisy)
  changed = (clean != noisy).any(-1)
  assert 0.4 < changed.mean() < 0.6 and set(np.unique(noisy[changed])) <= {0, 255}
  with pytest.raises(ValueError, match='corruption.name'):
    corruption.corrupt_fn(tiny_config(**{'corruption.name': 'blur'}).corruption)


def test_each_image_has_one_corrupted_copy_in_every_epoch(builder):
  config = tiny_config(**{'corruption.name': 'salt_pepper', 'corruption.salt_pepper_rate': 0.5,
                          'dataset.subset_examples': 16})
  keep = input_pipeline.pretrain_ids(config.dataset, builder)
  mesh = step_lib.make_mesh()
  identity = lambda f, seed: {'image': f['image']}  # noqa: E731

  def two_epochs(corrupt_fn):
    stream = input_pipeline.train_batches(config.dataset, builder, mesh, identity,
                                          batch_size=16, seed=0, keep_ids=keep,
                                          corrupt_fn=corrupt_fn)
    return [np.asarray(next(stream)['image']) for _ in range(2)]

  clean = two_epochs(None)
  noisy = two_epochs(corruption.corrupt_fn(config.corruption))
  first = {clean[0][i].tobytes(): noisy[0][i] for i in range(16)}
  assert len(first) == 16 and not (clean[0] == noisy[0]).all()
  for i in range(16):  # Epoch 2 reorders the images; each keeps its corrupted copy.
    np.testing.assert_array_equal(noisy[1][i], first[clean[1][i].tobytes()])


# Label granularity.

def test_label_maps_from_names_features_and_taxonomy():
  fine = ['oak', 'pine', 'robin']
  np.testing.assert_array_equal(
      label_map.from_pairs(fine, {'oak': 'plant', 'pine': 'plant', 'robin': 'bird'}), [1, 1, 0])
  np.testing.assert_array_equal(label_map.from_pairs(fine, {'0': 2, '1': 2, '2': 0}), [2, 2, 0])
  with pytest.raises(ValueError, match="add \\['robin'\\]"):
    label_map.from_pairs(fine, {'oak': 'plant', 'pine': 'plant'})
  np.testing.assert_array_equal(
      label_map.from_feature(np.array([2, 0, 1, 2]), np.array([5, 3, 3, 5]), 3), [3, 3, 5])
  with pytest.raises(ValueError, match='two coarse labels'):
    label_map.from_feature(np.array([0, 0]), np.array([1, 2]), 1)
  categories = [{'name': 'Quercus robur', 'kingdom': 'Plantae', 'genus': 'Quercus'},
                {'name': 'Pinus sylvestris', 'kingdom': 'Plantae', 'genus': 'Pinus'},
                {'name': 'Erithacus rubecula', 'kingdom': 'Animalia', 'genus': 'Erithacus'}]
  names = ['quercus_robur', 'pinus_sylvestris', 'erithacus_rubecula']  # TFDS's class names.
  np.testing.assert_array_equal(label_map.from_taxonomy(categories, names, 'kingdom'), [1, 1, 0])
  np.testing.assert_array_equal(label_map.from_taxonomy(categories, names, 'genus'), [2, 1, 0])


def _random_encoder(mesh, seed=0):
  return random_encoder(tiny_config().model, mesh, seed)


def test_evaluating_with_a_map_equals_evaluating_mapped_labels(builder, tmp_path):
  config = tiny_config(evals=('lbfgs', 'knn'), **{
      'dataset.test_split': 'test[:256]',
      'evals.lbfgs.num_train_examples': 300, 'evals.lbfgs.label_map': 'cifar10_vehicle_animal',
      'evals.knn.max_train_examples': 300, 'evals.knn.label_map': 'cifar10_five_groups',
      'evals.knn.k': 10})
  mesh = step_lib.make_mesh()
  data = context.data_spec(config, builder, mesh)
  encoder = _random_encoder(mesh)
  coarse_lbfgs = lbfgs.run(config.evals.lbfgs, encoder, data, str(tmp_path))
  coarse_knn = knn.run(config.evals.knn, encoder, data, str(tmp_path))
  ids = input_pipeline.random_subset_ids(data.dataset, builder, 300, data.seed)
  test = config.dataset.test_split
  extracted = features_lib.extract(encoder, data, ('train', test), ('pre_logits',), 9000,
                                   keep_ids={'train': ids})
  (train_x, train_y), (test_x, test_y) = extracted['train'], extracted[test]
  vehicles = [0, 1, 8, 9]  # airplane, automobile, ship, truck; 'animal' < 'vehicle'.
  by_hand = lbfgs.evaluate_features(
      train_x['pre_logits'], np.isin(train_y, vehicles).astype(int), test_x['pre_logits'],
      np.isin(test_y, vehicles).astype(int), config.evals.lbfgs, 2, data.seed)
  assert coarse_lbfgs['pre_logits/top1'] == pytest.approx(by_hand['top1'])
  # air_or_water_vehicle 0, amphibian 1, bird 2, mammal 3, road_vehicle 4.
  groups = np.array([0, 4, 2, 3, 3, 3, 1, 3, 0, 4])
  by_hand = knn.evaluate_features(train_x['pre_logits'], groups[train_y], test_x['pre_logits'],
                                  groups[test_y], 5, 10, config.evals.knn.temperature, mesh)
  assert coarse_knn['pre_logits/top1'] == pytest.approx(by_hand['top1'])
  assert coarse_knn['pre_logits/top5'] == 1.0  # Five classes: always among the top 5.


def test_linear_probe_scores_the_mapped_labels(builder, tmp_path):
  """A zero head before any step predicts class 0 everywhere: with the vehicle/animal map
  its accuracy is the share of animals ('animal' < 'vehicle'), not of airplanes."""
  config = tiny_config(evals=('linear',), **{
      'evals.linear.label_map': 'cifar10_vehicle_animal', 'evals.linear.total_steps': 0,
      'evals.linear.head_init': 'zeros', 'evals.linear.layers': ('pre_logits',),
      'dataset.test_split': 'test[:128]'})
  mesh = step_lib.make_mesh()
  data = context.data_spec(config, builder, mesh)
  results = linear.run(config.evals.linear, _random_encoder(mesh), data, str(tmp_path))
  labels = [ex['label'] for ex in builder.as_dataset(split='test[:128]').as_numpy_iterator()]
  assert results['pre_logits/top1'] == pytest.approx(np.mean(~np.isin(labels, [0, 1, 8, 9])))


# Concatenated encoders.

def test_concatenated_encoders_features_and_evaluation(builder, workdirs, tmp_path):
  first, second = workdirs
  config = tiny_config(evals=('knn',), encoder_workdir=first, concat_encoder_workdir=second,
                       **{'evals.knn.max_train_examples': 200, 'evals.knn.k': 10,
                          'dataset.test_split': 'test[:256]'})
  results = main.run(config, str(tmp_path))
  encoders = [context.from_workdir(w, config)[0] for w in (first, second)]
  data = context.data_spec(config, builder, step_lib.make_mesh())
  ids = input_pipeline.random_subset_ids(data.dataset, builder, 200, data.seed)
  test = config.dataset.test_split
  parts = [features_lib.extract(e, data, ('train', test), ('pre_logits',), 9000,
                                keep_ids={'train': ids}) for e in encoders]
  joined = {split: np.concatenate([p[split][0]['pre_logits'] for p in parts], axis=1)
            for split in ('train', test)}
  both = context.with_concatenated(encoders[0], second, data.mesh)
  together = features_lib.extract(both, data, (test,), ('pre_logits',), 9000)
  assert together[test][0]['pre_logits'].shape[1] == sum(
      p[test][0]['pre_logits'].shape[1] for p in parts)
  np.testing.assert_allclose(together[test][0]['pre_logits'], joined[test], rtol=1e-6)
  by_hand = knn.evaluate_features(joined['train'], parts[0]['train'][1], joined[test],
                                  parts[0][test][1], 10, 10, config.evals.knn.temperature,
                                  data.mesh)
  alone = knn.evaluate_features(parts[0]['train'][0]['pre_logits'], parts[0]['train'][1],
                                parts[0][test][0]['pre_logits'], parts[0][test][1], 10, 10,
                                config.evals.knn.temperature, data.mesh)
  assert results['knn/pre_logits/top1'] == pytest.approx(by_hand['top1'])
  assert results['knn/pre_logits/top5'] != pytest.approx(alone['top5'])  # Not the first alone.
  with pytest.raises(ValueError, match='fine-tuning'):
    both.module


# Dataset configs.

@pytest.mark.parametrize('name', ['simclr_resnet50', 'moco_v2_resnet50', 'byol_resnet50',
                                  'supervised_v1_resnet50'])
def test_contrastive_configs_take_inat21_and_places365_with_their_test_splits(name):
  module = main._load_config  # The config file, loaded as --config loads it.
  for dataset, test_split in (('i_naturalist2021', 'val'), ('places365_small', 'validation')):
    config = module(f'configs/{name}.py:dataset={dataset}')
    assert (config.dataset.name, config.dataset.test_split) == (dataset, test_split)


def test_linear_eval_options_of_the_data_axes(workdirs):
  first, second = workdirs
  config = main._load_config(f'configs/linear_eval.py:workdir={first},protocol=lbfgs+knn,'
                             f'label_map=cifar10_five_groups,concat={second},'
                             'dataset=i_naturalist2021')
  assert config.concat_encoder_workdir == second
  assert config.evals.lbfgs.label_map == config.evals.knn.label_map == 'cifar10_five_groups'
  assert config.dataset.test_split == 'val'  # Not the run's 'test'.
