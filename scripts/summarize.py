"""Tables of CReST runs: test accuracy mean (std) over folds, as in the paper.

  python3 scripts/summarize.py MODEL_DIR [--per_generation] [--out PREFIX]
      [--folds 5] [--ddof 0] [--merge num_batch,num_epoch] [--plots]

Finds every run under MODEL_DIR (a directory holding `config.json`), and groups
finished runs (the last generation has `generation.json`) into tables:

- one table per configuration, runs that differ only in `--fold` / `--seed`
  (and in settings that do not change results, e.g. `--model_dir`) share a
  cell; tables say which settings differ between them; `--merge` names
  settings that may differ between rows of one table instead (e.g. each
  method's step budget);
- rows: the method (FixMatch, CReST, CReST+; MixMatch, MixMatch + CReST,
  MixMatch + CReST+; `+ DA` for alignment without CReST+'s adaptive prior);
- columns: gamma = 1 / class_im_ratio (long-tailed sets) or class_im_ratio
  itself (DARP sets);
- cells: `mean (std)` over runs of the final generation's EMA test accuracy,
  in percent. std is the population std (ddof=0, NumPy's default; `--ddof 1`
  for the sample std). `[n=3]` marks cells with fewer runs than `--folds`
  (default: the most runs of any cell of that table).

A second table gives the minority-class view: the mean test recall of the
rarest third of the classes (K // 3 classes, at least 1), rarest = the fewest
original labeled examples (generation 0's `labeled_per_class`, which follows
the dataset's prior; ties and missing records fall back to the highest class
index, the tail of a long-tailed set with class 0 as its head).

`--per_generation` adds, per gamma, a table with one column per generation.
Unfinished runs are listed, never averaged. `--out PREFIX` writes PREFIX.md
(the same tables) and PREFIX.csv (one row per cell). `--plots` also draws
each run's pictures (see scripts/plots.py).

Needs only NumPy (no TensorFlow): results can be summarised anywhere.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import re
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from crest import methods  # pylint: disable=g-import-not-at-top,wrong-import-position
from crest.config import NON_SEMANTIC_FIELDS  # pylint: disable=g-import-not-at-top,wrong-import-position

import numpy as np

CONFIG_FILE = 'config.json'
RECORD_FILE = 'generation.json'
GEN_DIR_RE = re.compile(r'^gen_(\d+)(_t-?[0-9.]+)?$')

# Settings that never split a table: the fold/seed are what we average over,
# class_im_ratio is the column, the rest does not change what a run computes
# (crest.config.NON_SEMANTIC_FIELDS, plus paths).
AVERAGED_OVER = ('fold', 'seed')
NOT_GROUPED = NON_SEMANTIC_FIELDS | {
    'fold', 'seed', 'class_im_ratio', 'ckpt_prefix', 'file_path'}
# Settings that define the row (the method), not the table.
METHOD_KEYS = ('num_generation', 'do_distalign', 'how_dalign', 'dalign_t',
               'alpha', 'update_mode')
BALANCED_DATASETS = frozenset({'cifar10', 'cifar100'})
# Settings shown on every table's header line, when present.
HEADLINE_KEYS = ('dataset', 'method', 'percent_labeled', 'net_arch',
                 'num_epoch', 'num_batch', 'batch_size', 'unlab_ratio')


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


def _read_json(path: str) -> Any:
  with open(path, encoding='utf-8') as f:
    return json.load(f)


def load_run(path: str) -> Run:
  """Reads `path/config.json` and every `gen_*/generation.json`."""
  config = _read_json(os.path.join(path, CONFIG_FILE))
  records = {}
  for name in sorted(os.listdir(path)):
    m = GEN_DIR_RE.match(name)
    record_path = os.path.join(path, name, RECORD_FILE)
    if m and os.path.isfile(record_path):
      records[int(m.group(1))] = _read_json(record_path)
  return Run(path=path, config=config, records=records)


def find_runs(root: str) -> Tuple[List[Run], List[Tuple[str, str]]]:
  """Every run under `root`, and (path, error) of unreadable ones."""
  runs, bad = [], []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    if CONFIG_FILE in filenames:
      dirnames[:] = []  # A run's children are its generations.
      try:
        runs.append(load_run(dirpath))
      except (OSError, ValueError) as e:
        bad.append((dirpath, str(e)))
  return runs, bad


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


def gamma(cfg: Dict[str, Any]) -> Optional[float]:
  """The imbalance gamma: 1/class_im_ratio, DARP's gamma as is; None if
  the dataset is balanced."""
  dataset = cfg.get('dataset', '')
  if dataset in BALANCED_DATASETS:
    return None
  ratio = float(cfg.get('class_im_ratio', 0.1))
  return ratio if dataset.endswith('darp') else 1.0 / ratio


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


METRICS = {
    'test_accuracy': ('Test accuracy (%) of the EMA model',
                      lambda run, rec: float(rec['test_accuracy'])),
    'minority_recall': ('Minority classes: mean test recall (%) of the rarest '
                        'third of the classes', minority_recall),
}


@dataclasses.dataclass
class Cell:
  """The runs of one (table, method, gamma) and their values in percent."""
  runs: List[Run]
  values: List[float]
  ddof: int = 0

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

  def text(self, expected: int) -> str:
    if not self.values:
      return ''
    std = '-' if math.isnan(self.std) or self.n == 1 else f'{self.std:.2f}'
    out = f'{self.mean:.1f} ({std})'
    return out + (f' [n={self.n}]' if self.n < expected else '')


@dataclasses.dataclass
class Table:
  """Finished runs sharing one configuration, by method label and gamma."""
  key: Tuple[Tuple[str, Any], ...]
  runs: List[Run]
  merge: Tuple[str, ...] = ()

  @property
  def settings(self) -> Dict[str, Any]:
    return dict(self.key)

  def labels(self) -> Dict[str, str]:
    """Run path -> row label; a label shared by different method settings
    gets the differing ones appended, e.g. 'CReST (num_generation=3)'."""
    by_label: Dict[str, List[Run]] = {}
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

  def gammas(self) -> List[Optional[float]]:
    values = {gamma(r.config) for r in self.runs}
    return sorted(values, key=lambda g: -1.0 if g is None else g)

  def cell(self, row: str, g: Optional[float], metric: str,
           generation: Optional[int] = None, ddof: int = 0) -> Cell:
    """Runs of `row` at gamma `g`; `generation` None = each run's last."""
    labels = self.labels()
    fn = METRICS[metric][1]
    runs, values = [], []
    for run in sorted(self.runs, key=lambda r: (r.config.get('fold'),
                                                r.config.get('seed'), r.path)):
      if labels[run.path] != row or gamma(run.config) != g:
        continue
      record = run.final if generation is None else run.records.get(generation)
      if record is not None:
        runs.append(run)
        values.append(100.0 * fn(run, record))
    return Cell(runs=runs, values=values, ddof=ddof)


def build_tables(runs: Sequence[Run], merge: Sequence[str] = ()
                 ) -> List[Table]:
  """Groups finished runs into tables (in order of their settings)."""
  groups: Dict[Tuple, List[Run]] = {}
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


CSV_FIELDS = ('table', 'metric', 'generation', 'method', 'dataset', 'gamma',
              'n', 'mean', 'std', 'values', 'folds', 'settings')


def _add_csv(report: Report, index: int, table: Table, metric: str,
             generation: Any, row: str, g: Optional[float], cell: Cell,
             settings: str) -> None:
  if not cell.values:
    return
  report.csv_rows.append({
      'table': index, 'metric': metric, 'generation': generation,
      'method': row, 'dataset': table.settings.get('dataset'),
      'gamma': '' if g is None else f'{g:g}', 'n': cell.n,
      'mean': f'{cell.mean:.4f}',
      'std': '' if math.isnan(cell.std) else f'{cell.std:.4f}',
      'values': ';'.join(f'{v:.4f}' for v in cell.values),
      'folds': ';'.join(str(r.config.get('fold')) for r in cell.runs),
      'settings': settings})


def table_header(index: int, table: Table, differing: Sequence[str]) -> str:
  s = table.settings
  shown = [f'{k}={s[k]}' for k in HEADLINE_KEYS if k in s]
  lines = [f'## Table {index}: {s.get("method")} on {s.get("dataset")}',
           '', 'Settings: ' + ', '.join(shown) + '.']
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


def _per_generation(report: Report, index: int, table: Table, settings: str,
                    folds: Optional[int], ddof: int) -> None:
  """Per metric and gamma: a table with one column per generation."""
  rows, num_gen = table.rows(), max(r.num_generation for r in table.runs)
  for metric, (title, _) in METRICS.items():
    for g in table.gammas():
      cells = {(r, k): table.cell(r, g, metric, generation=k, ddof=ddof)
               for r in rows for k in range(num_gen)}
      expected = folds or max(c.n for c in cells.values())
      body = [[r] + [cells[r, k].text(expected) for k in range(num_gen)]
              for r in rows]
      report.markdown.append(
          f'{title}, {format_gamma(g)}, per generation:\n\n' +
          markdown_table(['method'] + [f'gen {k}' for k in range(num_gen)],
                         body))
      for (r, k), cell in cells.items():
        _add_csv(report, index, table, metric, k, r, g, cell, settings)


def summarize(runs: Sequence[Run], per_generation: bool = False,
              folds: Optional[int] = None, ddof: int = 0,
              merge: Sequence[str] = ()) -> Report:
  """Builds every table (final generation, minority view, per generation)."""
  report = Report()
  tables = build_tables(runs, merge)
  differing = differing_settings(tables)
  for index, table in enumerate(tables, 1):
    rows, gammas = table.rows(), table.gammas()
    settings = '; '.join(f'{k}={table.settings.get(k)}' for k in differing)
    report.markdown.append(table_header(index, table, differing))
    for metric, (title, _) in METRICS.items():
      cells = {(r, g): table.cell(r, g, metric, ddof=ddof)
               for r in rows for g in gammas}
      expected = folds or max(c.n for c in cells.values())
      body = [[r] + [cells[r, g].text(expected) for g in gammas]
              for r in rows]
      report.markdown.append(
          f'{title}, final generation, mean (std) over folds:\n\n' +
          markdown_table(['method'] + [format_gamma(g) for g in gammas],
                         body))
      for (r, g), cell in cells.items():
        _add_csv(report, index, table, metric, 'final', r, g, cell, settings)
    if per_generation:
      _per_generation(report, index, table, settings, folds, ddof)
  return report


def unfinished_text(runs: Sequence[Run], root: str) -> str:
  lines = [f'- {os.path.relpath(r.path, root)}: {len(r.records)} of '
           f'{r.num_generation} generations finished'
           for r in runs if not r.finished]
  if not lines:
    return ''
  return 'Unfinished runs (not averaged):\n\n' + '\n'.join(lines)


def write_outputs(prefix: str, text: str, report: Report) -> Tuple[str, str]:
  """Writes PREFIX.md and PREFIX.csv; returns their paths."""
  directory = os.path.dirname(os.path.abspath(prefix))
  os.makedirs(directory, exist_ok=True)
  md, csv_path = prefix + '.md', prefix + '.csv'
  with open(md, 'w', encoding='utf-8') as f:
    f.write(text + '\n')
  with open(csv_path, 'w', encoding='utf-8', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
    writer.writeheader()
    writer.writerows(report.csv_rows)
  return md, csv_path


def _import_plots():
  try:
    from scripts import plots  # pylint: disable=g-import-not-at-top
  except ImportError:
    import plots  # pylint: disable=g-import-not-at-top
  return plots


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__.split('\n')[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('model_dir', help='directory holding runs (searched '
                      'recursively for config.json)')
  parser.add_argument('--per_generation', action='store_true',
                      help='also one table per gamma with a column per '
                      'generation')
  parser.add_argument('--out', help='write PREFIX.md and PREFIX.csv')
  parser.add_argument('--folds', type=int, default=None,
                      help='runs expected per cell; fewer are marked [n=..] '
                      '(default: the most runs of any cell of the table)')
  parser.add_argument('--ddof', type=int, default=0,
                      help='std delta degrees of freedom: 0 population '
                      '(default), 1 sample')
  parser.add_argument('--merge', default='',
                      help='comma-separated settings that do not split '
                      'tables (e.g. num_batch,num_epoch when methods get '
                      'different step budgets); rows show them when a '
                      'method has several values, the header lists them')
  parser.add_argument('--plots', action='store_true',
                      help='also draw each run\'s PNGs into its directory')
  args = parser.parse_args(argv)
  if not os.path.isdir(args.model_dir):
    print(f'error: {args.model_dir} is not a directory', file=sys.stderr)
    return 2
  runs, bad = find_runs(args.model_dir)
  if not runs:
    print(f'No runs (config.json) under {args.model_dir}.')
    return 1
  merge = tuple(k for k in args.merge.split(',') if k)
  report = summarize(runs, args.per_generation, args.folds, args.ddof, merge)
  parts = [f'# Results under {args.model_dir}',
           f'{sum(r.finished for r in runs)} finished run(s) of {len(runs)}; '
           f'std over folds with ddof={args.ddof}.'] + report.markdown
  unfinished = unfinished_text(runs, args.model_dir)
  if unfinished:
    parts.append(unfinished)
  if bad:
    parts.append('Unreadable runs:\n\n' + '\n'.join(
        f'- {p}: {e}' for p, e in bad))
  text = '\n\n'.join(parts)
  print(text)
  if args.out:
    md, csv_path = write_outputs(args.out, text, report)
    print(f'\nWrote {md} and {csv_path}.')
  if args.plots:
    plots = _import_plots()
    for run in runs:
      for path in plots.plot_run(run.path):
        print(f'Wrote {path}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
