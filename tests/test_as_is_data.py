"""Data used as is (own `npz`, ImageNet-127): no --class_im_ratio, the
measured imbalance in data.json, the run name and the tables."""
import json
import os

import numpy as np
import pytest
from absl import flags

from crest import flags as crest_flags
from crest import run_dir
from crest import run_guard
from crest.errors import ConfigError
from data import base
from data import registry
from scripts import summarize

COUNTS = [20, 12, 9, 6]  # N_max / N_min = 20 / 6.


def _npz(tmp_path):
  rng = np.random.default_rng(0)
  y = rng.permutation(np.repeat(np.arange(4), COUNTS))
  path = tmp_path / 'own.npz'
  np.savez(path, x_train=rng.integers(0, 256, (len(y), 8, 8), dtype=np.uint8),
           y_train=y.astype(np.int32),
           x_test=rng.integers(0, 256, (8, 8, 8), dtype=np.uint8),
           y_test=np.repeat(np.arange(4), 2))
  return str(path)


def _parse(argv):
  fv = flags.FlagValues()
  crest_flags.define_flags(fv)
  fv(['prog'] + argv)
  return crest_flags.config_from_values(*crest_flags.values_from_flags(fv))


@pytest.mark.parametrize('dataset', ['npz', 'imagenet127_32'])
def test_class_im_ratio_given_for_data_used_as_is_is_refused(dataset):
  with pytest.raises(ConfigError, match='does nothing for --dataset='
                     f'{dataset}.*Drop the flag'):
    _parse([f'--dataset={dataset}', '--class_im_ratio=0.1'])
  _parse([f'--dataset={dataset}'])  # Unset: accepted.
  _parse(['--dataset=npzlt', '--class_im_ratio=0.1'])  # It means gamma=10.


def test_run_name_says_as_is_not_the_unused_ratio(tmp_path):
  cfg = _parse(['--dataset=npz', f'--data_file={tmp_path}/own.npz',
                f'--model_dir={tmp_path}'])
  name = os.path.relpath(run_dir.path(cfg), str(tmp_path))
  assert name.startswith('npz_asis_p0.1_fold1'), name
  lt = _parse(['--dataset=npzlt', '--class_im_ratio=0.05',
               f'--model_dir={tmp_path}'])
  assert os.path.relpath(run_dir.path(lt), str(tmp_path)).startswith(
      'npzlt_im0.05_p0.1_fold1')
  assert registry.imbalance_gamma('npz', 0.1) is None
  assert registry.imbalance_gamma('npzlt', 0.1) == pytest.approx(10)


def test_data_json_records_the_measured_imbalance_and_tables_show_it(
    tmp_path, capsys):
  data = registry.load(base.DataArgs('npz', data_file=_npz(tmp_path)))
  cfg = _parse(['--dataset=npz', f'--data_file={tmp_path}/own.npz',
                f'--model_dir={tmp_path}/runs', '--num_generation=1',
                '--num_epoch=1', '--num_batch=2'])
  path = run_dir.path(cfg)
  os.makedirs(path)
  run_guard.check_data(path, cfg, data)
  with open(os.path.join(path, 'data.json')) as f:
    assert json.load(f)['train_per_class'] == COUNTS
  with open(os.path.join(path, run_dir.CONFIG_FILE), 'w') as f:
    f.write(cfg.to_json())
  gen = os.path.join(path, 'gen_00')
  os.makedirs(gen)
  with open(os.path.join(gen, 'generation.json'), 'w') as f:
    json.dump({'generation': 0, 'test_accuracy': 0.5,
               'test_per_class_recall': [0.5] * 4,
               'labeled_per_class': [2, 2, 1, 1],
               'picked_per_class': [0] * 4,
               'picked_correct_per_class': [0] * 4}, f)
  assert summarize.main([f'{tmp_path}/runs']) == 0
  out = capsys.readouterr().out
  assert f'as is (N_max/N_min={20 / 6:.3g})' in out
  assert 'gamma=10' not in out
