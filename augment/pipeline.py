"""Runs parsed stages on a batch: uint8 in, float32 [-1, 1] out, stateless.

The batch stays uint8 through shifts, flips, rotations and RandAugment;
Cutout is kept as a mask and applied at the float conversion. The original's
float -> uint8 conversion before RandAugment is reproduced exactly (see
`augment.convert`). The ops that make non-integer levels (jitter, blur, crop
and resize, random erasing) switch the batch to float32, as the original
holds it; a RandAugment after them converts back with the original's
truncating cast of (x + 1) * 127.5. Each stage draws from its own seed, the
spec seed split into one per stage.

Every random choice is per row: `augmenter(images, seed, rows=(offset,
total))` augments rows [offset, offset + n) of a global batch of `total` rows
with the values the whole batch would get (draws in `augment.draws`).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import tensorflow as tf

from augment import blur
from augment import convert
from augment import crop_resize
from augment import cutout
from augment import draws
from augment import erase
from augment import jitter
from augment import randaugment
from augment import rotate
from augment import spatial
from augment import stages as st


def stage_seeds(seed: tf.Tensor, num_keys: int) -> tf.Tensor:
  """int64 [num_keys, 2]: the seed of each stage of a spec, in order."""
  return tf.random.experimental.stateless_split(tf.cast(seed, tf.int64),
                                                num_keys)


def decode(images: tf.Tensor, encoding: convert.Encoding) -> tf.Tensor:
  """uint8 -> float32 exactly as the original holds them: (2 / 255) p - 1
  (the data scaling) or q / 127.5 - 1 (after its RandAugment)."""
  if encoding is convert.Encoding.SCALED:
    return convert.to_float(images)
  return tf.cast(images, tf.float32) / 127.5 - 1.0


def encode(images: tf.Tensor, truncate: bool) -> tf.Tensor:
  """float32 [-1, 1] -> uint8 q = saturate((x + 1) * 127.5): truncated as
  the original (truncate) or rounded (pixel levels kept exactly)."""
  q = (images + 1.0) * 127.5
  if not truncate:
    q = tf.round(q)
  return tf.saturate_cast(q, tf.uint8)


class _State:
  """The batch between stages.

  Attributes:
    images: uint8 [N, H, W, C] (encoded per `encoding`) or float32 in [-1, 1]
      (encoding None).
    encoding: how uint8 values stand for floats; None when float.
    mask: bool [N, H, W, 1] pending Cutout (uint8 only), True = set to 0.
    maps: pending (rows, cols) index maps of shifts and flips, or None.
  """

  def __init__(self, images: tf.Tensor):
    self.images = images
    self.encoding: Optional[convert.Encoding] = convert.Encoding.SCALED
    self.mask: Optional[tf.Tensor] = None
    self.maps = None

  def flush(self):
    """Applies the pending index maps."""
    if self.maps is None:
      return
    self.images = spatial.apply_maps(self.images, *self.maps)
    if self.mask is not None:
      self.mask = spatial.apply_maps(self.mask, *self.maps)
    self.maps = None

  def to_float(self):
    """Switches to float32 (applying the pending Cutout)."""
    self.flush()
    if self.encoding is None:
      return
    self.images = decode(self.images, self.encoding)
    self.encoding = None
    if self.mask is not None:
      self.images = tf.where(self.mask, 0.0, self.images)
      self.mask = None


class Augmenter:
  """An AugmentFn: `augmenter(images, seed, rows=None) -> float32 images in
  [-1, 1]`.

  Attributes:
    spec: the spec string it was built from.
    stages: the parsed stages, in order (empty: no augmentation).
    image_size: the image side it expects.
    emulate_wrap_rounding: reproduce the original's float -> uint8 truncation
      before RandAugment (some p become p - 1) and its final scaling.
    emulate_blur_noop: blur stages do nothing, as in the original (its
      RandomBlur returns its input when training); False blurs.
  """

  def __init__(self, spec: str, stages: Sequence[st.Stage], image_size: int,
               emulate_wrap_rounding: bool = True,
               emulate_blur_noop: bool = True):
    self.spec = spec
    self.stages = tuple(stages)
    self.image_size = int(image_size)
    self.emulate_wrap_rounding = emulate_wrap_rounding
    self.emulate_blur_noop = emulate_blur_noop
    # The traced functions, per (channel count, window or not). The ops
    # branch on the channel count, so it must never be generalised away.
    self._fns = {}

  def __repr__(self) -> str:
    return f'Augmenter({self.spec!r}, image_size={self.image_size})'

  def __call__(self, images: tf.Tensor, seed: tf.Tensor,
               rows: Optional[Tuple[draws.IntLike, draws.IntLike]] = None
              ) -> tf.Tensor:
    """Augments a batch, or a window of rows of one.

    Args:
      images: uint8 [N, H, W, C], H = W = image_size, C = 1 or 3.
      seed: int32 or int64 [2]; the output is a function of (images, seed).
      rows: None (images are the whole batch) or (offset, total), Python ints
        or int scalar tensors: images are rows [offset, offset + N) of a
        global batch of `total` rows, and the output is exactly (byte for
        byte) rows [offset, offset + N) of `self(global_images, seed)`.

    Returns:
      float32 [N, H, W, C] in [-1, 1].

    Raises:
      ValueError: bad images, seed or rows (a window outside the batch).
    """
    images = tf.convert_to_tensor(images)
    self._check(images)
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64) or seed.shape.rank != 1 or (
        seed.shape[0] is not None and seed.shape[0] != 2):
      raise ValueError(f'seed must be int32/int64 of shape [2], got '
                       f'{seed.dtype.name} {seed.shape}.')
    seed = tf.cast(seed, tf.int64)
    channels = images.shape[3]
    if rows is None:
      return self._function(channels, window=False)(images, seed)
    if not isinstance(rows, (tuple, list)) or len(rows) != 2:
      raise ValueError(f'rows must be None or a pair (offset, total), got '
                       f'{rows!r}.')
    offset, total = rows
    draws.check_window(offset, total, images.shape[0])
    size = self.image_size
    images = tf.ensure_shape(images, [None, size, size, channels])
    return self._function(channels, window=True)(
        images, seed, tf.cast(offset, tf.int32), tf.cast(total, tf.int32))

  def _function(self, channels: Optional[int], window: bool):
    """The tf.function for images of `channels` channels (None: unknown)."""
    key = (channels, window)
    if key not in self._fns:
      # No autograph: all control flow here is over Python values, and
      # converting the RandAugment code took ~6 s per process.
      if window:  # One trace for any window (offset, total, size).
        size = self.image_size
        self._fns[key] = tf.function(
            self._augment, autograph=False, input_signature=[
                tf.TensorSpec([None, size, size, channels], tf.uint8),
                tf.TensorSpec([2], tf.int64), tf.TensorSpec([], tf.int32),
                tf.TensorSpec([], tf.int32)])
      else:
        self._fns[key] = tf.function(self._augment, reduce_retracing=True,
                                     autograph=False)
    return self._fns[key]

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

  def _augment(self, images: tf.Tensor, seed: tf.Tensor,
               offset: Optional[tf.Tensor] = None,
               total: Optional[tf.Tensor] = None) -> tf.Tensor:
    """The traced body; offset / total (int32 scalars) give a window."""
    size = self.image_size
    images = tf.ensure_shape(images, [None, size, size, None])
    n = tf.shape(images)[0]
    if offset is None:
      window = draws.Rows.whole(n)
    else:
      window = draws.Rows.window(offset, n, total)
      with tf.control_dependencies(draws.window_asserts(window)):
        window = draws.Rows.window(tf.identity(offset), n, total)
    if not self.stages:
      return convert.to_float(images)
    seeds = stage_seeds(seed, len(self.stages))
    state = _State(images)
    for i, stage in enumerate(self.stages):
      self._apply(state, stage, seeds[i], window)
    state.flush()
    if state.encoding is None:
      out = state.images
    else:
      out = convert.to_float(state.images)
      if state.mask is not None:
        out = tf.where(state.mask, 0.0, out)
    if any(isinstance(s, st.Jitter) for s in self.stages):
      # The original's jitter can leave [-1, 1] (it never clips); we do.
      out = tf.clip_by_value(out, -1.0, 1.0)
    return out

  def _apply(self, state: _State, stage: st.Stage, seed: tf.Tensor,
             window: draws.Rows):
    """Runs one stage on the state, in place; window: the rows held."""
    size = self.image_size
    if isinstance(stage, (st.Shift, st.HFlip)):
      if state.maps is None:
        state.maps = spatial.identity_maps(window.count, size, size)
      if isinstance(stage, st.Shift):
        state.maps = spatial.shift(*state.maps, seed, size, window)
      else:
        state.maps = spatial.flip(*state.maps, seed, window)
      return
    if isinstance(stage, st.Blur) and self.emulate_blur_noop:
      return
    state.flush()
    if isinstance(stage, st.Rotate90):
      state.images = rotate.rotate90(state.images, stage.k)
      if state.mask is not None:
        state.mask = rotate.rotate90(state.mask, stage.k)
    elif isinstance(stage, st.Cutout):
      cut = cutout.cutout_mask(window, size, size, seed, stage.scale)
      if state.encoding is None:
        state.images = tf.where(cut, 0.0, state.images)
      else:
        state.mask = cut if state.mask is None else state.mask | cut
    elif isinstance(stage, st.RandAugment):
      self._randaugment(state, stage, seed, window)
    else:
      state.to_float()
      x = state.images
      if isinstance(stage, st.Jitter):
        x = jitter.jitter(x, seed, stage, window)
      elif isinstance(stage, st.Blur):
        x = blur.random_blur(x, seed, stage.prob, window)
      elif isinstance(stage, st.CropResize):
        x = crop_resize.random_crop_and_resize(x, seed, stage.min_scale,
                                               window)
      elif isinstance(stage, st.RandErase):
        x = erase.random_erase(x, seed, stage.area, stage.ratio, stage.value,
                               window)
      else:
        raise TypeError(f'Unknown augmentation stage {stage!r}.')
      state.images = x

  def _randaugment(self, state: _State, stage: st.RandAugment,
                   seed: tf.Tensor, window: draws.Rows):
    """float / encoded uint8 -> the original's uint8 wrap, ops, unwrap."""
    emulate = self.emulate_wrap_rounding
    if state.encoding is None:
      state.images = encode(state.images, truncate=emulate)
      state.encoding = (convert.Encoding.UNWRAPPED if emulate
                        else convert.Encoding.SCALED)
    else:
      if emulate:
        state.images = convert.wrap(state.images, state.encoding)
        state.encoding = convert.Encoding.UNWRAPPED
      if state.mask is not None:
        state.images = tf.where(
            state.mask, tf.constant(convert.WRAPPED_ZERO, tf.uint8),
            state.images)
        state.mask = None
    state.images = randaugment.randaugment(
        state.images, seed, stage.mode, self.image_size, stage.layers,
        prob=stage.prob, magnitude=stage.magnitude, levels=stage.levels,
        emulate_wrap_rounding=emulate, window=window)
