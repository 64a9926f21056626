"""What every fixture family shares: the per-file result and key helpers.

Fixture keys are `{case}__{field}` (see the fixture directory's README).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Sequence

import numpy as np


@dataclasses.dataclass
class FileResult:
  """Outcome of one fixture file.

  Attributes:
    name: file name.
    passed: cases that passed.
    total: cases found (0 when the file could not be checked).
    worst_error: the largest error over all cases (abs, or relative),
      nan when nothing was compared.
    error_kind: how `worst_error` is measured, for the printed line.
    failures: one message per failing case, or the reason the file failed.
  """
  name: str
  passed: int = 0
  total: int = 0
  worst_error: float = float('nan')
  error_kind: str = 'abs'
  failures: List[str] = dataclasses.field(default_factory=list)

  @property
  def ok(self) -> bool:
    return not self.failures and self.total > 0 and self.passed == self.total

  def add(self, case: str, error: float, ok: bool, detail: str = '') -> None:
    """Records one case."""
    self.total += 1
    self.passed += int(ok)
    if not math.isnan(error):
      self.worst_error = (error if math.isnan(self.worst_error)
                          else max(self.worst_error, error))
    if not ok:
      self.failures.append(f'{case}: {detail or f"error {error:.3g}"}')


def cases(files: Sequence[str]) -> List[str]:
  """Case names of `{case}__{field}` keys, in first-seen order."""
  names: Dict[str, None] = {}
  for key in files:
    if '__' in key:
      names.setdefault(key.split('__', 1)[0], None)
  return list(names)


def missing_fields(files: Sequence[str], case: str,
                   fields: Sequence[str]) -> List[str]:
  """The `fields` that have no `{case}__{field}` key."""
  present = set(files)
  return [f for f in fields if f'{case}__{f}' not in present]


def abs_error(ours: np.ndarray, ref: np.ndarray) -> float:
  """Max |ours - ref|; inf on a shape mismatch."""
  ours, ref = np.asarray(ours), np.asarray(ref)
  if ours.shape != ref.shape:
    return float('inf')
  if ours.size == 0:
    return 0.0
  return float(np.max(np.abs(ours.astype(np.float64) - ref.astype(np.float64))))


def scaled_error(ours: np.ndarray, ref: np.ndarray) -> float:
  """Max |ours - ref| / max |ref| (the network fixtures' "relative to the
  array's largest magnitude"); inf on a shape mismatch."""
  ref = np.asarray(ref)
  err = abs_error(ours, ref)
  scale = float(np.max(np.abs(ref))) if ref.size else 0.0
  return err / scale if scale > 0 else (0.0 if err == 0 else float('inf'))
