"""CReST selection between generations and the CReST+ temperature (NumPy).

Runs on the host between generations, not in the training graph.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from crest import errors

UPDATE_MODES = ('distribution', 'all')
HOW_DALIGN = (None, 'constant', 'adaptive')


def check_settings(cfg) -> None:
  """The CReST / CReST+ settings of a config (raises ConfigError)."""
  errors.require_choice('how_dalign', cfg.how_dalign, HOW_DALIGN)
  errors.require_choice('update_mode', cfg.update_mode, UPDATE_MODES)
  errors.require(cfg.num_generation >= 1,
                 f'--num_generation={cfg.num_generation} must be at least 1.')
  errors.require_range('alpha', cfg.alpha, 0, low_open=True,
                       meaning='the selection exponent is 1/alpha')
  errors.require_range('dalign_t', cfg.dalign_t, 0,
                       meaning='the exponent of gt_p_data in the alignment '
                       'target; with adaptive, the last generation\'s, the '
                       'first being 1')
  if cfg.how_dalign is not None and not cfg.do_distalign:
    raise errors.ConfigError(
        f'--how_dalign={cfg.how_dalign} has no effect without '
        '--do_distalign=True; set both or neither.')


def _check_update_mode(update_mode: str) -> None:
  if update_mode not in UPDATE_MODES:
    raise ValueError(f'Unknown update_mode {update_mode!r}; valid choices: '
                     f'{errors.choices(UPDATE_MODES)}.')


def alignment_temperature(generation: int, num_generation: int,
                          dalign_t: float,
                          how_dalign: Optional[str]) -> Optional[float]:
  """CReST+ alignment temperature of a generation.

  'adaptive': `t_g = (1 - g/(G-1)) * 1.0 + (g/(G-1)) * dalign_t`, from 1.0 at
  the first generation to `dalign_t` at the last. With a single generation
  (G = 1) the original divided by zero; here t = 1.0, the first generation's
  value. 'constant': `dalign_t`. None: None (alignment to `p_data`).

  Args:
    generation: g, 0-based.
    num_generation: G >= 1.
    dalign_t: t_min.
    how_dalign: None, 'constant' or 'adaptive'.

  Returns:
    The temperature as a Python float, or None.

  Raises:
    ValueError: unknown `how_dalign`, or g outside [0, G).
  """
  if how_dalign is None:
    return None
  if how_dalign == 'constant':
    return float(dalign_t)
  if how_dalign != 'adaptive':
    raise ValueError(f"Unknown how_dalign {how_dalign!r}; valid choices: "
                     "None, 'constant', 'adaptive'.")
  if num_generation < 1 or not 0 <= generation < num_generation:
    raise ValueError(f'generation {generation} is outside [0, '
                     f'num_generation={num_generation}).')
  if num_generation == 1:
    return 1.0
  frac = generation / (num_generation - 1)
  return float((1.0 - frac) * 1.0 + frac * dalign_t)


def picks_per_class(predicted_counts: np.ndarray, gt_p_data: np.ndarray,
                    alpha: float, update_mode: str) -> np.ndarray:
  """How many pseudo-labels CReST takes per predicted class.

  'distribution': `int(n_c * (gt_p_data[K-1-c] / gt_p_data[0]) ** (1/alpha))`
  (the rarest classes keep most of their predictions); 'all': `n_c`.

  Args:
    predicted_counts: int [K], n_c = number of unlabeled examples predicted
      as class c.
    gt_p_data: float [K], the class prior, class 0 the head.
    alpha: selection exponent (the rate is `(...) ** (1/alpha)`), > 0.
    update_mode: 'distribution' or 'all'.

  Returns:
    int64 [K].

  Raises:
    ValueError: unknown `update_mode` or non-positive alpha.
  """
  _check_update_mode(update_mode)
  counts = np.asarray(predicted_counts, np.int64)
  if update_mode == 'all':
    return counts.copy()
  if not alpha > 0:
    raise ValueError(f'alpha must be > 0, got {alpha}.')
  gt = np.asarray(gt_p_data, np.float64)
  k = len(counts)
  return np.array([int(counts[c] * (gt[k - 1 - c] / gt[0]) ** (1.0 / alpha))
                   for c in range(k)], np.int64)


def select_pseudo_labels(scores: np.ndarray, gt_p_data: np.ndarray,
                         alpha: float, update_mode: str
                         ) -> Tuple[np.ndarray, np.ndarray, np.ndarray,
                                    np.ndarray]:
  """CReST's class-rebalancing selection of pseudo-labeled examples.

  For each predicted class c (class 0 first), the rows predicted as c are
  sorted by confidence descending (stable: ties keep row order) and the
  first `picks_per_class(...)[c]` are taken with pseudo-label c.

  Args:
    scores: float [U, K], class scores of the unlabeled set.
    gt_p_data: float [K], class prior.
    alpha: selection exponent.
    update_mode: 'distribution' or 'all'.

  Returns:
    (rows int64 [P] into `scores`, labels int64 [P], picked_per_class int64
    [K], predicted_per_class int64 [K]).
  """
  _check_update_mode(update_mode)
  scores = np.asarray(scores)
  k = scores.shape[1]
  pred = np.argmax(scores, axis=1)
  conf = scores[np.arange(len(scores)), pred]
  predicted = np.bincount(pred, minlength=k).astype(np.int64)
  picks = picks_per_class(predicted, gt_p_data, alpha, update_mode)
  rows, labels = [], []
  for c in range(k):
    members = np.flatnonzero(pred == c)
    order = np.argsort(-conf[members], kind='stable')
    chosen = members[order[:picks[c]]]
    rows.append(chosen)
    labels.append(np.full(len(chosen), c, np.int64))
  rows = np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64)
  labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
  return rows, labels, picks, predicted


def next_labeled_set(unlabeled_positions: np.ndarray, rows: np.ndarray,
                     pseudo_labels: np.ndarray,
                     labeled_positions: np.ndarray,
                     labeled_labels: np.ndarray
                     ) -> Tuple[np.ndarray, np.ndarray]:
  """The next generation's labeled set: the picks, then the original set.

  Picks do not accumulate: each generation's picks replace the previous
  generation's, always followed by the ORIGINAL labeled set.

  Args:
    unlabeled_positions: int [U], dataset positions of the unlabeled rows.
    rows: int [P], picked rows (into `unlabeled_positions`).
    pseudo_labels: int [P].
    labeled_positions: int [L], the original labeled positions.
    labeled_labels: int [L], their true labels.

  Returns:
    (positions int64 [P + L], labels int64 [P + L]).
  """
  unlabeled_positions = np.asarray(unlabeled_positions, np.int64)
  positions = np.concatenate([unlabeled_positions[np.asarray(rows, np.int64)],
                              np.asarray(labeled_positions, np.int64)])
  labels = np.concatenate([np.asarray(pseudo_labels, np.int64),
                           np.asarray(labeled_labels, np.int64)])
  return positions, labels
