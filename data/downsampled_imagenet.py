"""Reading the downsampled ImageNet files (Chrabaszcz, Loshchilov and Hutter,
2017, "A downsampled variant of ImageNet as an alternative to the CIFAR
datasets").

The 32x32 and 64x64 sets each come as `train_data_batch_1` ...
`train_data_batch_10` and `val_data`: pickles of a dict with `data` (uint8
[n, 3 * S * S], channel-major rows: S*S red, S*S green, S*S blue), `labels`
(a list of 1-based ILSVRC labels, 1..1000) and, for training batches, `mean`.
The same files also exist as `.npz` archives with those arrays.

Pickles can run arbitrary code, so they are read with the CIFAR reader's
allow-list (numpy arrays, lists, dicts and scalars only), streamed from the
file into one buffer per array (see `_SafeStreamingUnpickler`).
"""
from __future__ import annotations

import math
import os
import pickle
import re
import zipfile
from typing import List, Tuple

import numpy as np

from data import cifar_archive
from data import errors

TRAIN_PATTERN = re.compile(r'train_data_batch_(\d+)(\.npz)?')
TEST_NAMES = ('val_data', 'val_data.npz')
NUM_SOURCE_CLASSES = 1000


class _SafeStreamingUnpickler(pickle._Unpickler):  # pylint: disable=protected-access
  """The pure-Python unpickler with the CIFAR reader's allow-list.

  It reads a pickled string straight into one bytes object, which numpy then
  uses as the array's buffer: peak memory is about one file. (The C
  unpickler keeps its read buffer beside a copy of the string: twice.)
  """
  find_class = cifar_archive.SafeUnpickler.find_class


def _get(d: dict, key: str, where: str):
  for k in (key, key.encode()):
    if k in d:
      return d[k]
  raise errors.DataError(f'{where}: no {key!r} entry (keys: '
                         f'{sorted(map(repr, d))}); not a downsampled '
                         f'ImageNet file.')


def _read_dict(path: str) -> dict:
  if path.endswith('.npz'):
    try:
      with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in ('data', 'labels') if k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
      raise errors.DataError(f'{path}: cannot read it as a .npz without '
                             f'pickles ({e}).') from None
  try:
    with open(path, 'rb') as f:
      d = _SafeStreamingUnpickler(f, encoding='bytes').load()
  except FileNotFoundError:
    raise errors.DataError(f'No file {path}.') from None
  except cifar_archive.UnsafePickleError as e:
    raise errors.DataError(f'{path}: {e}. It is not a downsampled ImageNet '
                           f'file; do not use it.') from None
  except (OSError, EOFError, pickle.UnpicklingError, ValueError,
          TypeError) as e:
    raise errors.DataError(f'{path}: cannot unpickle ({e!r}).') from None
  if not isinstance(d, dict):
    raise errors.DataError(f'{path}: expected a pickled dict, got '
                           f'{type(d).__name__}.')
  return d


def read_file(path: str) -> Tuple[np.ndarray, np.ndarray, int]:
  """Reads one downsampled ImageNet file.

  Returns:
    (data uint8 [n, 3 * S * S] channel-major rows, labels int64 [n] in
    1..1000, S).

  Raises:
    data.errors.DataError: unreadable, unsafe or malformed file.
  """
  d = _read_dict(path)
  data = np.asarray(_get(d, 'data', path))
  labels = np.asarray(_get(d, 'labels', path))
  size = int(round(math.sqrt(data.shape[1] / 3))) if data.ndim == 2 else 0
  if (data.dtype != np.uint8 or data.ndim != 2 or size < 1
      or 3 * size * size != data.shape[1]):
    raise errors.DataError(f'{path}: data is {data.dtype} '
                           f'{list(data.shape)}, expected uint8 [n, 3*S*S].')
  if labels.shape != (len(data),) or not np.issubdtype(labels.dtype,
                                                       np.integer):
    raise errors.DataError(f'{path}: {labels.dtype} {list(labels.shape)} '
                           f'labels for {len(data)} images.')
  labels = labels.astype(np.int64)
  bad = np.flatnonzero((labels < 1) | (labels > NUM_SOURCE_CLASSES))
  if bad.size:
    raise errors.DataError(
        f'{path}: label {int(labels[bad[0]])} at position {int(bad[0])} is '
        f'outside 1..{NUM_SOURCE_CLASSES} (the files use 1-based labels).')
  return data, labels, size


def to_nhwc(rows: np.ndarray, size: int) -> np.ndarray:
  """Channel-major rows uint8 [n, 3*S*S] -> uint8 [n, S, S, 3] (a copy)."""
  return np.ascontiguousarray(rows.reshape(-1, 3, size, size).transpose(
      0, 2, 3, 1))


def find_files(source: str) -> Tuple[List[str], str]:
  """The training batch files (by batch number) and the validation file.

  Raises:
    data.errors.DataError: missing directory or files, or a gap in the
      batch numbers.
  """
  if not os.path.isdir(source):
    raise errors.DataError(f'--source={source} is not a directory; it must '
                           f'hold train_data_batch_1 ... and val_data.')
  batches = {}
  for name in os.listdir(source):
    m = TRAIN_PATTERN.fullmatch(name)
    if m:
      batches.setdefault(int(m.group(1)), os.path.join(source, name))
  tests = [os.path.join(source, n) for n in TEST_NAMES
           if os.path.isfile(os.path.join(source, n))]
  if not batches or not tests:
    raise errors.DataError(
        f'{source}: expected the downsampled ImageNet files '
        f'train_data_batch_1 ... train_data_batch_10 and val_data (or their '
        f'.npz versions); found {sorted(os.listdir(source))[:12]}.')
  numbers = sorted(batches)
  if numbers != list(range(1, len(numbers) + 1)):
    raise errors.DataError(f'{source}: training batches {numbers}; expected '
                           f'1..n without gaps.')
  return [batches[i] for i in numbers], tests[0]
