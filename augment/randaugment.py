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

The original's string form (`randaug{layers}-{prob}-{magnitude}-{levels}-
{mode}`) sets the layer count, the probability to apply, a fixed magnitude or
a quantisation of it into {0, 1/levels, ..., 1}, and the op list; mode
'cutout' uses all 16 ops and replaces a layer, with probability 1/17, by a
Cutout of random scale in [0, 0.5) (itself applied with the layer
probability).
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import tensorflow as tf

from augment import color_ops
from augment import convert
from augment import cutout
from augment import draws as draws_lib
from augment import geometric_ops

ALL_OPS = ('AutoContrast', 'Equalize', 'Posterize', 'Solarize', 'Color',
           'Contrast', 'Brightness', 'Identity', 'Invert', 'Sharpness',
           'SolarizeAdd', 'Rotate', 'ShearX', 'ShearY', 'TranslateX',
           'TranslateY')
COLOR_OPS = ALL_OPS[:11]
GEO_OPS = ('Rotate', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY',
           'Identity')
OP_LISTS: Dict[str, Tuple[str, ...]] = {
    'all': ALL_OPS, 'color': COLOR_OPS, 'geo': GEO_OPS, 'cutout': ALL_OPS}
# Mode 'cutout': a layer is a Cutout with probability 1 / (len(ops) + 1), of
# scale U[0, CUTOUT_MAX_SCALE).
CUTOUT_MAX_SCALE = 0.5

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


class _Groups:
  """How the ops of a list are grouped into partitions."""

  def __init__(self, ops: Sequence[str], with_cutout: bool = False):
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
    # Mode 'cutout': one more partition, after the pass-through.
    self.cutout_id = self.passthrough_id + 1 if with_cutout else None
    self.count = self.passthrough_id + 1 + int(with_cutout)
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


def draw_layer(n: Union[draws_lib.Rows, tf.Tensor], num_ops: int,
               seed: tf.Tensor, *,
               prob: float = PROB_TO_APPLY,
               magnitude: Optional[float] = None,
               levels: Optional[int] = None,
               cutout_side: Optional[int] = None) -> Dict[str, tf.Tensor]:
  """Per-image random choices of one layer.

  Args:
    n: batch size (scalar int32), or the Rows of a window of a batch.
    num_ops: length of the op list.
    seed: int [2].
    prob: probability that the layer applies its op.
    magnitude: fixed m for every image; None draws it.
    levels: with magnitude None, m = U{0, ..., levels} / levels; None draws
      m ~ U[0, 1).
    cutout_side: mode 'cutout' only: the image side, for the Cutout draws.

  Returns:
    dict of [n] tensors: 'op' int32 in [0, num_ops), 'm' float32 in [0, 1],
    'negate' bool, 'apply' bool; with cutout_side also 'cutout' bool (the
    layer is a Cutout), 'cutout_scale' float32 and 'cutout_centre' float32
    [n, 2].
  """
  s = tf.random.experimental.stateless_split(seed, 4)
  if magnitude is not None:
    m = draws_lib.fill(n, tf.constant(magnitude, tf.float32))
  elif levels:
    level = draws_lib.uniform(n, s[1], minval=0, maxval=levels + 1,
                              dtype=tf.int32)
    m = tf.cast(level, tf.float32) / tf.constant(levels, tf.float32)
  else:
    m = draws_lib.uniform(n, s[1], dtype=tf.float32)
  draws = {
      'op': draws_lib.uniform(n, s[0], minval=0, maxval=num_ops,
                              dtype=tf.int32),
      'm': m,
      'negate': draws_lib.uniform(n, s[2]) < 0.5,
      'apply': draws_lib.uniform(n, s[3]) < prob,
  }
  if cutout_side is not None:
    c = tf.random.experimental.stateless_split(
        tf.random.experimental.stateless_fold_in(seed, 1), 3)
    threshold = tf.divide(tf.constant(1.0), float(num_ops + 1))
    draws['cutout'] = draws_lib.uniform(n, c[0]) < threshold
    draws['cutout_scale'] = draws_lib.uniform(n, c[1],
                                              maxval=CUTOUT_MAX_SCALE)
    draws['cutout_centre'] = cutout.draw_centres(n, cutout_side, cutout_side,
                                                 c[2])
  return draws


# The original's Cutout squares with one scale per image (used by tests).
cutout_square = cutout.square_mask


def _cutout_layer(images: tf.Tensor, scale: tf.Tensor, centre: tf.Tensor,
                  emulate_wrap_rounding: bool) -> tf.Tensor:
  """The original's Cutout inside RandAugment: unwrap, cut, wrap.

  Args:
    images: uint8 [n, H, W, C], H = W (RandAugment's q, standing for
      q / 127.5 - 1).
    scale: float32 [n].
    centre: float32 [n, 2].
    emulate_wrap_rounding: reproduce the float round trip's truncation.

  Returns:
    uint8 [n, H, W, C]; cut pixels are 127 (the float 0 wrapped).
  """
  mask = cutout.square_mask(centre, scale, int(images.shape[1]))
  if emulate_wrap_rounding:
    images = convert.wrap(images, convert.Encoding.UNWRAPPED)
  return tf.where(mask, tf.constant(convert.WRAPPED_ZERO, tf.uint8), images)


def _partition_ids(draws: Dict[str, tf.Tensor], groups: _Groups
                  ) -> tf.Tensor:
  """int32 [n]: the partition of each image (pass-through if not applied)."""
  chosen = tf.gather(groups.group_of_op, draws['op'])
  if 'cutout' in draws:
    chosen = tf.where(draws['cutout'], groups.cutout_id, chosen)
  return tf.where(draws['apply'], chosen, groups.passthrough_id)


def apply_layer(images: tf.Tensor, draws: Dict[str, tf.Tensor],
                ops: Sequence[str], size: int,
                emulate_wrap_rounding: bool = True,
                window: Optional[draws_lib.Rows] = None) -> tf.Tensor:
  """Applies one layer given its per-image draws.

  Args:
    images: uint8 [N, H, W, C].
    draws: output of `draw_layer` for len(ops) ops (with the Cutout draws
      for mode 'cutout') for the N images, or with `window` for the global
      batch whose rows `window` the images are.
    ops: op names.
    size: image side.
    emulate_wrap_rounding: mode 'cutout': reproduce the truncation of the
      original's float round trip around its Cutout.
    window: the batch rows the images are (default: a whole batch).

  Returns:
    uint8 [N, H, W, C].
  """
  with_cutout = 'cutout' in draws
  groups = _Groups(ops, with_cutout)
  rows = draws_lib.rows_of(window, images)
  geo_id = groups.geometric_id
  pid = _partition_ids(draws, groups)
  split = lambda t: tf.dynamic_partition(t, pid, groups.count)
  m_parts, neg_parts = split(draws['m']), split(draws['negate'])
  kind_parts = split(tf.gather(groups.kind_of_op, draws['op']))
  if groups.has_geometric:
    # Computed over the global batch's geometric group as a whole batch
    # does: sin and cos round by position in a vector (`augment.draws`).
    geo = geometric_ops.layer_transforms(
        m_parts[geo_id], neg_parts[geo_id], kind_parts[geo_id],
        int(images.shape[1]), int(images.shape[2]), translate_const(size))
  if not rows.is_whole:
    if groups.has_geometric:
      at = split(tf.range(rows.total))[geo_id]
      geo = draws_lib.take(rows, tf.scatter_nd(at[:, None], geo,
                                               [rows.total, 8]))
    draws = {k: draws_lib.take(rows, v) for k, v in draws.items()}
    pid = draws_lib.take(rows, pid)
    m_parts = split(draws['m'])
    if groups.has_geometric:
      geo = split(geo)[geo_id]
  parts, index_parts = split(images), split(tf.range(rows.count))
  if with_cutout:
    scale_parts = split(draws['cutout_scale'])
    centre_parts = split(draws['cutout_centre'])
  outputs = []
  for g in range(groups.count):
    if g < len(groups.pixel_ops):
      out = _PIXEL_OPS[groups.pixel_ops[g]](parts[g], m_parts[g])
    elif g == geo_id and groups.has_geometric:
      out = geometric_ops.transform(parts[g], geo)
    elif g == groups.cutout_id:
      out = _cutout_layer(parts[g], scale_parts[g], centre_parts[g],
                          emulate_wrap_rounding)
    else:
      out = parts[g]
    outputs.append(out)
  result = tf.dynamic_stitch(index_parts, outputs)
  return tf.ensure_shape(result, images.shape)


def layer_seeds(seed: tf.Tensor, num_layers: int = NUM_LAYERS) -> tf.Tensor:
  """int [num_layers, 2]: the seed of each layer."""
  return tf.random.experimental.stateless_split(seed, num_layers)


def randaugment(images: tf.Tensor, seed: tf.Tensor, mode: str, size: int,
                num_layers: int = NUM_LAYERS, *,
                prob: float = PROB_TO_APPLY,
                magnitude: Optional[float] = None,
                levels: Optional[int] = None,
                emulate_wrap_rounding: bool = True,
                window: Optional[draws_lib.Rows] = None) -> tf.Tensor:
  """The original's RandAugment on uint8 images.

  Args:
    images: uint8 [N, H, W, C].
    seed: int [2].
    mode: 'all', 'color', 'geo' or 'cutout'.
    size: image side (translation constant).
    num_layers: layers applied in sequence.
    prob: probability that a layer applies its op.
    magnitude: fixed magnitude in [0, 1]; None draws one per layer and image.
    levels: quantise drawn magnitudes to {0, 1/levels, ..., 1}; None keeps
      them continuous.
    emulate_wrap_rounding: mode 'cutout' only (see `apply_layer`).
    window: the batch rows the images are (default: a whole batch).

  Returns:
    uint8 [N, H, W, C].
  """
  ops = OP_LISTS[mode]
  rows = draws_lib.rows_of(window, images)
  seeds = layer_seeds(seed, num_layers) if num_layers else []
  cutout_side = size if mode == 'cutout' else None
  for layer in range(num_layers):
    # The global batch's draws: `apply_layer` computes the geometric
    # transforms over the global batch and takes the window's rows.
    draws = draw_layer(draws_lib.whole_batch(rows), len(ops), seeds[layer],
                       prob=prob, magnitude=magnitude, levels=levels,
                       cutout_side=cutout_side)
    images = apply_layer(images, draws, ops, size, emulate_wrap_rounding,
                         window)
  return images
