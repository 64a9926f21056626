"""Smoke tests of scripts/show_augment.py and scripts/bench_augment.py."""
import importlib.util
import json

import numpy as np
from PIL import Image

from conftest import ROOT


def _load(name):
  spec = importlib.util.spec_from_file_location(name,
                                                ROOT / 'scripts' / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_show_augment_grid_from_npz(tmp_path):
  rng = np.random.RandomState(0)
  npz = tmp_path / 'd.npz'
  np.savez(npz, x_train=rng.randint(0, 256, (5, 28, 28)).astype(np.uint8))
  out = tmp_path / 'g.png'
  _load('show_augment').main(['--npz', str(npz), '--images', '3', '--draws',
                              '4', '--scale', '2', '--out', str(out)])
  img = np.asarray(Image.open(out))
  # 3 rows, 1 + 4 columns of (28 + 2 gap) pixels, zoomed x2, RGB.
  assert img.shape == (3 * 30 * 2, 5 * 30 * 2, 3)
  first = img[:56, :56]
  assert not np.array_equal(first, img[:56, 60:116])  # a draw differs


def test_show_augment_synthetic(tmp_path):
  out = tmp_path / 's.png'
  _load('show_augment').main(['--spec', 'dh', '--images', '2', '--draws', '2',
                              '--scale', '1', '--out', str(out)])
  assert np.asarray(Image.open(out)).shape == (2 * 34, 3 * 34, 3)


def test_bench_augment_json(tmp_path):
  out = tmp_path / 'b.json'
  _load('bench_augment').main(['--threads', '0', '--batch', '16',
                               '--repeats', '2', '--warmup', '1', '--json',
                               str(out)])
  report = json.loads(out.read_text())
  runs = report['runs']['0']
  assert set(runs) == {'dh', 'dhrac'}
  assert all(r['images_per_s'] > 0 and len(r['times_s']) == 2
             for r in runs.values())
  assert report['fixmatch']['0']['images_per_step'] == 960
