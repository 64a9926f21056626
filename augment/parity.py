"""Applies the reference fixture's op keys, and checks a fixture file.

A fixture key names one RandAugment op and its argument after the magnitude
mapping, e.g. `rotate_deg-30`, `shear_x_0.15`, `translate_y_-3`,
`posterize_0`, `solarize_add_37`, `color_0.55`, `autocontrast` (grammar in
the fixture README). Used by tests and `scripts/check_parity.py`.
"""
from __future__ import annotations

import re
from typing import Callable, Dict, List, Tuple

import numpy as np
import tensorflow as tf

from augment import color_ops
from augment import geometric_ops

_NUMBER = r'([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)'


def _geometric(make: Callable[..., tf.Tensor]):
  def apply(images: tf.Tensor, arg: tf.Tensor) -> tf.Tensor:
    # One transform from a single argument [1] (the original evaluated
    # cos/sin on one angle at a time), shared by every image.
    t = make(arg)
    return geometric_ops.transform(images, tf.tile(t, [tf.shape(images)[0],
                                                       1]))
  return apply


def _rotate(arg: tf.Tensor, height: int, width: int) -> tf.Tensor:
  return geometric_ops.rotate_transforms(arg, height, width)




def _pixelwise(op: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]):
  def apply(images: tf.Tensor, arg: tf.Tensor) -> tf.Tensor:
    return op(images, tf.tile(arg, [tf.shape(images)[0]]))
  return apply


# prefix -> (argument kind 'int' / 'float', op(images, arg [1])).
_ARG_OPS: Dict[str, Tuple[str, Callable]] = {
    'shear_x_': ('float', _geometric(geometric_ops.shear_x_transforms)),
    'shear_y_': ('float', _geometric(geometric_ops.shear_y_transforms)),
    'translate_x_': ('float',
                     _geometric(geometric_ops.translate_x_transforms)),
    'translate_y_': ('float',
                     _geometric(geometric_ops.translate_y_transforms)),
    'posterize_': ('int', _pixelwise(color_ops.posterize)),
    'solarize_add_': ('int', _pixelwise(color_ops.solarize_add)),
    'solarize_': ('int', _pixelwise(color_ops.solarize)),
    'color_': ('float', _pixelwise(color_ops.color)),
    'contrast_': ('float', _pixelwise(color_ops.contrast)),
    'brightness_': ('float', _pixelwise(color_ops.brightness)),
    'sharpness_': ('float', _pixelwise(color_ops.sharpness)),
}
_PLAIN_OPS = {
    'autocontrast': color_ops.autocontrast,
    'equalize': color_ops.equalize,
    'invert': color_ops.invert,
}


def _valid_patterns() -> str:
  names = ['rotate_deg{D}'] + [p + '{X}' for p in _ARG_OPS] + list(_PLAIN_OPS)
  return ', '.join(names)


def fixture_op(key: str) -> Callable[[tf.Tensor], tf.Tensor]:
  """The op a fixture key names, as fn(uint8 [N, H, W, C]) -> uint8 [...].

  Raises:
    ValueError: unknown key.
  """
  return _parse(key)[0]


def _parse(key: str) -> Tuple[Callable[[tf.Tensor], tf.Tensor], str]:
  """Returns (fn(images) -> images, description) for a fixture key."""
  if key in _PLAIN_OPS:
    return _PLAIN_OPS[key], key
  match = re.fullmatch('rotate_deg' + _NUMBER, key)
  if match:
    degrees = tf.constant([float(match.group(1))], tf.float32)

    def rotate(images):
      h, w = int(images.shape[1]), int(images.shape[2])
      return _geometric(lambda a: _rotate(a, h, w))(images, degrees)
    return rotate, key
  # Longest prefix first so that 'solarize_add_' wins over 'solarize_'.
  for prefix in sorted(_ARG_OPS, key=len, reverse=True):
    match = re.fullmatch(re.escape(prefix) + _NUMBER, key)
    if not match:
      continue
    kind, op = _ARG_OPS[prefix]
    text = match.group(1)
    if kind == 'int':
      value = float(text)
      if value != int(value):
        raise ValueError(f'Fixture key {key!r}: {prefix[:-1]} takes an '
                         f'integer argument, got {text!r}.')
      arg = tf.constant([int(value)], tf.int32)
    else:
      arg = tf.constant([float(text)], tf.float32)
    return (lambda images, op=op, arg=arg: op(images, arg)), key
  raise ValueError(f'Unknown fixture op key {key!r}. Valid keys: '
                   f'{_valid_patterns()} (numbers written as Python {{:g}}).')


def apply_fixture_op(key: str, images: np.ndarray) -> np.ndarray:
  """Applies the op a fixture key names to every image.

  Args:
    key: fixture key, e.g. 'rotate_deg-30' or 'solarize_add_37'.
    images: uint8 [N, H, W, C] (the fixture uses [N, 32, 32, 3]).

  Returns:
    uint8 [N, H, W, C].

  Raises:
    ValueError: unknown key, or images not uint8 [N, H, W, C].
  """
  images = np.asarray(images)
  if images.dtype != np.uint8 or images.ndim != 4:
    raise ValueError(f'Fixture images must be uint8 [N, H, W, C]; got '
                     f'{images.dtype} {images.shape}.')
  fn, _ = _parse(key)
  return fn(tf.constant(images)).numpy()


def check_file(path) -> List[Tuple[str, int, int, int]]:
  """Compares every op key of an augment_ops-format .npz with our ops.

  Args:
    path: .npz with `inputs` uint8 [N, H, W, C] and one uint8 array per key.

  Returns:
    One (key, cases_passed, cases_total, worst_abs_error) per key in file
    order; a case is one image, passed when identical to the byte.

  Raises:
    ValueError: the file has no `inputs` or holds an unknown key.
  """
  with np.load(path) as data:
    if 'inputs' not in data.files:
      raise ValueError(f'{path}: no `inputs` array; not an augment_ops file.')
    inputs = data['inputs']
    results = []
    for key in data.files:
      if key == 'inputs':
        continue
      expected = data[key]
      ours = apply_fixture_op(key, inputs)
      if ours.shape != expected.shape:
        raise ValueError(f'{path}: {key!r} has shape {expected.shape}, '
                         f'inputs give {ours.shape}.')
      diff = np.abs(ours.astype(np.int32) - expected.astype(np.int32))
      per_case = diff.reshape(diff.shape[0], -1).max(axis=1)
      results.append((key, int(np.sum(per_case == 0)), int(per_case.size),
                      int(diff.max(initial=0))))
  return results
