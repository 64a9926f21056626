"""Rotations by multiples of 90 degrees (the original's rotate90/180/270)."""
from __future__ import annotations

import tensorflow as tf


def rotate90(images: tf.Tensor, k: int) -> tf.Tensor:
  """Rotates every image by k * 90 degrees counter-clockwise.

  As the original's `tf.image.rot90(image, k)` and `np.rot90(images, k,
  axes=(1, 2))`, as static reverses and a transpose (tf.image.rot90 adds
  runtime asserts and a switch on k).

  Args:
    images: [n, H, W, C], any dtype.
    k: number of quarter turns (Python int).

  Returns:
    [n, W, H, C] ([n, H, W, C] for even k).
  """
  k %= 4
  if k == 0:
    return images
  if k == 2:
    return tf.reverse(images, [1, 2])
  transposed = tf.transpose(images, [0, 2, 1, 3])
  # k = 1: output row r is input column W - 1 - r; k = 3: mirrored.
  return tf.reverse(transposed, [1] if k == 1 else [2])
