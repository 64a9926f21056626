"""Reading (and, for tests and tools, writing) IDX files, optionally gzipped.

IDX (the MNIST / Fashion-MNIST format): two zero bytes, a type byte (0x08 =
uint8), the number of dimensions, each dimension as a big-endian uint32, then
the data in row-major order.
"""
from __future__ import annotations

import gzip
import os

import numpy as np

from data import errors

_UBYTE = 0x08


def read_idx(path: str, ndim: int, hint: str = '') -> np.ndarray:
  """Reads a uint8 IDX file (`.gz` is decompressed).

  Args:
    path: the file.
    ndim: expected number of dimensions (3 for images, 1 for labels).
    hint: how to get a good file, for error messages.

  Returns:
    uint8 array of `ndim` dimensions.

  Raises:
    data.errors.DataError: unreadable file, wrong magic, wrong size.
  """
  suffix = f' {hint}.' if hint else ''
  try:
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rb') as f:
      data = f.read()
  except (OSError, EOFError) as e:
    raise errors.DataError(f'{path}: cannot read the file ({e}).{suffix}'
                           ) from None
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != _UBYTE:
    raise errors.DataError(
        f'{path}: not a uint8 IDX file (magic bytes {data[:4].hex()}, '
        f'expected 0000 08 0{ndim}).{suffix}')
  if data[3] != ndim:
    raise errors.DataError(
        f'{path}: IDX file with {data[3]} dimensions, expected {ndim}.{suffix}')
  header = 4 + 4 * ndim
  if len(data) < header:
    raise errors.DataError(f'{path}: truncated IDX header.{suffix}')
  dims = np.frombuffer(data[4:header], '>u4').astype(np.int64)
  size = int(np.prod(dims))
  if len(data) != header + size:
    raise errors.DataError(
        f'{path}: IDX data of {len(data) - header} bytes, expected {size} for '
        f'shape {dims.tolist()} (truncated or corrupt).{suffix}')
  return np.frombuffer(data, np.uint8, size, header).reshape(dims).copy()


def write_idx(path: str, array: np.ndarray) -> None:
  """Writes a uint8 array as IDX (gzipped when `path` ends with `.gz`)."""
  array = np.asarray(array, np.uint8)
  data = (bytes([0, 0, _UBYTE, array.ndim]) +
          np.asarray(array.shape, '>u4').tobytes() + array.tobytes())
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'wb') as f:
    f.write(data)
