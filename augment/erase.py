"""Random erasing (the original's `randerase`, RandomErase), batched.

Per image: area a = U[area) * H * W, aspect ratio q ~ U[1, ratio) inverted
with probability 1/2, an h x w rectangle with h = min(round(sqrt(a q)),
H - 1), w = min(round(sqrt(a / q)), W - 1) (round half to even), top-left
corner uniform so that it fits, filled with `value` in [-1, 1] space. The
string form fixes area (0.3, 0.3), ratio 1 and value 0.5: an 18 x 18 square
at 32 x 32, 15 x 15 at 28 x 28, of level (0.5 + 1) * 127.5 = 191.25.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import tensorflow as tf

from augment import draws


def erase_mask(n: Union[draws.Rows, tf.Tensor], height: int, width: int,
               seed: tf.Tensor,
               area: Tuple[float, float] = (0.3, 0.3), ratio: float = 1.0
              ) -> tf.Tensor:
  """Random erasing rectangles.

  Args:
    n: batch size, or the Rows of a window of a batch.
    height: image height.
    width: image width.
    seed: int [2].
    area: range of the erased fraction of the image area.
    ratio: largest aspect ratio (>= 1).

  Returns:
    bool [n, H, W, 1], True inside the rectangle.
  """
  s = tf.random.experimental.stateless_split(seed, 5)
  lo, hi = area
  total = float(height * width)
  erased = (lo + (hi - lo) * draws.uniform(n, s[0])) * total
  aspect = 1.0 + (ratio - 1.0) * draws.uniform(n, s[1])
  aspect = tf.where(draws.uniform(n, s[2]) > 0.5, aspect,
                    1.0 / aspect)
  rows = tf.minimum(tf.cast(tf.round(tf.sqrt(erased * aspect)), tf.int32),
                    height - 1)
  cols = tf.minimum(tf.cast(tf.round(tf.sqrt(erased / aspect)), tf.int32),
                    width - 1)
  top = tf.cast(draws.uniform(n, s[3]) *
                tf.cast(height - rows, tf.float32), tf.int32)
  left = tf.cast(draws.uniform(n, s[4]) *
                 tf.cast(width - cols, tf.float32), tf.int32)
  top = tf.minimum(top, height - rows - 1)
  left = tf.minimum(left, width - cols - 1)
  r = tf.range(height)[None]
  c = tf.range(width)[None]
  in_rows = (r >= top[:, None]) & (r < (top + rows)[:, None])
  in_cols = (c >= left[:, None]) & (c < (left + cols)[:, None])
  return (in_rows[:, :, None] & in_cols[:, None, :])[..., None]


def random_erase(images: tf.Tensor, seed: tf.Tensor,
                 area: Tuple[float, float] = (0.3, 0.3), ratio: float = 1.0,
                 value: float = 0.5, window: Optional[draws.Rows] = None
                ) -> tf.Tensor:
  """Erases a random rectangle of every image.

  Args:
    images: float32 [n, H, W, C].
    seed: int [2].
    area: range of the erased fraction of the area.
    ratio: largest aspect ratio (>= 1).
    value: the fill, in the images' space.
    window: the batch rows the images are (default: a whole batch).

  Returns:
    float32 [n, H, W, C].
  """
  height, width = int(images.shape[1]), int(images.shape[2])
  mask = erase_mask(draws.rows_of(window, images), height, width, seed, area,
                    ratio)
  return tf.where(mask, tf.constant(value, images.dtype), images)
