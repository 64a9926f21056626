"""The reported number: one rule for which statistic of a generation a table
shows, and the statistics `generation.json` records (NumPy only).

Papers on imbalanced semi-supervised learning report different statistics of
the same training curve (the last epoch, the median of the last 10 or 20
evaluations, the best epoch), which moves the same method by several points.
Every generation therefore records, from its epoch history, for the EMA
model's test accuracy, the minority-class recall and the balanced accuracy:

  final     the last epoch (what the tables show by default)
  median10  the median of the last 10 epochs (all of them if fewer)
  median20  the median of the last 20 epochs (the original's `stats/`
            `last20`, the statistic of the MixMatch and FixMatch papers)
  best      the best epoch, with `best_epoch` (1-based). OPTIMISTIC: it
            selects the epoch on the test set itself.

Minority classes: the rarest third of the classes (K // 3, at least 1) by the
original labeled set's class counts, ties to the higher class index (the
tail of a long-tailed set whose class 0 is the head). Balanced accuracy: the
mean of the per-class recalls, which equals accuracy on a balanced test set.

Needs only NumPy: `scripts/` read these values without TensorFlow.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

STATISTICS = ('final', 'median10', 'median20', 'best')
DEFAULT_STATISTIC = 'final'
# Statistics that select on the test set.
OPTIMISTIC = ('best',)
CAPTIONS = {
    'final': 'the final epoch',
    'median10': 'median of the last 10 epochs',
    'median20': 'median of the last 20 epochs',
    'best': 'the best epoch (optimistic: the epoch is chosen on the test set)',
}
# The per-epoch series the statistics are taken of (keys of the record's
# `statistics`), and the epoch-history entries they are made from.
SERIES = ('test_accuracy', 'minority_recall', 'balanced_accuracy')
ACCURACY_KEY = 'acc.test.ema'
PER_CLASS_KEY = 'per_class_acc.test.ema'
LA_ACCURACY_KEY = 'acc.test.la.ema'  # Logit-adjusted: logits - log p_data.


def rarest_classes(labeled_counts: Optional[Sequence[int]],
                   num_classes: int) -> List[int]:
  """The rarest third of the classes (K // 3, at least 1), rarest first.

  Args:
    labeled_counts: int [K], the original labeled set's count per class
      (None or a wrong length: all equal, so the highest indices).
    num_classes: K.
  """
  counts = list(labeled_counts or [])
  if len(counts) != num_classes:
    counts = [0] * num_classes
  order = sorted(range(num_classes), key=lambda c: (counts[c], -c))
  return order[:max(1, num_classes // 3)]


def test_set_kind(test_labels: np.ndarray, num_classes: int) -> str:
  """'balanced' if every class has as many test examples, else
  'imbalanced'."""
  counts = np.bincount(np.asarray(test_labels, np.int64),
                       minlength=num_classes)
  return 'balanced' if counts.min() == counts.max() else 'imbalanced'


def series_statistics(values: Sequence[float]) -> Dict[str, Any]:
  """The statistics of one per-epoch series.

  Args:
    values: one value per epoch, in epoch order (at least one).

  Returns:
    {'final', 'median10', 'median20', 'best': float, 'best_epoch': int
    (1-based; the first of equal bests)}.
  """
  v = np.asarray(values, np.float64)
  if v.ndim != 1 or not len(v):
    raise ValueError(f'expected a non-empty series, got shape {v.shape}')
  best = int(np.argmax(v))
  return {'final': float(v[-1]), 'median10': float(np.median(v[-10:])),
          'median20': float(np.median(v[-20:])), 'best': float(v[best]),
          'best_epoch': best + 1}


def epoch_statistics(history: Mapping[str, Sequence[Any]],
                     minority: Sequence[int]) -> Dict[str, Any]:
  """The record's `statistics` from a generation's epoch history.

  Args:
    history: the epoch log (`EpochLog.history` or `stats/history.json`):
      `acc.test.ema` float per epoch, `per_class_acc.test.ema` [K] per epoch.
    minority: the minority classes (`rarest_classes`).

  Returns:
    {'epochs': int, 'minority_classes': [...], 'optimistic': ['best'] (the
     statistics that select on the test set), 'test_accuracy': {...},
     'minority_recall': {...}, 'balanced_accuracy': {...}, 'la_accuracy':
     {...} (logit-adjusted accuracy, when the history has it)} (each
    `series_statistics`); {} when the history lacks those entries.
  """
  acc = list(history.get(ACCURACY_KEY) or [])
  per_class = list(history.get(PER_CLASS_KEY) or [])
  if not acc or len(per_class) != len(acc):
    return {}
  recall = np.asarray(per_class, np.float64)
  la = list(history.get(LA_ACCURACY_KEY) or [])
  return {
      'epochs': len(acc),
      'minority_classes': [int(c) for c in minority],
      'optimistic': list(OPTIMISTIC),
      'test_accuracy': series_statistics(acc),
      'minority_recall': series_statistics(
          recall[:, list(minority)].mean(axis=1)),
      'balanced_accuracy': series_statistics(recall.mean(axis=1)),
      **({'la_accuracy': series_statistics(la)} if len(la) == len(acc)
         else {}),
  }


def check_statistic(name: str) -> str:
  """`name` if it is one of STATISTICS, else ValueError naming them."""
  if name not in STATISTICS:
    raise ValueError(f'Unknown statistic {name!r}; choose one of: '
                     f'{", ".join(STATISTICS)}.')
  return name


def caption(name: str) -> str:
  """How a table caption names the statistic, e.g. 'statistic: median of
  the last 20 epochs'."""
  return f'statistic: {CAPTIONS[check_statistic(name)]}'


def record_fields(test_labels: np.ndarray, test_recall: Sequence[float],
                  original_labels: np.ndarray,
                  history: Mapping[str, Sequence[Any]],
                  num_classes: int) -> Dict[str, Any]:
  """What `generation.json` records about the reported number.

  Args:
    test_labels: int [T], the test set's labels.
    test_recall: float [K], the final EMA model's per-class test recall.
    original_labels: int [L], labels of the ORIGINAL labeled set (which
      defines the minority classes).
    history: the generation's epoch history.
    num_classes: K.

  Returns:
    {'test_set': 'balanced' | 'imbalanced', 'test_per_class_count': [K],
     'test_balanced_accuracy': float, 'statistics': `epoch_statistics`}.
  """
  counts = np.bincount(np.asarray(original_labels, np.int64),
                       minlength=num_classes)
  minority = rarest_classes(counts.tolist(), num_classes)
  return {
      'test_set': test_set_kind(test_labels, num_classes),
      'test_per_class_count': np.bincount(
          np.asarray(test_labels, np.int64), minlength=num_classes).tolist(),
      'test_balanced_accuracy': float(np.mean(test_recall)),
      'statistics': epoch_statistics(history, minority),
  }
