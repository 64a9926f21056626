"""Per-row random draws that can be taken for any row window of a batch.

Every augmentation op draws its per-image randomness here, as `uniform(rows,
seed, ...)`. For the whole batch (`Rows.whole(n)`, the default) that is
`tf.random.stateless_uniform([n, ...], seed)`, exactly as before. For a
window, rows [offset, offset + count) of a global batch of `total` rows, the
draw is made at the global size and sliced, so augmenting the window gives
the same values, byte for byte, as slicing the augmented global batch (all
image ops are per row). Drawing is cheap next to the image ops, which run on
the window's rows only.

Per-row values computed from the draws with transcendental functions (exp,
pow, sin, cos) must also be computed at the global size and then sliced
(`whole_batch`, `take`): TensorFlow's CPU kernels evaluate them with
vectorised code on full packets and scalar code on the remainder, which can
round differently by an ulp, so a value depends on its position in the
vector it is computed in (seen on this AVX2 machine for exp, pow, sin, cos;
not for +, -, *, /, sqrt, floor, round, nor for the image ops, checked on
windows of every size and offset of a 23-image batch).
"""
from __future__ import annotations

import dataclasses
import numbers
from typing import Optional, Sequence, Union

import tensorflow as tf

IntLike = Union[int, tf.Tensor]


@dataclasses.dataclass(frozen=True)
class Rows:
  """Rows [offset, offset + count) of a batch of `total` rows.

  Attributes:
    offset: int32 scalar (or Python int) first row; None for the whole batch
      (then total = count and draws are not sliced).
    count: int32 scalar (or Python int) number of rows held.
    total: int32 scalar (or Python int) rows of the global batch.
  """
  offset: Optional[IntLike]
  count: IntLike
  total: IntLike

  @classmethod
  def whole(cls, n: IntLike) -> 'Rows':
    """All n rows of a batch (no slicing)."""
    return cls(None, n, n)

  @classmethod
  def window(cls, offset: IntLike, count: IntLike, total: IntLike) -> 'Rows':
    """Rows [offset, offset + count) of a global batch of `total` rows."""
    return cls(offset, count, total)

  @property
  def is_whole(self) -> bool:
    return self.offset is None


def as_rows(rows: Union[Rows, IntLike]) -> Rows:
  """A Rows value; a plain batch size n means `Rows.whole(n)`."""
  return rows if isinstance(rows, Rows) else Rows.whole(rows)


def rows_of(window: Optional[Rows], images: tf.Tensor) -> Rows:
  """`window`, or else the whole batch of `images` [n, ...]."""
  return window if window is not None else Rows.whole(tf.shape(images)[0])


def whole_batch(rows: Rows) -> Rows:
  """The global batch `rows` are a window of (`rows` itself if whole)."""
  return rows if rows.is_whole else Rows.whole(rows.total)


def take(rows: Rows, values: tf.Tensor) -> tf.Tensor:
  """Rows [offset, offset + count) of `values` [total, ...] (per-row values
  of the global batch); `values` itself for the whole batch."""
  if rows.is_whole:
    return values
  return values[rows.offset:rows.offset + rows.count]


def uniform(rows: Union[Rows, IntLike], seed: tf.Tensor,
            tail_shape: Sequence[int] = (), **kwargs) -> tf.Tensor:
  """`tf.random.stateless_uniform` of shape [count, *tail_shape] for `rows`.

  Args:
    rows: a Rows value or a batch size (the whole batch).
    seed: int [2].
    tail_shape: the per-row shape of the draw.
    **kwargs: minval, maxval, dtype of `tf.random.stateless_uniform`.

  Returns:
    [count, *tail_shape]: rows [offset, offset + count) of the draw of shape
    [total, *tail_shape] (that draw itself for the whole batch).
  """
  rows = as_rows(rows)
  shape = [rows.total] + list(tail_shape)
  return take(rows, tf.random.stateless_uniform(shape, seed, **kwargs))


def fill(rows: Union[Rows, IntLike], value: tf.Tensor) -> tf.Tensor:
  """[count] copies of a scalar, one per row held."""
  return tf.fill([as_rows(rows).count], value)


_WINDOW_RULE = ('rows=(offset, total) must have 0 <= offset and offset + n <= '
                'total, n = the number of images given')


def _static_int(value: IntLike) -> Optional[int]:
  if isinstance(value, tf.Tensor):
    value = tf.get_static_value(value)
  return None if value is None else int(value)


def check_window(offset: IntLike, total: IntLike, count: IntLike) -> None:
  """Raises ValueError for a window outside the global batch, as far as its
  values are known here (Python ints, eager or constant tensors).

  Args:
    offset: first row of the window.
    total: rows of the global batch.
    count: rows in the window.
  """
  for name, v in (('offset', offset), ('total', total)):
    integral = isinstance(v, numbers.Integral) and not isinstance(v, bool)
    scalar = (isinstance(v, tf.Tensor) and v.dtype.is_integer and
              v.shape.rank == 0)
    if not (integral or scalar):
      raise ValueError(f'rows=(offset, total) takes Python ints or int scalar '
                       f'tensors; {name} is {v!r}.')
  o, t, c = (_static_int(v) for v in (offset, total, count))
  if (o is not None and o < 0) or (t is not None and t < 0) or (
      None not in (o, t, c) and o + c > t):
    raise ValueError(f'{_WINDOW_RULE}; got offset={o}, total={t}, n={c}.')


def window_asserts(rows: Rows) -> list:
  """Runtime checks of a window whose values are only known when run."""
  offset, count, total = (tf.cast(v, tf.int32)
                          for v in (rows.offset, rows.count, rows.total))
  return [tf.debugging.assert_greater_equal(offset, 0, message=_WINDOW_RULE),
          tf.debugging.assert_less_equal(offset + count, total,
                                         message=_WINDOW_RULE)]
