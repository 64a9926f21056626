"""Reading and writing image tfrecords (features `image` bytes, `label` int64).

Two image encodings:
  'raw': 3072 bytes, channel-major (1024 R, 1024 G, 1024 B, each row-major
    32x32): Cui et al.'s long-tailed CIFAR files and this project's DARP files.
  'png': PNG bytes: FixMatch-format balanced CIFAR files.

A whole file is read into memory at once (batched parsing, no per-record
Python work for 'raw').
"""
from __future__ import annotations

import io
import os
import struct
import tempfile
import zlib
from typing import List, Sequence, Tuple

import numpy as np

from data import errors

RAW_SIZE = 32
RAW_BYTES = 3 * RAW_SIZE * RAW_SIZE
_BATCH = 8192


def _fail(path: str, what: str, hint: str) -> errors.DataError:
  return errors.DataError(
      f'{path}: {what}. Re-create the file: {hint}.' if hint else
      f'{path}: {what}.')


def read_examples(path: str, hint: str = '') -> Tuple[np.ndarray, np.ndarray]:
  """Reads every record of a tfrecord file.

  Args:
    path: the file.
    hint: the command that prepares the file (goes into error messages).

  Returns:
    (image bytes: object [N] of `bytes`, labels: int64 [N]).

  Raises:
    data.errors.DataError: missing, unreadable, truncated or corrupt file,
      or records without an `image` bytes / `label` int64 feature.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(path):
    raise errors.DataError(
        f'Missing data file {path}. Prepare it: {hint}.' if hint else
        f'Missing data file {path}.')
  if not os.access(path, os.R_OK):
    raise _fail(path, 'the file is not readable (permissions)', '')
  spec = {'image': tf.io.FixedLenFeature([], tf.string),
          'label': tf.io.FixedLenFeature([], tf.int64)}
  ds = tf.data.TFRecordDataset(path).batch(_BATCH).map(
      lambda s: tf.io.parse_example(s, spec))
  images: List[np.ndarray] = []
  labels: List[np.ndarray] = []
  try:
    for batch in ds:
      images.append(batch['image'].numpy())
      labels.append(batch['label'].numpy())
  except tf.errors.DataLossError as e:
    raise _fail(path, f'truncated or corrupt tfrecord file ({_first_line(e)})',
                hint) from None
  except tf.errors.InvalidArgumentError as e:
    raise _fail(
        path, 'records are not in the expected format: each needs a bytes '
        f'feature "image" and an int64 feature "label" ({_first_line(e)})',
        hint) from None
  except tf.errors.OpError as e:
    raise _fail(path, f'cannot read the file ({_first_line(e)})', hint
                ) from None
  if not images:
    raise _fail(path, 'the file holds no records', hint)
  return (np.concatenate(images).astype(object),
          np.concatenate(labels).astype(np.int64))


def _first_line(e: Exception) -> str:
  text = getattr(e, 'message', None) or str(e)
  return text.strip().splitlines()[0] if text.strip() else type(e).__name__


def decode_raw(images: np.ndarray, path: str, hint: str = '') -> np.ndarray:
  """Channel-major raw bytes -> HWC images.

  Args:
    images: object [N] of `bytes`, each 3072 long.
    path, hint: for error messages.

  Returns:
    uint8 [N, 32, 32, 3].
  """
  lengths = np.fromiter((len(b) for b in images), np.int64, len(images))
  bad = np.flatnonzero(lengths != RAW_BYTES)
  if bad.size:
    raise _fail(
        path, f'record {bad[0]} has an image of {lengths[bad[0]]} bytes, '
        f'expected {RAW_BYTES} (raw 32x32x3, channel-major)', hint)
  flat = np.frombuffer(b''.join(images), np.uint8)
  return flat.reshape(-1, 3, RAW_SIZE, RAW_SIZE).transpose(0, 2, 3, 1).copy()


def encode_raw(images: np.ndarray) -> List[bytes]:
  """HWC images uint8 [N, 32, 32, 3] -> channel-major raw bytes (3072 each)."""
  chw = np.ascontiguousarray(np.asarray(images, np.uint8).transpose(0, 3, 1, 2))
  flat = chw.reshape(len(chw), -1)
  return [row.tobytes() for row in flat]


def decode_png(images: np.ndarray, path: str, hint: str = '',
               shape: Tuple[int, int, int] = (32, 32, 3)) -> np.ndarray:
  """PNG bytes -> images of one shape.

  Args:
    images: object [N] of PNG `bytes`.
    path, hint: for error messages.
    shape: the expected (H, W, C) of every image.

  Returns:
    uint8 [N, H, W, C].
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  out = np.empty((len(images),) + tuple(shape), np.uint8)
  mode = {1: 'L', 3: 'RGB'}[shape[2]]
  for i, b in enumerate(images):
    try:
      with Image.open(io.BytesIO(b)) as im:
        if im.format != 'PNG':
          raise ValueError(f'a {im.format} image, not PNG')
        arr = np.asarray(im.convert(mode) if im.mode != mode else im)
    except Exception as e:  # PIL raises many types on bad data.
      raise _fail(path, f'record {i}: the image is not a readable PNG ({e})',
                  hint) from None
    if arr.ndim == 2:
      arr = arr[..., None]
    if arr.shape != tuple(shape):
      raise _fail(path, f'record {i}: image of shape {arr.shape}, expected '
                  f'{tuple(shape)}', hint)
    out[i] = arr
  return out


def _png_chunk(kind: bytes, data: bytes) -> bytes:
  return (struct.pack('>I', len(data)) + kind + data +
          struct.pack('>I', zlib.crc32(kind + data)))


def encode_png(images: np.ndarray, level: int = 6) -> List[bytes]:
  """Images uint8 [N, H, W, C] (C 1 or 3) -> PNG bytes.

  A minimal PNG writer (8-bit greyscale or RGB, filter type 0 on every row,
  one zlib-compressed IDAT chunk), several times faster than PIL for small
  images; any PNG reader decodes it.
  """
  images = np.asarray(images, np.uint8)
  n, h, w, c = images.shape
  if c not in (1, 3):
    raise ValueError(f'PNG images need 1 or 3 channels, got {c}')
  rows = np.zeros((n, h, 1 + w * c), np.uint8)  # Leading 0: filter "None".
  rows[:, :, 1:] = images.reshape(n, h, w * c)
  head = b'\x89PNG\r\n\x1a\n' + _png_chunk(
      b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 0 if c == 1 else 2, 0, 0, 0))
  end = _png_chunk(b'IEND', b'')
  return [head + _png_chunk(b'IDAT', zlib.compress(r.tobytes(), level)) + end
          for r in rows]


def _varint(value: int) -> bytes:
  value &= (1 << 64) - 1  # int64 two's complement, as protobuf does.
  out = bytearray()
  while True:
    low = value & 0x7F
    value >>= 7
    if value:
      out.append(low | 0x80)
    else:
      out.append(low)
      return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
  """A length-delimited protobuf field."""
  return tag + _varint(len(payload)) + payload


def serialize_example(image: bytes, label: int) -> bytes:
  """The serialized `tf.train.Example` {'image': [image], 'label': [label]}.

  Hand-encoded protobuf (same message as building a `tf.train.Example`, about
  ten times faster): Example.features(1) > Features.feature(1) map entries
  {key(1), value(2)} > Feature.bytes_list(1) / int64_list(3) > value(1).
  """
  image_feature = _field(b'\x0a', _field(b'\x0a', image))
  label_feature = _field(b'\x1a', _field(b'\x0a', _varint(label)))
  entries = (_field(b'\x0a', _field(b'\x0a', b'image') +
                    _field(b'\x12', image_feature)) +
             _field(b'\x0a', _field(b'\x0a', b'label') +
                    _field(b'\x12', label_feature)))
  return _field(b'\x0a', entries)


def write_examples(path: str, images: Sequence[bytes],
                   labels: Sequence[int]) -> None:
  """Writes records atomically (a temporary file in the same directory, then
  a rename), creating the directory if needed.

  Args:
    path: destination.
    images: N encoded images.
    labels: int [N].
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if len(images) != len(labels):
    raise ValueError(f'{len(images)} images but {len(labels)} labels')
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.',
                             suffix='.tmp', dir=directory)
  os.close(fd)
  try:
    with tf.io.TFRecordWriter(tmp) as writer:
      for image, label in zip(images, labels):
        writer.write(serialize_example(image, int(label)))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
