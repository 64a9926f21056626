"""Conversions between uint8 pixels and the [-1, 1] float space.

The original scales a uint8 pixel p to `(2 / 255) * p - 1` (float32). Its
RandAugment maps the float image back to uint8 with `(x + 1) * 127.5` and a
saturating cast (which truncates), runs the uint8 ops, and maps back with
`q / 127.5 - 1`. Because of float32 rounding, the truncation turns some p into
p - 1 (47 of the 256 values for the data scaling). This module reproduces both
conversions exactly, as 256-entry lookup tables, so that a pipeline that stays
in uint8 gives the same bytes as the original's float round trips.
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


def to_float(images: tf.Tensor, encoding: Encoding = Encoding.SCALED
            ) -> tf.Tensor:
  """uint8 [N, H, W, C] -> float32 [N, H, W, C] in [-1, 1], as the original.

  A lookup of the 256 values computed once in IEEE float32, so the result is
  the same eagerly, in tf.function and in tf.data (graph rewrites of a
  division by a constant can otherwise change the last bit).
  """
  table = tf.constant(_decode_np(np.arange(256), encoding), tf.float32)
  return tf.gather(table, tf.cast(images, tf.int32))
