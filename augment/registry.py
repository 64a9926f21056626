"""Augmentation specs: `build`, `names`, `ops`, `validate`.

A spec is either short keys applied in order: d (shift), h (flip), ra / rc /
rg (RandAugment over all / colour / geometric ops), c (Cutout), x alone means
no augmentation; or the original's '+'-joined ops ('hflip+randaug2-0.5---all+
cutout0.5', 'hflip+jitter_b0.2+cutout0.25', 'cnr0.5+rotate90', ...; grammar
in `augment.ops_spec`). `build(spec, image_size)` returns an AugmentFn mapping
uint8 [N, H, W, C] and an int [2] seed to float32 [N, H, W, C] in [-1, 1].
"""
from __future__ import annotations

import functools
import numbers
from typing import List, Optional, Protocol, Tuple, Union

import tensorflow as tf

from augment import ops_spec
from augment import pipeline
from augment import spec as spec_lib
from augment.errors import AugmentError


class AugmentFn(Protocol):
  """`fn(images, seed, rows=None)`: uint8 [N, H, W, C] and an int [2] seed to
  float32 [N, H, W, C] in [-1, 1]; rows = (offset, total) says the images are
  rows [offset, offset + N) of a global batch of `total` rows and returns
  exactly those rows of the global batch's augmentation."""

  def __call__(self, images: tf.Tensor, seed: tf.Tensor,
               rows: Optional[Tuple[Union[int, tf.Tensor],
                                    Union[int, tf.Tensor]]] = None
              ) -> tf.Tensor:
    ...


MIN_IMAGE_SIZE = 8


def names() -> List[str]:
  """The valid keys: ['d', 'h', 'ra', 'rc', 'rg', 'c', 'x']."""
  return list(spec_lib.KEYS)


def ops() -> List[str]:
  """The syntax of the original's '+'-joined ops ('hflip', 'cutout{scale}',
  ...), as listed in error messages."""
  return list(spec_lib.OPS)


def validate(spec: str) -> None:
  """Raises AugmentError (a ValueError) if `spec` is not a valid spec."""
  ops_spec.parse_stages(spec)


def build(spec: str, image_size: int, *,
          emulate_wrap_rounding: bool = True,
          emulate_blur_noop: bool = True) -> AugmentFn:
  """Builds the augmentation a spec names.

  Args:
    spec: e.g. 'dh', 'dhrac', 'x', 'hflip+randaug2-0.5---all+cutout0.5'.
    image_size: side of the square images (32 for CIFAR, 28 for
      Fashion-MNIST); sets the shift pad, Cutout size and translations.
    emulate_wrap_rounding: reproduce the original's float32 round trip around
      RandAugment (default; see README). False keeps pixels exact.
    emulate_blur_noop: `blur{p}` does nothing, as in the original (whose
      RandomBlur returns the image unchanged when training); False applies
      the Gaussian blur it names (SimCLR's random_blur).

  Returns:
    AugmentFn(images uint8 [N, H, W, C], seed int [2], rows=None) -> float32
    [N, H, W, C] in [-1, 1]; stateless and deterministic in (images, seed);
    rows=(offset, total) augments a window of a global batch (see
    `augment.pipeline.Augmenter.__call__`).

  Raises:
    AugmentError: a bad spec or image size.
  """
  stages = ops_spec.parse_stages(spec)
  if isinstance(image_size, bool) or not isinstance(
      image_size, numbers.Integral) or image_size < MIN_IMAGE_SIZE:
    raise AugmentError(f'Augmentation image size must be an integer >= '
                      f'{MIN_IMAGE_SIZE}, got {image_size!r}; pass the '
                      'side of the (square) input images, e.g. 32.')
  return _built(spec, tuple(stages), int(image_size),
                bool(emulate_wrap_rounding), bool(emulate_blur_noop))


@functools.lru_cache(maxsize=64)
def _built(spec: str, stages: tuple, image_size: int,
           emulate_wrap_rounding: bool,
           emulate_blur_noop: bool) -> pipeline.Augmenter:
  """One Augmenter per distinct build: its traced graphs are reused by every
  pipeline that uses it (each generation's, each evaluator's) instead of
  being traced again (seconds per RandAugment spec)."""
  return pipeline.Augmenter(spec, stages, image_size,
                            emulate_wrap_rounding=emulate_wrap_rounding,
                            emulate_blur_noop=emulate_blur_noop)
