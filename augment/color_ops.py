"""Batched uint8 colour ops of RandAugment (the original's PIL-like ops).

Every op takes uint8 images [n, H, W, C] (C = 1 or 3, n may be 0 or unknown)
and per-image arguments [n], and returns uint8 [n, H, W, C]. The float
arithmetic follows the original step by step (same float32 operations in the
same order, saturating casts that truncate), so results are byte-identical.
For C = 1 the grayscale image is the image itself, hence `color` is the
identity (as PIL's Color on an 'L' image).
"""
from __future__ import annotations

import tensorflow as tf


def _per_image(values: tf.Tensor) -> tf.Tensor:
  """[n] -> [n, 1, 1, 1] for broadcasting against images."""
  return tf.reshape(values, [-1, 1, 1, 1])


def blend(image1: tf.Tensor, image2: tf.Tensor, factor: tf.Tensor
         ) -> tf.Tensor:
  """saturate_uint8(image1 + factor * (image2 - image1)).

  Args:
    image1: uint8 [n, H, W, C] or broadcastable to it (the "degenerate").
    image2: uint8 [n, H, W, C].
    factor: float32 [n].

  Returns:
    uint8 [n, H, W, C].
  """
  f1 = tf.cast(image1, tf.float32)
  f2 = tf.cast(image2, tf.float32)
  return tf.saturate_cast(f1 + _per_image(factor) * (f2 - f1), tf.uint8)


def grayscale(images: tf.Tensor) -> tf.Tensor:
  """uint8 [n, H, W, C] -> uint8 [n, H, W, 1] (tf.image's luma for C = 3)."""
  if images.shape[-1] == 1:
    return images
  return tf.image.rgb_to_grayscale(images)


def invert(images: tf.Tensor) -> tf.Tensor:
  """255 - p."""
  return 255 - images


def posterize(images: tf.Tensor, bits: tf.Tensor) -> tf.Tensor:
  """Keeps the top `bits` [n] bits; 0 bits acts as 1 (shift clamped to 7)."""
  shift = tf.cast(tf.clip_by_value(8 - tf.cast(bits, tf.int32), 0, 7),
                  tf.uint8)
  shift = _per_image(shift)
  return tf.bitwise.left_shift(tf.bitwise.right_shift(images, shift), shift)


def solarize(images: tf.Tensor, threshold: tf.Tensor) -> tf.Tensor:
  """Inverts pixels >= threshold [n] (threshold saturated to [0, 255])."""
  t = _per_image(tf.saturate_cast(tf.cast(threshold, tf.int32), tf.uint8))
  return tf.where(images < t, images, 255 - images)


def solarize_add(images: tf.Tensor, addition: tf.Tensor,
                 threshold: int = 128) -> tf.Tensor:
  """Adds `addition` [n] (saturating) to pixels below `threshold`."""
  added = tf.cast(images, tf.int32) + _per_image(tf.cast(addition, tf.int32))
  added = tf.saturate_cast(added, tf.uint8)
  return tf.where(images < threshold, added, images)


def color(images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
  """PIL Color: blend from grayscale to the image by factor [n]."""
  if images.shape[-1] == 1:
    return images
  gray = grayscale(images)
  return blend(gray, images, factor)


def contrast(images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
  """PIL Contrast: blend from the mean gray level (rounded) by factor [n]."""
  gray = tf.cast(grayscale(images), tf.float32)
  mean = tf.reduce_mean(gray, axis=[1, 2, 3], keepdims=True)
  mean = tf.saturate_cast(mean + 0.5, tf.uint8)
  return blend(mean, images, factor)


def brightness(images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
  """PIL Brightness: blend from black by factor [n]."""
  return blend(tf.zeros_like(images), images, factor)


def sharpness(images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
  """PIL Sharpness: blend from the SMOOTH-filtered image (border kept)."""
  x = tf.cast(images, tf.float32)
  # The 3x3 SMOOTH filter as a sum of shifted slices, tap by tap in row-major
  # order: the float32 rounding of the reference's depthwise convolution
  # (oneDNN's depthwise kernel rounds differently and is not used).
  h, w = tf.shape(x)[1], tf.shape(x)[2]
  weights = [[1., 1., 1.], [1., 5., 1.], [1., 1., 1.]]
  smooth = None
  for i in range(3):
    for j in range(3):
      tap = x[:, i:h - 2 + i, j:w - 2 + j, :] * tf.constant(weights[i][j] / 13.)
      smooth = tap if smooth is None else smooth + tap
  smooth = tf.saturate_cast(smooth, tf.uint8)
  smooth = tf.pad(smooth, [[0, 0], [1, 1], [1, 1], [0, 0]])
  shape = tf.shape(images)
  rows = tf.range(shape[1])
  cols = tf.range(shape[2])
  inner_r = (rows > 0) & (rows < shape[1] - 1)
  inner_c = (cols > 0) & (cols < shape[2] - 1)
  inner = inner_r[:, None] & inner_c[None, :]
  degenerate = tf.where(inner[None, :, :, None], smooth, images)
  return blend(degenerate, images, factor)


def autocontrast(images: tf.Tensor) -> tf.Tensor:
  """Stretches each channel of each image to [0, 255] (if not constant)."""
  lo = tf.cast(tf.reduce_min(images, axis=[1, 2], keepdims=True), tf.float32)
  hi = tf.cast(tf.reduce_max(images, axis=[1, 2], keepdims=True), tf.float32)
  spread = hi > lo
  scale = 255.0 / tf.where(spread, hi - lo, 1.0)
  offset = -lo * scale
  stretched = tf.saturate_cast(
      tf.cast(images, tf.float32) * scale + offset, tf.uint8)
  return tf.where(spread, stretched, images)


def equalize(images: tf.Tensor) -> tf.Tensor:
  """PIL Equalize per channel of each image, with per-image histograms."""
  shape = tf.shape(images)
  n, h, w, c = shape[0], shape[1], shape[2], shape[3]
  x = tf.cast(images, tf.int32)
  # Histogram id of every pixel: (image * C + channel) * 256 + value.
  plane = tf.reshape(tf.range(n * c), [n, 1, 1, c])
  ids = plane * 256 + x
  hist = tf.math.bincount(tf.reshape(ids, [-1]), minlength=n * c * 256,
                          maxlength=n * c * 256, dtype=tf.int32)
  hist = tf.reshape(hist, [n * c, 256])
  # The last non-zero bin is the channel maximum's count.
  top = tf.reshape(tf.reduce_max(x, axis=[1, 2]), [-1])  # [n * c]
  top_count = tf.gather(hist, top, batch_dims=1)
  step = (h * w - top_count) // 255  # [n * c]
  safe = tf.maximum(step, 1)[:, None]
  lut = (tf.cumsum(hist, axis=1) + safe // 2) // safe
  lut = tf.concat([tf.zeros_like(lut[:, :1]), lut[:, :-1]], axis=1)
  lut = tf.clip_by_value(lut, 0, 255)
  mapped = tf.gather(tf.reshape(lut, [-1]), ids)
  keep = tf.reshape(tf.equal(step, 0), [n, 1, 1, c])
  return tf.cast(tf.where(keep, x, mapped), tf.uint8)
