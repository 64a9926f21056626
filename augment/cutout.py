"""Cutout as the original: a square of half the side, clipped at the border.

The centre is round(U[0, H)) by round(U[0, W)) (round half to even, so 0 and
H are half as likely as the others); rows [max(0, cy - s), min(H, cy + s)) and
the same for columns are cut, with s = max(1, scale * side) // 2 (8 at 32, 7
at 28). Cut pixels become 0 in [-1, 1] space (mid-grey).
"""
from __future__ import annotations

from typing import Union

import tensorflow as tf

from augment import draws


def draw_centres(n: Union[draws.Rows, tf.Tensor], height: int, width: int,
                 seed: tf.Tensor) -> tf.Tensor:
  """float32 [n, 2] (row, column) centres, round(U[0, side)) (n: a batch size
  or the Rows of a window)."""
  u = draws.uniform(n, seed, [2])
  return tf.round(u * tf.constant([height, width], tf.float32))


def cutout_mask(n: Union[draws.Rows, tf.Tensor], height: int, width: int,
                seed: tf.Tensor,
                scale: float = 0.5) -> tf.Tensor:
  """Random Cutout regions.

  Args:
    n: batch size, or the Rows of a window of a batch.
    height: image height.
    width: image width.
    seed: int [2].
    scale: side of the square as a fraction of the image side.

  Returns:
    bool [n, H, W, 1], True inside the cut square.
  """
  sides = tf.constant([height, width], tf.float32)
  centre = draw_centres(n, height, width, seed)
  half = tf.math.floordiv(tf.maximum(1.0, sides * scale), 2.0)
  lower = tf.cast(tf.maximum(0.0, centre - half), tf.int32)
  upper = tf.cast(tf.minimum(sides, centre + half), tf.int32)
  r = tf.range(height)[None]
  c = tf.range(width)[None]
  in_rows = (r >= lower[:, :1]) & (r < upper[:, :1])  # [n, H]
  in_cols = (c >= lower[:, 1:]) & (c < upper[:, 1:])  # [n, W]
  return (in_rows[:, :, None] & in_cols[:, None, :])[..., None]


def square_mask(centre: tf.Tensor, scale: tf.Tensor, side: int
               ) -> tf.Tensor:
  """Cutout squares with one scale per image (RandAugment's mode 'cutout'):
  rows and columns [c - s, c + s) clipped to the image, s = max(1, scale *
  side) // 2.

  Args:
    centre: float32 [n, 2] (row, column).
    scale: float32 [n].
    side: image side (square images).

  Returns:
    bool [n, side, side, 1], True inside.
  """
  half = tf.math.floordiv(tf.maximum(1.0, float(side) * scale), 2.0)
  lower = tf.cast(tf.maximum(0.0, centre - half[:, None]), tf.int32)
  upper = tf.cast(tf.minimum(float(side), centre + half[:, None]), tf.int32)
  index = tf.range(side)[None]
  inside = [(index >= lower[:, a:a + 1]) & (index < upper[:, a:a + 1])
            for a in (0, 1)]  # rows [n, side], columns [n, side]
  return (inside[0][:, :, None] & inside[1][:, None, :])[..., None]
