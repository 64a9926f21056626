"""Small bar and line charts drawn with Pillow alone (no matplotlib).

  image = bar_chart(['0', '1'], [('gen 0', [0.9, 0.1]), ('gen 1', [0.8, .4])],
                    title='Recall', xlabel='class', ylabel='recall', ymax=1)
  stack([image, other]).save('out.png')

Series are drawn in a fixed colour order with a legend; NaN values are not
drawn. `log=True` uses a log10(1 + y) axis (for counts spanning decades).
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

from PIL import Image, ImageDraw, ImageFont

Series = Tuple[str, Sequence[float]]
COLORS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40),
          (148, 103, 189), (140, 86, 75), (227, 119, 194), (127, 127, 127),
          (188, 189, 34), (23, 190, 207))
WIDTH, HEIGHT = 900, 420
MARGIN = dict(left=80, right=150, top=44, bottom=64)


def _font(size: int):
  try:
    return ImageFont.load_default(size=size)
  except TypeError:  # Pillow < 10.1: a fixed bitmap font.
    return ImageFont.load_default()


def color(i: int) -> Tuple[int, int, int]:
  return COLORS[i % len(COLORS)]


def nice_ticks(top: float, count: int = 5) -> List[float]:
  """0 and multiples of a 1/2/5 step up to at least `top`."""
  if not top > 0:
    return [0.0, 1.0]
  raw = top / count
  step = 10 ** math.floor(math.log10(raw))
  for m in (1, 2, 5, 10):
    if m * step >= raw:
      step *= m
      break
  n = math.ceil(top / step - 1e-9)
  return [i * step for i in range(n + 1)]


def _fmt(v: float) -> str:
  return f'{v:g}' if abs(v) < 1e5 else f'{v:.0e}'


class _Axes:
  """Maps data to pixels and draws the frame, ticks, labels and legend."""

  def __init__(self, categories: Sequence[str], series: Sequence[Series],
               title: str, xlabel: str, ylabel: str, ymax: Optional[float],
               log: bool, size: Tuple[int, int]):
    self.image = Image.new('RGB', size, 'white')
    self.draw = ImageDraw.Draw(self.image)
    self.font, self.small = _font(14), _font(12)
    self.log = log
    w, h = size
    self.x0, self.x1 = MARGIN['left'], w - MARGIN['right']
    self.y0, self.y1 = h - MARGIN['bottom'], MARGIN['top']
    self.n = max(1, len(categories))
    values = [v for _, vs in series for v in vs if not _isnan(v)]
    top = ymax if ymax is not None else max(values + [0.0])
    if log:
      decades = max(1, math.ceil(math.log10(1.0 + max(top, 1.0))))
      self.ticks = [0.0] + [10 ** i for i in range(1, decades + 1)]
      self.top = self._t(self.ticks[-1])
    else:
      self.ticks = nice_ticks(top) if ymax is None else nice_ticks(ymax)
      self.top = self.ticks[-1] or 1.0
    self._frame(categories, series, title, xlabel, ylabel)

  def _t(self, v: float) -> float:
    return math.log10(1.0 + max(v, 0.0)) if self.log else v

  def y(self, v: float) -> float:
    return self.y0 - (self.y0 - self.y1) * self._t(v) / self.top

  def slot(self, i: int) -> Tuple[float, float]:
    """Left and right pixel of category i's slot."""
    w = (self.x1 - self.x0) / self.n
    return self.x0 + i * w, self.x0 + (i + 1) * w

  def _text(self, xy, text, font=None, anchor='mm', fill='black'):
    self.draw.text(xy, text, font=font or self.font, anchor=anchor,
                   fill=fill)

  def _frame(self, categories, series, title, xlabel, ylabel):
    d = self.draw
    for t in self.ticks:
      y = self.y(t)
      d.line([(self.x0, y), (self.x1, y)], fill=(225, 225, 225))
      d.line([(self.x0 - 5, y), (self.x0, y)], fill='black')
      self._text((self.x0 - 8, y), _fmt(t), self.small, 'rm')
    d.line([(self.x0, self.y1), (self.x0, self.y0), (self.x1, self.y0)],
           fill='black', width=2)
    every = max(1, math.ceil(len(categories) / 25))
    for i, c in enumerate(categories):
      if i % every == 0:
        a, b = self.slot(i)
        self._text(((a + b) / 2, self.y0 + 12), str(c), self.small)
    self._text(((self.x0 + self.x1) / 2, 20), title)
    self._text(((self.x0 + self.x1) / 2, self.y0 + 40), xlabel)
    label = Image.new('RGB', (int(self.draw.textlength(ylabel, self.font)) +
                              8, 20), 'white')
    ImageDraw.Draw(label).text((4, 2), ylabel, font=self.font, fill='black')
    label = label.rotate(90, expand=True)
    self.image.paste(label, (8, int((self.y0 + self.y1 - label.height) / 2)))
    for k, (name, _) in enumerate(series):
      y = self.y1 + 10 + 20 * k
      d.rectangle([self.x1 + 14, y - 6, self.x1 + 26, y + 6], fill=color(k))
      self._text((self.x1 + 32, y), name, self.small, 'lm')


def _isnan(v) -> bool:
  return v is None or (isinstance(v, float) and math.isnan(v))


def bar_chart(categories: Sequence[str], series: Sequence[Series],
              title: str = '', xlabel: str = '', ylabel: str = '',
              ymax: Optional[float] = None, log: bool = False,
              size: Tuple[int, int] = (WIDTH, HEIGHT)) -> Image.Image:
  """Grouped bars: one group per category, one bar per series."""
  ax = _Axes(categories, series, title, xlabel, ylabel, ymax, log, size)
  m = max(1, len(series))
  for k, (_, values) in enumerate(series):
    for i, v in enumerate(values):
      if _isnan(v):
        continue
      a, b = ax.slot(i)
      pad = 0.1 * (b - a)
      w = (b - a - 2 * pad) / m
      left = a + pad + k * w
      top = min(ax.y(v), ax.y0 - 1)
      ax.draw.rectangle([left, top, max(left, left + w - 1), ax.y0],
                        fill=color(k))
  return ax.image


def line_chart(categories: Sequence[str], series: Sequence[Series],
               title: str = '', xlabel: str = '', ylabel: str = '',
               ymax: Optional[float] = None, log: bool = False,
               size: Tuple[int, int] = (WIDTH, HEIGHT)) -> Image.Image:
  """One line with point markers per series, over the categories."""
  ax = _Axes(categories, series, title, xlabel, ylabel, ymax, log, size)
  for k, (_, values) in enumerate(series):
    points = []
    for i, v in enumerate(values):
      a, b = ax.slot(i)
      points.append(None if _isnan(v) else ((a + b) / 2, ax.y(v)))
    for p, q in zip(points, points[1:]):
      if p and q:
        ax.draw.line([p, q], fill=color(k), width=2)
    for p in points:
      if p:
        ax.draw.ellipse([p[0] - 3, p[1] - 3, p[0] + 3, p[1] + 3],
                        fill=color(k))
  return ax.image


def stack(images: Sequence[Image.Image]) -> Image.Image:
  """Images one below the other on a white background."""
  width = max(i.width for i in images)
  out = Image.new('RGB', (width, sum(i.height for i in images)), 'white')
  y = 0
  for image in images:
    out.paste(image, (0, y))
    y += image.height
  return out
