"""Tests of the Fashion-MNIST-LT and own-data (.npz) loaders."""
import gzip
import os

import numpy as np
import pytest

from data import errors
from data import base
from data import fashion_mnist
from data import idx
from data import registry
from data import splits


def _fashion(tmp_path, per_class=12, gz=True, seed=0):
  rng = np.random.default_rng(seed)
  d = tmp_path / 'fashion-mnist'
  arrays = {}
  for part, n in (('train', per_class), ('t10k', 3)):
    labels = rng.permutation(np.repeat(np.arange(10), n)).astype(np.uint8)
    images = rng.integers(0, 256, (len(labels), 28, 28), dtype=np.uint8)
    suffix = '.gz' if gz else ''
    idx.write_idx(str(d / f'{part}-images-idx3-ubyte{suffix}'), images)
    idx.write_idx(str(d / f'{part}-labels-idx1-ubyte{suffix}'), labels)
    arrays[part] = (images, labels)
  return arrays


@pytest.mark.parametrize('gz', [True, False])
def test_fashion_long_tail_selection(tmp_path, gz):
  arrays = _fashion(tmp_path, gz=gz)
  args = base.DataArgs('fashionmnistlt', ml_data=str(tmp_path),
                       class_im_ratio=0.25, percent_labeled=0.5, fold=2)
  d = fashion_mnist.load(args, system_dirs=())
  x, y = arrays['train']
  counts = splits.long_tail_counts(12, 0.25, 10)
  np.testing.assert_array_equal(np.bincount(d.train_labels, minlength=10),
                                counts)
  keep = np.sort(np.concatenate(
      [np.flatnonzero(y == c)[:n] for c, n in enumerate(counts)]))
  np.testing.assert_array_equal(d.train_images[..., 0], x[keep])
  assert d.train_images.shape == (counts.sum(), 28, 28, 1)
  assert d.test_images.shape == (30, 28, 28, 1)
  np.testing.assert_array_equal(d.test_labels, arrays['t10k'][1])
  lab, unl = splits.labeled_split(y[keep], 2, 0.5, 10)
  np.testing.assert_array_equal(d.labeled_positions, lab)
  np.testing.assert_array_equal(d.unlabeled_positions, unl)
  np.testing.assert_allclose(d.gt_p_data, splits.long_tail_prior(0.25, 10))


def test_fashion_errors(tmp_path):
  with pytest.raises(errors.DataError, match='not found.*dataset-fashion-'
                     'mnist'):
    fashion_mnist.load(base.DataArgs('fashionmnistlt', ml_data=str(tmp_path)),
                       system_dirs=())
  _fashion(tmp_path)
  path = tmp_path / 'fashion-mnist' / 'train-labels-idx1-ubyte.gz'
  data = gzip.decompress(path.read_bytes())
  path.write_bytes(gzip.compress(data[:-5]))
  with pytest.raises(errors.DataError, match='truncated or corrupt'):
    fashion_mnist.load(base.DataArgs('fashionmnistlt', ml_data=str(tmp_path)),
                       system_dirs=())
  path.write_bytes(gzip.compress(b'\0\0\x0d\x01' + data[4:]))
  with pytest.raises(errors.DataError, match='not a uint8 IDX'):
    fashion_mnist.load(base.DataArgs('fashionmnistlt', ml_data=str(tmp_path)),
                       system_dirs=())
  path.write_bytes(b'not gzip')
  with pytest.raises(errors.DataError, match='cannot read'):
    fashion_mnist.load(base.DataArgs('fashionmnistlt', ml_data=str(tmp_path)),
                       system_dirs=())
  labels = np.repeat(np.arange(10), 12).astype(np.uint8)
  labels[0] = 11
  idx.write_idx(str(path), labels)
  with pytest.raises(errors.DataError, match='label 11'):
    fashion_mnist.load(base.DataArgs('fashionmnistlt', ml_data=str(tmp_path)),
                       system_dirs=())


def test_fashion_falls_back_to_system_dir(tmp_path, monkeypatch):
  system = tmp_path / 'system'
  _fashion(system)
  monkeypatch.setattr(fashion_mnist, 'SYSTEM_DIRS',
                      (str(system / 'fashion-mnist'),))
  d = registry.load(base.DataArgs('fashionmnistlt', ml_data='',
                                  class_im_ratio=0.5))
  np.testing.assert_array_equal(np.bincount(d.train_labels),
                                splits.long_tail_counts(12, 0.5, 10))


@pytest.mark.skipif(not os.path.isdir(fashion_mnist.SYSTEM_DIRS[0]),
                    reason='Debian package dataset-fashion-mnist missing')
def test_fashion_real_files():
  d = registry.load(base.DataArgs('fashionmnistlt', ml_data='',
                                  class_im_ratio=0.01))
  np.testing.assert_array_equal(
      np.bincount(d.train_labels),
      [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60])
  assert d.train_images.shape == (14886, 28, 28, 1)
  assert d.test_images.shape == (10000, 28, 28, 1)
  np.testing.assert_array_equal(np.bincount(d.test_labels), [1000] * 10)
  assert len(d.labeled_positions) == sum(
      int(np.ceil(n * 0.1)) for n in np.bincount(d.train_labels))


def _npz(tmp_path, name='own.npz', **overrides):
  rng = np.random.default_rng(0)
  y = rng.permutation(np.repeat(np.arange(4), [20, 12, 9, 6]))
  arrays = dict(x_train=rng.integers(0, 256, (len(y), 8, 8), dtype=np.uint8),
                y_train=y.astype(np.int32),
                x_test=rng.integers(0, 256, (8, 8, 8), dtype=np.uint8),
                y_test=np.repeat(np.arange(4), 2))
  arrays.update(overrides)
  arrays = {k: v for k, v in arrays.items() if v is not None}
  path = tmp_path / name
  np.savez(path, **arrays)
  return str(path), arrays


def test_npz_as_is(tmp_path):
  path, a = _npz(tmp_path)
  d = registry.load(base.DataArgs('npz', data_file=path, fold=3))
  assert d.num_classes == 4 and d.image_shape == (8, 8, 1)
  np.testing.assert_array_equal(d.train_images[..., 0], a['x_train'])
  assert d.train_labels.dtype == np.int64
  np.testing.assert_allclose(d.gt_p_data, np.array([20, 12, 9, 6]) / 47)
  lab, unl = splits.labeled_split(a['y_train'], 3, 0.1, 4)
  np.testing.assert_array_equal(d.labeled_positions, lab)
  np.testing.assert_array_equal(d.unlabeled_positions, unl)
  assert len(lab) == 2 + 2 + 1 + 1
  np.testing.assert_array_equal(d.unlabeled_stream_positions, np.arange(47))


def test_npzlt_and_rgb(tmp_path):
  rng = np.random.default_rng(1)
  path, a = _npz(tmp_path, x_train=rng.integers(0, 256, (47, 8, 8, 3),
                                                 dtype=np.uint8),
                 x_test=rng.integers(0, 256, (8, 8, 8, 3), dtype=np.uint8))
  d = registry.load(base.DataArgs('npzlt', data_file=path, class_im_ratio=0.5,
                                  percent_labeled=0.5))
  counts = splits.long_tail_counts(6, 0.5, 4)  # N_max = smallest class.
  np.testing.assert_array_equal(counts, [6, 4, 3, 3])
  np.testing.assert_array_equal(np.bincount(d.train_labels), counts)
  y = a['y_train']
  keep = np.sort(np.concatenate(
      [np.flatnonzero(y == c)[:n] for c, n in enumerate(counts)]))
  np.testing.assert_array_equal(d.train_images, a['x_train'][keep])
  np.testing.assert_allclose(d.gt_p_data, splits.long_tail_prior(0.5, 4))
  assert d.image_shape == (8, 8, 3)


@pytest.mark.parametrize('overrides,match', [
    (dict(y_test=None), r"missing array\(s\) \['y_test'\]"),
    (dict(x_train=np.zeros((47, 8, 8), np.float32)), 'x_train has dtype '
     'float32, expected uint8'),
    (dict(x_train=np.zeros((47, 8, 8, 2), np.uint8)), 'x_train has shape'),
    (dict(y_train=np.zeros(47, np.float64)), 'y_train is float64'),
    (dict(y_train=np.zeros(40, np.int64)), '47 images but y_train has 40'),
    (dict(y_test=np.array([0, 1, 2, 3, 4, 0, 1, 2])), r'label 4 at position 4'
     r' is out of range'),
    (dict(y_train=np.repeat([0, 1, 3], [20, 20, 7])), r'no examples of '
     r'class\(es\) \[2\]'),
    (dict(y_train=np.repeat([0, -1], [40, 7])), 'label -1'),
    (dict(x_test=np.zeros((8, 9, 9), np.uint8)), 'must match'),
    (dict(x_train=np.zeros((47, 8, 6), np.uint8),
          x_test=np.zeros((8, 8, 6), np.uint8)), '8x6 images; they must be '
     'square'),
    (dict(y_train=np.repeat([0, 2 ** 40], [40, 7])), r'label 1099511627776 '
     r'at position 40 is out of range; expected labels in \[0, 47\)'),
    (dict(y_train=np.repeat(np.array([0, 2 ** 64 - 1], np.uint64), [40, 7])),
     'label 18446744073709551615 at position 40'),
    (dict(y_test=np.full(8, 2 ** 63, np.uint64)), 'label 9223372036854775808 '
     'at position 0'),
])
def test_npz_errors(tmp_path, overrides, match):
  path, _ = _npz(tmp_path, **overrides)
  with pytest.raises(errors.DataError, match=match) as info:
    registry.load(base.DataArgs('npz', data_file=path))
  assert path in str(info.value)


@pytest.mark.parametrize('make,match', [
    (lambda p: p.write_text('x_train,y_train\n1,2\n'),
     "is not a .npz \\(zip\\) file: it starts with b'x_trai'"),
    (lambda p: p.mkdir(), 'is a directory; give the .npz file itself'),
    (lambda p: np.save(open(p, 'wb'), np.zeros(3)), 'is a .npy file'),
    (lambda p: p.write_bytes(b''), 'is empty'),
])
def test_npz_file_that_is_not_an_npz(tmp_path, make, match):
  path = tmp_path / 'data.npz'
  make(path)
  with pytest.raises(errors.DataError, match=match) as info:
    registry.load(base.DataArgs('npz', data_file=str(path)))
  assert 'pickle' not in str(info.value)


def test_npz_unreadable_files(tmp_path):
  with pytest.raises(errors.DataError, match='does not exist'):
    registry.load(base.DataArgs('npz', data_file=str(tmp_path / 'no.npz')))
  bad = tmp_path / 'bad.npz'
  bad.write_bytes(b'garbage')
  with pytest.raises(errors.DataError, match=r'is not a .npz \(zip\) file'):
    registry.load(base.DataArgs('npz', data_file=str(bad)))
  bad.write_bytes(b'PK\x03\x04truncated')
  with pytest.raises(errors.DataError, match='cannot read it'):
    registry.load(base.DataArgs('npz', data_file=str(bad)))
  path, _ = _npz(tmp_path, y_train=np.array([0, 1] * 23 + [None], object))
  with pytest.raises(errors.DataError, match='cannot read it'):
    registry.load(base.DataArgs('npz', data_file=path))
