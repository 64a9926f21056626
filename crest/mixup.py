"""MixMatch helpers: view averaging and MixUp (pure TensorFlow).

Sharpening lives in `crest.pseudo_labels.sharpen` and is re-exported here.
Randomness is stateless (`tf.random.stateless_*`), fully determined by the
seed the caller passes. To mix across the whole global pool under a
distribution strategy, the caller gathers the examples of all replicas and
draws one permutation over the pool (see `mixup`).
"""
from __future__ import annotations

from typing import Sequence, Union

import tensorflow as tf

from crest.pseudo_labels import sharpen  # pylint: disable=unused-import

__all__ = ['average_views', 'mixup_lambda', 'mixup', 'sharpen']


def average_views(probs: Union[Sequence[tf.Tensor], tf.Tensor]) -> tf.Tensor:
  """Mean of the predictions of V augmented views of the same examples.

  Args:
    probs: a list of V float32 [B, K] tensors, or one tensor [V, B, K].

  Returns:
    float32 [B, K].
  """
  if isinstance(probs, (list, tuple)):
    probs = tf.stack([tf.convert_to_tensor(p, tf.float32) for p in probs])
  return tf.reduce_mean(tf.convert_to_tensor(probs, tf.float32), axis=0)


def mixup_lambda(beta: float, shape, seed: tf.Tensor) -> tf.Tensor:
  """MixUp coefficients `lambda' = max(lambda, 1 - lambda)`, lambda ~ Beta.

  lambda = g1 / (g1 + g2) with g1, g2 ~ Gamma(beta, 1) drawn by
  `tf.random.stateless_gamma` (two seeds derived from `seed`). lambda' >= 0.5
  so each mixed example stays closest to its own input (MixMatch).

  Args:
    beta: the Beta(beta, beta) parameter; beta <= 0 disables mixing
      (lambda = 1 everywhere).
    shape: output shape, e.g. [] or [N] (or [N, 1, 1, 1]).
    seed: int32/int64 [2], stateless seed.

  Returns:
    float32 tensor of `shape` with values in [0.5, 1].
  """
  if beta <= 0:
    return tf.ones(shape, tf.float32)
  seeds = tf.random.experimental.stateless_split(
      tf.cast(seed, tf.int64), num=2)
  g1 = tf.random.stateless_gamma(shape, seeds[0], alpha=beta,
                                 dtype=tf.float32)
  g2 = tf.random.stateless_gamma(shape, seeds[1], alpha=beta,
                                 dtype=tf.float32)
  denom = g1 + g2
  # Both gammas can underflow to 0 for tiny beta: treat as lambda = 1.
  lam = tf.where(denom > 0, g1 / tf.maximum(denom, 1e-30), tf.ones_like(g1))
  return tf.maximum(lam, 1.0 - lam)


def _broadcast_lam(lam: tf.Tensor, rank: int) -> tf.Tensor:
  """Reshapes a scalar or [N] lambda to broadcast against a rank-`rank` x."""
  lam = tf.convert_to_tensor(lam, tf.float32)
  if lam.shape.rank == 1:
    return tf.reshape(lam, [-1] + [1] * (rank - 1))
  return lam


def mixup(x: tf.Tensor, y: tf.Tensor, permutation: tf.Tensor,
          lam: Union[float, tf.Tensor]):
  """MixUp of inputs and targets with a partner permutation.

  `x_mixed = lam * x + (1 - lam) * x[permutation]`, same for `y`.

  Args:
    x: float32 [N, ...], inputs (e.g. images or features).
    y: float32 [N, K], target distributions.
    permutation: int [N], partner index of each example (a permutation of
      range(N) drawn over the whole pool, e.g. all replicas' examples).
    lam: scalar or float32 [N], mixing coefficients.

  Returns:
    (x_mixed float32 [N, ...], y_mixed float32 [N, K]); rows of `y_mixed`
    sum to 1 when the rows of `y` do.
  """
  x = tf.convert_to_tensor(x, tf.float32)
  y = tf.convert_to_tensor(y, tf.float32)
  x_other = tf.gather(x, permutation)
  y_other = tf.gather(y, permutation)
  lam_x = _broadcast_lam(lam, x.shape.rank)
  lam_y = _broadcast_lam(lam, 2)
  return (lam_x * x + (1.0 - lam_x) * x_other,
          lam_y * y + (1.0 - lam_y) * y_other)
