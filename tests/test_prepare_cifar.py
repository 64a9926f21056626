"""Tests of scripts/prepare_cifar.py and data.cifar_archive on tiny archives."""
import os
import pathlib
import pickle
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from crest import errors
from data import base
from data import cifar_archive
from data import layout
from data import registry
from data import splits
from data import testing
from scripts import prepare_cifar

ROOT = pathlib.Path(__file__).resolve().parents[1]
PER_CLASS = 60


@pytest.fixture(scope='module')
def cifar10(tmp_path_factory):
  """A tiny CIFAR-10 archive (60 train / 10 test per class), prepared by
  running the script as a subprocess."""
  d = tmp_path_factory.mktemp('c10')
  arrays = testing.random_cifar(10, PER_CLASS, 10, seed=1)
  # A pixel with distinct channels to catch channel-order mistakes.
  arrays[0][0, 0, 1] = (255, 0, 7)
  arrays[0][0, 5, 2] = (1, 2, 3)
  archive = d / 'cifar-10-python.tar.gz'
  testing.write_cifar_archive(str(archive), 10, *arrays)
  ml_data = d / 'ml'
  proc = subprocess.run(
      [sys.executable, 'scripts/prepare_cifar.py', f'--archive={archive}',
       f'--ml_data={ml_data}', '--class_im_ratio=0.1,0.02',
       '--darp_gamma=10', '--darp_n1=20', '--darp_m1=30'],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  return dict(arrays=arrays, ml_data=str(ml_data), proc=proc, dir=d)


def test_script_exit_code_and_printed_counts(cifar10):
  proc = cifar10['proc']
  assert proc.returncode == 0, proc.stderr
  out = proc.stdout
  lt01 = splits.long_tail_counts(PER_CLASS, 0.1, 10)
  lt002 = splits.long_tail_counts(PER_CLASS, 0.02, 10)
  assert f'per class {lt01.tolist()}' in out
  assert f'ratio 0.1: {lt01.sum()} training images' in out
  assert f'ratio 0.02: {lt002.sum()} training images' in out
  lab, unl = splits.darp_counts(20, 10, 10), splits.darp_counts(30, 10, 10)
  assert f'gamma 10: {lab.sum()} labeled + {unl.sum()} unlabeled' in out
  assert f'per class {lab.tolist()}' in out
  assert 'done: 9 files' in out


def test_files_in_the_documented_layout(cifar10):
  ml = cifar10['ml_data']
  for rel in ['cifar/cifar10-train.tfrecord', 'cifar/cifar10-test.tfrecord',
              'cifar-lt/cifar-10-data-im-0.1/train.tfrecords',
              'cifar-lt/cifar-10-data-im-0.1/eval.tfrecords',
              'cifar-lt/cifar-10-data-im-0.02/train.tfrecords',
              'cifar-lt/cifar-10-data-im-0.02/eval.tfrecords',
              # N1 / M1 other than 1500 / 3000: in the names.
              'cifar-darp/cifar10-10-n20-m30-train-labeled.tfrecords',
              'cifar-darp/cifar10-10-n20-m30-train-unlabeled.tfrecords',
              'cifar-darp/cifar10-test.tfrecords']:
    assert os.path.getsize(os.path.join(ml, rel)) > 0, rel
  # No temporary files left behind.
  leftovers = [f for _, _, fs in os.walk(ml) for f in fs if f.endswith('.tmp')]
  assert leftovers == []


def test_balanced_round_trip(cifar10):
  tr, ty, te, tey = cifar10['arrays']
  d = registry.load(base.DataArgs('cifar10', ml_data=cifar10['ml_data'],
                                  num_labeled=5))
  np.testing.assert_array_equal(d.train_images, tr)
  np.testing.assert_array_equal(d.train_labels, ty)
  np.testing.assert_array_equal(d.test_images, te)
  np.testing.assert_array_equal(d.test_labels, tey)
  assert tuple(d.train_images[0, 0, 1]) == (255, 0, 7)
  assert len(d.labeled_positions) == 50
  np.testing.assert_allclose(d.gt_p_data, np.full(10, 0.1))


@pytest.mark.parametrize('ratio', [0.1, 0.02])
def test_long_tailed_counts_selection_and_pixels(cifar10, ratio):
  tr, ty, te, tey = cifar10['arrays']
  d = registry.load(base.DataArgs('cifar10lt', ml_data=cifar10['ml_data'],
                                  class_im_ratio=ratio, percent_labeled=0.2))
  counts = splits.long_tail_counts(PER_CLASS, ratio, 10)
  np.testing.assert_array_equal(np.bincount(d.train_labels, minlength=10),
                                counts)
  # Class k keeps its first n_k images in archive order, in archive order.
  keep = np.sort(np.concatenate(
      [np.flatnonzero(ty == c)[:n] for c, n in enumerate(counts)]))
  np.testing.assert_array_equal(d.train_images, tr[keep])
  np.testing.assert_array_equal(d.train_labels, ty[keep])
  np.testing.assert_array_equal(d.test_images, te)
  assert tuple(d.train_images[0, 0, 1]) == (255, 0, 7)  # image 0 is kept.
  assert tuple(d.train_images[0, 5, 2]) == (1, 2, 3)


def test_darp_counts_and_pixels(cifar10):
  tr, ty, te, _ = cifar10['arrays']
  d = registry.load(base.DataArgs('cifar10ltdarp', ml_data=cifar10['ml_data'],
                                  class_im_ratio=10, darp_n1=20, darp_m1=30))
  lab, unl = splits.darp_counts(20, 10, 10), splits.darp_counts(30, 10, 10)
  np.testing.assert_array_equal(lab, [20, 15, 11, 9, 7, 5, 4, 3, 2, 2])
  got_lab = d.train_labels[d.labeled_positions]
  got_unl = d.train_labels[d.unlabeled_positions]
  np.testing.assert_array_equal(np.bincount(got_lab, minlength=10), lab)
  np.testing.assert_array_equal(np.bincount(got_unl, minlength=10), unl)
  # Labeled = class k's first lab[k] images; unlabeled = the next unl[k].
  for c in range(10):
    pos = np.flatnonzero(ty == c)
    np.testing.assert_array_equal(
        d.train_images[d.labeled_positions][got_lab == c], tr[pos[:lab[c]]])
    np.testing.assert_array_equal(
        d.train_images[d.unlabeled_positions][got_unl == c],
        tr[pos[lab[c]:lab[c] + unl[c]]])
  np.testing.assert_array_equal(d.test_images, te)


def test_cifar100_in_process(tmp_path):
  arrays = testing.random_cifar(100, 6, 1, seed=2)
  archive = tmp_path / 'cifar-100-python.tar.gz'
  testing.write_cifar_archive(str(archive), 100, *arrays)
  lines = []
  written = prepare_cifar.prepare(
      cifar_archive.read_archive(str(archive)), str(tmp_path / 'ml'),
      ratios=[0.5], gammas=[2], darp_n1=2, darp_m1=3, balanced=True,
      log=lines.append)
  assert len(written) == 7
  assert any('cifar-100-data-im-0.5' in w for w in written)
  ml = str(tmp_path / 'ml')
  lt = registry.load(base.DataArgs('cifar100lt', ml_data=ml,
                                   class_im_ratio=0.5))
  counts = splits.long_tail_counts(6, 0.5, 100)
  np.testing.assert_array_equal(np.bincount(lt.train_labels, minlength=100),
                                counts)
  assert lt.num_classes == 100 and len(lt.test_labels) == 100
  darp = registry.load(base.DataArgs('cifar100ltdarp', ml_data=ml,
                                     class_im_ratio=2, darp_n1=2, darp_m1=3))
  assert len(darp.labeled_positions) == splits.darp_counts(2, 2, 100).sum()
  bal = registry.load(base.DataArgs('cifar100', ml_data=ml, num_labeled=1))
  np.testing.assert_array_equal(bal.train_images, arrays[0])
  assert len(bal.labeled_positions) == 100


def test_official_ratio_totals():
  # The counts prepare_cifar writes for the official archive (N_max 5000).
  assert splits.long_tail_counts(5000, 0.02, 10).sum() == 13996
  assert splits.long_tail_counts(5000, 0.01, 10).sum() == 12406
  assert splits.long_tail_counts(5000, 0.005, 10).sum() == 11203
  np.testing.assert_array_equal(splits.long_tail_counts(5000, 0.01, 10),
                                [5000, 2997, 1796, 1077, 645, 387, 232, 139,
                                 83, 50])
  np.testing.assert_array_equal(
      splits.darp_counts(1500, 100, 10),
      [1500, 899, 539, 323, 193, 116, 69, 41, 25, 15])
  assert splits.darp_counts(3000, 100, 10).sum() == 7443


class _Evil:

  def __reduce__(self):
    return (os.system, ('touch pwned_marker',))


def test_unpickler_refuses_other_globals(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  archive = tmp_path / 'cifar-10-python.tar.gz'
  with tarfile.open(archive, 'w:gz') as tar:
    for name in ['data_batch_1']:
      data = pickle.dumps({b'data': _Evil()}, protocol=2)
      info = tarfile.TarInfo(f'cifar-10-batches-py/{name}')
      info.size = len(data)
      import io
      tar.addfile(info, io.BytesIO(data))
  with pytest.raises(errors.DataError, match='refusing to load the global'):
    cifar_archive.read_archive(str(archive))
  assert not (tmp_path / 'pwned_marker').exists()
  with pytest.raises(cifar_archive.UnsafePickleError):
    cifar_archive.safe_load(pickle.dumps(print, protocol=2))


def test_archive_errors(tmp_path):
  with pytest.raises(errors.DataError, match='No archive at'):
    cifar_archive.read_archive(str(tmp_path / 'nope.tar.gz'))
  junk = tmp_path / 'junk.tar.gz'
  junk.write_bytes(b'not a tar file at all' * 10)
  with pytest.raises(errors.DataError, match='not a readable tar'):
    cifar_archive.read_archive(str(junk))
  good = tmp_path / 'cifar-10-python.tar.gz'
  testing.write_cifar_archive(str(good), 10, *testing.random_cifar(10, 5, 1))
  cut = tmp_path / 'cut.tar.gz'
  cut.write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])
  with pytest.raises(errors.DataError, match='corrupt|not a readable'):
    cifar_archive.read_archive(str(cut))
  other = tmp_path / 'other.tar.gz'
  with tarfile.open(other, 'w:gz') as tar:
    tar.add(str(junk), arcname='something/else')
  with pytest.raises(errors.DataError, match='official python version'):
    cifar_archive.read_archive(str(other))


def test_main_bad_input_exits_2(tmp_path, capsys):
  assert prepare_cifar.main([f'--archive={tmp_path}/missing.tar.gz',
                             f'--ml_data={tmp_path}']) == 2
  assert 'No archive at' in capsys.readouterr().err
  archive = tmp_path / 'cifar-10-python.tar.gz'
  testing.write_cifar_archive(str(archive), 10, *testing.random_cifar(10, 5, 1))
  assert prepare_cifar.main([f'--archive={archive}', f'--ml_data={tmp_path}',
                             '--class_im_ratio=0.1,abc']) == 2
  assert "'abc' is not a number" in capsys.readouterr().err
  assert prepare_cifar.main([f'--archive={archive}', f'--ml_data={tmp_path}',
                             '--class_im_ratio=', '--darp_gamma=10']) == 2
  assert 'N1 + M1' in capsys.readouterr().err
  assert prepare_cifar.main([f'--archive={archive}', '--ml_data=',
                             '--class_im_ratio=']) == 2
  assert '--ml_data' in capsys.readouterr().err
  assert prepare_cifar.main([f'--archive={archive}', f'--ml_data={tmp_path}',
                             '--class_im_ratio=0', '--darp_gamma=']) == 2
  assert 'not in (0, 1]' in capsys.readouterr().err


def test_download_checks_md5_and_fails_clearly(tmp_path, monkeypatch, capsys):
  source = tmp_path / 'src.tar.gz'
  testing.write_cifar_archive(str(source), 10, *testing.random_cifar(10, 5, 1))
  monkeypatch.setitem(cifar_archive.URLS, 10, source.as_uri())
  dest = tmp_path / 'dl' / 'cifar-10-python.tar.gz'
  with pytest.raises(errors.DataError, match='MD5'):
    prepare_cifar.download(str(dest), 10, log=lambda s: None)
  assert not dest.exists() and not os.path.exists(str(dest) + '.part')
  monkeypatch.setitem(cifar_archive.MD5, 10, cifar_archive.md5_of(str(source)))
  assert prepare_cifar.main([f'--archive={dest}', f'--ml_data={tmp_path}/ml',
                             '--download', '--class_im_ratio=0.5',
                             '--darp_gamma=', '--balanced=false']) == 0
  assert dest.read_bytes() == source.read_bytes()
  assert os.path.isfile(layout.lt_dir(str(tmp_path / 'ml'), 10, 0.5) +
                        '/train.tfrecords')
  monkeypatch.setitem(cifar_archive.URLS, 10, 'http://127.0.0.1:9/x.tar.gz')
  with pytest.raises(errors.DataError, match='Cannot download'):
    prepare_cifar.download(str(tmp_path / 'x' / 'cifar-10-python.tar.gz'), 10,
                           log=lambda s: None)
  assert prepare_cifar.main([f'--archive={tmp_path}/weird.tgz',
                             f'--ml_data={tmp_path}', '--download']) == 2
  assert 'needs --archive to be named' in capsys.readouterr().err


def test_prepared_files_train_end_to_end(cifar10, tmp_path):
  """The prepared long-tailed and DARP files through the real entry point
  (the two runs go side by side)."""
  assert cifar10['proc'].returncode == 0, cifar10['proc'].stderr
  runs = {
      'lt': ['--dataset=cifar10lt', '--class_im_ratio=0.1',
             '--percent_labeled=0.2'],
      'darp': ['--dataset=cifar10ltdarp', '--class_im_ratio=10',
               '--darp_n1=20', '--darp_m1=30'],
  }
  procs = {}
  for name, flags in runs.items():
    cmd = [sys.executable, '-m', 'train_and_eval_loop',
           f'--model_dir={tmp_path / name}', f'--ml_data={cifar10["ml_data"]}',
           '--net_arch=small', '--num_epoch=1', '--num_batch=2',
           '--num_generation=2', '--batch_size=8', '--unlab_ratio=1',
           '--progress=false', '--eval_batch_size=64'] + flags
    with open(tmp_path / f'{name}.log', 'w') as log:
      procs[name] = subprocess.Popen(cmd, cwd=ROOT, stdout=log,
                                     stderr=subprocess.STDOUT)
  import json  # pylint: disable=g-import-not-at-top
  try:
    for name, proc in procs.items():
      proc.wait(timeout=300)
      log = (tmp_path / f'{name}.log').read_text()
      assert proc.returncode == 0, (name, log[-3000:])
      records = sorted((tmp_path / name).rglob('generation.json'))
      assert len(records) == 2, name
      rec = json.loads(records[-1].read_text())
      assert len(rec['test_per_class_recall']) == 10
      assert rec['num_pseudo_labeled'] == sum(
          json.loads(records[0].read_text())['picked_per_class'])
  finally:
    for proc in procs.values():
      if proc.poll() is None:
        proc.kill()
