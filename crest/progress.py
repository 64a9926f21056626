"""A minimal progress bar for long loops (stderr; quiet when not a TTY)."""
from __future__ import annotations

import sys
import time
from typing import Optional


class Progress:
  """`with Progress(total, 'epoch 3/64') as p: p.update(n)`.

  On a terminal it redraws one line; otherwise it stays silent (the caller
  logs a summary at the end).
  """

  def __init__(self, total: int, desc: str = '', enabled: bool = True,
               stream=None):
    self.total = max(1, total)
    self.desc = desc
    self.stream = stream or sys.stderr
    self.enabled = enabled and hasattr(self.stream, 'isatty') and (
        self.stream.isatty())
    self.count = 0
    self.start = time.time()
    self._last_draw = 0.0

  def __enter__(self) -> 'Progress':
    self.start = time.time()
    return self

  def __exit__(self, *exc) -> None:
    if self.enabled:
      self._draw(force=True)
      self.stream.write('\n')
      self.stream.flush()

  @property
  def rate(self) -> float:
    elapsed = time.time() - self.start
    return self.count / elapsed if elapsed > 0 else 0.0

  def update(self, n: int = 1, extra: Optional[str] = None) -> None:
    self.count += n
    if self.enabled:
      self._draw(extra=extra)

  def _draw(self, force: bool = False, extra: Optional[str] = None) -> None:
    now = time.time()
    if not force and now - self._last_draw < 0.2:
      return
    self._last_draw = now
    frac = min(1.0, self.count / self.total)
    width = 30
    filled = int(frac * width)
    bar = '=' * filled + ('>' if filled < width else '') + ' ' * (
        width - filled - 1)
    rate = self.rate
    eta = (self.total - self.count) / rate if rate > 0 else 0.0
    line = (f'\r{self.desc} [{bar}] {self.count}/{self.total} '
            f'{rate:.2f} steps/s eta {eta:.0f}s')
    if extra:
      line += ' ' + extra
    self.stream.write(line)
    self.stream.flush()
