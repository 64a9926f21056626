"""Conversions between uint8 pixels and the [-1, 1] float space.

The original scales a uint8 pixel p to `(2 / 255) * p - 1` (float32). Its
RandAugment maps the float image back to uint8 with `(x + 1) * 127.5` and a
saturating cast (which truncates), runs the uint8 ops, and maps back with
`q / 127.5 - 1`. Because of float32 rounding, the truncation turns some p into
p - 1 (47 of the 256 values for the data scaling; 63 after a RandAugment).
This module reproduces that wrap exactly on uint8 input, so a pipeline that
stays in uint8 gives the same bytes as the original's float round trips.
"""
from __future__ import annotations

import enum

import numpy as np
import tensorflow as tf

# The uint8 value the float 0.0 (Cutout's fill) becomes under the wrap.
WRAPPED_ZERO = 127


class Encoding(enum.Enum):
  """How a uint8 value stands for a float in [-1, 1]."""
  SCALED = 'scaled'  # p -> (2 / 255) * p - 1  (the data scaling)
  UNWRAPPED = 'unwrapped'  # q -> q / 127.5 - 1  (after RandAugment)


def _decode_np(values: np.ndarray, encoding: Encoding) -> np.ndarray:
  """float32 image of uint8 `values` under `encoding` (numpy, IEEE float32)."""
  v = values.astype(np.float32)
  if encoding is Encoding.SCALED:
    return np.float32(2.0 / 255.0) * v - np.float32(1.0)
  return v / np.float32(127.5) - np.float32(1.0)


def wrap_table(encoding: Encoding) -> np.ndarray:
  """The original's float -> uint8 wrap applied to every encoded value.

  Args:
    encoding: how the uint8 input values encode floats.

  Returns:
    uint8 [256]: entry p is `saturate_cast((decode(p) + 1) * 127.5)`.
  """
  x = _decode_np(np.arange(256), encoding)
  y = (x + np.float32(1.0)) * np.float32(127.5)
  return np.clip(y, 0.0, 255.0).astype(np.uint8)


def apply_table(images: tf.Tensor, table: np.ndarray) -> tf.Tensor:
  """Maps every uint8 pixel through a 256-entry table.

  Args:
    images: uint8 [N, H, W, C].
    table: uint8 [256].

  Returns:
    uint8 [N, H, W, C].
  """
  return tf.gather(tf.constant(table, tf.uint8), tf.cast(images, tf.int32))


def wrap(images: tf.Tensor, encoding: Encoding) -> tf.Tensor:
  """The original's float -> uint8 wrap of encoded uint8 images.

  The wrap lowers a contiguous range of values by one (1..47 for the data
  scaling, 1..63 after a RandAugment), so it runs as an integer compare
  rather than a table gather (several times faster). Integer ops also keep
  it exact under graph rewrites, which could otherwise fold `(x - 1) + 1`
  in float.

  Args:
    images: uint8 [N, H, W, C].
    encoding: how the values encode floats.

  Returns:
    uint8 [N, H, W, C]: `wrap_table(encoding)[images]`.
  """
  table = wrap_table(encoding)
  lowered = np.nonzero(table != np.arange(256))[0]
  contiguous = (len(lowered) > 0 and
                np.all(table[lowered] == lowered - 1) and
                lowered[-1] - lowered[0] + 1 == len(lowered))
  if not contiguous:
    return apply_table(images, table)
  low, high = int(lowered[0]), int(lowered[-1])
  inside = (images >= low) & (images <= high)
  return tf.where(inside, images - 1, images)


def to_float(images: tf.Tensor) -> tf.Tensor:
  """uint8 [N, H, W, C] -> float32 [N, H, W, C] in [-1, 1]: (2 / 255) p - 1.

  This is the original's data scaling. (After RandAugment the original used
  q / 127.5 - 1, which differs from it by at most 1.2e-7 on 111 of the 256
  values; one formula is used for all outputs.)
  """
  return (2.0 / 255.0) * tf.cast(images, tf.float32) - 1.0
