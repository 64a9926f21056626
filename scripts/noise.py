"""Which differences in a results table are noise.

A cell is marked when its mean differs from the baseline row's (the method
alone, e.g. FixMatch, in the same column) by no more than one pooled
standard deviation of the two cells' runs: such a difference is inside the
spread between folds / seeds and is not a gain or a loss. Cells of one run
(no spread) are not judged.

Pure Python (no NumPy, no TensorFlow).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

MARK = '≈'
LEGEND = (f'{MARK}: the difference to {{baseline}} (same column) is '
          'within one pooled std of the two cells (sqrt((s1^2 + s2^2) / 2)): '
          'noise at this number of runs, not a gain or a loss. Cells of a '
          'single run are not judged; an unmarked difference is not '
          'thereby significant.')


def pooled_std(std_a: float, std_b: float) -> float:
  """sqrt((std_a^2 + std_b^2) / 2), the pooled std of two equal-size
  groups; nan if either is nan."""
  return math.sqrt((std_a ** 2 + std_b ** 2) / 2.0)


def within_noise(mean_a: float, std_a: float, n_a: int, mean_b: float,
                 std_b: float, n_b: int) -> Optional[bool]:
  """Whether |mean_a - mean_b| <= pooled_std(std_a, std_b); None when it
  cannot be judged (a cell of fewer than 2 runs, or no value)."""
  if n_a < 2 or n_b < 2:
    return None
  values = (mean_a, std_a, mean_b, std_b)
  if any(math.isnan(v) for v in values):
    return None
  return abs(mean_a - mean_b) <= pooled_std(std_a, std_b)


def baseline_row(rows: Sequence[str], orders: Sequence[int]
                 ) -> Optional[str]:
  """The first row whose CReST variant order is 0 (the method alone:
  `crest.methods.crest_variant`), None if the table has none."""
  for row, order in zip(rows, orders):
    if order == 0:
      return row
  return None
