"""The typed stages a parsed augmentation spec is made of.

A spec parses (`augment.ops_spec.parse_stages`) into a tuple of these frozen
dataclasses, applied in order by `augment.pipeline.Augmenter`; the empty tuple
means no augmentation ('x'). Each stage's `token` is its canonical spelling in
the original's '+'-joined grammar; `Shift` has none there (the original adds
it implicitly before the first op) and is spelled by its short key 'd'.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Tuple, Union

RANDAUG_MODES = ('all', 'color', 'geo', 'cutout')


def _num(value: float) -> str:
  """Shortest spelling of a number: 0.5 -> '0.5', 2.0 -> '2'."""
  return f'{value:g}' if float(value) != int(value) else str(int(value))


@dataclasses.dataclass(frozen=True)
class Shift:
  """Random shift: reflect-pad int(0.125 * side) pixels, random crop back."""

  @property
  def token(self) -> str:
    return 'd'


@dataclasses.dataclass(frozen=True)
class HFlip:
  """Left-right flip with probability 0.5."""

  @property
  def token(self) -> str:
    return 'hflip'


@dataclasses.dataclass(frozen=True)
class RandAugment:
  """The original's RandAugment.

  Attributes:
    layers: layers applied in sequence.
    prob: probability that a layer applies its op.
    magnitude: fixed magnitude in [0, 1]; None draws one per layer.
    levels: with magnitude None, draw m from {0, 1/levels, ..., 1}; None
      draws m ~ U[0, 1).
    mode: op list, 'all' (16 ops), 'color' (11), 'geo' (5 + Identity) or
      'cutout' (the 16 ops, each layer replaced with probability 1/17 by a
      Cutout of random scale in [0, 0.5)).
  """
  layers: int = 2
  prob: float = 0.5
  magnitude: Optional[float] = None
  levels: Optional[int] = None
  mode: str = 'all'

  @property
  def token(self) -> str:
    fields = [str(self.layers), _num(self.prob),
              '' if self.magnitude is None else _num(self.magnitude),
              '' if self.levels is None else str(self.levels), self.mode]
    return 'randaug' + '-'.join(fields)


@dataclasses.dataclass(frozen=True)
class Cutout:
  """A square of `scale` times the side, random centre, set to 0 in [-1, 1]."""
  scale: float = 0.5

  @property
  def token(self) -> str:
    return f'cutout{_num(self.scale)}'


@dataclasses.dataclass(frozen=True)
class Jitter:
  """Colour jitter in random order (0 disables a component).

  Attributes:
    brightness: add delta ~ U[-b, b) (in [-1, 1] space).
    contrast: scale the deviation from the channel mean by U[1 - c, 1 + c).
    saturation: scale the HSV saturation by U[1 - s, 1 + s).
    hue: rotate the hue by U[-h, h) turns (h <= 0.5).
  """
  brightness: float = 0.125
  contrast: float = 0.4
  saturation: float = 0.4
  hue: float = 0.0

  @property
  def token(self) -> str:
    return (f'jitter_b{_num(self.brightness)}_c{_num(self.contrast)}'
            f'_s{_num(self.saturation)}_h{_num(self.hue)}')


@dataclasses.dataclass(frozen=True)
class Blur:
  """Gaussian blur (SimCLR's random_blur) with probability `prob`."""
  prob: float = 0.5

  @property
  def token(self) -> str:
    return f'blur{_num(self.prob)}'


@dataclasses.dataclass(frozen=True)
class CropResize:
  """Random square crop of side in [int(min_scale * side), side], bilinear
  resize back to the side. In the original it discards the stages before it.
  """
  min_scale: float = 0.4

  @property
  def token(self) -> str:
    return f'cnr{_num(self.min_scale)}'


@dataclasses.dataclass(frozen=True)
class RandErase:
  """Random erasing: a rectangle of area U[area) * H * W, aspect ratio in
  [1, ratio] (or its inverse), placed inside the image, set to `value`.
  The original's string form fixes area (0.3, 0.3), ratio 1, value 0.5.
  """
  area: Tuple[float, float] = (0.3, 0.3)
  ratio: float = 1.0
  value: float = 0.5

  @property
  def token(self) -> str:
    return 'randerase'


@dataclasses.dataclass(frozen=True)
class Rotate90:
  """Rotation by k * 90 degrees counter-clockwise (as np.rot90 / tf.image)."""
  k: int = 1

  @property
  def token(self) -> str:
    return f'rotate{90 * self.k}'


Stage = Union[Shift, HFlip, RandAugment, Cutout, Jitter, Blur, CropResize,
              RandErase, Rotate90]

