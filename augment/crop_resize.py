"""Random crop and resize (the original's `cnr{s}` / `crop_and_resize{s}`).

Per image: a square crop of side w ~ U{int(float32(side * s)), ..., side},
placed uniformly inside the image, resized back to side x side with
`tf.image.resize`'s bilinear sampling (half-pixel centres, no antialiasing),
restated here with one crop per image: output index i samples the crop at
(i + 0.5) * w / side - 0.5, clamped to the crop, lerped in x then y.
"""
from __future__ import annotations

from typing import Optional, Union

import numpy as np
import tensorflow as tf

from augment import draws


def min_side(side: int, min_scale: float) -> int:
  """The smallest crop side: the original's int32 cast of side * min_scale
  (through float32), at least 1."""
  return max(1, int(np.float32(side * min_scale)))


def _sample_grid(crop: tf.Tensor, offset: tf.Tensor, out_size: int):
  """Bilinear source indices and weights along one axis.

  Args:
    crop: int32 [n] crop sides.
    offset: int32 [n] crop starts.
    out_size: output length.

  Returns:
    (lower int32 [n, out], upper int32 [n, out], lerp float32 [n, out]),
    indices into the full image.
  """
  scale = tf.cast(crop, tf.float32) / float(out_size)  # [n]
  centres = tf.range(out_size, dtype=tf.float32) + 0.5
  pos = centres[None] * scale[:, None] - 0.5
  floor = tf.floor(pos)
  lower = tf.maximum(tf.cast(floor, tf.int32), 0)
  upper = tf.minimum(tf.cast(tf.math.ceil(pos), tf.int32), crop[:, None] - 1)
  return lower + offset[:, None], upper + offset[:, None], pos - floor


def crop_and_resize(images: tf.Tensor, top: tf.Tensor, left: tf.Tensor,
                    crop: tf.Tensor) -> tf.Tensor:
  """Crops a square per image and resizes it back to the image size.

  Args:
    images: float32 [n, H, W, C], H = W.
    top: int32 [n] first row of each crop.
    left: int32 [n] first column.
    crop: int32 [n] crop side, 1 <= crop, top + crop <= H, left + crop <= W.

  Returns:
    float32 [n, H, W, C].
  """
  height, width = int(images.shape[1]), int(images.shape[2])
  y0, y1, ly = _sample_grid(crop, top, height)
  x0, x1, lx = _sample_grid(crop, left, width)
  rows0 = tf.gather(images, y0, axis=1, batch_dims=1)
  rows1 = tf.gather(images, y1, axis=1, batch_dims=1)
  lx = lx[:, None, :, None]
  ly = ly[:, :, None, None]

  def along_x(rows):
    left_px = tf.gather(rows, x0, axis=2, batch_dims=1)
    right_px = tf.gather(rows, x1, axis=2, batch_dims=1)
    return left_px + (right_px - left_px) * lx

  top_row, bottom_row = along_x(rows0), along_x(rows1)
  return top_row + (bottom_row - top_row) * ly


def draw_crops(n: Union[draws.Rows, tf.Tensor], seed: tf.Tensor, side: int,
               min_scale: float):
  """Per-image crops: (top, left, crop side), int32 [n] each (n: a batch
  size or the Rows of a window)."""
  s = tf.random.experimental.stateless_split(seed, 3)
  crop = draws.uniform(n, s[0], minval=min_side(side, min_scale),
                       maxval=side + 1, dtype=tf.int32)
  room = tf.cast(side - crop + 1, tf.float32)
  # Offsets uniform in [0, side - crop]: floor(U[0, 1) * room).
  top = tf.cast(draws.uniform(n, s[1]) * room, tf.int32)
  left = tf.cast(draws.uniform(n, s[2]) * room, tf.int32)
  top = tf.minimum(top, side - crop)
  left = tf.minimum(left, side - crop)
  return top, left, crop


def random_crop_and_resize(images: tf.Tensor, seed: tf.Tensor,
                           min_scale: float,
                           window: Optional[draws.Rows] = None) -> tf.Tensor:
  """The original's RandomCropAndResize on a batch.

  Args:
    images: float32 [n, H, W, C], H = W.
    seed: int [2].
    min_scale: smallest crop side as a fraction of the side, in (0, 1].
    window: the batch rows the images are (default: a whole batch).

  Returns:
    float32 [n, H, W, C].
  """
  side = int(images.shape[1])
  top, left, crop = draw_crops(draws.rows_of(window, images), seed, side,
                               min_scale)
  return crop_and_resize(images, top, left, crop)
