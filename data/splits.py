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


def count_split(labels: np.ndarray, fold: int, num_per_class: int,
                is_balanced: bool = True, num_classes: int | None = None
                ) -> Tuple[np.ndarray, np.ndarray]:
  """Labeled split of a balanced training set by a count per class.

  A legacy NumPy generator seeded with `fold` drives the choice.
  - `is_balanced=True`: for each class in ascending order, that class's
    positions (file order) are shuffled and the first `num_per_class` are
    labeled (like `labeled_split` with a count instead of a fraction).
  - `is_balanced=False`: all positions are permuted once and the first
    `num_per_class * K` are labeled, whatever their classes.

  Args:
    labels: int [N], labels in the training file's record order.
    fold: the split's seed.
    num_per_class: labeled examples per class (on average when unbalanced).
    is_balanced: see above.
    num_classes: K (default: max label + 1).

  Returns:
    (labeled_positions int64 [L], unlabeled_positions int64 [N - L]); for the
    balanced rule each the concatenation of the classes' parts.

  Raises:
    ValueError: a class (or the set) has fewer examples than requested.
  """
  labels = np.asarray(labels)
  k = int(labels.max()) + 1 if num_classes is None else num_classes
  rng = np.random.RandomState(fold)
  if not is_balanced:
    total = num_per_class * k
    if total > len(labels):
      raise ValueError(f'{total} labeled examples requested but the training '
                       f'set has {len(labels)}')
    perm = rng.permutation(len(labels)).astype(np.int64)
    return perm[:total], perm[total:]
  labeled, unlabeled = [], []
  for c in range(k):
    idx = list(np.flatnonzero(labels == c))
    if len(idx) < num_per_class:
      raise ValueError(f'class {c} has {len(idx)} examples, fewer than the '
                       f'{num_per_class} labeled per class requested')
    rng.shuffle(idx)
    labeled += idx[:num_per_class]
    unlabeled += idx[num_per_class:]
  return (np.asarray(labeled, np.int64), np.asarray(unlabeled, np.int64))


def darp_counts(n1: int, gamma: float, num_classes: int) -> np.ndarray:
  """DARP per-class counts `int(n1 * mu ** k)`, `mu = gamma ** (-1/(K-1))`.

  Returns: int64 [K], class 0 the head.
  """
  if num_classes < 2:
    return np.array([n1], np.int64)
  mu = gamma ** (-1.0 / (num_classes - 1))
  return np.array([int(n1 * mu ** k) for k in range(num_classes)], np.int64)


def darp_prior(gamma: float, num_classes: int) -> np.ndarray:
  """`mu ** k` normalised, `mu = gamma ** (-1/(K-1))`: the DARP prior. [K]."""
  if num_classes < 2:
    return np.ones([1])
  mu = gamma ** (-1.0 / (num_classes - 1))
  p = np.array([mu ** k for k in range(num_classes)])
  return p / p.sum()


def first_per_class(labels: np.ndarray, counts: np.ndarray) -> np.ndarray:
  """Positions of the first `counts[k]` examples of each class k.

  The deterministic long-tailed selection of this project: for class k, the
  first `counts[k]` positions with label k in file order. The result keeps
  file order (ascending positions), so the classes stay interleaved as in
  the source.

  Args:
    labels: int [N].
    counts: int [K], how many of each class.

  Returns:
    int64 [sum(counts)], ascending.

  Raises:
    ValueError: a class has fewer than `counts[k]` examples.
  """
  labels = np.asarray(labels)
  keep = []
  for c, n in enumerate(np.asarray(counts, np.int64)):
    idx = np.flatnonzero(labels == c)
    if len(idx) < n:
      raise ValueError(f'class {c} has {len(idx)} examples, {n} needed')
    keep.append(idx[:n])
  return np.sort(np.concatenate(keep)).astype(np.int64)


# Shapes of a DARP unlabeled class profile (SimPro's protocols, Du et al.,
# ICML 2024): the long-tailed profile int(M1 * mu_u ** r), r = 0..K-1
# (descending), handed to the classes in another order.
UNLABELED_SHAPES = ('longtail', 'middle', 'head_tail')


def profile_ranks(num_classes: int, shape: str) -> np.ndarray:
  """Which rank r of the descending profile each class gets. int64 [K].

  'longtail': class k gets rank k (class 0 the head).
  'middle': ranks [K-2 or K-1, ..., 4, 2, 0, 1, 3, 5, ...] over the classes
    (the even ranks descending, then the odd ranks ascending): the largest
    count in the middle classes, falling off towards both ends.
  'head_tail': ranks [1, 3, 5, ..., then the even ranks descending ... 2, 0]:
    the largest counts at both ends, the smallest in the middle.
  (SimPro's `flag_LT` 3 "centric" and 4 "off-centric".)
  """
  k = num_classes
  if shape == 'longtail':
    order = list(range(k))
  elif shape == 'middle':
    order = list(range(0, k, 2))[::-1] + list(range(1, k, 2))
  elif shape == 'head_tail':
    order = list(range(1, k, 2)) + list(range(0, k, 2))[::-1]
  else:
    raise ValueError(f'Unknown unlabeled shape {shape!r}; choose one of: '
                     f'{", ".join(UNLABELED_SHAPES)}.')
  return np.asarray(order, np.int64)


def darp_unlabeled_counts(m1: int, gamma: float, gamma_u, num_classes: int,
                          shape: str = 'longtail') -> np.ndarray:
  """Per-class counts of a DARP unlabeled set. int64 [K].

  The profile `darp_counts(m1, |gamma_u|, K)` (gamma_u None: the labeled
  gamma), reversed when gamma_u < 0 (the unlabeled head is the labeled
  tail), then ordered by `profile_ranks(K, shape)`. gamma_u = 1 is uniform.
  """
  gu = float(gamma if gamma_u is None else gamma_u)
  counts = darp_counts(m1, abs(gu), num_classes)
  if gu < 0:
    counts = counts[::-1]
  return counts[profile_ranks(num_classes, shape)]


def _same(a: float, b: float) -> bool:
  return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1.0)


def unlabeled_distribution(gamma: float, gamma_u, shape: str = 'longtail'
                           ) -> str:
  """The name of a DARP unlabeled profile, as tables show it: 'consistent'
  (the labeled profile), 'uniform', 'reversed', 'middle', 'head_tail', or
  with the unlabeled gamma when it is another one ('gamma_u=50',
  'reversed, gamma_u=50', 'middle, gamma_u=50')."""
  gu = float(gamma if gamma_u is None else gamma_u)
  shape = shape or 'longtail'
  if _same(abs(gu), 1.0):
    return 'uniform'
  other = f'gamma_u={abs(gu):g}'
  if shape != 'longtail':
    return shape if _same(gu, gamma) else f'{shape}, {other}'
  if _same(gu, gamma):
    return 'consistent'
  if _same(gu, -gamma):
    return 'reversed'
  return f'reversed, {other}' if gu < 0 else other
