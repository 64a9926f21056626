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

from crest import record_checks
from crest import records as records_lib
from crest import reported
from crest import run_dir as run_dir_lib
from data import registry as data_registry


@dataclasses.dataclass
class Run:
  """One run directory: its config and its finished generations' records
  (`damaged`: generation -> what is wrong with its record, for the records
  that `crest.record_checks.read_record` refuses; those are left out of
  `records`)."""
  path: str
  config: Dict[str, Any]
  records: Dict[int, Dict[str, Any]]
  damaged: Dict[int, str] = dataclasses.field(default_factory=dict)
  # Training images per class from data.json (None: not recorded).
  train_per_class: Optional[List[int]] = None

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
  """Reads `path/config.json` and every `gen_*/generation.json`, checked
  (`crest.record_checks.read_record` with the keys the scripts use).

  Raises:
    OSError, ValueError: config.json is unreadable or not a JSON object.
  """
  config = run_dir_lib.read_config(path)
  if not isinstance(config, dict):
    raise ValueError(f'{os.path.join(path, run_dir_lib.CONFIG_FILE)} is not '
                     'a JSON object')
  found, damaged = {}, {}
  for name in sorted(os.listdir(path)):
    generation = run_dir_lib.parse_generation_dir(name)
    if generation is None:
      continue
    try:
      record = record_checks.read_record(os.path.join(path, name),
                                         required=record_checks.SCRIPT_KEYS)
    except record_checks.DamagedRecord as e:
      damaged[generation] = str(e)
      continue
    if record is not None:
      found[generation] = record
  return Run(path=path, config=config, records=found, damaged=damaged,
             train_per_class=_train_per_class(path))


def _train_per_class(path: str) -> Optional[List[int]]:
  """data.json's `train_per_class` (None if absent or unreadable)."""
  try:
    recorded = records_lib.read_json(
        os.path.join(path, run_dir_lib.DATA_FILE))
  except (OSError, ValueError):
    return None
  counts = recorded.get('train_per_class') if isinstance(
      recorded, dict) else None
  if not isinstance(counts, list) or not all(
      isinstance(c, int) and c >= 0 for c in counts):
    return None
  return counts


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


AS_IS = 'as is'


def uses_class_im_ratio(cfg: Dict[str, Any]) -> bool:
  """Whether the run's --class_im_ratio means anything (False for data used
  as is: own `npz`, ImageNet-127); an unknown dataset reads as True."""
  return data_registry.uses_class_im_ratio(cfg.get('dataset', ''))


def data_gamma(run: Run) -> Optional[float]:
  """The imbalance of a run's data: `gamma(cfg)` where the flag sets it,
  else N_max / N_min measured on its training set (data.json), None when
  that was not recorded."""
  if uses_class_im_ratio(run.config):
    return gamma(run.config)
  if run.train_per_class is None:
    return None
  return data_registry.measured_gamma(run.train_per_class)


def imbalance_text(run: Run) -> str:
  """'gamma=100', 'balanced', or for data used as is 'as is' with the
  measured 'N_max/N_min=12.3' when recorded."""
  if uses_class_im_ratio(run.config):
    return format_gamma(gamma(run.config))
  return format_as_is(data_gamma(run))


def format_as_is(g: Optional[float]) -> str:
  return AS_IS if g is None else f'{AS_IS} (N_max/N_min={g:.3g})'


def format_gamma(g: Optional[float]) -> str:
  if g is None:
    return 'balanced'
  if abs(g - round(g)) < 1e-6 * max(1.0, g):
    return f'gamma={int(round(g))}'
  return f'gamma={g:.4g}'


def rarest_classes(run: Run, num_classes: int) -> List[int]:
  """The rarest third of the classes (K // 3, at least 1), rarest first, by
  generation 0's labeled set (`crest.reported.rarest_classes`)."""
  return reported.rarest_classes(
      run.records.get(0, {}).get('labeled_per_class'), num_classes)


def minority_recall(run: Run, record: Dict[str, Any]) -> float:
  """Mean test recall of the rarest third of the classes."""
  recall = record['test_per_class_recall']
  return float(np.mean([recall[c] for c in rarest_classes(run, len(recall))]))


def balanced_accuracy(record: Dict[str, Any]) -> float:
  """Mean per-class test recall of the final EMA model."""
  if record.get('test_balanced_accuracy') is not None:
    return float(record['test_balanced_accuracy'])
  return float(np.mean(record['test_per_class_recall']))


FINAL_VALUES = {
    'test_accuracy': lambda run, rec: float(rec['test_accuracy']),
    'minority_recall': minority_recall,
    'balanced_accuracy': lambda run, rec: balanced_accuracy(rec),
    'la_accuracy': lambda run, rec: la_accuracy(rec),
}


def la_accuracy(record: Dict[str, Any]) -> Optional[float]:
  """The EMA model's logit-adjusted test accuracy (logits - log p_data) of
  the generation's last evaluation; None if the record lacks it."""
  history = record.get('history')
  v = history.get(reported.LA_ACCURACY_KEY) if isinstance(
      history, dict) else None
  return None if v is None else float(v)


def _generation_dir(run: Run, generation: int) -> Optional[str]:
  for name in sorted(os.listdir(run.path)):
    if run_dir_lib.parse_generation_dir(name) == generation:
      return os.path.join(run.path, name)
  return None


_FROM_HISTORY: Dict[Tuple[str, int], Dict[str, Any]] = {}


def statistics(run: Run, record: Dict[str, Any]) -> Dict[str, Any]:
  """The record's `statistics` (`crest.reported.epoch_statistics`); for a
  record written before they existed, computed from the generation's
  `stats/history.json`; {} when neither is there."""
  if record.get('statistics'):
    return record['statistics']
  if 'generation' not in record:
    return {}
  key = (run.path, int(record['generation']))
  if key not in _FROM_HISTORY:
    out = {}
    gen_dir = _generation_dir(run, key[1])
    path = gen_dir and os.path.join(gen_dir, 'stats', 'history.json')
    if path and os.path.isfile(path):
      try:
        history = records_lib.read_json(path)
      except (OSError, ValueError):
        history = {}
      k = len(record.get('test_per_class_recall') or [])
      out = reported.epoch_statistics(history, rarest_classes(run, k))
    _FROM_HISTORY[key] = out
  return _FROM_HISTORY[key]


def value(run: Run, record: Dict[str, Any], metric: str,
          stat: str = reported.DEFAULT_STATISTIC) -> Optional[float]:
  """One number of a generation, as a fraction: `metric` (test_accuracy,
  minority_recall, balanced_accuracy, la_accuracy) under statistic `stat`
  (`crest.reported.STATISTICS`). 'final' is the final evaluation's value;
  the others come from the epoch history; None when the run did not record
  it."""
  reported.check_statistic(stat)
  if stat == 'final':
    return FINAL_VALUES[metric](run, record)
  entry = statistics(run, record).get(metric)
  return None if entry is None else float(entry[stat])


def test_set(record: Dict[str, Any]) -> Optional[str]:
  """'balanced' / 'imbalanced' (the record's `test_set`), or None for a
  record that does not say."""
  return record.get('test_set')


def unlabeled_distribution(cfg: Dict[str, Any]) -> Optional[str]:
  """The name of a run's unlabeled class distribution ('consistent',
  'uniform', 'reversed', ...; `data.registry.unlabeled_distribution`), or
  None where the dataset has no such setting."""
  try:
    return data_registry.unlabeled_distribution(
        cfg.get('dataset', ''), float(cfg.get('class_im_ratio', 0.1)),
        cfg.get('darp_gamma_u'), cfg.get('darp_unlabeled_shape'))
  except ValueError:
    return None
