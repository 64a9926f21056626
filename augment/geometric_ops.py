"""Batched geometric ops of RandAugment on one projective-transform kernel.

Each op builds per-image transforms [n, 8] (the 3x3 matrix minus its last
entry, mapping output to input coordinates, as `ImageProjectiveTransformV3`
takes them); `transform` applies any mix of them to a batch in one call, with
nearest sampling and uncovered pixels set to 128 in every channel. (The
original marked such pixels with a 4th channel of ones and then set them to
128; with nearest sampling that is the same as a constant fill of 128.)
"""
from __future__ import annotations

import math

import tensorflow as tf

FILL_VALUE = 128


def identity_transforms(n: tf.Tensor) -> tf.Tensor:
  """float32 [n, 8] identity transforms."""
  eye = tf.constant([1., 0., 0., 0., 1., 0., 0., 0.])
  return tf.tile(eye[None], [n, 1])


def rotate_transforms(degrees: tf.Tensor, height: int, width: int
                     ) -> tf.Tensor:
  """Rotation about the image centre, counter-clockwise for degrees > 0.

  Args:
    degrees: float32 [n].
    height: image height.
    width: image width.

  Returns:
    float32 [n, 8].
  """
  radians = tf.cast(degrees, tf.float32) * (math.pi / 180.0)
  cos, sin = tf.cos(radians), tf.sin(radians)
  h1 = tf.constant(height - 1, tf.float32)
  w1 = tf.constant(width - 1, tf.float32)
  x_offset = (w1 - (cos * w1 - sin * h1)) / 2.0
  y_offset = (h1 - (sin * w1 + cos * h1)) / 2.0
  zeros = tf.zeros_like(cos)
  return tf.stack([cos, -sin, x_offset, sin, cos, y_offset, zeros, zeros],
                  axis=1)


def _affine(a1=None, a2=None, b0=None, b2=None, like=None) -> tf.Tensor:
  """[n, 8] transforms [1, a1, a2, b0, 1, b2, 0, 0] (None entries are 0)."""
  zeros = tf.zeros_like(like)
  ones = tf.ones_like(like)
  pick = lambda v: zeros if v is None else tf.cast(v, tf.float32)
  return tf.stack([ones, pick(a1), pick(a2), pick(b0), ones, pick(b2), zeros,
                   zeros], axis=1)


def shear_x_transforms(level: tf.Tensor) -> tf.Tensor:
  """Shear along x: input x = x + level * y. level: float32 [n]."""
  level = tf.cast(level, tf.float32)
  return _affine(a1=level, like=level)


def shear_y_transforms(level: tf.Tensor) -> tf.Tensor:
  """Shear along y: input y = level * x + y. level: float32 [n]."""
  level = tf.cast(level, tf.float32)
  return _affine(b0=level, like=level)


def translate_x_transforms(pixels: tf.Tensor) -> tf.Tensor:
  """Content moves by -pixels along x (the original's translate_x)."""
  pixels = tf.cast(pixels, tf.float32)
  return _affine(a2=pixels, like=pixels)


def translate_y_transforms(pixels: tf.Tensor) -> tf.Tensor:
  """Content moves by -pixels along y (the original's translate_y)."""
  pixels = tf.cast(pixels, tf.float32)
  return _affine(b2=pixels, like=pixels)


def layer_transforms(m: tf.Tensor, negate: tf.Tensor, kind: tf.Tensor,
                     height: int, width: int, translate: float) -> tf.Tensor:
  """Per-image transforms of a RandAugment layer's geometric ops.

  Args:
    m: float32 [n] magnitudes.
    negate: bool [n], flip the argument's sign.
    kind: int32 [n]: 0 Rotate (30 m degrees), 1 ShearX, 2 ShearY (0.3 m),
      3 TranslateX, 4 TranslateY (m * translate pixels).
    height: image height.
    width: image width.
    translate: the translation in pixels at m = 1.

  Returns:
    float32 [n, 8].
  """

  def signed(scale):
    arg = m * scale
    return tf.where(negate, -arg, arg)

  shift = signed(translate)
  candidates = tf.stack([
      rotate_transforms(signed(30.), height, width),
      shear_x_transforms(signed(0.3)),
      shear_y_transforms(signed(0.3)),
      translate_x_transforms(shift),
      translate_y_transforms(shift),
  ], axis=1)  # [n, 5, 8]
  return tf.gather(candidates, kind, batch_dims=1)


def transform(images: tf.Tensor, transforms: tf.Tensor) -> tf.Tensor:
  """Applies per-image projective transforms, nearest, fill 128.

  Args:
    images: uint8 [n, H, W, C].
    transforms: float32 [n, 8].

  Returns:
    uint8 [n, H, W, C].
  """
  return tf.raw_ops.ImageProjectiveTransformV3(
      images=images, transforms=transforms,
      output_shape=tf.shape(images)[1:3],
      fill_value=tf.constant(FILL_VALUE, tf.float32),
      interpolation='NEAREST', fill_mode='CONSTANT')
