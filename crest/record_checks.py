"""A finished generation's records, checked rather than trusted.

A generation is finished when its `generation.json` exists (the loop writes
it last); `read_generation` also requires every file to be there, readable
and consistent: the record's keys with values of the right kind and length
K, `labeled_set.npz` and `picks.npz` with 1-D integer `positions` and
`labels`, labels in [0, K), positions in [0, N) without repeats, and counts
matching the record (`labeled_per_class`, `picked_per_class`,
`num_labeled + num_pseudo_labeled`). Anything else raises `DamagedRecord`
naming the file and what is wrong. `read_record` checks `generation.json`
alone (what the result scripts read).

Needs only NumPy (no TensorFlow). File names: `crest.run_dir`.
"""
from __future__ import annotations

import json
import math
import numbers
import os
import zipfile
from typing import Any, Dict, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from crest import records
from crest import run_dir as run_dir_lib
from crest.errors import UserError

# generation.json's keys and the kind of value each holds (K = classes).
# Keys not listed here (added by later versions) are not checked.
RECORD_SCHEMA = {
    'generation': 'count',
    'alignment_temperature': 'optional number',
    'num_labeled': 'count',
    'num_pseudo_labeled': 'count',
    'test_accuracy': 'fraction',
    'test_per_class_recall': 'K fractions',
    'test_per_class_precision': 'K fractions',
    'test_confusion_matrix': 'K x K counts',
    'unlabeled_predicted_per_class': 'K counts',
    'unlabeled_accuracy': 'optional fraction',
    'picked_per_class': 'K counts',
    'picked_correct_per_class': 'K counts',
    'labeled_per_class': 'K counts',
    'history': 'object',
}
RECORD_KEYS = tuple(RECORD_SCHEMA)
# What the result scripts (summarize, plots) read from every record.
SCRIPT_KEYS = ('generation', 'test_accuracy', 'test_per_class_recall',
               'labeled_per_class', 'picked_per_class',
               'picked_correct_per_class')

IndexSet = Tuple[np.ndarray, np.ndarray]  # (positions int64, labels int64)


class DamagedRecord(UserError):
  """A finished generation's record files are missing, unreadable or
  inconsistent.

  Attributes:
    path: the damaged file.
    reason: what is wrong with it.
  """

  def __init__(self, path: str, reason: str):
    super().__init__(f'{path}: {reason}')
    self.path = path
    self.reason = reason


class Finished(NamedTuple):
  """A finished generation, checked."""
  record: Dict[str, Any]
  labeled: IndexSet  # What it trained on.
  picks: IndexSet  # Its pseudo-labels for the next generation.


def _count(x) -> bool:
  return (isinstance(x, numbers.Integral) and not isinstance(x, bool)
          and x >= 0)


def _number(x) -> bool:
  return (isinstance(x, numbers.Real) and not isinstance(x, bool)
          and math.isfinite(x))


def _fraction(x) -> bool:
  return _number(x) and 0.0 <= x <= 1.0


def _vector(x, k: int, ok) -> bool:
  return isinstance(x, list) and len(x) == k and all(ok(v) for v in x)


_CHECKS = {
    'count': lambda x, k: _count(x),
    'optional number': lambda x, k: x is None or _number(x),
    'fraction': lambda x, k: _fraction(x),
    'optional fraction': lambda x, k: x is None or _fraction(x),
    'K fractions': lambda x, k: _vector(x, k, _fraction),
    'K counts': lambda x, k: _vector(x, k, _count),
    'K x K counts': lambda x, k: _vector(
        x, k, lambda row: _vector(row, k, _count)),
    'object': lambda x, k: isinstance(x, dict),
}


def _short(x: Any) -> str:
  text = json.dumps(x) if not isinstance(x, float) else repr(x)
  return text if len(text) <= 60 else text[:57] + '...'


def check_record(record: Any, path: str,
                 num_classes: Optional[int] = None,
                 required: Sequence[str] = RECORD_KEYS) -> int:
  """Checks a generation record's keys and values; returns K.

  Args:
    record: the parsed `generation.json`.
    path: its path (for messages).
    num_classes: K, when known (else the length of the per-class recall).
    required: keys that must be present (the others are checked if there).

  Raises:
    DamagedRecord: a missing key or a value of the wrong kind or length.
  """
  if not isinstance(record, dict):
    raise DamagedRecord(path, f'holds {type(record).__name__}, expected a '
                        'JSON object')
  missing = [k for k in required if k not in record]
  if missing:
    raise DamagedRecord(path, f'lacks {", ".join(missing)}')
  k = num_classes
  if k is None:
    recall = record.get('test_per_class_recall')
    k = len(recall) if isinstance(recall, list) else 0
  if k < 1:
    raise DamagedRecord(path, 'test_per_class_recall is not a non-empty '
                        'list')
  for key, kind in RECORD_SCHEMA.items():
    if key in record and not _CHECKS[kind](record[key], k):
      raise DamagedRecord(path, f'{key} is {_short(record[key])}, expected '
                          f'{kind.replace("K", str(k))}')
  picked, correct = (record.get('picked_per_class'),
                     record.get('picked_correct_per_class'))
  if picked is not None and correct is not None and any(
      c > p for p, c in zip(picked, correct)):
    raise DamagedRecord(path, 'picked_correct_per_class exceeds '
                        'picked_per_class')
  return k


def read_record(gen_dir: str, num_classes: Optional[int] = None,
                required: Sequence[str] = RECORD_KEYS
                ) -> Optional[Dict[str, Any]]:
  """The checked `generation.json` of `gen_dir`; None if there is none (the
  generation is not finished).

  Raises:
    DamagedRecord: unreadable, not JSON, or failing `check_record`, or a
      `generation` that is not the directory's.
  """
  path = os.path.join(gen_dir, run_dir_lib.RECORD_FILE)
  if not os.path.exists(path):
    return None
  try:
    record = records.read_json(path)
  except ValueError as e:  # JSONDecodeError, UnicodeDecodeError.
    raise DamagedRecord(path, f'is not valid JSON (empty or truncated?): '
                        f'{e}') from None
  except OSError as e:
    raise DamagedRecord(path, f'cannot be read: {e.strerror or e}') from None
  check_record(record, path, num_classes, required)
  expected = run_dir_lib.parse_generation_dir(os.path.basename(
      os.path.normpath(gen_dir)))
  if expected is not None and record['generation'] != expected:
    raise DamagedRecord(path, f'says generation {record["generation"]}, but '
                        f'its directory is generation {expected}')
  return record


def read_index_set(path: str, num_classes: int,
                   num_train: Optional[int] = None) -> IndexSet:
  """A checked `labeled_set.npz` / `picks.npz`: (positions, labels) int64.

  Raises:
    DamagedRecord: missing, unreadable, arrays of the wrong kind or length,
      labels outside [0, K), positions outside [0, N) or repeated.
  """
  if not os.path.isfile(path):
    raise DamagedRecord(path, 'is missing')
  try:
    with np.load(path, allow_pickle=False) as f:
      missing = [k for k in ('positions', 'labels') if k not in f.files]
      if missing:
        raise DamagedRecord(path, f'lacks {", ".join(missing)} (has '
                            f'{sorted(f.files)})')
      positions, labels = f['positions'], f['labels']
  except DamagedRecord:
    raise
  except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
    raise DamagedRecord(path, f'cannot be read as a .npz ({e})') from None
  for name, a in (('positions', positions), ('labels', labels)):
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
      raise DamagedRecord(path, f'{name} is {a.dtype} {list(a.shape)}, '
                          'expected 1-D integers')
  if len(positions) != len(labels):
    raise DamagedRecord(path, f'has {len(positions)} positions but '
                        f'{len(labels)} labels')
  if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
    bad = labels[(labels < 0) | (labels >= num_classes)][0]
    raise DamagedRecord(path, f'label {int(bad)} is outside [0, '
                        f'{num_classes})')
  high = np.iinfo(np.int64).max if num_train is None else num_train
  bad = positions[(positions < 0) | (positions >= high)]
  if len(bad):
    size = 'N' if num_train is None else num_train
    raise DamagedRecord(path, f'position {int(bad[0])} is outside the '
                        f'training set [0, {size})')
  if len(np.unique(positions)) != len(positions):
    raise DamagedRecord(path, 'repeats positions')
  return positions.astype(np.int64), labels.astype(np.int64)


def _per_class(labels: np.ndarray, k: int) -> list:
  return np.bincount(labels, minlength=k).tolist()


def read_generation(gen_dir: str, num_classes: int,
                    num_train: Optional[int] = None) -> Optional[Finished]:
  """A finished generation with every record checked; None if it is not
  finished (no `generation.json`).

  Raises:
    DamagedRecord: any of its record files is missing, unreadable or
      inconsistent with the others (the message names the file).
  """
  record = read_record(gen_dir, num_classes)
  if record is None:
    return None
  record_path = os.path.join(gen_dir, run_dir_lib.RECORD_FILE)
  lab_path = os.path.join(gen_dir, run_dir_lib.LABELED_SET_FILE)
  picks_path = os.path.join(gen_dir, run_dir_lib.PICKS_FILE)
  labeled = read_index_set(lab_path, num_classes, num_train)
  picks = read_index_set(picks_path, num_classes, num_train)
  size = record['num_labeled'] + record['num_pseudo_labeled']
  if len(labeled[0]) != size:
    raise DamagedRecord(lab_path, f'holds {len(labeled[0])} examples, but '
                        f'{record_path} says num_labeled + '
                        f'num_pseudo_labeled = {size}')
  if _per_class(labeled[1], num_classes) != record['labeled_per_class']:
    raise DamagedRecord(lab_path, 'its labels per class differ from '
                        f'labeled_per_class in {record_path}')
  if _per_class(picks[1], num_classes) != record['picked_per_class']:
    raise DamagedRecord(picks_path, 'its labels per class differ from '
                        f'picked_per_class in {record_path}')
  return Finished(record, labeled, picks)
