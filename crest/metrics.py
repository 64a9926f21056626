"""Classification metrics over whole evaluation sets (NumPy)."""
from __future__ import annotations

from typing import Dict

import numpy as np


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray,
                     num_classes: int) -> np.ndarray:
  """int64 [K, K]: row = true class, column = predicted class."""
  idx = np.asarray(labels, np.int64) * num_classes + np.asarray(predictions,
                                                               np.int64)
  return np.bincount(idx, minlength=num_classes * num_classes).reshape(
      num_classes, num_classes)


def classification_report(labels: np.ndarray, logits: np.ndarray
                          ) -> Dict[str, np.ndarray]:
  """Accuracy, per-class recall and precision, and the confusion matrix.

  Args:
    labels: int [N].
    logits: float [N, K] (or probabilities).

  Returns:
    'accuracy' float, 'recall' [K], 'precision' [K] (0 where a class is never
    predicted), 'confusion' int [K, K].
  """
  k = logits.shape[1]
  pred = np.argmax(logits, axis=1)
  cm = confusion_matrix(labels, pred, k)
  true_counts = cm.sum(axis=1)
  pred_counts = cm.sum(axis=0)
  diag = np.diag(cm).astype(np.float64)
  return {
      'accuracy': float(diag.sum() / max(1, cm.sum())),
      'recall': np.where(true_counts > 0, diag / np.maximum(true_counts, 1),
                         0.0),
      'precision': np.where(pred_counts > 0, diag / np.maximum(pred_counts, 1),
                            0.0),
      'confusion': cm,
  }


def logit_adjust(logits: np.ndarray, prior: np.ndarray) -> np.ndarray:
  """Logit adjustment: `logits - log(prior)`. [N, K]."""
  return logits - np.log(np.maximum(np.asarray(prior, np.float64), 1e-12))
