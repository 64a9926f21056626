"""Builders of small data files in the real formats, for tests and demos.

Nothing here is used by the loaders. The CIFAR archive builder writes the
official structure with Python-2-style pickles (byte strings as `str`, numpy
arrays through `numpy.core.multiarray._reconstruct`), like the real files.
"""
from __future__ import annotations

import io
import os
import pickle
import struct
import tarfile
from typing import Tuple

import numpy as np

from data import cifar_archive
from data import records


class _Py2Pickler(pickle._Pickler):  # pylint: disable=protected-access
  """Protocol-2 pickler writing `bytes` and ASCII `str` as Python-2 `str`."""

  dispatch = dict(pickle._Pickler.dispatch)  # pylint: disable=protected-access

  def _save_py2_str(self, obj):
    data = obj if isinstance(obj, bytes) else obj.encode('ascii')
    if len(data) < 256:
      self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
    else:
      self.write(pickle.BINSTRING + struct.pack('<i', len(data)) + data)
    self.memoize(obj)

  def _save_str(self, obj):
    if obj.isascii():
      self._save_py2_str(obj)
    else:
      pickle._Pickler.save_str(self, obj)  # pylint: disable=protected-access

  dispatch[bytes] = _save_py2_str
  dispatch[str] = _save_str


def py2_pickle(obj) -> bytes:
  """Pickles `obj` as Python 2's cPickle protocol 2 would (near enough)."""
  buf = io.BytesIO()
  _Py2Pickler(buf, protocol=2).dump(obj)
  # NumPy 2 names its module numpy._core; the real files say numpy.core.
  return buf.getvalue().replace(b'cnumpy._core.multiarray\n',
                                b'cnumpy.core.multiarray\n')


def random_cifar(num_classes: int, train_per_class: int, test_per_class: int,
                 seed: int = 0) -> Tuple[np.ndarray, ...]:
  """Random images with balanced labels in a shuffled order.

  Returns:
    (train_images uint8 [N, 32, 32, 3], train_labels int64 [N],
     test_images uint8 [T, 32, 32, 3], test_labels int64 [T]).
  """
  rng = np.random.default_rng(seed)
  out = []
  for per_class in (train_per_class, test_per_class):
    labels = rng.permutation(np.repeat(np.arange(num_classes), per_class))
    images = rng.integers(0, 256, (len(labels), 32, 32, 3), dtype=np.uint8)
    out += [images, labels.astype(np.int64)]
  return tuple(out)


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def write_cifar_archive(path: str, num_classes: int, train_images: np.ndarray,
                        train_labels: np.ndarray, test_images: np.ndarray,
                        test_labels: np.ndarray) -> None:
  """Writes an archive with the structure of the official python version.

  CIFAR-10: `cifar-10-batches-py/data_batch_1..5` (the training set cut in 5),
  `test_batch`, `batches.meta`; CIFAR-100: `cifar-100-python/train`, `test`,
  `meta`, with `fine_labels` and `coarse_labels`.
  """
  top, train_names, test_names, label_key = cifar_archive.MEMBERS[num_classes]

  def batch(images, labels, name):
    d = {'batch_label': name,
         'data': np.ascontiguousarray(
             np.asarray(images, np.uint8).transpose(0, 3, 1, 2)).reshape(
                 len(images), 3072),
         label_key: [int(v) for v in labels],
         'filenames': [f'img_{i}.png' for i in range(len(labels))]}
    if num_classes == 100:
      d['coarse_labels'] = [int(v) // 5 for v in labels]
    return py2_pickle(d)

  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with tarfile.open(path, 'w:gz') as tar:
    parts = np.array_split(np.arange(len(train_labels)), len(train_names))
    for name, part in zip(train_names, parts):
      _add_member(tar, f'{top}/{name}',
                  batch(train_images[part], train_labels[part], name))
    _add_member(tar, f'{top}/{test_names[0]}',
                batch(test_images, test_labels, test_names[0]))
    meta = 'batches.meta' if num_classes == 10 else 'meta'
    _add_member(tar, f'{top}/{meta}',
                py2_pickle({'label_names': [f'c{i}'
                                            for i in range(num_classes)]}))


def write_raw_records(path: str, images: np.ndarray,
                      labels: np.ndarray) -> None:
  """Cui-format records: uint8 [N, 32, 32, 3] images, int [N] labels."""
  records.write_examples(path, records.encode_raw(images), labels)


def write_png_records(path: str, images: np.ndarray,
                      labels: np.ndarray) -> None:
  """FixMatch-format records: uint8 [N, H, W, C] images, int [N] labels."""
  records.write_examples(path, records.encode_png(images), labels)


def write_downsampled_imagenet(directory: str, size: int,
                               train_labels: np.ndarray,
                               test_labels: np.ndarray, num_files: int = 10,
                               seed: int = 0, npz: bool = False) -> None:
  """Downsampled-ImageNet files (`train_data_batch_1..num_files`, `val_data`)
  with random pixels, as Python-2 pickles (or `.npz` with `npz=True`).

  Args:
    directory: where to write (created).
    size: S, the images' side.
    train_labels: int [N] 1-based ILSVRC labels, split in order over the
      batch files (numpy.array_split).
    test_labels: int [T] 1-based labels of val_data.
    num_files: how many training batch files.
    seed: seed of the pixels.
    npz: write `.npz` archives instead of pickles.
  """
  os.makedirs(directory, exist_ok=True)
  rng = np.random.default_rng(seed)
  parts = np.array_split(np.asarray(train_labels, np.int64), num_files)
  names = [f'train_data_batch_{i + 1}' for i in range(num_files)]
  for name, labels in zip(names + ['val_data'], parts + [test_labels]):
    data = rng.integers(0, 256, (len(labels), 3 * size * size), np.uint8)
    d = {'data': data, 'labels': [int(v) for v in labels]}
    if name != 'val_data':
      d['mean'] = data.mean(axis=0)
    path = os.path.join(directory, name)
    if npz:
      np.savez(path + '.npz', data=data, labels=np.asarray(labels, np.int64))
    else:
      with open(path, 'wb') as f:
        f.write(py2_pickle(d))
