"""Config system: arguments, locking, validation, JSON round trip, every config file."""

import glob
import importlib.util
import os
import re

import pytest

from ssl_jax import config_lib

CONFIGS = sorted(p for p in glob.glob(os.path.join(os.path.dirname(__file__), '..', 'configs',
                                                  '*.py'))
                 if os.path.basename(p) not in ('__init__.py', 'common.py'))


def _load(path):
  spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_parse_arg_types_and_flags():
  args = config_lib.parse_arg('k=16,runlocal,variant=v1', k=4.0, variant='v2', runlocal=False)
  assert args.k == 16.0 and isinstance(args.k, float)
  assert args.runlocal is True and args.variant == 'v1'


def test_parse_arg_unknown_lists_valid():
  with pytest.raises(ValueError, match='valid arguments: k, runlocal'):
    config_lib.parse_arg('width=3', k=4.0, runlocal=False)


def test_unknown_key_lists_valid_keys():
  config = config_lib.lock(config_lib.run_config('rotation'))
  with pytest.raises(AttributeError, match='batch_size'):
    config.bacth_size = 3
  with pytest.raises(KeyError, match='valid keys here: .*batch_size'):
    config_lib.merge(config_lib.run_config('rotation'), {'bacth_size': 3}, '')


def test_validation_names_the_fix():
  config = config_lib.run_config('rotation')
  config.model.variant = 'v1'
  config.model.last_relu = False
  with pytest.raises(ValueError, match='only for v2'):
    config_lib.lock(config)


@pytest.mark.parametrize('field,value,message', [
    ('moco.queue_size', 1000, 'multiple of batch_size'),
    ('optimizer.name', 'adam', 'use one of sgd, lars'),
    ('augment.blur_prob', (0.5,), 'one probability per view'),
    ('optimizer.lr_scaling', 'cubic', 'linear, sqrt or none'),
])
def test_contrastive_validation_names_the_fix(field, value, message):
  config = config_lib.run_config('moco')
  section, name = field.split('.')
  config[section][name] = value
  with pytest.raises(ValueError, match=message):
    config_lib.lock(config)


def test_json_round_trip_keeps_tuples():
  config = config_lib.run_config('jigsaw')
  config.evals.knn = config_lib.evaluator('knn', every=5)
  config.evals.finetune_10 = config_lib.evaluator('finetune', labels_per_class=10)
  config_lib.lock(config)
  again = config_lib.from_json(config_lib.to_json(config))
  assert again.to_dict() == config.to_dict()
  assert isinstance(again.model.units, tuple)
  assert isinstance(again.evals.finetune_10.optimizer.decay_epochs, tuple)


TRAINING_CONFIGS = [p for p in CONFIGS if not p.endswith('linear_eval.py')]


@pytest.mark.parametrize('path', TRAINING_CONFIGS, ids=os.path.basename)
@pytest.mark.parametrize('arg', ['', 'runlocal'])
def test_every_config_loads_locked(path, arg):
  config = _load(path).get_config(arg)
  assert config.is_locked
  assert _load(path).__doc__ and 'python -m ssl_jax.main' in _load(path).__doc__
  if arg == 'runlocal':
    assert config.dataset.name == 'cifar10_5k' and 0 < config.total_steps <= 2000  # Minutes on a CPU.


CONTRASTIVE_CONFIGS = [p for p in TRAINING_CONFIGS if re.search(
    r'common\.(contrastive|moco)\(', open(p, encoding='utf-8').read())]


@pytest.mark.parametrize('path', CONTRASTIVE_CONFIGS, ids=os.path.basename)
def test_fewshot_argument_adds_the_fewshot_evaluator(path):
  """``fewshot`` adds instance evals.fewshot of type fewshot (Zhao et al.'s episodes) and
  changes nothing else."""
  plain, with_fewshot = (_load(path).get_config(a).to_dict()
                         for a in ('runlocal', 'runlocal,fewshot'))
  assert 'fewshot' not in plain['evals']
  assert with_fewshot['evals'].pop('fewshot')['type'] == 'fewshot'
  assert with_fewshot == plain


def _parse_command_line(*args):
  from absl import flags
  from ml_collections import config_flags
  argv = ['prog', *args]
  flag_values = flags.FlagValues()
  # config_flags reads the overrides from sys_argv (sys.argv when run as a program).
  config_flags.DEFINE_config_file('config', None, '', flag_values=flag_values,
                                  lock_config=True, sys_argv=argv)
  flag_values(argv)
  return flag_values.config


def test_command_line_overrides_and_unknown_key():
  path = os.path.join(os.path.dirname(__file__), '..', 'configs', 'rotation_resnet50.py')
  config = _parse_command_line(f'--config={path}:runlocal', '--config.total_steps=7')
  assert config.total_steps == 7 and config.model.k == 0.25
  with pytest.raises(Exception, match='nonexistent'):
    _parse_command_line(f'--config={path}', '--config.nonexistent=7')


def test_main_lists_valid_keys_for_unknown_override(monkeypatch):
  from absl import app
  from absl import flags
  from ssl_jax import main as main_lib
  path = os.path.join(os.path.dirname(__file__), '..', 'configs', 'rotation_resnet50.py')
  argv = ['prog', f'--config={path}:runlocal', '--workdir=/tmp/unused',
          '--config.bacth_size=3']
  monkeypatch.setattr('sys.argv', argv)  # config_flags reads the overrides from sys.argv.
  try:
    with pytest.raises(app.UsageError, match="'bacth_size'; valid keys: .*batch_size"):
      main_lib.parse_flags(argv)
  finally:
    flags.FLAGS.unparse_flags()


def test_linear_eval_config_needs_a_workdir():
  path = [p for p in CONFIGS if p.endswith('linear_eval.py')][0]
  with pytest.raises(ValueError, match='needs workdir=PATH'):
    _load(path).get_config('protocol=linear')
