"""What CReST's selection did: pseudo-labels picked per class and their
precision, mean over the runs (folds / seeds) of each table row.

`picks_markdown(table)` gives, for every row and column of a results table
whose runs picked pseudo-labels, one Markdown table: a line per class (head
first, as the data number them) with the labeled count of generation 0 and,
per generation that picked, the images picked and the precision of those
picks (correct / picked, %). Needs only NumPy.
"""
from __future__ import annotations

import math
from typing import List

import numpy as np

from scripts import runs as runs_lib
from scripts import tables


def _mean(values: List[float]) -> float:
  values = [v for v in values if not math.isnan(v)]
  return float(np.mean(values)) if values else math.nan


def _fmt(v: float, digits: int = 0) -> str:
  return '-' if math.isnan(v) else f'{v:.{digits}f}'


def run_picks(run: runs_lib.Run, generation: int):
  """(picked [K], precision % [K], nan where nothing was picked) of one
  run's generation, or None if it recorded no picks."""
  record = run.records.get(generation)
  if not record or not sum(record.get('picked_per_class') or []):
    return None
  picked = np.asarray(record['picked_per_class'], np.float64)
  correct = np.asarray(record['picked_correct_per_class'], np.float64)
  with np.errstate(invalid='ignore', divide='ignore'):
    precision = np.where(picked > 0, 100.0 * correct / picked, np.nan)
  return picked, precision


def picks_markdown(table: tables.Table) -> List[str]:
  """One Markdown block per (row, column) of `table` with picks."""
  out = []
  labels = table.labels()
  for row in table.rows():
    for col in table.columns():
      runs = [r for r in table.runs
              if labels[r.path] == row and tables.column_of(r) == col]
      # The last generation trains on the previous one's picks and picks
      # no more (its record repeats the selection it would make).
      per_gen = {g: [p for p in (run_picks(r, g) for r in runs) if p]
                 for g in range(max(r.num_generation for r in runs) - 1)}
      gens = [g for g, picks in per_gen.items() if picks]
      if not gens:
        continue
      k = len(runs[0].records[0]['labeled_per_class'])
      header = ['class', 'labeled'] + [
          f'gen {g} {what}' for g in gens for what in ('picked', 'precision %')]
      body = []
      for c in range(k):
        line = [str(c), _fmt(_mean([r.records[0]['labeled_per_class'][c]
                                    for r in runs]))]
        for g in gens:
          line += [_fmt(_mean([p[0][c] for p in per_gen[g]])),
                   _fmt(_mean([p[1][c] for p in per_gen[g]]), 1)]
        body.append(line)
      n = len(runs)
      out.append(f'Pseudo-labels picked per class, {row}, '
                 f'{table.column_name(col)}, mean over {n} run(s) (precision: '
                 'correct / picked):\n\n' + tables.markdown_table(header, body))
  return out
