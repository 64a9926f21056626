"""Checks the project's functions against reference-format fixture files.

Usage (from the repository root):

  python scripts/check_parity.py ../shared/fixtures/crest-reference
  python scripts/check_parity.py DIR pseudo_targets.npz lr_schedule.npz

For each named file (default: every reference file) it parses the case
names, runs the project's own functions on every case's inputs and compares
with the stored outputs. It prints one line per file (`cases passed / total`
and the worst error), then the failing cases, and exits 0 only if every case
of every file passes; 1 if any case fails or a file is missing/unreadable;
2 for a bad command line.

Each fixture family is one module of `scripts/parity/` (what it compares and
to which tolerance is in its docstring); `CHECKERS` maps file names to them.
"""
from __future__ import annotations

import argparse
import importlib
import math
import os
import pathlib
import sys
from typing import Callable, Dict, List, Optional, Sequence

_ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
  sys.path.insert(0, str(_ROOT))

from scripts.parity.common import FileResult  # pylint: disable=g-import-not-at-top,wrong-import-position

# File name -> the `scripts.parity` module whose `check(path)` handles it.
FAMILIES: Dict[str, str] = {
    'pseudo_targets.npz': 'pseudo_targets',
    'lr_schedule.npz': 'lr_schedule',
    'lr_schedule_per_epoch.npz': 'lr_schedule',
    'splits_and_selection.npz': 'splits',
    'augment_ops.npz': 'augment_ops',
    'network_wrn.npz': 'network',
    'network_resnet.npz': 'network',
}
DEFAULT_FILES = tuple(FAMILIES)


def checker(name: str) -> Callable[[pathlib.Path], FileResult]:
  """The `check(path)` function of the family that handles file `name`."""
  return importlib.import_module(f'scripts.parity.{FAMILIES[name]}').check


def check_file(directory: pathlib.Path, name: str) -> FileResult:
  """Checks one named file of `directory`; never raises for bad files."""
  if not name.endswith('.npz'):
    name += '.npz'
  result = FileResult(name)
  if name not in FAMILIES:
    result.failures.append(f'unknown fixture file; known: '
                           f'{", ".join(FAMILIES)}')
    return result
  path = directory / name
  if not path.is_file():
    result.failures.append(f'missing: {path} does not exist')
    return result
  try:
    result = checker(name)(path)
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
  """Checks `names` (default: every reference file) in `directory`."""
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
  sys.exit(main())
