"""Reading the official CIFAR-10 / CIFAR-100 python archives safely.

`cifar-10-python.tar.gz` holds `cifar-10-batches-py/data_batch_1..5` and
`test_batch`; `cifar-100-python.tar.gz` holds `cifar-100-python/train` and
`test` (labels under `fine_labels`). Each member is a Python-2 pickle of a
dict with `data` (uint8 [n, 3072], channel-major rows) and the labels.

Pickles can run arbitrary code, so they are read with an unpickler that only
admits the globals numpy needs to rebuild arrays and refuses anything else.
Members are read from the tar file in memory; nothing is extracted to disk.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import pickle
import tarfile
from typing import Dict, List, Tuple

import numpy as np

from data import errors

URLS = {10: 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz',
        100: 'https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz'}
MD5 = {10: 'c58f30108f718f92721af3b95e74349a',
       100: 'eb9058c3a382ffc7106e4002c42a8d85'}
MEMBERS = {
    10: ('cifar-10-batches-py',
         [f'data_batch_{i}' for i in range(1, 6)], ['test_batch'], 'labels'),
    100: ('cifar-100-python', ['train'], ['test'], 'fine_labels'),
}


def _allowed_globals() -> Dict[Tuple[str, str], object]:
  import copyreg  # pylint: disable=g-import-not-at-top
  try:
    from numpy._core import multiarray  # pylint: disable=g-import-not-at-top
  except ImportError:  # NumPy 1.x.
    from numpy.core import multiarray  # pylint: disable=g-import-not-at-top
  reconstruct = multiarray._reconstruct  # pylint: disable=protected-access
  reconstructor = copyreg._reconstructor  # pylint: disable=protected-access
  return {
      ('numpy.core.multiarray', '_reconstruct'): reconstruct,
      ('numpy._core.multiarray', '_reconstruct'): reconstruct,
      ('numpy', 'ndarray'): np.ndarray,
      ('numpy', 'dtype'): np.dtype,
      ('copy_reg', '_reconstructor'): reconstructor,
      ('copyreg', '_reconstructor'): reconstructor,
  }


class UnsafePickleError(pickle.UnpicklingError):
  """A pickle asked for a global outside the allow-list."""


class SafeUnpickler(pickle.Unpickler):
  """Unpickler that only rebuilds numpy arrays, lists, dicts and scalars."""

  def find_class(self, module: str, name: str):
    allowed = _allowed_globals()
    if (module, name) in allowed:
      return allowed[(module, name)]
    names = ', '.join(sorted(f'{m}.{n}' for m, n in allowed))
    raise UnsafePickleError(
        f'refusing to load the global {module}.{name}: a CIFAR batch only '
        f'needs numpy array reconstruction ({names})')


def safe_load(data: bytes) -> object:
  """Unpickles a Python-2 pickle (`encoding='bytes'`) with the allow-list."""
  return SafeUnpickler(io.BytesIO(data), encoding='bytes').load()


@dataclasses.dataclass(frozen=True)
class CifarArchive:
  """The content of an official CIFAR archive.

  Attributes:
    num_classes: 10 or 100.
    train_images: uint8 [50000, 32, 32, 3] (archive order).
    train_labels: int64 [50000].
    test_images: uint8 [10000, 32, 32, 3].
    test_labels: int64 [10000].
  """
  num_classes: int
  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray


def _get(d: dict, key: str, where: str):
  for k in (key.encode(), key):
    if k in d:
      return d[k]
  raise errors.DataError(f'{where}: the pickled dict has no {key!r} entry '
                         f'(keys: {sorted(map(repr, d))}).')


def _read_batches(tar: tarfile.TarFile, path: str, names: List[str],
                  label_key: str) -> Tuple[np.ndarray, np.ndarray]:
  images, labels = [], []
  for name in names:
    where = f'{path}:{name}'
    try:
      member = tar.getmember(name)
      f = tar.extractfile(member)
      if f is None:
        raise KeyError(name)
      raw = f.read()
    except KeyError:
      raise errors.DataError(
          f'{path}: the archive has no member {name}; is it the official '
          f'cifar-10-python.tar.gz / cifar-100-python.tar.gz?') from None
    try:
      d = safe_load(raw)
    except UnsafePickleError as e:
      raise errors.DataError(f'{where}: {e}. The archive is not an official '
                             f'CIFAR archive; do not use it.') from None
    except Exception as e:  # Corrupt pickles raise many types.
      raise errors.DataError(f'{where}: cannot unpickle ({e!r}).') from None
    if not isinstance(d, dict):
      raise errors.DataError(f'{where}: expected a pickled dict, got '
                             f'{type(d).__name__}.')
    data = np.asarray(_get(d, 'data', where))
    lab = np.asarray(_get(d, label_key, where))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
      raise errors.DataError(f'{where}: data is {data.dtype} '
                             f'{list(data.shape)}, expected uint8 [n, 3072].')
    if lab.shape != (len(data),):
      raise errors.DataError(f'{where}: {len(lab)} labels for {len(data)} '
                             f'images.')
    images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    labels.append(lab.astype(np.int64))
  return np.concatenate(images), np.concatenate(labels)


def read_archive(path: str) -> CifarArchive:
  """Reads an official CIFAR-10 or CIFAR-100 python archive.

  Args:
    path: `cifar-10-python.tar.gz` or `cifar-100-python.tar.gz`.

  Raises:
    data.errors.DataError: missing/unreadable archive, unexpected content,
      or a pickle that asks for anything but numpy arrays.
  """
  try:
    tar = tarfile.open(path, 'r:*')
  except FileNotFoundError:
    raise errors.DataError(
        f'No archive at {path}. Download cifar-10-python.tar.gz or '
        f'cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/'
        f'cifar.html (or pass --download).') from None
  except (OSError, tarfile.TarError) as e:
    raise errors.DataError(f'{path}: not a readable tar archive ({e}).'
                           ) from None
  with tar:
    try:
      names = set(tar.getnames())
    except (OSError, tarfile.TarError, EOFError) as e:
      raise errors.DataError(f'{path}: truncated or corrupt archive ({e}).'
                             ) from None
    for k, (top, train, test, label_key) in MEMBERS.items():
      if f'{top}/{train[0]}' in names:
        try:
          tr = _read_batches(tar, path, [f'{top}/{n}' for n in train],
                             label_key)
          te = _read_batches(tar, path, [f'{top}/{n}' for n in test],
                             label_key)
        except (OSError, tarfile.TarError, EOFError) as e:
          raise errors.DataError(f'{path}: truncated or corrupt archive ({e}).'
                                 ) from None
        for labels, what in ((tr[1], 'train'), (te[1], 'test')):
          if labels.min() < 0 or labels.max() >= k:
            raise errors.DataError(f'{path}: {what} labels outside [0, {k}).')
        return CifarArchive(k, tr[0], tr[1], te[0], te[1])
  raise errors.DataError(
      f'{path}: neither cifar-10-batches-py/data_batch_1 nor '
      f'cifar-100-python/train is in the archive; expected the official '
      f'python version of CIFAR-10 or CIFAR-100.')


def md5_of(path: str) -> str:
  """Hex MD5 of a file."""
  h = hashlib.md5()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      h.update(block)
  return h.hexdigest()
