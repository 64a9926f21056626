"""The original's colour jitter on float images in [-1, 1], batched.

The original (`ColorJitter` in data/augment_ops.py) applies, in a random
order, `tf.image.random_brightness` (add U[-b, b)), `random_contrast` (scale
the deviation from each channel's mean by U[1 - c, 1 + c)),
`random_saturation` (scale the HSV saturation by U[1 - s, 1 + s), clipped to
[0, 1]) and `random_hue` (rotate the hue by U[-h, h) turns), skipping those of
strength 0, on the [-1, 1] image, with no clipping. The saturation and hue
kernels are restated here elementwise (TF's kernels take one factor per
call, not one per image), step by step as in
tensorflow/core/kernels/image/adjust_{saturation,hue}_op.cc; on [-1, 1]
input they do what those kernels do there (a pixel whose largest channel is
<= 0 has saturation 0, so any saturation change makes it gray).
Grayscale images (C = 1) have no saturation or hue: those two are identities.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Tuple, Union

import tensorflow as tf

from augment import draws
from augment import stages as st


def _per_image(values: tf.Tensor) -> tf.Tensor:
  return tf.reshape(values, [-1, 1, 1, 1])


def brightness(images: tf.Tensor, delta: tf.Tensor) -> tf.Tensor:
  """images + delta. images: float32 [n, H, W, C]; delta: float32 [n]."""
  return images + _per_image(delta)


def contrast(images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
  """(x - mean) * factor + mean, mean per image and channel over H, W."""
  mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
  return (images - mean) * _per_image(factor) + mean


def _select(category: tf.Tensor, table: List[Tuple[tf.Tensor, ...]],
            default: Tuple[tf.Tensor, ...]) -> Tuple[tf.Tensor, ...]:
  """Per pixel, the entry `table[category]` (default if out of range)."""
  out = list(default)
  for index, entry in enumerate(table):
    hit = tf.equal(category, index)
    out = [tf.where(hit, e, o) for e, o in zip(entry, out)]
  return tuple(out)


def saturation(images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
  """TF's AdjustSaturation with one factor per image.

  Args:
    images: float32 [n, H, W, C].
    factor: float32 [n], >= 0.

  Returns:
    float32 [n, H, W, C]; the input itself if C = 1.
  """
  if images.shape[-1] == 1:
    return images
  r, g, b = tf.unstack(images, axis=-1)
  v = tf.maximum(r, tf.maximum(g, b))
  spread = v - tf.minimum(r, tf.minimum(g, b))
  s = tf.where(v > 0, spread / tf.where(v > 0, v, 1.0), 0.0)
  # Not 1 / (6 s), which grappler folds into (1 / 6) / s, nor Reciprocal
  # (not correctly rounded): DivNoNan is the kernel's division everywhere.
  norm = tf.math.divide_no_nan(1.0, 6.0 * spread)

  def plus(x, offset):  # float32 x + a double constant, rounded to float32
    return tf.cast(tf.cast(x, tf.float64) + offset, tf.float32)

  h = tf.where(tf.equal(r, v), norm * (g - b),
               tf.where(tf.equal(g, v), plus(norm * (b - r), 2.0 / 6.0),
                        plus(norm * (r - g), 4.0 / 6.0)))
  h = tf.where(spread <= 0.0, 0.0, h)
  h = tf.where(h < 0.0, h + 1.0, h)
  s = tf.minimum(1.0, tf.maximum(0.0, s * tf.reshape(factor, [-1, 1, 1])))
  # HSV -> RGB.
  c = s * v
  m = v - c
  dh = h * 6.0
  category = tf.cast(dh, tf.int32)  # truncation, dh >= 0
  fmodu = dh - 2.0 * tf.floor(dh * 0.5)  # dh mod 2, exact
  x = c * (1.0 - tf.abs(fmodu - 1.0))
  zero = tf.zeros_like(c)
  rr, gg, bb = _select(category, [(c, x, zero), (x, c, zero), (zero, c, x),
                                  (zero, x, c), (x, zero, c), (c, zero, x)],
                       (zero, zero, zero))
  return tf.stack([rr + m, gg + m, bb + m], axis=-1)


def hue(images: tf.Tensor, delta: tf.Tensor) -> tf.Tensor:
  """TF's AdjustHue with one delta (in turns, |delta| <= 0.5) per image.

  Args:
    images: float32 [n, H, W, C].
    delta: float32 [n].

  Returns:
    float32 [n, H, W, C]; the input itself if C = 1.
  """
  if images.shape[-1] == 1:
    return images
  r, g, b = tf.unstack(images, axis=-1)
  # RGB -> (h in [0, 6], v_min, v_max), with the kernel's tie-breaking.
  r_lt_g = r < g
  hi = tf.where(r_lt_g, tf.where(b < r, g, tf.where(b > g, b, g)),
                tf.where(b < g, r, tf.where(b > r, b, r)))
  mid = tf.where(r_lt_g, tf.where(b < r, r, tf.where(b > g, g, b)),
                 tf.where(b < g, g, tf.where(b > r, r, b)))
  lo = tf.where(r_lt_g, tf.where(b < r, b, r),
                tf.where(b < g, b, g))
  category = tf.where(r_lt_g, tf.where(b < r, 1, tf.where(b > g, 3, 2)),
                      tf.where(b < g, 0, tf.where(b > r, 4, 5)))
  flat = tf.equal(hi, lo)
  ratio = (mid - lo) / tf.where(flat, 1.0, hi - lo)
  even = tf.equal(category % 2, 0)
  h = tf.cast(category, tf.float32) + tf.where(even, ratio, 1.0 - ratio)
  h = tf.where(flat, 0.0, h)
  h = h + tf.reshape(delta, [-1, 1, 1]) * 6.0
  h = tf.where(h < 0.0, h + 6.0, h)
  h = tf.where(h >= 6.0, h - 6.0, h)
  # (h, v_min, v_max) -> RGB.
  category = tf.cast(h, tf.int32)
  ratio = h - tf.cast(category, tf.float32)
  ratio = tf.where(tf.equal(category % 2, 0), ratio, 1.0 - ratio)
  mid = lo + ratio * (hi - lo)
  rr, gg, bb = _select(category, [(hi, mid, lo), (mid, hi, lo), (lo, hi, mid),
                                  (lo, mid, hi), (mid, lo, hi)],
                       (hi, lo, mid))
  return tf.stack([rr, gg, bb], axis=-1)


_Op = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


def components(stage: st.Jitter) -> List[Tuple[str, _Op, float, float]]:
  """The enabled components: (name, op, low, high) of their argument draw.

  As the original: brightness U[-b, b), contrast U[1 - c, 1 + c), saturation
  U[1 - s, 1 + s), hue U[-h, h) with h clamped to 0.5; strength 0 = off.
  """
  out = []
  if stage.brightness:
    out.append(('brightness', brightness, -stage.brightness,
                stage.brightness))
  if stage.contrast:
    out.append(('contrast', contrast, 1.0 - stage.contrast,
                1.0 + stage.contrast))
  if stage.saturation:
    out.append(('saturation', saturation, 1.0 - stage.saturation,
                1.0 + stage.saturation))
  h = min(stage.hue, 0.5)
  if h:
    out.append(('hue', hue, -h, h))
  return out


def draw_jitter(n: Union[draws.Rows, tf.Tensor], seed: tf.Tensor,
                num_components: int) -> Tuple[tf.Tensor, tf.Tensor]:
  """Per-image random choices.

  Args:
    n: batch size, or the Rows of a window of a batch.
    seed: int [2].
    num_components: number of enabled components (>= 1).

  Returns:
    (order int32 [n, k]: a uniform random permutation per image,
     u float32 [n, k]: U[0, 1) for each component's argument).
  """
  s = tf.random.experimental.stateless_split(seed, 2)
  keys = draws.uniform(n, s[0], [num_components])
  order = tf.argsort(keys, axis=1, stable=True)
  u = draws.uniform(n, s[1], [num_components])
  return tf.cast(order, tf.int32), u


def jitter(images: tf.Tensor, seed: tf.Tensor, stage: st.Jitter,
           window: Optional[draws.Rows] = None) -> tf.Tensor:
  """Colour jitter, each image in its own random order of the components.

  Args:
    images: float32 [n, H, W, C] in [-1, 1].
    seed: int [2].
    stage: strengths.
    window: the batch rows the images are (default: a whole batch).

  Returns:
    float32 [n, H, W, C], not clipped (values may leave [-1, 1]).
  """
  parts = components(stage)
  if not parts:
    return images
  k = len(parts)
  n = tf.shape(images)[0]
  order, u = draw_jitter(draws.rows_of(window, images), seed, k)
  args = [low + (high - low) * u[:, j] for j, (_, _, low, high)
          in enumerate(parts)]
  for step in range(k):
    # Each image runs only its own component of this step.
    which = order[:, step]
    groups = tf.dynamic_partition(images, which, k)
    positions = tf.dynamic_partition(tf.range(n), which, k)
    outputs = [op(groups[j], tf.dynamic_partition(args[j], which, k)[j])
               for j, (_, op, _, _) in enumerate(parts)]
    images = tf.ensure_shape(tf.dynamic_stitch(positions, outputs),
                             images.shape)
  return images
