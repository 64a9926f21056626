"""Tests of scripts/check_parity.py on the fixtures and on altered copies."""
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import FIXTURES, ROOT
from scripts import check_parity as cp

_THREE = ('pseudo_targets.npz', 'lr_schedule.npz', 'splits_and_selection.npz')


def _copy(tmp_path: pathlib.Path, name: str, change=None, rename=None):
  """Writes a copy of fixture `name` into tmp_path, optionally altered."""
  with np.load(FIXTURES / name) as data:
    arrays = {k: data[k].copy() for k in data.files}
  if change is not None:
    change(arrays)
  if rename is not None:
    arrays = {rename(k): v for k, v in arrays.items()}
  np.savez(tmp_path / name, **arrays)
  return tmp_path / name


def test_reference_fixtures_pass():
  results = cp.run(FIXTURES, list(_THREE))
  totals = {r.name: (r.passed, r.total) for r in results}
  assert totals == {'pseudo_targets.npz': (36, 36), 'lr_schedule.npz': (6, 6),
                    'splits_and_selection.npz': (12, 12)}
  assert all(r.ok for r in results)
  assert results[0].worst_error <= 1e-5
  assert results[2].worst_error == 0
  assert cp.main([str(FIXTURES), *_THREE]) == 0


def test_missing_file_fails_with_message(tmp_path, capsys):
  _copy(tmp_path, 'lr_schedule.npz')
  assert cp.main([str(tmp_path), 'lr_schedule.npz']) == 0
  assert cp.main([str(tmp_path), 'lr_schedule.npz', 'pseudo_targets.npz']) == 1
  out = capsys.readouterr().out
  assert 'OK   lr_schedule.npz: 6 / 6' in out
  assert 'missing' in out and 'pseudo_targets.npz' in out
  # Default file list: every absent file fails.
  results = cp.run(tmp_path)
  assert [r.ok for r in results] == [False, True] + [False] * (len(cp.DEFAULT_FILES) - 2)
  assert [r.name for r in results] == list(cp.DEFAULT_FILES)
  assert cp.main([str(tmp_path / 'nope')]) == 2


def test_corrupted_pseudo_target_fails(tmp_path):
  def change(a):
    key = sorted(k for k in a if k.endswith('__target'))[5]
    a[key][3] = a[key][3][::-1]  # a different one-hot / distribution
  _copy(tmp_path, 'pseudo_targets.npz', change)
  (result,) = cp.run(tmp_path, ['pseudo_targets.npz'])
  assert (result.passed, result.total) == (35, 36)
  assert not result.ok and result.worst_error > 1e-5
  assert cp.main([str(tmp_path), 'pseudo_targets.npz']) == 1


def test_corrupted_mask_fails(tmp_path):
  def change(a):
    key = sorted(k for k in a if k.endswith('__mask'))[0]
    a[key][0] = 1.0 - a[key][0]
  _copy(tmp_path, 'pseudo_targets.npz', change)
  (result,) = cp.run(tmp_path, ['pseudo_targets.npz'])
  assert (result.passed, result.total) == (35, 36)


def test_lr_off_by_1e5_relative_fails(tmp_path):
  def change(a):
    a['halfcos_{"level": 7}'][4] *= 1 + 1e-5
  _copy(tmp_path, 'lr_schedule.npz', change)
  (result,) = cp.run(tmp_path, ['lr_schedule.npz'])
  assert (result.passed, result.total) == (5, 6)
  assert result.worst_error == pytest.approx(1e-5, rel=1e-2)
  assert 'step 1024' in result.failures[0]


def test_corrupted_selection_fails(tmp_path):
  def change(a):
    key = 'K10_g100_n500_p0.1_a3_fold2__new_train_labels'
    a[key][0] = (a[key][0] + 1) % 10
  _copy(tmp_path, 'splits_and_selection.npz', change)
  (result,) = cp.run(tmp_path, ['splits_and_selection.npz'])
  assert (result.passed, result.total) == (11, 12)
  assert 'new_train_labels' in result.failures[0]


def test_corrupted_split_fails(tmp_path):
  def change(a):
    key = 'K10_g50_n300_p0.2_a2_fold1__labeled_positions'
    a[key][[0, 1]] = a[key][[1, 0]]
  _copy(tmp_path, 'splits_and_selection.npz', change)
  (result,) = cp.run(tmp_path, ['splits_and_selection.npz'])
  assert (result.passed, result.total) == (11, 12)
  assert 'labeled_positions' in result.failures[0]


def test_case_names_are_parsed_not_hard_coded(tmp_path):
  # Other case ids and a subset of the cases: still checked, still passing.
  _copy(tmp_path, 'pseudo_targets.npz',
        change=lambda a: [a.pop(k) for k in list(a) if k.startswith('c5_')],
        rename=lambda k: k.replace('c1_', 'case17_', 1))
  _copy(tmp_path, 'splits_and_selection.npz',
        change=lambda a: [a.pop(k) for k in list(a) if 'fold5' in k])
  results = cp.run(tmp_path, ['pseudo_targets.npz', 'splits_and_selection.npz'])
  assert [(r.passed, r.total) for r in results] == [(30, 30), (8, 8)]
  # A wrongly parsed argument would change the outcome: swap threshold 0.6
  # for 0.95 in one case's name and it must fail.
  _copy(tmp_path, 'pseudo_targets.npz',
        rename=lambda k: k.replace('c2_da1_adaptive_t0.8_thr0.6_T0',
                                   'c2_da1_adaptive_t0.8_thr0.95_T0'))
  (result,) = cp.run(tmp_path, ['pseudo_targets.npz'])
  assert (result.passed, result.total) == (35, 36)


def test_unparseable_case_name_fails(tmp_path):
  _copy(tmp_path, 'pseudo_targets.npz',
        rename=lambda k: k.replace('c0_da0_None', 'c0_da0_sometimes', 1))
  (result,) = cp.run(tmp_path, ['pseudo_targets.npz'])
  assert result.total == 36 and result.passed < 36
  assert any('does not match' in f for f in result.failures)


def test_augment_parity_unavailable(tmp_path, monkeypatch):
  (tmp_path / 'augment_ops.npz').write_bytes(b'')
  import augment  # pylint: disable=g-import-not-at-top
  # Hide the module whether or not another test imported it already.
  monkeypatch.delattr(augment, 'parity', raising=False)
  monkeypatch.setitem(sys.modules, 'augment.parity', None)
  (result,) = cp.run(tmp_path, ['augment_ops.npz'])
  assert not result.ok
  assert 'augment.parity not available' in result.failures[0]


def test_script_runs_from_repo_root(tmp_path):
  # splits_and_selection is pure NumPy, so the subprocess needs no TensorFlow
  # and stays fast; it still exercises the script's own sys.path set-up.
  _copy(tmp_path, 'splits_and_selection.npz')
  proc = subprocess.run(
      [sys.executable, 'scripts/check_parity.py', str(tmp_path),
       'splits_and_selection.npz', 'lr_schedule.npz'], cwd=ROOT,
      capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 1, proc.stdout + proc.stderr
  assert 'OK   splits_and_selection.npz: 12 / 12 cases passed' in proc.stdout
  assert 'FAIL lr_schedule.npz' in proc.stdout
  assert 'missing' in proc.stdout
  assert 'PARITY FAILED: lr_schedule.npz' in proc.stdout
  proc = subprocess.run(
      [sys.executable, 'scripts/check_parity.py', str(tmp_path),
       'splits_and_selection'], cwd=ROOT, capture_output=True, text=True,
      timeout=120, check=False)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  assert 'PARITY OK: 1 file(s), 12 cases' in proc.stdout
