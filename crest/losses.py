"""Per-example losses and loss helpers (pure TensorFlow).

Losses return one value per example ([B]) so the caller can average across
replicas with the GLOBAL batch size (`tf.nn.compute_average_loss`-compatible:
sum of per-example losses / global batch size).
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import tensorflow as tf

from crest import errors

UNSUP_LOSS_TYPES = ('xe', 'mse')
UNSUP_DIVISORS = ('full', 'quality')


def softmax_xe(targets: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
  """Cross-entropy of soft or one-hot targets against logits.

  Args:
    targets: float32 [B, K], rows are distributions (no gradient is taken
      through them).
    logits: float32 [B, K].

  Returns:
    float32 [B].
  """
  return tf.nn.softmax_cross_entropy_with_logits(
      labels=tf.stop_gradient(tf.cast(targets, tf.float32)),
      logits=tf.cast(logits, tf.float32))


def sparse_xe(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
  """Cross-entropy of integer labels against logits.

  Args:
    labels: int [B].
    logits: float32 [B, K].

  Returns:
    float32 [B].
  """
  return tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.cast(labels, tf.int64), logits=tf.cast(logits, tf.float32))


def labeled_class_weights(p_data: tf.Tensor) -> tf.Tensor:
  """The original's `reweight_labeled` weights: inverse class frequency.

  `w = 1 / (1e-6 + p_data)`, normalised so that `sum(w) = K`.

  Args:
    p_data: float32 [K], running labeled distribution.

  Returns:
    float32 [K]. Per-example weight of label y is `w[y]`.
  """
  p_data = tf.convert_to_tensor(p_data, tf.float32)
  w = 1.0 / (1e-6 + p_data)
  k = tf.cast(tf.shape(p_data)[-1], tf.float32)
  return w * k / tf.reduce_sum(w)


def unsupervised_loss(targets: tf.Tensor, logits: tf.Tensor,
                      loss_type: str) -> tf.Tensor:
  """Per-example unsupervised loss.

  'xe': cross-entropy of `targets` against `logits`.
  'mse': mean over the K classes of `(softmax(logits) - targets) ** 2`. This
  is MixMatch's L_u convention (Berthelot et al. 2019, Eq. 5:
  `1/(K |U'|) * sum ||q - p_model||_2^2`), i.e. the squared L2 distance
  between the probability vectors divided by K; averaged over the batch by
  the caller. Its scale is why MixMatch uses a large `weight_unsup` (75).

  Args:
    targets: float32 [B, K] (no gradient is taken through them).
    logits: float32 [B, K].
    loss_type: 'xe' or 'mse'.

  Returns:
    float32 [B].

  Raises:
    ValueError: unknown `loss_type`.
  """
  if loss_type == 'xe':
    return softmax_xe(targets, logits)
  if loss_type == 'mse':
    probs = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
    diff = probs - tf.stop_gradient(tf.cast(targets, tf.float32))
    return tf.reduce_mean(tf.square(diff), axis=-1)
  raise ValueError(f'Unknown unsup loss_type {loss_type!r}; valid choices: '
                   f'{errors.choices(UNSUP_LOSS_TYPES)}.')


def masked_unsup_divisor(mask: tf.Tensor,
                         global_batch_size: Union[int, tf.Tensor],
                         divisor: str,
                         global_mask_sum: Optional[tf.Tensor] = None
                         ) -> tf.Tensor:
  """What the summed masked unsupervised loss is divided by.

  'full': the global unlabeled batch size. 'quality': `max(1, number of
  examples with mask == 1 over the global batch)`. Under a distribution
  strategy pass `global_mask_sum` (the all-reduced sum of the mask); without
  it the local `mask` is summed (correct only on one replica).

  Args:
    mask: float32 [B], 0/1, this replica's mask.
    global_batch_size: global unlabeled batch size.
    divisor: 'full' or 'quality'.
    global_mask_sum: optional float32 scalar.

  Returns:
    float32 scalar >= 1 (for a positive batch size).

  Raises:
    ValueError: unknown `divisor`.
  """
  if divisor == 'full':
    return tf.cast(global_batch_size, tf.float32)
  if divisor == 'quality':
    if global_mask_sum is None:
      global_mask_sum = tf.reduce_sum(tf.cast(mask, tf.float32))
    return tf.maximum(1.0, tf.cast(global_mask_sum, tf.float32))
  raise ValueError(f'Unknown unsup loss divisor {divisor!r}; valid choices: '
                   f'{errors.choices(UNSUP_DIVISORS)}.')


def l2_weight_decay(variables: Sequence[tf.Variable]) -> tf.Tensor:
  """`0.5 * sum of squares` of all `variables` (like `tf.nn.l2_loss` summed).

  Args:
    variables: the variables weight decay applies to (batch norm excluded by
      the caller).

  Returns:
    float32 scalar (0 for an empty list).
  """
  terms = [tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in variables]
  if not terms:
    return tf.zeros([], tf.float32)
  return tf.add_n(terms)
