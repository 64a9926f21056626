"""Checks the project's functions against reference-format fixture files.

Usage (from the repository root):

  python scripts/check_parity.py ../shared/fixtures/crest-reference
  python scripts/check_parity.py DIR pseudo_targets.npz lr_schedule.npz

For each named file (default: all four reference files) it parses the case
names, runs the project's own functions on every case's inputs and compares
with the stored outputs. It prints one line per file (`cases passed / total`
and the worst error), then the failing cases, and exits 0 only if every case
of every file passes; 1 if any case fails or a file is missing/unreadable;
2 for a bad command line.

Files and what is compared (format: the fixture directory's README.md):
- pseudo_targets.npz: `crest.pseudo_labels.pseudo_targets`; target and mask
  within 1e-5 (absolute). One case per `c..._da..._how_t_thr_T` name.
- lr_schedule.npz: `crest.schedules.learning_rate` at every stored step;
  1e-6 relative. One case per schedule key.
- splits_and_selection.npz: `data.splits.labeled_split` (labeled and
  unlabeled positions) and `crest.selection.select_pseudo_labels` +
  `next_labeled_set` (picked_per_class, new_train_positions/labels); exact.
  One case per `K_g_n_p_a_fold` name. gt_p_data is
  `data.splits.long_tail_prior(1/gamma, K)`; update mode 'distribution'.
- augment_ops.npz: `augment.parity.check_file`; byte-exact. One case per
  image per op key.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pathlib
import re
import sys
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

_ROOT = pathlib.Path(__file__).resolve().parents[1]

DEFAULT_FILES = ('pseudo_targets.npz', 'lr_schedule.npz',
                 'splits_and_selection.npz', 'augment_ops.npz')

PSEUDO_TOL = 1e-5
LR_RTOL = 1e-6

_PSEUDO_CASE = re.compile(
    r'(?P<id>.+?)_da(?P<da>[01])_(?P<how>None|constant|adaptive)'
    r'_t(?P<t>[^_]+)_thr(?P<thr>[^_]+)_T(?P<temp>[^_]+)')
_PSEUDO_FIELDS = ('logits', 'gt_p_data', 'p_model', 'p_data', 'target',
                  'mask')
_SPLIT_CASE = re.compile(
    r'K(?P<k>\d+)_g(?P<gamma>[^_]+)_n(?P<n>\d+)_p(?P<p>[^_]+)'
    r'_a(?P<alpha>[^_]+)_fold(?P<fold>\d+)')
_SPLIT_FIELDS = ('y_train', 'labeled_positions', 'unlabeled_positions',
                 'unlabeled_scores', 'picked_per_class', 'new_train_positions',
                 'new_train_labels')
# The original's schedule names / keyword names -> ours.
_LR_MODES = {'constant': 'const', 'const': 'const', 'cosine': 'cos',
             'cos': 'cos', 'halfcos': 'halfcos', 'linear': 'linear',
             'step': 'step'}
_LR_ARGS = {'level': 'sched_level', 'min_rate': 'sched_min_rate',
            'gamma': 'sched_gamma', 'step_size': 'sched_step_size'}


@dataclasses.dataclass
class FileResult:
  """Outcome of one fixture file.

  Attributes:
    name: file name.
    passed: cases that passed.
    total: cases found (0 when the file could not be checked).
    worst_error: the largest error over all cases (abs, or relative for the
      schedules), nan when nothing was compared.
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


def _cases(files: Sequence[str]) -> List[str]:
  """Case names of `{case}__{field}` keys, in first-seen order."""
  names: Dict[str, None] = {}
  for key in files:
    if '__' in key:
      names.setdefault(key.rsplit('__', 1)[0], None)
  return list(names)


def _missing_fields(files: Sequence[str], case: str,
                    fields: Sequence[str]) -> List[str]:
  present = set(files)
  return [f for f in fields if f'{case}__{f}' not in present]


def _abs_error(ours: np.ndarray, ref: np.ndarray) -> float:
  """Max |ours - ref|; inf on a shape mismatch."""
  ours, ref = np.asarray(ours), np.asarray(ref)
  if ours.shape != ref.shape:
    return float('inf')
  if ours.size == 0:
    return 0.0
  return float(np.max(np.abs(ours.astype(np.float64) - ref.astype(np.float64))))


def check_pseudo_targets(path: pathlib.Path) -> FileResult:
  """Checks a pseudo_targets-format file (target and mask within 1e-5)."""
  from crest.pseudo_labels import pseudo_targets  # pylint: disable=g-import-not-at-top
  result = FileResult(path.name)
  with np.load(path) as data:
    files = data.files
    for case in _cases(files):
      match = _PSEUDO_CASE.fullmatch(case)
      if match is None:
        result.add(case, float('nan'), False,
                   'case name does not match c{i}_da{0|1}_{None|constant|'
                   'adaptive}_t{t}_thr{thr}_T{temp}')
        continue
      missing = _missing_fields(files, case, _PSEUDO_FIELDS)
      if missing:
        result.add(case, float('nan'), False, f'missing fields {missing}')
        continue
      how = match['how']
      target, mask, _ = pseudo_targets(
          data[f'{case}__logits'], p_model=data[f'{case}__p_model'],
          p_data=data[f'{case}__p_data'], gt_p_data=data[f'{case}__gt_p_data'],
          do_distalign=match['da'] == '1',
          how_dalign=None if how == 'None' else how,
          dalign_t=float(match['t']), threshold=float(match['thr']),
          temperature=float(match['temp']))
      err_t = _abs_error(target.numpy(), data[f'{case}__target'])
      err_m = _abs_error(mask.numpy(), data[f'{case}__mask'])
      err = max(err_t, err_m)
      result.add(case, err, err <= PSEUDO_TOL,
                 f'target error {err_t:.3g}, mask error {err_m:.3g} '
                 f'(tolerance {PSEUDO_TOL:g})')
  return result


def check_lr_schedule(path: pathlib.Path, base_lr: float = 0.03,
                      num_epoch: int = 64, num_batch: int = 1024
                      ) -> FileResult:
  """Checks an lr_schedule-format file (1e-6 relative at every step)."""
  from crest.schedules import learning_rate  # pylint: disable=g-import-not-at-top
  result = FileResult(path.name, error_kind='rel')
  with np.load(path) as data:
    if 'steps' not in data.files:
      result.failures.append('no `steps` array: not an lr_schedule file')
      return result
    steps = data['steps']
    for key in data.files:
      if key == 'steps':
        continue
      mode, _, args = key.partition('_')
      try:
        kwargs = {_LR_ARGS[a]: v for a, v in json.loads(args or '{}').items()}
        sched_type = _LR_MODES[mode]
      except (KeyError, ValueError) as e:
        result.add(key, float('nan'), False,
                   f'cannot map key to a schedule ({type(e).__name__}: {e}); '
                   f'modes {sorted(_LR_MODES)}, arguments {sorted(_LR_ARGS)}')
        continue
      ref = np.asarray(data[key], np.float64)
      ours = np.array([float(learning_rate(
          int(s), base_lr=base_lr, num_epoch=num_epoch, num_batch=num_batch,
          sched_type=sched_type, **kwargs)) for s in steps])
      if ours.shape != ref.shape:
        result.add(key, float('inf'), False,
                   f'{ref.shape} values for {steps.shape} steps')
        continue
      diff = np.abs(ours - ref)
      rel = np.where(ref != 0, diff / np.maximum(np.abs(ref), 1e-300),
                     np.where(diff == 0, 0.0, np.inf))
      err = float(rel.max(initial=0.0))
      worst = int(np.argmax(rel)) if rel.size else 0
      result.add(key, err, err <= LR_RTOL,
                 f'relative error {err:.3g} at step {int(steps[worst])} '
                 f'(ours {ours[worst]:.9g}, reference {ref[worst]:.9g})')
  return result


def check_splits_and_selection(path: pathlib.Path,
                               update_mode: str = 'distribution'
                               ) -> FileResult:
  """Checks a splits_and_selection-format file (everything exact)."""
  from crest.selection import next_labeled_set, select_pseudo_labels  # pylint: disable=g-import-not-at-top
  from data.splits import labeled_split, long_tail_prior  # pylint: disable=g-import-not-at-top
  result = FileResult(path.name)
  with np.load(path) as data:
    files = data.files
    for case in _cases(files):
      match = _SPLIT_CASE.fullmatch(case)
      if match is None:
        result.add(case, float('nan'), False, 'case name does not match '
                   'K{classes}_g{gamma}_n{N1}_p{percent}_a{alpha}_fold{fold}')
        continue
      missing = _missing_fields(files, case, _SPLIT_FIELDS)
      if missing:
        result.add(case, float('nan'), False, f'missing fields {missing}')
        continue
      k = int(match['k'])
      y = data[f'{case}__y_train']
      lab, unl = labeled_split(y, int(match['fold']), float(match['p']), k)
      gt = long_tail_prior(1.0 / float(match['gamma']), k)
      ref_lab = data[f'{case}__labeled_positions']
      ref_unl = data[f'{case}__unlabeled_positions']
      # Selection runs on the reference's unlabeled order (the scores' rows),
      # so a split mismatch does not hide a selection mismatch.
      rows, labels, picked, _ = select_pseudo_labels(
          data[f'{case}__unlabeled_scores'], gt, float(match['alpha']),
          update_mode)
      pos, lbl = next_labeled_set(ref_unl, rows, labels, ref_lab, y[ref_lab])
      errors = {
          'labeled_positions': _abs_error(lab, ref_lab),
          'unlabeled_positions': _abs_error(unl, ref_unl),
          'picked_per_class': _abs_error(picked,
                                         data[f'{case}__picked_per_class']),
          'new_train_positions': _abs_error(
              pos, data[f'{case}__new_train_positions']),
          'new_train_labels': _abs_error(lbl, data[f'{case}__new_train_labels']),
      }
      bad = {f: e for f, e in errors.items() if e != 0}
      result.add(case, max(errors.values()), not bad,
                 'differs in ' + ', '.join(f'{f} (max abs diff {e:g})'
                                           for f, e in bad.items()))
  return result


def check_augment_ops(path: pathlib.Path) -> FileResult:
  """Checks an augment_ops-format file through `augment.parity.check_file`."""
  result = FileResult(path.name)
  try:
    from augment import parity  # pylint: disable=g-import-not-at-top
    check_file = parity.check_file
  except (ImportError, AttributeError) as e:
    result.failures.append(f'augment.parity not available ({e})')
    return result
  for key, passed, total, worst in check_file(path):
    result.total += total
    result.passed += passed
    result.worst_error = (float(worst) if math.isnan(result.worst_error)
                          else max(result.worst_error, float(worst)))
    if passed != total:
      result.failures.append(f'{key}: {total - passed}/{total} images differ '
                             f'(max abs diff {worst})')
  return result


CHECKERS: Dict[str, Callable[[pathlib.Path], FileResult]] = {
    'pseudo_targets.npz': check_pseudo_targets,
    'lr_schedule.npz': check_lr_schedule,
    'splits_and_selection.npz': check_splits_and_selection,
    'augment_ops.npz': check_augment_ops,
}


def check_file(directory: pathlib.Path, name: str) -> FileResult:
  """Checks one named file of `directory`; never raises for bad files."""
  if not name.endswith('.npz'):
    name += '.npz'
  result = FileResult(name)
  checker = CHECKERS.get(name)
  if checker is None:
    result.failures.append(f'unknown fixture file; known: '
                           f'{", ".join(CHECKERS)}')
    return result
  path = directory / name
  if not path.is_file():
    result.failures.append(f'missing: {path} does not exist')
    return result
  try:
    result = checker(path)
  except Exception as e:  # pylint: disable=broad-except
    result.failures.append(f'could not be checked: {type(e).__name__}: {e}')
    return result
  if result.total == 0 and not result.failures:
    result.failures.append('no cases found: not a file of this format?')
  return result


def format_result(result: FileResult, max_failures: int = 10) -> str:
  """One summary line, then up to `max_failures` failure lines."""
  status = 'OK' if result.ok else 'FAIL'
  err = ('n/a' if math.isnan(result.worst_error)
         else f'{result.worst_error:.3g} ({result.error_kind})')
  lines = [f'{status:4s} {result.name}: {result.passed} / {result.total} '
           f'cases passed, worst error {err}']
  for failure in result.failures[:max_failures]:
    lines.append(f'       - {failure}')
  if len(result.failures) > max_failures:
    lines.append(f'       ... and {len(result.failures) - max_failures} more')
  return '\n'.join(lines)


def run(directory, names: Optional[Sequence[str]] = None) -> List[FileResult]:
  """Checks `names` (default: all four reference files) in `directory`."""
  directory = pathlib.Path(directory)
  return [check_file(directory, n) for n in (names or DEFAULT_FILES)]


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Command line entry point; returns the exit code."""
  parser = argparse.ArgumentParser(
      description='Compare the project with reference-format fixture files.')
  parser.add_argument('directory', help='directory holding the .npz files')
  parser.add_argument('names', nargs='*',
                      help=f'files to check (default: {" ".join(DEFAULT_FILES)})')
  args = parser.parse_args(argv)
  directory = pathlib.Path(args.directory)
  if not directory.is_dir():
    print(f'check_parity: {directory} is not a directory.', file=sys.stderr)
    return 2
  results = run(directory, args.names)
  for result in results:
    print(format_result(result), flush=True)
  failed = [r.name for r in results if not r.ok]
  if failed:
    print(f'PARITY FAILED: {", ".join(failed)}')
    return 1
  print(f'PARITY OK: {len(results)} file(s), '
        f'{sum(r.total for r in results)} cases')
  return 0


if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))
  sys.exit(main())
