"""Labeled / unlabeled split of a long-tailed training set, as the reference."""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np


def long_tail_counts(n_max: int, ratio: float, num_classes: int) -> np.ndarray:
  """Per-class counts `int(n_max * ratio ** (k / (K - 1)))`, class 0 the head.

  Returns: int64 [K].
  """
  if num_classes < 2:
    return np.array([n_max], np.int64)
  return np.array([int(n_max * ratio ** (k / (num_classes - 1)))
                   for k in range(num_classes)], np.int64)


def long_tail_prior(ratio: float, num_classes: int) -> np.ndarray:
  """`ratio ** (k / (K - 1))` normalised: the long-tailed class prior. [K]."""
  if num_classes < 2:
    return np.ones([1])
  p = np.array([ratio ** (k / (num_classes - 1)) for k in range(num_classes)])
  return p / p.sum()


def labeled_split(labels: np.ndarray, fold: int, percent: float,
                  num_classes: int | None = None
                  ) -> Tuple[np.ndarray, np.ndarray]:
  """The reference's fold split of a long-tailed training set.

  A legacy NumPy generator seeded with `fold` shuffles each class's positions
  (file order, classes ascending); the first `ceil(n_c * percent)` of each
  class are labeled.

  Args:
    labels: int [N], labels in the training file's record order.
    fold: the split's seed.
    percent: labeled fraction per class, in (0, 1].
    num_classes: K (default: max label + 1).

  Returns:
    (labeled_positions int64 [L], unlabeled_positions int64 [N - L]), each the
    concatenation of the classes' parts in ascending class order.
  """
  labels = np.asarray(labels)
  k = int(labels.max()) + 1 if num_classes is None else num_classes
  rng = np.random.RandomState(fold)
  labeled, unlabeled = [], []
  for c in range(k):
    idx = list(np.flatnonzero(labels == c))
    rng.shuffle(idx)
    n = int(math.ceil(len(idx) * percent))
    labeled += idx[:n]
    unlabeled += idx[n:]
  return (np.asarray(labeled, np.int64), np.asarray(unlabeled, np.int64))
