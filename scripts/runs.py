"""Reading finished CReST runs back: run directories, gamma, minority classes.

`find_runs(root)` finds every run (a directory holding `config.json`) under
`root`; `load_run(path)` reads its config and its finished generations'
records (the layout is `crest.run_dir`'s). Used by `scripts/summarize.py`
(tables) and `scripts/plots.py` (pictures).

Needs only NumPy (no TensorFlow): results can be read anywhere.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from crest import run_dir as run_dir_lib
from data import registry as data_registry


@dataclasses.dataclass
class Run:
  """One run directory: its config and its finished generations' records."""
  path: str
  config: Dict[str, Any]
  records: Dict[int, Dict[str, Any]]

  @property
  def num_generation(self) -> int:
    return int(self.config.get('num_generation', 1))

  @property
  def finished(self) -> bool:
    return (self.num_generation - 1) in self.records

  @property
  def final(self) -> Dict[str, Any]:
    return self.records[self.num_generation - 1]


def load_run(path: str) -> Run:
  """Reads `path/config.json` and every `gen_*/generation.json`."""
  return Run(path=path, config=run_dir_lib.read_config(path),
             records=run_dir_lib.finished_generations(path))


def find_runs(root: str) -> Tuple[List[Run], List[Tuple[str, str]]]:
  """Every run under `root`, and (path, error) of unreadable ones."""
  runs, bad = [], []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    if run_dir_lib.CONFIG_FILE in filenames:
      dirnames[:] = []  # A run's children are its generations.
      try:
        runs.append(load_run(dirpath))
      except (OSError, ValueError) as e:
        bad.append((dirpath, str(e)))
  return runs, bad


def gamma(cfg: Dict[str, Any]) -> Optional[float]:
  """The imbalance gamma of a run's config dict (`data.registry`'s reading
  of class_im_ratio); None if the dataset is balanced. A dataset the
  registry does not know reads as long-tailed: 1 / class_im_ratio."""
  ratio = float(cfg.get('class_im_ratio', 0.1))
  try:
    return data_registry.imbalance_gamma(cfg.get('dataset', ''), ratio)
  except ValueError:
    return 1.0 / ratio


def format_gamma(g: Optional[float]) -> str:
  if g is None:
    return 'balanced'
  if abs(g - round(g)) < 1e-6 * max(1.0, g):
    return f'gamma={int(round(g))}'
  return f'gamma={g:.4g}'


def rarest_classes(run: Run, num_classes: int) -> List[int]:
  """The rarest third of the classes (K // 3, at least 1), rarest first."""
  counts = run.records.get(0, {}).get('labeled_per_class')
  if not counts or len(counts) != num_classes:
    counts = [0] * num_classes
  order = sorted(range(num_classes), key=lambda c: (counts[c], -c))
  return order[:max(1, num_classes // 3)]


def minority_recall(run: Run, record: Dict[str, Any]) -> float:
  """Mean test recall of the rarest third of the classes."""
  recall = record['test_per_class_recall']
  return float(np.mean([recall[c] for c in rarest_classes(run, len(recall))]))
