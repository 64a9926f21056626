"""Runs a parsed spec on a batch: uint8 in, float32 [-1, 1] out, stateless.

The batch stays uint8 through shifts, flips and RandAugment; Cutout is kept
as a mask and applied at the float conversion. The original's float -> uint8
conversion before RandAugment is reproduced exactly (see `augment.convert`).
"""
from __future__ import annotations

from typing import Optional, Sequence

import tensorflow as tf

from augment import convert
from augment import cutout
from augment import randaugment
from augment import spatial

_RANDAUG_MODES = {'ra': 'all', 'rc': 'color', 'rg': 'geo'}


def stage_seeds(seed: tf.Tensor, num_keys: int) -> tf.Tensor:
  """int64 [num_keys, 2]: the seed of each key of a spec, in order."""
  return tf.random.experimental.stateless_split(tf.cast(seed, tf.int64),
                                                num_keys)


class Augmenter:
  """An AugmentFn: `augmenter(images, seed) -> float32 images in [-1, 1]`.

  Attributes:
    spec: the spec string it was built from.
    keys: the parsed keys.
    image_size: the image side it expects.
    emulate_wrap_rounding: reproduce the original's float -> uint8 truncation
      before RandAugment (some p become p - 1) and its final scaling.
  """

  def __init__(self, spec: str, keys: Sequence[str], image_size: int,
               emulate_wrap_rounding: bool = True):
    self.spec = spec
    self.keys = tuple(keys)
    self.image_size = int(image_size)
    self.emulate_wrap_rounding = emulate_wrap_rounding
    # No autograph: all control flow here is over Python values, and
    # converting the RandAugment code took ~6 s per process.
    self._fn = tf.function(self._augment, reduce_retracing=True,
                           autograph=False)

  def __repr__(self) -> str:
    return f'Augmenter({self.spec!r}, image_size={self.image_size})'

  def __call__(self, images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Augments a batch.

    Args:
      images: uint8 [N, H, W, C], H = W = image_size, C = 1 or 3.
      seed: int32 or int64 [2]; the output is a function of (images, seed).

    Returns:
      float32 [N, H, W, C] in [-1, 1].
    """
    images = tf.convert_to_tensor(images)
    self._check(images)
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64) or seed.shape.rank != 1 or (
        seed.shape[0] is not None and seed.shape[0] != 2):
      raise ValueError(f'seed must be int32/int64 of shape [2], got '
                       f'{seed.dtype.name} {seed.shape}.')
    return self._fn(images, tf.cast(seed, tf.int64))

  def _check(self, images: tf.Tensor):
    shape = images.shape
    if images.dtype != tf.uint8 or shape.rank != 4:
      raise ValueError(f'Augmenter({self.spec!r}) takes uint8 images '
                       f'[N, H, W, C]; got {images.dtype.name} {shape}.')
    size = self.image_size
    if shape[1] not in (None, size) or shape[2] not in (None, size) or (
        shape[3] not in (None, 1, 3)):
      raise ValueError(f'Augmenter({self.spec!r}) was built for '
                       f'{size}x{size} images with 1 or 3 channels; got '
                       f'{shape}.')

  def _augment(self, images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    size = self.image_size
    images = tf.ensure_shape(images, [None, size, size, None])
    if self.keys == ('x',):
      return convert.to_float(images)
    n = tf.shape(images)[0]
    seeds = stage_seeds(seed, len(self.keys))
    encoding = convert.Encoding.SCALED
    mask: Optional[tf.Tensor] = None  # bool [N, H, W, 1], True = cut out
    maps = None  # pending (rows, cols) of shifts and flips

    def flush(images, mask, maps):
      if maps is None:
        return images, mask
      images = spatial.apply_maps(images, *maps)
      if mask is not None:
        mask = spatial.apply_maps(mask, *maps)
      return images, mask

    for i, key in enumerate(self.keys):
      if key in ('d', 'h'):
        if maps is None:
          maps = spatial.identity_maps(n, size, size)
        if key == 'd':
          maps = spatial.shift(*maps, seeds[i], size)
        else:
          maps = spatial.flip(*maps, seeds[i])
        continue
      images, mask = flush(images, mask, maps)
      maps = None
      if key == 'c':
        cut = cutout.cutout_mask(n, size, size, seeds[i])
        mask = cut if mask is None else mask | cut
      else:  # RandAugment: float -> uint8 wrap, ops, unwrap.
        if self.emulate_wrap_rounding:
          images = convert.wrap(images, encoding)
          encoding = convert.Encoding.UNWRAPPED
        if mask is not None:
          images = tf.where(mask, tf.constant(convert.WRAPPED_ZERO, tf.uint8),
                            images)
          mask = None
        images = randaugment.randaugment(images, seeds[i],
                                         _RANDAUG_MODES[key], size)
    images, mask = flush(images, mask, maps)
    out = convert.to_float(images)
    if mask is not None:
      out = tf.where(mask, 0.0, out)
    return out
