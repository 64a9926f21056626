"""STL-10-LT: the official binary layout (column-major, checked with an
asymmetric image), scripts/prepare_stl10.py on a small generated archive in
the real layout, the stl10lt loader and its settings, and one tiny CReST run
on it (unlabeled images without labels)."""
import io
import json
import os
import tarfile

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from crest import config as config_lib
from crest import flags as crest_flags
from crest import generations
from crest import run_dir
from crest.errors import ConfigError
from data import base
from data import errors
from data import registry
from data import splits
from data import stl10
from scripts import prepare_stl10

K = 10
TRAIN_PER_CLASS, TEST_PER_CLASS, NUM_UNLABELED = 12, 3, 40


def asymmetric_image():
  """uint8 [96, 96, 3]: every (row, column, channel) tells itself apart, and
  the image differs from its transpose."""
  r, c, ch = np.meshgrid(np.arange(96), np.arange(96), np.arange(3),
                         indexing='ij')
  return ((r + 3 * c + 101 * ch) % 256).astype(np.uint8)


def official_bytes(image):
  """The official layout written out by hand: byte [ch * 9216 + col * 96 +
  row] is pixel (row, col) of channel ch."""
  out = bytearray(stl10.IMAGE_BYTES)
  for ch in range(3):
    for col in range(96):
      for row in (0, 1, 95):  # Enough rows to pin the order...
        out[ch * 9216 + col * 96 + row] = image[row, col, ch]
  # ... and the rest through a vectorised statement of the same rule.
  flat = np.frombuffer(bytes(out), np.uint8).copy().reshape(3, 96, 96)
  for ch in range(3):
    flat[ch] = image[:, :, ch].T
  return flat.tobytes()


def test_column_major_layout():
  image = asymmetric_image()
  raw = official_bytes(image)
  assert raw[0] == image[0, 0, 0] and raw[1] == image[1, 0, 0]  # Rows first.
  assert raw[96] == image[0, 1, 0] and raw[9216] == image[0, 0, 1]
  decoded = stl10.decode(raw + raw[::-1])
  assert decoded.shape == (2, 96, 96, 3)
  np.testing.assert_array_equal(decoded[0], image)
  assert not np.array_equal(decoded[0], image.transpose(1, 0, 2))
  assert stl10.encode(decoded) == raw + raw[::-1]
  with pytest.raises(ValueError):
    stl10.decode(raw[:-1])


def _images(n, seed):
  """Compressible images: mostly flat, a few random pixels."""
  rng = np.random.RandomState(seed)
  out = np.full((n, 96, 96, 3), 0, np.uint8)
  out[:] = rng.randint(0, 256, (n, 1, 1, 3))
  out[:, ::16, ::8] = rng.randint(0, 256, (n, 6, 12, 3))
  return out


def write_archive(path, train, train_y, test, test_y, unlabeled,
                  drop=(), extra=()):
  """The official archive's layout: stl10_binary/{train,test}_{X,y}.bin,
  unlabeled_X.bin (+ class_names.txt, fold_indices.txt)."""
  members = {'class_names.txt': '\n'.join(stl10.CLASSES).encode(),
             'fold_indices.txt': b'0 1 2\n',
             'test_X.bin': stl10.encode(test),
             'test_y.bin': (np.asarray(test_y) + 1).astype(np.uint8).tobytes(),
             'train_X.bin': stl10.encode(train),
             'train_y.bin': (np.asarray(train_y) + 1).astype(
                 np.uint8).tobytes(),
             'unlabeled_X.bin': stl10.encode(unlabeled)}
  with tarfile.open(path, 'w:gz') as tar:
    for name, data in members.items():
      if name in drop:
        continue
      info = tarfile.TarInfo(f'stl10_binary/{name}')
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
    for info in extra:
      tar.addfile(info)


@pytest.fixture(scope='module')
def stl(tmp_path_factory):
  d = tmp_path_factory.mktemp('stl')
  rng = np.random.RandomState(0)
  train_y = rng.permutation(np.repeat(np.arange(K), TRAIN_PER_CLASS))
  test_y = np.repeat(np.arange(K), TEST_PER_CLASS)
  train, test = _images(len(train_y), 1), _images(len(test_y), 2)
  unlabeled = _images(NUM_UNLABELED, 3)
  train[0] = asymmetric_image()
  archive = d / stl10.ARCHIVE
  write_archive(str(archive), train, train_y, test, test_y, unlabeled)
  lines = []
  written = prepare_stl10.prepare(str(archive), str(d / 'ml'), [96, 32],
                                  chunk=7, log=lines.append)
  return dict(d=d, ml=str(d / 'ml'), archive=str(archive), train=train,
              train_y=train_y, test=test, test_y=test_y, unlabeled=unlabeled,
              lines=lines, written=written)


def _load(stl, **kw):
  args = dict(dataset='stl10lt', ml_data=stl['ml'], class_im_ratio=10,
              darp_n1=10)
  args.update(kw)
  return registry.load(base.DataArgs(**args))


def test_prepare_writes_the_documented_files(stl):
  ml = stl['ml']
  assert sorted(os.path.relpath(p, ml) for p in stl['written']) == sorted(
      f'stl10/{s}/{n}.npy' for s in (96, 32) for n in (
          'train_images', 'train_labels', 'test_images', 'test_labels'))
  leftovers = [f for _, _, fs in os.walk(ml) for f in fs if 'tmp' in f]
  assert leftovers == []
  text = '\n'.join(stl['lines'])
  assert f'per class {[TRAIN_PER_CLASS] * K}' in text
  assert f'unlabeled {NUM_UNLABELED} images' in text
  images = np.load(os.path.join(ml, 'stl10/96/train_images.npy'))
  np.testing.assert_array_equal(images, np.concatenate(
      [stl['train'], stl['unlabeled']]))
  labels = np.load(os.path.join(ml, 'stl10/96/train_labels.npy'))
  np.testing.assert_array_equal(labels, np.concatenate(
      [stl['train_y'], np.full(NUM_UNLABELED, -1)]))
  small = np.load(os.path.join(ml, 'stl10/32/test_images.npy'))
  expected = np.asarray(Image.fromarray(stl['test'][4]).resize(
      (32, 32), Image.BILINEAR))
  np.testing.assert_array_equal(small[4], expected)


def test_loader_split(stl):
  d = _load(stl)
  counts = splits.darp_counts(10, 10, K)
  np.testing.assert_array_equal(counts, [10, 7, 5, 4, 3, 2, 2, 1, 1, 1])
  y = stl['train_y']
  lab = d.labeled_positions
  np.testing.assert_array_equal(np.bincount(d.train_labels[lab],
                                            minlength=K), counts)
  for c in range(K):  # The first n_c training images of each class.
    np.testing.assert_array_equal(lab[d.train_labels[lab] == c],
                                  np.flatnonzero(y == c)[:counts[c]])
  n = len(y)
  np.testing.assert_array_equal(d.unlabeled_positions,
                                np.arange(n, n + NUM_UNLABELED))
  np.testing.assert_array_equal(d.unlabeled_stream_positions,
                                np.sort(np.concatenate([lab, np.arange(
                                    n, n + NUM_UNLABELED)])))
  assert (d.train_labels[d.unlabeled_positions] == -1).all()
  assert isinstance(d.train_images, np.memmap)
  assert d.image_shape == (96, 96, 3)
  np.testing.assert_array_equal(d.train_images[0], asymmetric_image())
  np.testing.assert_array_equal(d.test_labels, stl['test_y'])
  np.testing.assert_allclose(d.gt_p_data, splits.darp_prior(10, K))
  # With the unused labeled images, and at 32 px.
  more = _load(stl, stl10_add_unused=True, image_size=32)
  unused = np.setdiff1d(np.arange(n), lab)
  np.testing.assert_array_equal(more.unlabeled_positions, np.concatenate(
      [unused, np.arange(n, n + NUM_UNLABELED)]))
  assert more.image_shape == (32, 32, 3)
  assert registry.imbalance_gamma('stl10lt', 20) == 20
  assert registry.counts_tag('stl10lt', stl10.DEFAULT_N1, None) == ''


def test_bad_archives(stl, tmp_path):
  one = lambda n: _images(n, 5)
  y = np.repeat(np.arange(K), 1)
  cases = {
      'missing': (dict(drop=('unlabeled_X.bin',)), 'no stl10_binary/'
                  'unlabeled_X.bin'),
      'labels': (dict(), 'labels outside 1..10'),
  }
  for name, (kw, match) in cases.items():
    path = str(tmp_path / f'{name}.tar.gz')
    labels = y + (5 if name == 'labels' else 0)
    write_archive(path, one(K), labels, one(K), y, one(2), **kw)
    with pytest.raises(errors.DataError, match=match):
      prepare_stl10.prepare(path, str(tmp_path / 'ml'), [32])
  link = tarfile.TarInfo('stl10_binary/train_X.bin')
  link.type, link.linkname = tarfile.SYMTYPE, '/etc/passwd'
  path = str(tmp_path / 'link.tar.gz')
  write_archive(path, one(K), y, one(K), y, one(2), drop=('train_X.bin',),
                extra=[link])
  with pytest.raises(errors.DataError, match='not a regular file'):
    prepare_stl10.prepare(path, str(tmp_path / 'ml'), [32])
  cut = tmp_path / 'cut.tar.gz'
  cut.write_bytes(open(stl['archive'], 'rb').read()[:-4000])
  with pytest.raises(errors.DataError, match='truncated|corrupt'):
    prepare_stl10.prepare(str(cut), str(tmp_path / 'ml'), [32])
  assert not (tmp_path / 'ml' / 'stl10' / '32' / 'train_images.npy').exists()
  assert prepare_stl10.main([f'--archive={tmp_path}/none.tar.gz',
                             f'--ml_data={tmp_path}']) == 2
  assert prepare_stl10.main([f'--archive={stl["archive"]}',
                             f'--ml_data={tmp_path}', '--sizes=48']) == 2


def test_settings_and_run_directory(stl, tmp_path):
  for bad, match in ((dict(darp_m1=5), 'darp_m1'),
                     (dict(image_size=48), '96x96x3, 64x64x3, 32x32x3'),
                     (dict(class_im_ratio=0.1), '>= 1')):
    with pytest.raises(errors.DataSettingError, match=match):
      registry.validate(base.DataArgs(**dict(
          dict(dataset='stl10lt', class_im_ratio=10), **bad)))
  with pytest.raises(errors.DataSettingError, match='stl10lt only'):
    registry.validate(base.DataArgs('cifar10lt', stl10_add_unused=True))
  with pytest.raises(errors.DataError, match='class 0 has 12 training images'):
    _load(stl, darp_n1=13)
  with pytest.raises(errors.DataError, match='prepare_stl10.py'):
    _load(stl, image_size=64)  # Not prepared at 64.
  # --input_shape: unset, the data's own 96; set, the size loaded.
  from absl import flags
  def config(*argv):
    values = flags.FlagValues()
    crest_flags.define_flags(values)
    values(['x', '--dataset=stl10lt', '--class_im_ratio=10',
            f'--model_dir={tmp_path}', *argv])
    return crest_flags.config_from_values(
        *crest_flags.values_from_flags(values))
  own, small = config(), config('--input_shape=32,32,3')
  assert own.input_shape == (96, 96, 3) and own.data_args().image_size == 96
  assert small.data_args().image_size == 32
  assert run_dir.run_name(small).split('/')[0].endswith('_32px')
  assert not run_dir.run_name(own).split('/')[0].endswith('px')
  assert config_lib.Config(dataset='cifar10lt').data_args().image_size is None
  with pytest.raises(ConfigError, match='--sizes'):
    prepare_stl10.parse_sizes('96,33')


def test_tiny_crest_run_without_unlabeled_labels(stl, tmp_path):
  cfg = config_lib.Config(
      dataset='stl10lt', class_im_ratio=10, darp_n1=10, ml_data=stl['ml'],
      input_shape=(32, 32, 3), net_arch='small', num_epoch=1, num_batch=2,
      num_generation=2, batch_size=8, unlab_ratio=1, threshold=0.0,
      model_dir=str(tmp_path), progress=False, eval_batch_size=64)
  data = registry.load(cfg.data_args())
  recs = generations.run(cfg, tf.distribute.MirroredStrategy(['/cpu:0']),
                         data)
  assert len(recs) == 2
  assert recs[0]['unlabeled_accuracy'] is None  # No labels to compare.
  assert sum(recs[0]['unlabeled_predicted_per_class']) == NUM_UNLABELED
  assert recs[0]['picked_correct_per_class'] == [0] * K
  assert recs[1]['num_pseudo_labeled'] == sum(recs[0]['picked_per_class'])
  assert recs[0]['test_set'] == 'balanced'
  json.dumps(recs)
