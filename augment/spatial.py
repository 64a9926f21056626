"""Random shift (reflect-pad and crop) and horizontal flip as index maps.

Both ops only move pixels, so they are expressed as per-image row and column
index maps [N, H] / [N, W] into the input; consecutive shifts and flips
compose into one map and cost a single pair of gathers. Pixels are moved
exactly (any dtype, any number of channels).
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import tensorflow as tf

from augment import draws


def pad_size(size: int) -> int:
  """The original's shift: int(0.125 * side) pixels (4 at 32, 3 at 28)."""
  return int(0.125 * size)


def identity_maps(n: tf.Tensor, height: int, width: int
                 ) -> Tuple[tf.Tensor, tf.Tensor]:
  """int32 [n, H], [n, W] identity index maps."""
  rows = tf.tile(tf.range(height)[None], [n, 1])
  cols = tf.tile(tf.range(width)[None], [n, 1])
  return rows, cols


def _reflect(index: tf.Tensor, length: int) -> tf.Tensor:
  """Mirror without repeating the edge (tf.pad 'REFLECT')."""
  index = tf.abs(index)
  return (length - 1) - tf.abs((length - 1) - index)


def draw_shift(n: Union[draws.Rows, tf.Tensor], seed: tf.Tensor, size: int
              ) -> tf.Tensor:
  """int32 [n, 2] (dy, dx) offsets, uniform in [-pad, pad] (n: a batch size
  or the Rows of a window)."""
  pad = pad_size(size)
  return draws.uniform(n, seed, [2], minval=0, maxval=2 * pad + 1,
                       dtype=tf.int32) - pad


def draw_flip(n: Union[draws.Rows, tf.Tensor], seed: tf.Tensor
             ) -> tf.Tensor:
  """bool [n], True for the images to flip (probability 0.5)."""
  return draws.uniform(n, seed) < 0.5


def shift(rows: tf.Tensor, cols: tf.Tensor, seed: tf.Tensor, size: int,
          window: Optional[draws.Rows] = None) -> Tuple[tf.Tensor, tf.Tensor]:
  """Composes a random shift: reflect-pad by pad_size(size), random crop.

  Args:
    rows: int32 [n, H] current row map.
    cols: int32 [n, W] current column map.
    seed: int [2].
    size: image side (sets the pad).
    window: the batch rows these maps are (default: a whole batch).

  Returns:
    The composed (rows, cols): output pixel (r, c) of the shifted image is
    pixel (r + dy, c + dx) of the padded-by-reflection input.
  """
  offsets = draw_shift(draws.rows_of(window, rows), seed, size)
  height, width = rows.shape[1], cols.shape[1]
  new_rows = _reflect(tf.range(height)[None] + offsets[:, :1], height)
  new_cols = _reflect(tf.range(width)[None] + offsets[:, 1:], width)
  return (tf.gather(rows, new_rows, batch_dims=1),
          tf.gather(cols, new_cols, batch_dims=1))


def flip(rows: tf.Tensor, cols: tf.Tensor, seed: tf.Tensor,
         window: Optional[draws.Rows] = None) -> Tuple[tf.Tensor, tf.Tensor]:
  """Composes a left-right flip of each image with probability 0.5 (window:
  the batch rows the maps are; default a whole batch)."""
  flipped = draw_flip(draws.rows_of(window, cols), seed)
  return rows, tf.where(flipped[:, None], tf.reverse(cols, [1]), cols)


def apply_maps(images: tf.Tensor, rows: tf.Tensor, cols: tf.Tensor
              ) -> tf.Tensor:
  """images [n, H, W, C] -> images[i, rows[i, r], cols[i, c], :]."""
  images = tf.gather(images, rows, axis=1, batch_dims=1)
  return tf.gather(images, cols, axis=2, batch_dims=1)
