"""Gaussian blur as SimCLR's `random_blur` (third_party/data_util.py), batched.

With probability p per image: sigma ~ U[0.1, 2.0), a separable Gaussian of
radius int((side // 10) / 2) (1 at 32 and 28, so 3 taps), normalised, applied
horizontally then vertically with zero padding ('SAME' convolution) on the
float image in [-1, 1]. (The original's `blur{p}` op never reaches this: its
RandomBlur returns the image unchanged when training; see `augment.registry`.)
"""
from __future__ import annotations

from typing import Optional

import tensorflow as tf

from augment import draws

SIGMA_RANGE = (0.1, 2.0)


def radius(side: int) -> int:
  """Kernel radius for an image side: int((side // 10) / 2)."""
  return int((side // 10) / 2)


def kernel_weights(sigma: tf.Tensor, kernel_radius: int) -> tf.Tensor:
  """float32 [n, 2r + 1] normalised Gaussian taps, one row per sigma [n]."""
  taps = tf.range(-kernel_radius, kernel_radius + 1, dtype=tf.float32)
  sigma = tf.reshape(sigma, [-1, 1])
  weights = tf.exp(-tf.pow(taps[None], 2.0) / (2.0 * tf.pow(sigma, 2.0)))
  return weights / tf.reduce_sum(weights, axis=1, keepdims=True)


def gaussian_blur(images: tf.Tensor, sigma: tf.Tensor, kernel_radius: int
                 ) -> tf.Tensor:
  """Separable Gaussian blur, one sigma per image, zero padding.

  Args:
    images: float32 [n, H, W, C].
    sigma: float32 [n], > 0.
    kernel_radius: taps on each side of the centre.

  Returns:
    float32 [n, H, W, C].
  """
  if kernel_radius == 0:
    return images
  return convolve(images, kernel_weights(sigma, kernel_radius))


def convolve(images: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
  """Separable convolution, one kernel per image, zero padding.

  Args:
    images: float32 [n, H, W, C].
    weights: float32 [n, 2r + 1] taps (applied along W, then along H).

  Returns:
    float32 [n, H, W, C].
  """
  r = (int(weights.shape[1]) - 1) // 2
  height, width = int(images.shape[1]), int(images.shape[2])

  def one_axis(x, axis, length):
    pad = [[0, 0]] * 4
    pad[axis] = [r, r]
    padded = tf.pad(x, pad)
    out = None
    for k in range(2 * r + 1):
      window = tf.gather(padded, tf.range(k, k + length), axis=axis)
      term = window * tf.reshape(weights[:, k], [-1, 1, 1, 1])
      out = term if out is None else out + term
    return out

  return one_axis(one_axis(images, 2, width), 1, height)


def random_blur(images: tf.Tensor, seed: tf.Tensor, prob: float,
                window: Optional[draws.Rows] = None) -> tf.Tensor:
  """Blurs each image with probability `prob`.

  Args:
    images: float32 [n, H, W, C].
    seed: int [2].
    prob: probability to blur an image.
    window: the batch rows the images are (default: a whole batch).

  Returns:
    float32 [n, H, W, C].
  """
  rows = draws.rows_of(window, images)
  s = tf.random.experimental.stateless_split(seed, 2)
  # The kernels (exp, pow) are computed for the global batch and sliced, so
  # a window's rows round exactly as in the global batch (`augment.draws`).
  sigma = draws.uniform(draws.whole_batch(rows), s[0],
                        minval=SIGMA_RANGE[0], maxval=SIGMA_RANGE[1])
  apply = draws.uniform(rows, s[1]) < prob
  r = radius(int(images.shape[1]))
  if r == 0:
    return images
  blurred = convolve(images, draws.take(rows, kernel_weights(sigma, r)))
  return tf.where(tf.reshape(apply, [-1, 1, 1, 1]), blurred, images)
