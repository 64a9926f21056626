"""Result tables of CReST runs: grouping, mean (std) cells, Markdown and CSV.

`build_report(runs, ...)` groups finished runs (`scripts.runs.Run`) into
tables, one per configuration: rows are methods (`crest.methods.table_label`),
columns settings (gamma, and the unlabeled distribution on the DARP
protocol), cells `mean (std)` over folds / seeds of a metric in percent,
under one statistic (`crest.reported`: final epoch, median of the last 10 /
20 epochs, best epoch), which every caption names.
`scripts/summarize.py` is the command line around it.

Needs only NumPy (no TensorFlow).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from crest import methods
from crest import reported
from crest.config import NON_SEMANTIC_FIELDS
from scripts import noise
from scripts import runs as runs_lib

# Settings that never split a table: the fold/seed are what we average over,
# class_im_ratio and the DARP unlabeled distribution are the column, the rest
# does not change what a run computes (crest.config.NON_SEMANTIC_FIELDS,
# plus paths).
AVERAGED_OVER = ('fold', 'seed')
COLUMN_KEYS = ('class_im_ratio', 'darp_gamma_u', 'darp_unlabeled_shape')
NOT_GROUPED = NON_SEMANTIC_FIELDS | set(AVERAGED_OVER) | set(COLUMN_KEYS) | {
    'ckpt_prefix', 'file_path'}
# Settings that define the row (the method), not the table.
METHOD_KEYS = ('num_generation', 'do_distalign', 'how_dalign', 'dalign_t',
               'alpha', 'update_mode')
# Settings shown on every table's header line, when present.
HEADLINE_KEYS = ('dataset', 'method', 'percent_labeled', 'net_arch',
                 'num_epoch', 'num_batch', 'batch_size', 'unlab_ratio')


def method_settings(cfg: Dict[str, Any]) -> Dict[str, Any]:
  """The method keys that matter for this run (alpha only with CReST, ...)."""
  out = {k: cfg.get(k) for k in ('num_generation', 'do_distalign',
                                 'how_dalign')}
  if cfg.get('do_distalign') and cfg.get('how_dalign'):
    out['dalign_t'] = cfg.get('dalign_t')
  if int(cfg.get('num_generation', 1)) > 1:
    out['alpha'] = cfg.get('alpha')
    out['update_mode'] = cfg.get('update_mode')
  return out


def _hashable(v: Any) -> Any:
  return tuple(v) if isinstance(v, list) else v


def table_key(cfg: Dict[str, Any], merge: Sequence[str] = ()
              ) -> Tuple[Tuple[str, Any], ...]:
  """The settings shared by every run of one table (`merge`: settings
  that may differ between rows instead)."""
  return tuple(sorted((k, _hashable(v)) for k, v in cfg.items()
                      if k not in NOT_GROUPED and k not in METHOD_KEYS
                      and k not in merge))


METRICS = {
    'test_accuracy': 'Test accuracy (%) of the EMA model',
    'balanced_accuracy': ('Balanced test accuracy (%) of the EMA model (mean '
                          'per-class recall; the test set is imbalanced)'),
    'minority_recall': ('Minority classes: mean test recall (%) of the rarest '
                        'third of the classes'),
    'la_accuracy': ('Logit-adjusted test accuracy (%) of the EMA model '
                    '(logits - log p_data)'),
}
# Shown only for tables whose test set is imbalanced (on a balanced test
# set it equals accuracy).
IMBALANCED_ONLY = ('balanced_accuracy',)
# A column: (gamma or None, unlabeled distribution or None).
Column = Tuple[Optional[float], Optional[str]]
UNLABELED_ORDER = ('consistent', 'uniform', 'reversed', 'middle', 'head_tail')


def column_of(run: runs_lib.Run) -> Column:
  """The column of a run: its gamma and, on the DARP protocol, its
  unlabeled distribution; for data used as is (measured gamma or None,
  'as is')."""
  if not runs_lib.uses_class_im_ratio(run.config):
    return runs_lib.data_gamma(run), runs_lib.AS_IS
  return runs_lib.gamma(run.config), runs_lib.unlabeled_distribution(
      run.config)


def column_sort_key(col: Column):
  g, u = col
  rank = (UNLABELED_ORDER.index(u) if u in UNLABELED_ORDER
          else len(UNLABELED_ORDER))
  return (-1.0 if g is None else g, rank, u or '')


@dataclasses.dataclass
class Cell:
  """The runs of one (table, method, gamma) and their values in percent."""
  runs: List[runs_lib.Run]
  values: List[float]
  ddof: int = 0
  missing: int = 0  # Runs that did not record the statistic.

  @property
  def n(self) -> int:
    return len(self.values)

  @property
  def mean(self) -> float:
    return float(np.mean(self.values)) if self.values else math.nan

  @property
  def std(self) -> float:
    if self.n <= self.ddof:
      return math.nan
    return float(np.std(self.values, ddof=self.ddof))

  def text(self, expected: int, baseline: Optional['Cell'] = None) -> str:
    """'66.4 (1.20)', with ' [n=2]' when fewer runs than `expected` and
    the noise mark when within one pooled std of `baseline`."""
    if not self.values:
      return 'n/a' if self.missing else ''
    std = '-' if math.isnan(self.std) or self.n == 1 else f'{self.std:.2f}'
    out = f'{self.mean:.1f} ({std})'
    out += f' [n={self.n}]' if self.n < expected else ''
    if baseline is not None and baseline is not self and noise.within_noise(
        self.mean, self.std, self.n, baseline.mean, baseline.std,
        baseline.n):
      out += ' ' + noise.MARK
    return out


@dataclasses.dataclass
class Table:
  """Finished runs sharing one configuration, by method label and gamma."""
  key: Tuple[Tuple[str, Any], ...]
  runs: List[runs_lib.Run]
  merge: Tuple[str, ...] = ()

  @property
  def settings(self) -> Dict[str, Any]:
    return dict(self.key)

  def labels(self) -> Dict[str, str]:
    """Run path -> row label; a label shared by different method settings
    gets the differing ones appended, e.g. 'CReST (num_generation=3)'."""
    by_label: Dict[str, List[runs_lib.Run]] = {}
    for run in self.runs:
      by_label.setdefault(methods.table_label(run.config)[1], []).append(run)
    out = {}
    for label, runs in by_label.items():
      settings = [dict(method_settings(r.config),
                       **{k: r.config.get(k) for k in self.merge})
                  for r in runs]
      keys = sorted({k for s in settings for k in s})
      differing = [k for k in keys
                   if len({json.dumps(s.get(k)) for s in settings}) > 1]
      for run, s in zip(runs, settings):
        extra = ', '.join(f'{k}={s.get(k)}' for k in differing)
        out[run.path] = f'{label} ({extra})' if extra else label
    return out

  def rows(self) -> List[str]:
    labels = self.labels()
    order = {}
    for run in self.runs:
      order.setdefault(labels[run.path], methods.table_label(run.config)[0])
    return sorted(order, key=lambda l: (order[l], l))

  def baseline(self) -> Optional[str]:
    """The row the noise marks compare with: the first row of the method
    alone (FixMatch, MixMatch), None if there is none."""
    labels, orders = self.labels(), {}
    for run in self.runs:
      orders.setdefault(labels[run.path],
                        methods.crest_variant(run.config)[0])
    rows = self.rows()
    return noise.baseline_row(rows, [orders[r] for r in rows])

  def columns(self) -> List[Column]:
    return sorted({column_of(r) for r in self.runs},
                  key=column_sort_key)

  def column_name(self, col: Column) -> str:
    """'gamma=100', or 'gamma=100, reversed' when the table's columns
    differ in their unlabeled distribution."""
    if col[1] == runs_lib.AS_IS:
      return runs_lib.format_as_is(col[0])
    name = runs_lib.format_gamma(col[0])
    shown = {c[1] for c in self.columns()}
    if col[1] is not None and shown != {'consistent'}:
      name += f', {col[1]}'
    return name

  def test_sets(self) -> List[str]:
    """The test sets of the table's runs ('balanced', 'imbalanced'; runs
    whose records do not say are left out)."""
    return sorted({runs_lib.test_set(r.final) for r in self.runs} - {None})

  def metrics(self) -> List[str]:
    """The metrics shown: balanced accuracy only where a test set is
    imbalanced."""
    imbalanced = 'imbalanced' in self.test_sets()
    has_la = any(runs_lib.la_accuracy(r.final) is not None for r in self.runs)
    return [m for m in METRICS if (imbalanced or m not in IMBALANCED_ONLY)
            and (has_la or m != 'la_accuracy')]

  def cell(self, row: str, col: Column, metric: str,
           generation: Optional[int] = None, ddof: int = 0,
           stat: str = reported.DEFAULT_STATISTIC) -> Cell:
    """Runs of `row` in column `col`; `generation` None = each run's last;
    `stat` the statistic (runs that did not record it are left out)."""
    labels = self.labels()
    runs, values, missing = [], [], 0
    for run in sorted(self.runs, key=lambda r: (r.config.get('fold'),
                                                r.config.get('seed'), r.path)):
      if labels[run.path] != row or column_of(run) != col:
        continue
      record = run.final if generation is None else run.records.get(generation)
      if record is None:
        continue
      value = runs_lib.value(run, record, metric, stat)
      if value is None:
        missing += 1
      else:
        runs.append(run)
        values.append(100.0 * value)
    return Cell(runs=runs, values=values, ddof=ddof, missing=missing)


def build_tables(runs: Sequence[runs_lib.Run], merge: Sequence[str] = ()
                 ) -> List[Table]:
  """Groups finished runs into tables (in order of their settings)."""
  groups: Dict[Tuple, List[runs_lib.Run]] = {}
  for run in runs:
    if run.finished:
      groups.setdefault(table_key(run.config, merge), []).append(run)
  return [Table(key=k, runs=v, merge=tuple(merge))
          for k, v in sorted(groups.items(), key=lambda kv: repr(kv[0]))]


def differing_settings(tables: Sequence[Table]) -> List[str]:
  """Setting names whose values differ between tables."""
  keys = sorted({k for t in tables for k in t.settings})
  return [k for k in keys
          if len({json.dumps(t.settings.get(k)) for t in tables}) > 1]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]
                   ) -> str:
  """A Markdown table padded to aligned columns (readable as plain text)."""
  widths = [max(3, max(len(str(r[i])) for r in [header, *rows]))
            for i in range(len(header))]

  def line(cells):
    return '| ' + ' | '.join(str(c).ljust(w)
                             for c, w in zip(cells, widths)) + ' |'
  return '\n'.join([line(header), line(['-' * w for w in widths]),
                    *[line(r) for r in rows]])


@dataclasses.dataclass
class Report:
  """The Markdown text and the CSV rows of every table."""
  markdown: List[str] = dataclasses.field(default_factory=list)
  csv_rows: List[Dict[str, Any]] = dataclasses.field(default_factory=list)


CSV_FIELDS = ('table', 'metric', 'statistic', 'generation', 'method',
              'dataset', 'gamma', 'unlabeled', 'test_set', 'n', 'mean', 'std',
              'values', 'folds', 'settings')


def _add_csv(report: Report, index: int, table: Table, metric: str,
             generation: Any, row: str, col: Column, cell: Cell,
             settings: str, stat: str) -> None:
  if not cell.values:
    return
  g, unlabeled = col
  report.csv_rows.append({
      'table': index, 'metric': metric, 'statistic': stat,
      'generation': generation,
      'method': row, 'dataset': table.settings.get('dataset'),
      'gamma': '' if g is None else f'{g:g}', 'unlabeled': unlabeled or '',
      'test_set': '/'.join(table.test_sets()), 'n': cell.n,
      'mean': f'{cell.mean:.4f}',
      'std': '' if math.isnan(cell.std) else f'{cell.std:.4f}',
      'values': ';'.join(f'{v:.4f}' for v in cell.values),
      'folds': ';'.join(str(r.config.get('fold')) for r in cell.runs),
      'settings': settings})


def table_header(index: int, table: Table, differing: Sequence[str],
                 stat: str = reported.DEFAULT_STATISTIC) -> str:
  s = table.settings
  shown = [f'{k}={s[k]}' for k in HEADLINE_KEYS if k in s]
  test_sets = table.test_sets()
  lines = [f'## Table {index}: {s.get("method")} on {s.get("dataset")}',
           '', 'Settings: ' + ', '.join(shown) + '.',
           f'Test set: {" / ".join(test_sets) if test_sets else "not recorded"}'
           '.']
  if table.merge:
    labels = table.labels()
    per_row = {}
    for run in table.runs:
      per_row.setdefault(labels[run.path], set()).add(', '.join(
          f'{k}={run.config.get(k)}' for k in table.merge))
    lines.append('Per method: ' + '; '.join(
        f'{r}: {" / ".join(sorted(v))}' for r, v in per_row.items()) + '.')
  if differing:
    lines.append('Differs from the other tables: ' + ', '.join(
        f'{k}={s.get(k)}' for k in differing) + '.')
  return '\n'.join(lines)


def _noise_note(base: Optional[str], body, final: bool = False) -> str:
  """The legend of the noise mark, when a cell carries it."""
  if base is None or not any(noise.MARK in c for r in body for c in r[1:]):
    return ''
  which = (f"{base}'s final generation" if final else
           f'the {base} row')
  return '\n\n' + noise.LEGEND.format(baseline=which)


def _missing_note(cells) -> str:
  missing = sum(c.missing for c in cells)
  return (f'\n\n{missing} run(s) recorded no epoch history for this '
          'statistic (n/a or fewer runs); --stat final reads every record.'
          if missing else '')


def _per_generation(report: Report, index: int, table: Table, settings: str,
                    folds: Optional[int], ddof: int, stat: str) -> None:
  """Per metric and column: a table with one column per generation."""
  rows, num_gen = table.rows(), max(r.num_generation for r in table.runs)
  for metric in table.metrics():
    for col in table.columns():
      cells = {(r, k): table.cell(r, col, metric, generation=k, ddof=ddof,
                                  stat=stat)
               for r in rows for k in range(num_gen)}
      expected = folds or max(c.n + c.missing for c in cells.values())
      base = table.baseline()
      base_cell = base and table.cell(base, col, metric, ddof=ddof, stat=stat)
      body = [[r] + [cells[r, k].text(expected, None if r == base
                                      else base_cell)
                     for k in range(num_gen)]
              for r in rows]
      report.markdown.append(
          f'{METRICS[metric]}, {table.column_name(col)}, per generation, '
          f'{reported.caption(stat)}:\n\n' +
          markdown_table(['method'] + [f'gen {k}' for k in range(num_gen)],
                         body) + _missing_note(cells.values()) +
          _noise_note(base, body, final=True))
      for (r, k), cell in cells.items():
        _add_csv(report, index, table, metric, k, r, col, cell, settings,
                 stat)


def build_report(runs: Sequence[runs_lib.Run],
                 per_generation: bool = False, folds: Optional[int] = None,
                 ddof: int = 0, merge: Sequence[str] = (),
                 stat: str = reported.DEFAULT_STATISTIC) -> Report:
  """Builds every table (final generation, minority view, per generation),
  each cell the statistic `stat` (`crest.reported.STATISTICS`) of a run."""
  reported.check_statistic(stat)
  report = Report()
  tables = build_tables(runs, merge)
  differing = differing_settings(tables)
  for index, table in enumerate(tables, 1):
    rows, columns = table.rows(), table.columns()
    settings = '; '.join(f'{k}={table.settings.get(k)}' for k in differing)
    report.markdown.append(table_header(index, table, differing, stat))
    for metric in table.metrics():
      cells = {(r, c): table.cell(r, c, metric, ddof=ddof, stat=stat)
               for r in rows for c in columns}
      expected = folds or max(c.n + c.missing for c in cells.values())
      base = table.baseline()
      body = [[r] + [cells[r, c].text(expected, base and cells[base, c])
                     for c in columns]
              for r in rows]
      report.markdown.append(
          f'{METRICS[metric]}, final generation, {reported.caption(stat)}, '
          f'mean (std) over folds / seeds:\n\n' +
          markdown_table(['method'] + [table.column_name(c) for c in columns],
                         body) + _missing_note(cells.values()) +
          _noise_note(base, body))
      for (r, c), cell in cells.items():
        _add_csv(report, index, table, metric, 'final', r, c, cell, settings,
                 stat)
    if per_generation:
      _per_generation(report, index, table, settings, folds, ddof, stat)
  return report


def unfinished_text(runs: Sequence[runs_lib.Run], root: str) -> str:
  lines = [f'- {os.path.relpath(r.path, root)}: {len(r.records)} of '
           f'{r.num_generation} generations finished'
           for r in runs if not r.finished]
  if not lines:
    return ''
  return 'Unfinished runs (not averaged):\n\n' + '\n'.join(lines)
