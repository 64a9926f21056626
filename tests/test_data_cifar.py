"""Tests of the CIFAR loaders on hand-written tfrecord files."""
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from conftest import FIXTURES
from data import errors
from data import base
from data import layout
from data import records
from data import registry
from data import splits
from data import testing

SPLITS = FIXTURES / 'splits_and_selection.npz'
_CASE = re.compile(r'K(\d+)_g(\d+)_n(\d+)_p([\d.]+)_a[\d.]+_fold(\d+)')


def _cases():
  with np.load(SPLITS) as f:
    return sorted({k.split('__')[0] for k in f.files})


def _images(n, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3),
                                              dtype=np.uint8)


def _write_lt(ml, k, ratio_name, labels, test_labels=None, seed=0):
  d = os.path.join(ml, 'cifar-lt', f'cifar-{k}-data-im-{ratio_name}')
  images = _images(len(labels), seed)
  testing.write_raw_records(os.path.join(d, 'train.tfrecords'), images, labels)
  if test_labels is None:
    test_labels = np.arange(k).repeat(2)
  testing.write_raw_records(os.path.join(d, 'eval.tfrecords'),
                            _images(len(test_labels), seed + 1), test_labels)
  return d, images


@pytest.mark.parametrize('case', _cases())
def test_lt_loader_split_matches_reference_fixture(tmp_path, case):
  k, gamma, _, percent, fold = _CASE.fullmatch(case).groups()
  k, ratio = int(k), 1.0 / int(gamma)
  with np.load(SPLITS) as f:
    y = f[case + '__y_train']
    want_lab = f[case + '__labeled_positions']
    want_unl = f[case + '__unlabeled_positions']
  _, images = _write_lt(str(tmp_path), k, layout.number_name(ratio), y)
  d = registry.load(base.DataArgs(
      f'cifar{k}lt', ml_data=str(tmp_path), class_im_ratio=ratio,
      percent_labeled=float(percent), fold=int(fold)))
  np.testing.assert_array_equal(d.train_labels, y)
  np.testing.assert_array_equal(d.train_images, images)
  np.testing.assert_array_equal(d.labeled_positions, want_lab)
  np.testing.assert_array_equal(d.unlabeled_positions, want_unl)
  np.testing.assert_array_equal(d.unlabeled_stream_positions,
                                np.arange(len(y)))
  np.testing.assert_allclose(d.gt_p_data, splits.long_tail_prior(ratio, k))
  assert d.labeled_positions.dtype == np.int64
  assert d.image_shape == (32, 32, 3) and d.num_classes == k


def test_raw_channel_major_decoding(tmp_path):
  img = np.zeros((1, 32, 32, 3), np.uint8)
  img[0, 0, 1] = (10, 20, 30)
  raw = records.encode_raw(img)[0]
  assert len(raw) == 3072
  # R plane first, row-major: pixel (0, 1) is byte 1; G at 1025; B at 2049.
  assert (raw[1], raw[1025], raw[2049]) == (10, 20, 30)
  back = records.decode_raw(np.array([raw], object), 'x')
  np.testing.assert_array_equal(back, img)


def test_ratio_directory_matching_and_listing(tmp_path):
  labels = np.repeat(np.arange(10), 3)
  _write_lt(str(tmp_path), 10, '0.010', labels)  # written differently
  d = registry.load(base.DataArgs('cifar10lt', ml_data=str(tmp_path),
                                  class_im_ratio=0.01))
  assert len(d.train_labels) == 30
  assert layout.number_name(0.01) == '0.01'
  assert layout.number_name(0.1) == '0.1'
  assert layout.number_name(0.005) == '0.005'
  assert layout.number_name(150.0) == '150'
  with pytest.raises(errors.DataError) as info:
    registry.load(base.DataArgs('cifar10lt', ml_data=str(tmp_path),
                                class_im_ratio=0.02))
  msg = str(info.value)
  assert 'cifar-10-data-im-0.02' in msg and 'present' in msg
  assert '0.010' in msg and 'prepare_cifar.py' in msg


def test_missing_root(tmp_path):
  with pytest.raises(errors.DataError, match='ML_DATA'):
    registry.load(base.DataArgs('cifar10lt', ml_data=''))
  with pytest.raises(errors.DataError, match='not a directory'):
    registry.load(base.DataArgs('cifar10', ml_data=str(tmp_path / 'nope')))
  with pytest.raises(errors.DataError, match='Missing data file .*'
                     'cifar10-train.tfrecord.*prepare_cifar.py'):
    registry.load(base.DataArgs('cifar10', ml_data=str(tmp_path)))


def _lt_error(tmp_path, writer, match):
  d = os.path.join(str(tmp_path), 'cifar-lt', 'cifar-10-data-im-0.1')
  os.makedirs(d, exist_ok=True)
  testing.write_raw_records(os.path.join(d, 'eval.tfrecords'), _images(10),
                            np.arange(10))
  writer(os.path.join(d, 'train.tfrecords'))
  with pytest.raises(errors.DataError, match=match) as info:
    registry.load(base.DataArgs('cifar10lt', ml_data=str(tmp_path)))
  assert 'train.tfrecords' in str(info.value)
  return str(info.value)


def test_missing_feature(tmp_path):
  def writer(path):
    with tf.io.TFRecordWriter(path) as w:
      ex = tf.train.Example(features=tf.train.Features(feature={
          'img': tf.train.Feature(bytes_list=tf.train.BytesList(
              value=[b'x' * 3072])),
          'label': tf.train.Feature(int64_list=tf.train.Int64List(value=[0]))}))
      w.write(ex.SerializeToString())
  msg = _lt_error(tmp_path, writer, 'not in the expected format')
  assert 'prepare_cifar.py' in msg


def test_wrong_byte_length(tmp_path):
  def writer(path):
    records.write_examples(path, [b'\0' * 3072, b'\0' * 3000], [0, 1])
  _lt_error(tmp_path, writer, 'record 1 has an image of 3000 bytes, expected '
            '3072')


def test_truncated_and_corrupt_files(tmp_path):
  def truncated(path):
    testing.write_raw_records(path, _images(20), np.arange(20) % 10)
    data = open(path, 'rb').read()
    open(path, 'wb').write(data[:len(data) - 1000])
  _lt_error(tmp_path, truncated, 'truncated or corrupt')

  def corrupt(path):
    testing.write_raw_records(path, _images(20), np.arange(20) % 10)
    data = bytearray(open(path, 'rb').read())
    data[len(data) // 2] ^= 0xFF
    open(path, 'wb').write(bytes(data))
  _lt_error(tmp_path, corrupt, 'truncated or corrupt')

  def empty(path):
    open(path, 'wb').close()
  _lt_error(tmp_path, empty, 'no records')


def test_labels_out_of_range_and_empty_class(tmp_path):
  def bad_label(path):
    testing.write_raw_records(path, _images(11), np.arange(11))
  _lt_error(tmp_path, bad_label, r'label 10 at position 10 is out of range.*'
            r'\[0, 10\)')

  def no_class_9(path):
    testing.write_raw_records(path, _images(18), np.arange(18) % 9)
  _lt_error(tmp_path, no_class_9, r'no examples of class\(es\) \[9\]')


def _write_balanced(ml, labels, test_labels, images=None):
  paths = layout.balanced_paths(ml, 10)
  images = _images(len(labels)) if images is None else images
  testing.write_png_records(paths['train'], images, labels)
  testing.write_png_records(paths['test'], _images(len(test_labels), 1),
                            test_labels)
  return images


def test_balanced_loader_and_split_rules(tmp_path):
  labels = np.random.default_rng(0).permutation(np.repeat(np.arange(10), 8))
  images = _write_balanced(str(tmp_path), labels, np.arange(10))
  args = base.DataArgs('cifar10', ml_data=str(tmp_path), num_labeled=3, fold=4)
  d = registry.load(args)
  np.testing.assert_array_equal(d.train_images, images)
  np.testing.assert_array_equal(
      np.bincount(labels[d.labeled_positions]), [3] * 10)
  want = splits.count_split(labels, 4, 3, True, 10)
  np.testing.assert_array_equal(d.labeled_positions, want[0])
  np.testing.assert_array_equal(d.unlabeled_positions, want[1])
  assert len(np.union1d(d.labeled_positions, d.unlabeled_positions)) == 80
  np.testing.assert_array_equal(d.unlabeled_stream_positions, np.arange(80))
  # Reference-style rule: seeded per-class shuffle, first num_labeled.
  rng = np.random.RandomState(4)
  first = list(np.flatnonzero(labels == 0))
  rng.shuffle(first)
  np.testing.assert_array_equal(d.labeled_positions[:3], first[:3])
  # Unbalanced: num_labeled * K drawn from one seeded permutation.
  u = registry.load(base.DataArgs('cifar10', ml_data=str(tmp_path),
                                  num_labeled=5, is_balanced=False, fold=4))
  perm = np.random.RandomState(4).permutation(80)
  np.testing.assert_array_equal(u.labeled_positions, perm[:50])
  np.testing.assert_array_equal(u.unlabeled_positions, perm[50:])
  with pytest.raises(errors.DataError, match='num_labeled=9'):
    registry.load(base.DataArgs('cifar10', ml_data=str(tmp_path),
                                num_labeled=9))


def test_balanced_unbalanced_split_with_an_empty_class(tmp_path):
  labels = np.repeat(np.arange(10), 8)
  _write_balanced(str(tmp_path), labels, np.arange(10))
  for fold in range(20):
    lab, _ = splits.count_split(labels, fold, 1, False, 10)
    if len(np.unique(labels[lab])) < 10:
      break
  else:
    pytest.fail('no fold with a missing class')
  with pytest.raises(errors.DataError, match='no labeled example'):
    registry.load(base.DataArgs('cifar10', ml_data=str(tmp_path),
                                num_labeled=1, is_balanced=False, fold=fold))


def test_png_errors(tmp_path):
  paths = layout.balanced_paths(str(tmp_path), 10)
  testing.write_png_records(paths['test'], _images(10), np.arange(10))
  good = records.encode_png(_images(2))
  records.write_examples(paths['train'], [good[0], good[1][:40]], [0, 1])
  with pytest.raises(errors.DataError, match='record 1: the image is not a '
                     'readable PNG'):
    registry.load(base.DataArgs('cifar10', ml_data=str(tmp_path)))
  small = np.zeros((1, 28, 28, 3), np.uint8)
  records.write_examples(paths['train'], records.encode_png(small), [0])
  with pytest.raises(errors.DataError, match=r'shape \(28, 28, 3\), expected '
                     r'\(32, 32, 3\)'):
    registry.load(base.DataArgs('cifar10', ml_data=str(tmp_path)))


def _write_darp(ml, gamma, n1, m1, k=10):
  paths = layout.darp_paths(ml, k, gamma)
  lab = np.repeat(np.arange(k), splits.darp_counts(n1, gamma, k))
  unl = np.repeat(np.arange(k), splits.darp_counts(m1, gamma, k))
  testing.write_raw_records(paths['labeled'], _images(len(lab), 1), lab)
  testing.write_raw_records(paths['unlabeled'], _images(len(unl), 2), unl)
  testing.write_raw_records(paths['test'], _images(k, 3), np.arange(k))
  return lab, unl


def test_darp_loader(tmp_path):
  lab, unl = _write_darp(str(tmp_path), 100, 30, 40)
  args = base.DataArgs('cifar10ltdarp', ml_data=str(tmp_path),
                       class_im_ratio=100.0, darp_n1=30, darp_m1=40)
  d = registry.load(args)
  n_lab, n_all = len(lab), len(lab) + len(unl)
  np.testing.assert_array_equal(d.train_labels, np.concatenate([lab, unl]))
  np.testing.assert_array_equal(d.train_images[:n_lab], _images(n_lab, 1))
  np.testing.assert_array_equal(d.labeled_positions, np.arange(n_lab))
  np.testing.assert_array_equal(d.unlabeled_positions,
                                np.arange(n_lab, n_all))
  np.testing.assert_array_equal(d.unlabeled_stream_positions,
                                np.arange(n_all))
  mu = 100 ** (-1 / 9)
  p = mu ** np.arange(10)
  np.testing.assert_allclose(d.gt_p_data, p / p.sum())
  # The fold does not change DARP data.
  d2 = registry.load(base.DataArgs('cifar10ltdarp', ml_data=str(tmp_path),
                                   class_im_ratio=100.0, darp_n1=30,
                                   darp_m1=40, fold=3))
  np.testing.assert_array_equal(d2.labeled_positions, d.labeled_positions)
  # Default N1 = 1500 does not match these files.
  with pytest.raises(errors.DataError, match=r'not the DARP protocol.*'
                     r'N1=1500.*--darp_n1'):
    registry.load(base.DataArgs('cifar10ltdarp', ml_data=str(tmp_path),
                                class_im_ratio=100))
  with pytest.raises(errors.DataError, match=r'Gammas present in .*: 100'):
    registry.load(base.DataArgs('cifar10ltdarp', ml_data=str(tmp_path),
                                class_im_ratio=150))


def test_validate_by_kind():
  with pytest.raises(errors.DataSettingError, match='gamma'):
    registry.validate(base.DataArgs('cifar10ltdarp', class_im_ratio=0.01))
  with pytest.raises(errors.DataSettingError, match='darp_n1'):
    registry.validate(base.DataArgs('cifar10ltdarp', class_im_ratio=100,
                                    darp_n1=0))
  with pytest.raises(errors.DataSettingError, match='num_labeled'):
    registry.validate(base.DataArgs('cifar10', num_labeled=0))
  with pytest.raises(errors.DataSettingError, match='data_file'):
    registry.validate(base.DataArgs('npz'))
  registry.validate(base.DataArgs('cifar10', class_im_ratio=150))  # unused
  registry.validate(base.DataArgs('cifar100ltdarp', class_im_ratio=150))
  assert registry.num_classes('cifar100lt') == 100
  assert registry.num_classes('npz') is None
  assert registry.needs_ml_data('cifar10') and not registry.needs_ml_data(
      'fashionmnistlt')


@pytest.mark.parametrize('image,label', [
    (b'x' * 3072, 7), (b'', 0), (bytes(range(256)) * 3, 2 ** 40), (b'q', -3)])
def test_hand_serialized_example_equals_tf_example(image, label):
  parsed = tf.train.Example.FromString(records.serialize_example(image, label))
  want = tf.train.Example(features=tf.train.Features(feature={
      'image': tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
      'label': tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))}))
  assert parsed == want


@pytest.mark.parametrize('channels', [1, 3])
def test_png_encoding_is_read_by_pil_and_tf(channels):
  import io
  from PIL import Image
  images = np.random.default_rng(5).integers(0, 256, (4, 7, 5, channels),
                                             dtype=np.uint8)
  for image, png in zip(images, records.encode_png(images)):
    with Image.open(io.BytesIO(png)) as im:
      assert im.format == 'PNG'
      np.testing.assert_array_equal(np.asarray(im).reshape(image.shape), image)
    np.testing.assert_array_equal(tf.io.decode_png(png).numpy(), image)
  back = records.decode_png(np.array(records.encode_png(images), object), 'x',
                            shape=(7, 5, channels))
  np.testing.assert_array_equal(back, images)


def test_no_files_at_all_says_how_to_prepare(tmp_path):
  with pytest.raises(errors.DataError) as info:
    registry.load(base.DataArgs('cifar100lt', ml_data=str(tmp_path),
                                class_im_ratio=0.01))
  msg = str(info.value)
  assert 'No ratio is present' in msg
  assert ('python scripts/prepare_cifar.py --archive=cifar-100-python.tar.gz '
          '--ml_data=$ML_DATA --class_im_ratio=0.01') in msg
  with pytest.raises(errors.DataError, match='No gamma is present.*'
                     '--darp_gamma=150'):
    registry.load(base.DataArgs('cifar10ltdarp', ml_data=str(tmp_path),
                                class_im_ratio=150))
