"""The original's RandAugment variant, batched with per-image random choices.

Each layer draws, per image, an op uniformly from the op list, a magnitude
m ~ U[0, 1) (continuous), a sign for the signed ops, and applies the op with
probability 0.5. Images are grouped by op (`tf.dynamic_partition`) so each
image is processed only by its own op; all geometric ops of a layer run as one
projective transform with per-image matrices. Inputs and outputs are uint8
[N, H, W, C], C = 1 or 3.

Magnitude mapping (as the original): Rotate 30m degrees, ShearX/Y 0.3m,
TranslateX/Y m * translate_const(size) pixels, each negated with probability
0.5; Color/Contrast/Brightness/Sharpness factor 1.8m + 0.1; Posterize int(4m)
bits; Solarize threshold int(256m); SolarizeAdd int(110m).
"""
from __future__ import annotations

from typing import Callable, Dict, List, Sequence, Tuple

import tensorflow as tf

from augment import color_ops
from augment import geometric_ops

ALL_OPS = ('AutoContrast', 'Equalize', 'Posterize', 'Solarize', 'Color',
           'Contrast', 'Brightness', 'Identity', 'Invert', 'Sharpness',
           'SolarizeAdd', 'Rotate', 'ShearX', 'ShearY', 'TranslateX',
           'TranslateY')
COLOR_OPS = ALL_OPS[:11]
GEO_OPS = ('Rotate', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY',
           'Identity')
OP_LISTS: Dict[str, Tuple[str, ...]] = {
    'all': ALL_OPS, 'color': COLOR_OPS, 'geo': GEO_OPS}

NUM_LAYERS = 2
PROB_TO_APPLY = 0.5
_GEOMETRIC = ('Rotate', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY')
# The original's translation at m = 1 for its known sizes; else int(0.3 size).
_TRANSLATE_CONST = {32: 10., 96: 30., 128: 40., 256: 100.}


def translate_const(size: int) -> float:
  """Translation in pixels at magnitude 1 (32 -> 10, 28 -> 8, 96 -> 30)."""
  return _TRANSLATE_CONST.get(size, float(int(0.3 * size)))


def _enhance(m: tf.Tensor) -> tf.Tensor:
  return m * 1.8 + 0.1


def _int_arg(m: tf.Tensor, scale: float) -> tf.Tensor:
  return tf.cast(m * scale, tf.int32)


# Pixel ops: name -> fn(images [n, H, W, C], m [n]) -> images.
_PIXEL_OPS: Dict[str, Callable[[tf.Tensor, tf.Tensor], tf.Tensor]] = {
    'AutoContrast': lambda x, m: color_ops.autocontrast(x),
    'Equalize': lambda x, m: color_ops.equalize(x),
    'Invert': lambda x, m: color_ops.invert(x),
    'Posterize': lambda x, m: color_ops.posterize(x, _int_arg(m, 4.)),
    'Solarize': lambda x, m: color_ops.solarize(x, _int_arg(m, 256.)),
    'SolarizeAdd': lambda x, m: color_ops.solarize_add(x, _int_arg(m, 110.)),
    'Color': lambda x, m: color_ops.color(x, _enhance(m)),
    'Contrast': lambda x, m: color_ops.contrast(x, _enhance(m)),
    'Brightness': lambda x, m: color_ops.brightness(x, _enhance(m)),
    'Sharpness': lambda x, m: color_ops.sharpness(x, _enhance(m)),
}


def _geometric(images: tf.Tensor, m: tf.Tensor, negate: tf.Tensor,
               kind: tf.Tensor, size: int) -> tf.Tensor:
  """All geometric ops of a layer in one transform.

  Args:
    images: uint8 [n, H, W, C].
    m: float32 [n] magnitudes.
    negate: bool [n], flip the argument's sign.
    kind: int32 [n], index into _GEOMETRIC.
    size: image side, for the translation constant.

  Returns:
    uint8 [n, H, W, C].
  """
  height, width = int(images.shape[1]), int(images.shape[2])

  def signed(scale):
    arg = m * scale
    return tf.where(negate, -arg, arg)

  shift = signed(translate_const(size))
  candidates = tf.stack([
      geometric_ops.rotate_transforms(signed(30.), height, width),
      geometric_ops.shear_x_transforms(signed(0.3)),
      geometric_ops.shear_y_transforms(signed(0.3)),
      geometric_ops.translate_x_transforms(shift),
      geometric_ops.translate_y_transforms(shift),
  ], axis=1)  # [n, 5, 8]
  transforms = tf.gather(candidates, kind, batch_dims=1)
  return geometric_ops.transform(images, transforms)


class _Groups:
  """How the ops of a list are grouped into partitions."""

  def __init__(self, ops: Sequence[str]):
    unknown = [op for op in ops if op not in _PIXEL_OPS and
               op not in _GEOMETRIC and op != 'Identity']
    if unknown:
      raise ValueError(f'Unknown RandAugment ops {unknown}; valid: '
                       f'{sorted(ALL_OPS)}.')
    self.pixel_ops: List[str] = [op for op in ops if op in _PIXEL_OPS]
    self.has_geometric = any(op in _GEOMETRIC for op in ops)
    # Partition ids: pixel ops 0..P-1, then geometric P (if any), then
    # pass-through (Identity and skipped layers).
    self.geometric_id = len(self.pixel_ops)
    self.passthrough_id = self.geometric_id + int(self.has_geometric)
    self.count = self.passthrough_id + 1
    group, kind = [], []
    for op in ops:
      if op in _PIXEL_OPS:
        group.append(self.pixel_ops.index(op))
        kind.append(0)
      elif op in _GEOMETRIC:
        group.append(self.geometric_id)
        kind.append(_GEOMETRIC.index(op))
      else:
        group.append(self.passthrough_id)
        kind.append(0)
    self.group_of_op = tf.constant(group, tf.int32)
    self.kind_of_op = tf.constant(kind, tf.int32)


def draw_layer(n: tf.Tensor, num_ops: int, seed: tf.Tensor
              ) -> Dict[str, tf.Tensor]:
  """Per-image random choices of one layer.

  Args:
    n: batch size (scalar int32).
    num_ops: length of the op list.
    seed: int [2].

  Returns:
    dict of [n] tensors: 'op' int32 in [0, num_ops), 'm' float32 in [0, 1),
    'negate' bool, 'apply' bool.
  """
  s = tf.random.experimental.stateless_split(seed, 4)
  return {
      'op': tf.random.stateless_uniform([n], s[0], minval=0, maxval=num_ops,
                                        dtype=tf.int32),
      'm': tf.random.stateless_uniform([n], s[1], dtype=tf.float32),
      'negate': tf.random.stateless_uniform([n], s[2]) < 0.5,
      'apply': tf.random.stateless_uniform([n], s[3]) < PROB_TO_APPLY,
  }


def apply_layer(images: tf.Tensor, draws: Dict[str, tf.Tensor],
                ops: Sequence[str], size: int) -> tf.Tensor:
  """Applies one layer given its per-image draws.

  Args:
    images: uint8 [N, H, W, C].
    draws: output of `draw_layer` for N images and len(ops) ops.
    ops: op names.
    size: image side.

  Returns:
    uint8 [N, H, W, C].
  """
  groups = _Groups(ops)
  n = tf.shape(images)[0]
  pid = tf.where(draws['apply'], tf.gather(groups.group_of_op, draws['op']),
                 groups.passthrough_id)
  split = lambda t: tf.dynamic_partition(t, pid, groups.count)
  parts, index_parts = split(images), split(tf.range(n))
  m_parts, neg_parts = split(draws['m']), split(draws['negate'])
  kind_parts = split(tf.gather(groups.kind_of_op, draws['op']))
  outputs = []
  for g in range(groups.count):
    if g < len(groups.pixel_ops):
      out = _PIXEL_OPS[groups.pixel_ops[g]](parts[g], m_parts[g])
    elif g == groups.geometric_id and groups.has_geometric:
      out = _geometric(parts[g], m_parts[g], neg_parts[g], kind_parts[g],
                       size)
    else:
      out = parts[g]
    outputs.append(out)
  result = tf.dynamic_stitch(index_parts, outputs)
  return tf.ensure_shape(result, images.shape)


def layer_seeds(seed: tf.Tensor, num_layers: int = NUM_LAYERS) -> tf.Tensor:
  """int [num_layers, 2]: the seed of each layer."""
  return tf.random.experimental.stateless_split(seed, num_layers)


def randaugment(images: tf.Tensor, seed: tf.Tensor, mode: str, size: int,
                num_layers: int = NUM_LAYERS) -> tf.Tensor:
  """The original's RandAugment on uint8 images.

  Args:
    images: uint8 [N, H, W, C].
    seed: int [2].
    mode: 'all', 'color' or 'geo'.
    size: image side (translation constant).
    num_layers: layers applied in sequence.

  Returns:
    uint8 [N, H, W, C].
  """
  ops = OP_LISTS[mode]
  n = tf.shape(images)[0]
  seeds = layer_seeds(seed, num_layers)
  for layer in range(num_layers):
    draws = draw_layer(n, len(ops), seeds[layer])
    images = apply_layer(images, draws, ops, size)
  return images
