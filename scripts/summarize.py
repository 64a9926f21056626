"""Tables of CReST runs: test accuracy mean (std) over folds, as in the paper.

  python3 scripts/summarize.py MODEL_DIR [--per_generation] [--out PREFIX]
      [--folds 5] [--ddof 0] [--merge num_batch,num_epoch] [--plots]
      [--stat final|median10|median20|best]

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
  itself (DARP sets); on the DARP sets also the unlabeled distribution
  (`gamma=100, reversed`) when a table holds more than the consistent one;
- cells: `mean (std)` over runs of the final generation's EMA test accuracy,
  in percent. std is the population std (ddof=0, NumPy's default; `--ddof 1`
  for the sample std). `[n=3]` marks cells with fewer runs than `--folds`
  (default: the most runs of any cell of that table).
- `--stat`: which number of each run (`crest.reported`): `final` (the final
  epoch, the default), `median10` / `median20` (the median of the last 10 /
  20 epochs' evaluations), `best` (the best epoch: optimistic, it selects on
  the test set). Every caption names it; each table says its test set
  (balanced or imbalanced), and with an imbalanced one adds the balanced
  accuracy (mean per-class recall).

A second table gives the minority-class view: the mean test recall of the
rarest third of the classes (K // 3 classes, at least 1), rarest = the fewest
original labeled examples (generation 0's `labeled_per_class`, which follows
the dataset's prior; ties and missing records fall back to the highest class
index, the tail of a long-tailed set with class 0 as its head).

`--per_generation` adds, per gamma, a table with one column per generation.
Unfinished runs are listed, never averaged. `--out PREFIX` writes PREFIX.md
(the same tables) and PREFIX.csv (one row per cell). `--plots` also draws
each run's pictures (see scripts/plots.py).

Needs only NumPy (no TensorFlow): results can be summarised anywhere. The
runs are read by scripts/runs.py, the tables made by scripts/tables.py.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from typing import Optional, Sequence, Tuple

if __package__ in (None, ''):  # Run as `python3 scripts/summarize.py`.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
from crest import reported
from scripts import runs as runs_lib
from scripts import tables
# pylint: enable=g-import-not-at-top,wrong-import-position


def write_outputs(prefix: str, text: str, report: tables.Report
                  ) -> Tuple[str, str]:
  """Writes PREFIX.md and PREFIX.csv; returns their paths."""
  directory = os.path.dirname(os.path.abspath(prefix))
  os.makedirs(directory, exist_ok=True)
  md, csv_path = prefix + '.md', prefix + '.csv'
  with open(md, 'w', encoding='utf-8') as f:
    f.write(text + '\n')
  with open(csv_path, 'w', encoding='utf-8', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=tables.CSV_FIELDS)
    writer.writeheader()
    writer.writerows(report.csv_rows)
  return md, csv_path


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
  parser.add_argument('--stat', default=reported.DEFAULT_STATISTIC,
                      choices=reported.STATISTICS,
                      help='the number of each run: final (the final epoch, '
                      'default), median10 / median20 (median of the last 10 '
                      '/ 20 epochs), best (the best epoch: optimistic, '
                      'selected on the test set)')
  parser.add_argument('--picks', action='store_true',
                      help='also, for runs that picked pseudo-labels, a '
                      'table of the images picked per class and their '
                      'precision per generation (mean over folds)')
  parser.add_argument('--plots', action='store_true',
                      help='also draw each run\'s PNGs into its directory')
  args = parser.parse_args(argv)
  if not os.path.isdir(args.model_dir):
    print(f'error: {args.model_dir} is not a directory', file=sys.stderr)
    return 2
  runs, bad = runs_lib.find_runs(args.model_dir)
  if not runs:
    if not bad:
      print(f'No runs (config.json) under {args.model_dir}.')
    else:
      print(f'No readable runs under {args.model_dir}; unreadable:\n'
            + '\n'.join(f'- {p}: {e}' for p, e in bad))
    return 1
  merge = tuple(k for k in args.merge.split(',') if k)
  report = tables.build_report(runs, args.per_generation, args.folds,
                               args.ddof, merge, args.stat)
  parts = [f'# Results under {args.model_dir}',
           f'{sum(r.finished for r in runs)} finished run(s) of {len(runs)}; '
           f'std over folds with ddof={args.ddof}; '
           f'{reported.caption(args.stat)}.'] + report.markdown
  if args.picks:
    from scripts import picks  # pylint: disable=g-import-not-at-top
    for table in tables.build_tables(runs, merge):
      parts += picks.picks_markdown(table)
  unfinished = tables.unfinished_text(runs, args.model_dir)
  if unfinished:
    parts.append(unfinished)
  if bad:
    parts.append('Unreadable runs:\n\n' + '\n'.join(
        f'- {p}: {e}' for p, e in bad))
  damaged = [f'- {os.path.relpath(r.path, args.model_dir)}, generation {g}: '
             f'{e}' for r in runs for g, e in sorted(r.damaged.items())]
  if damaged:
    parts.append('Damaged records (left out of the tables; re-running the '
                 'run\'s command redoes those generations):\n\n'
                 + '\n'.join(damaged))
  text = '\n\n'.join(parts)
  print(text)
  if args.out:
    md, csv_path = write_outputs(args.out, text, report)
    print(f'\nWrote {md} and {csv_path}.')
  if args.plots:
    from scripts import plots  # pylint: disable=g-import-not-at-top
    for run in runs:
      for path in plots.plot_run(run.path):
        print(f'Wrote {path}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
