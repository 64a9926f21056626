"""Pictures of a CReST run: how the generations rebalance the classes.

  python3 scripts/plots.py RUN_OR_MODEL_DIR [...]

For every run (a directory with `config.json`; directories are searched
recursively), writes into the run directory, from its `gen_*/generation.json`:

- `recall.png`: per-class test recall (%) of the EMA model, one bar (or line,
  for more than 20 classes) per generation: how CReST lifts the tail;
- `pseudo_labels.png`: per generation, the pseudo-labels picked per class for
  the next generation (`picked_per_class`) and their precision
  (`picked_correct_per_class / picked_per_class`, %; no bar without picks);
- `labeled_set.png`: the labeled set each generation trained on, per class
  (`labeled_per_class`: the original labeled set plus the previous
  generation's picks), on a log10(1 + count) axis.

Prints the path of every PNG. Needs only Pillow and NumPy.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

if __package__ in (None, ''):  # Run as `python3 scripts/plots.py`.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
from crest import methods
from scripts import charts
from scripts import runs as runs_lib
# pylint: enable=g-import-not-at-top,wrong-import-position

MAX_BAR_CLASSES = 20


def _gen_name(g: int, record: Dict[str, Any]) -> str:
  t = record.get('alignment_temperature')
  return f'gen {g}' + ('' if t is None else f' (t={t:.2f})')


def _chart(num_classes: int):
  return charts.bar_chart if num_classes <= MAX_BAR_CLASSES else (
      charts.line_chart)


def _precision(picked: Sequence[int], correct: Sequence[int]) -> List[float]:
  return [100.0 * c / p if p else math.nan for p, c in zip(picked, correct)]


def _title(run: runs_lib.Run) -> str:
  cfg = run.config
  _, label = methods.table_label(cfg)
  return (f'{label}, {cfg.get("dataset")} '
          f'{runs_lib.imbalance_text(run)}, '
          f'fold {cfg.get("fold")}')


def plot_run(run_dir: str) -> List[str]:
  """Writes the run's PNGs into `run_dir`; returns their paths (none if no
  generation is finished)."""
  run = runs_lib.load_run(run_dir)
  gens = sorted(run.records)
  if not gens:
    return []
  k = len(run.records[gens[0]]['test_per_class_recall'])
  gens = [g for g in gens  # Records of another K cannot share the charts.
          if len(run.records[g]['test_per_class_recall']) == k]
  records = [run.records[g] for g in gens]
  classes = [str(c) for c in range(k)]
  chart, title = _chart(k), _title(run)
  out = []

  series = [(f'{_gen_name(g, r)}: {100 * r["test_accuracy"]:.1f}%',
             [100.0 * v for v in r['test_per_class_recall']])
            for g, r in zip(gens, records)]
  image = chart(classes, series, ymax=100, xlabel='class (0 = head)',
                ylabel='test recall (%)',
                title=f'Per-class test recall per generation. {title}')
  out.append(_save(image, run_dir, 'recall.png'))

  picked = [(_gen_name(g, r), r['picked_per_class'])
            for g, r in zip(gens, records)]
  precision = [(_gen_name(g, r), _precision(r['picked_per_class'],
                                            r['picked_correct_per_class']))
               for g, r in zip(gens, records)]
  image = charts.stack([
      chart(classes, picked, xlabel='pseudo-label (predicted class)',
            ylabel='pseudo-labels picked',
            title=f'Pseudo-labels picked for the next generation. {title}'),
      chart(classes, precision, ymax=100, xlabel='pseudo-label',
            ylabel='precision (%)',
            title='Precision of the picked pseudo-labels (no bar: none '
                  'picked)')])
  out.append(_save(image, run_dir, 'pseudo_labels.png'))

  labeled = [(_gen_name(g, r), r['labeled_per_class'])
             for g, r in zip(gens, records)]
  image = chart(classes, labeled, log=True, xlabel='class (0 = head)',
                ylabel='labeled examples (log)',
                title=f'Labeled set per generation (original + picks). '
                      f'{title}')
  out.append(_save(image, run_dir, 'labeled_set.png'))
  return out


def _save(image, run_dir: str, name: str) -> str:
  path = os.path.join(run_dir, name)
  image.save(path)
  return path


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__.split('\n')[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('dirs', nargs='+', help='run directories or '
                      'directories holding runs')
  args = parser.parse_args(argv)
  written = 0
  for d in args.dirs:
    runs, bad = runs_lib.find_runs(d)
    for path, error in bad:
      print(f'skipped {path}: {error}', file=sys.stderr)
    for run in runs:
      for g, error in sorted(run.damaged.items()):
        print(f'{run.path}: generation {g} left out, damaged record: '
              f'{error}', file=sys.stderr)
      try:
        paths = plot_run(run.path)
      except (OSError, ValueError) as e:
        print(f'skipped {run.path}: {e}', file=sys.stderr)
        continue
      if not paths:
        print(f'{run.path}: no readable finished generation' +
              (' (see the damaged records above)' if run.damaged else
               ' yet'))
      for p in paths:
        print(f'Wrote {p}')
        written += 1
  if not written:
    print('No pictures written (no finished generation found).')
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
