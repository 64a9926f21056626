"""Running class distributions `p_model` and `p_data` (pure TensorFlow).

`p_model` is the mean of the last `P_MODEL_HISTORY` batch means of the
model's (unaligned) weak-view probabilities, started uniform. `p_data` is an
exponential moving average of the labeled batches' one-hot means, started
uniform. The caller keeps the state (e.g. in `tf.Variable`s) and assigns the
returned values; under a distribution strategy it all-reduces the batch means
first so every replica computes the same update.
"""
from __future__ import annotations

import tensorflow as tf

P_MODEL_HISTORY = 128


def initial_p_model_history(num_classes: int) -> tf.Tensor:
  """The starting history: every row uniform.

  Returns:
    float32 [P_MODEL_HISTORY, K].
  """
  return tf.fill([P_MODEL_HISTORY, num_classes], 1.0 / num_classes)


def update_p_model_history(history: tf.Tensor,
                           batch_probs: tf.Tensor) -> tf.Tensor:
  """Drops the oldest row and appends the batch mean of `batch_probs`.

  Row order: row 0 is the oldest entry, row H-1 the newest. The update drops
  row 0 and appends the new mean as row H-1.

  Args:
    history: float32 [H, K].
    batch_probs: float32 [B, K], probabilities of this batch (before
      alignment); or an already-computed (e.g. all-reduced) batch mean,
      either [1, K] or [K].

  Returns:
    float32 [H, K].
  """
  history = tf.convert_to_tensor(history, tf.float32)
  batch_probs = tf.convert_to_tensor(batch_probs, tf.float32)
  if batch_probs.shape.rank == 1:
    batch_probs = batch_probs[tf.newaxis, :]
  mean = tf.reduce_mean(batch_probs, axis=0, keepdims=True)
  return tf.concat([history[1:], mean], axis=0)


def p_model(history: tf.Tensor) -> tf.Tensor:
  """The model distribution: mean of the history's rows.

  Args:
    history: float32 [H, K].

  Returns:
    float32 [K].
  """
  return tf.reduce_mean(tf.convert_to_tensor(history, tf.float32), axis=0)


def initial_p_data(num_classes: int) -> tf.Tensor:
  """Uniform float32 [K]."""
  return tf.fill([num_classes], 1.0 / num_classes)


def update_p_data_from_mean(p_data: tf.Tensor, batch_mean: tf.Tensor,
                            decay: float = 0.999) -> tf.Tensor:
  """EMA update `p_data * decay + (1 - decay) * batch_mean`.

  Args:
    p_data: float32 [K].
    batch_mean: float32 [K], mean one-hot label of the (global) batch.
    decay: EMA decay.

  Returns:
    float32 [K].
  """
  p_data = tf.convert_to_tensor(p_data, tf.float32)
  batch_mean = tf.convert_to_tensor(batch_mean, tf.float32)
  return p_data * decay + (1.0 - decay) * batch_mean


def labels_mean(labels: tf.Tensor, num_classes: int) -> tf.Tensor:
  """Mean one-hot vector of int labels [B] -> float32 [K]."""
  return tf.reduce_mean(tf.one_hot(labels, num_classes, dtype=tf.float32),
                        axis=0)


def update_p_data(p_data: tf.Tensor, labels: tf.Tensor, num_classes: int,
                  decay: float = 0.999) -> tf.Tensor:
  """EMA of the one-hot batch mean of `labels` (int [B]).

  Returns:
    float32 [K].
  """
  return update_p_data_from_mean(p_data, labels_mean(labels, num_classes),
                                 decay)


def kl_uniform(p: tf.Tensor) -> tf.Tensor:
  """KL(uniform || p) = sum_k (1/K) * log((1/K) / p_k).

  Args:
    p: float32 [K], a distribution with positive entries.

  Returns:
    float32 scalar; 0 for the uniform distribution, inf if some p_k = 0
    (never the case for the running distributions, which start uniform).
  """
  p = tf.convert_to_tensor(p, tf.float32)
  k = tf.cast(tf.shape(p)[-1], tf.float32)
  u = 1.0 / k
  return tf.reduce_sum(u * (tf.math.log(u) - tf.math.log(p)), axis=-1)
