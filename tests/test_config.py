"""Flags -> Config: defaults, method defaults, validation messages."""
import json

import pytest
from absl import flags

from crest import config as config_lib
from crest import flags as crest_flags
from crest import run_dir
from crest.config import Config
from crest.errors import USER_ERRORS, ConfigError


def _parse(argv):
  fv = flags.FlagValues()
  crest_flags.define_flags(fv)
  fv(['prog'] + argv)
  values, present = crest_flags.values_from_flags(fv)
  return crest_flags.config_from_values(values, present)


def test_defaults_are_the_originals():
  cfg = _parse(['--model_dir=/tmp/x'])
  assert (cfg.method, cfg.dataset, cfg.fold, cfg.class_im_ratio) == (
      'fixmatch', 'cifar10', 1, 0.1)
  assert (cfg.augment, cfg.weakaug, cfg.strongaug) == ('dh', 'dh', 'dhrac')
  assert (cfg.net_arch, cfg.net_width, cfg.input_shape) == ('WRN28', 2,
                                                           (32, 32, 3))
  assert (cfg.learning_rate, cfg.weight_decay, cfg.ema_decay) == (
      0.03, 0.0005, 0.999)
  assert (cfg.num_epoch, cfg.num_batch, cfg.num_generation) == (64, 1024, 15)
  assert (cfg.threshold, cfg.temperature, cfg.alpha, cfg.dalign_t) == (
      0.95, 0.0, 3.0, 0.5)
  assert cfg.how_dalign is None and cfg.percent_labeled is None
  assert cfg.sched_type == 'halfcos' and cfg.update_mode == 'distribution'


def test_mixmatch_defaults_apply_only_to_unset_flags():
  cfg = _parse(['--model_dir=/tmp/x', '--method=mixmatch', '--threshold=0.3'])
  assert cfg.num_weakaug == 2 and cfg.num_strongaug == 0
  assert cfg.temperature == 0.5 and cfg.unsup_loss_type == 'mse'
  assert cfg.weight_unsup == 75.0
  assert cfg.threshold == 0.3  # Set by the user: kept.


def test_readme_command_parses_and_validates():
  cfg = _parse(['--model_dir=/tmp/model', '--method=fixmatch',
                '--dataset=cifar10lt', '--input_shape=32,32,3',
                '--class_im_ratio=0.01', '--percent_labeled=0.1', '--fold=1',
                '--num_epoch=64', '--num_generation=6', '--sched_level=1',
                '--dalign_t=0.5', '--how_dalign=adaptive',
                '--do_distalign=True'])
  config_lib.validate(cfg, num_replicas=1)
  assert cfg.how_dalign == 'adaptive' and cfg.num_generation == 6


@pytest.mark.parametrize('changes, needle', [
    (dict(method='vat'), '--method'),
    (dict(dataset='imagenet'), 'cifar10lt'),
    (dict(net_arch='resnet'), 'WRN28'),
    (dict(sched_type='exp'), 'halfcos'),
    (dict(percent_labeled=0.0), '--percent_labeled'),
    (dict(percent_labeled=1.5), '(0, 1]'),
    (dict(num_generation=0), '--num_generation'),
    (dict(how_dalign='adaptive'), '--do_distalign'),
    (dict(unsup_loss_divisor='half'), 'quality'),
    (dict(model_dir=''), '--model_dir'),
    (dict(augment='dhq'), '--augment'),
    (dict(method='fixmatch', num_weakaug=2), '--num_weakaug'),
    (dict(dataset='npz'), '--data_file'),
    (dict(net_impl='fused'), '--net_impl'),
    (dict(net_width=0.0), '--net_width'),
])
def test_invalid_configs_name_the_flag(changes, needle):
  cfg = Config(model_dir='/tmp/x').replace(**changes)
  with pytest.raises(USER_ERRORS) as e:
    config_lib.validate(cfg)
  assert needle in str(e.value)


def test_network_width_is_a_float_and_the_run_name_keeps_its_form():
  cfg = _parse(['--model_dir=/tmp/x', '--net_arch=small', '--net_width=0.5',
                '--net_impl=keras'])
  assert cfg.net_width == 0.5 and cfg.net_impl == 'keras'
  assert '/small-0.5/' in run_dir.run_name(cfg)
  # A whole width reads as before ('WRN28-2', not 'WRN28-2.0'), so existing
  # run directories resume; the implementation does not change the numbers.
  default = _parse(['--model_dir=/tmp/x'])
  assert default.net_impl == 'lean'
  assert '/WRN28-2/' in run_dir.run_name(default)
  assert run_dir.run_name(default.replace(net_impl='keras')) == (
      run_dir.run_name(default))
  assert not config_lib.semantic_diff(default, default.replace(
      net_impl='keras'))


def test_batch_must_divide_among_replicas():
  cfg = Config(model_dir='/tmp/x', batch_size=6, unlab_ratio=7)
  config_lib.validate(cfg, num_replicas=2)
  with pytest.raises(ConfigError, match='divisible by the number of replicas'):
    config_lib.validate(cfg, num_replicas=4)


def test_json_round_trip_and_semantic_diff():
  cfg = Config(model_dir='/tmp/x', head_mlp_dims=(128,))
  again = Config.from_dict(json.loads(cfg.to_json()))
  assert again == cfg
  other = cfg.replace(threshold=0.9, model_dir='/elsewhere', progress=False)
  assert config_lib.semantic_diff(cfg, other) == {'threshold': (0.95, 0.9)}


def test_seed_zero_is_a_seed_and_ml_data_falls_back(monkeypatch):
  monkeypatch.setenv('ML_DATA', '/data/root')
  cfg = _parse(['--model_dir=/tmp/x'])
  assert cfg.seed == 0 and cfg.ml_data == '/data/root'
  cfg = _parse(['--model_dir=/tmp/x', '--ml_data=/other'])
  assert cfg.ml_data == '/other'


def test_help_lists_the_flags_and_the_deliberate_differences():
  import os  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run([sys.executable, '-m', 'train_and_eval_loop', '--help'],
                       cwd=root, capture_output=True, text=True,
                       timeout=120).stdout
  missing = [n for n in crest_flags.FLAG_NAMES
             if f'--{n}:' not in out and f'--[no]{n}:' not in out]
  assert not missing, missing
  assert '0 is a seed' in out and 'Synchronise batch-norm' in out


def test_input_shape_is_resolved_from_the_data_unless_set():
  cfg = Config(model_dir='/tmp/x', dataset='fashionmnistlt')
  assert config_lib.with_data_shape(cfg, (28, 28, 1), False).input_shape == (
      28, 28, 1)
  same = cfg.replace(input_shape=(28, 28, 1))
  assert config_lib.with_data_shape(same, (28, 28, 1), True) == same
  with pytest.raises(ConfigError, match='does not match the data'):
    config_lib.with_data_shape(cfg, (28, 28, 1), True)
