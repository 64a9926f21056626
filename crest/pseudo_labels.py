"""Pseudo-targets and distribution alignment (pure TensorFlow).

Follows the reference, section "Pseudo-labels": softmax, optional
distribution alignment towards a target distribution, a confidence mask on
the aligned probabilities, and a hard (temperature 0) or sharpened target.
All functions are float32, work eagerly, inside `tf.function` and inside a
`tf.distribute` replica context (they use no collective ops).
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import tensorflow as tf

_EPS = 1e-6
Scalar = Union[float, tf.Tensor]


def _normalise(x: tf.Tensor, axis: int = -1) -> tf.Tensor:
  """Divides `x` by its sum along `axis`."""
  return x / tf.reduce_sum(x, axis=axis, keepdims=True)


def alignment_target(p_data: tf.Tensor, gt_p_data: tf.Tensor,
                     how_dalign: Optional[str], t: Scalar) -> tf.Tensor:
  """The distribution that distribution alignment aims at.

  Args:
    p_data: float32 [K], running labeled class distribution.
    gt_p_data: float32 [K], the known (long-tailed) class prior.
    how_dalign: None (align to `p_data`), 'constant' or 'adaptive' (align to
      `gt_p_data ** t` renormalised; the two differ only in how `t` is chosen
      per generation, see `crest.selection.alignment_temperature`).
    t: float or float32 scalar tensor, this generation's temperature.

  Returns:
    float32 [K], sums to 1 (up to rounding) when `how_dalign` is set.

  Raises:
    ValueError: unknown `how_dalign`.
  """
  if how_dalign is None:
    return tf.convert_to_tensor(p_data, tf.float32)
  if how_dalign not in ('constant', 'adaptive'):
    raise ValueError(f"Unknown how_dalign {how_dalign!r}; valid choices: "
                     "None, 'constant', 'adaptive'.")
  gt = tf.convert_to_tensor(gt_p_data, tf.float32)
  t = tf.cast(t, tf.float32)
  return _normalise(tf.pow(gt, t))


def align_probs(probs: tf.Tensor, p_model: tf.Tensor,
                target: tf.Tensor) -> tf.Tensor:
  """Distribution alignment: `probs * (1e-6 + target) / (1e-6 + p_model)`.

  Args:
    probs: float32 [B, K], class probabilities.
    p_model: float32 [K], running mean of the model's predictions.
    target: float32 [K], the distribution to align to.

  Returns:
    float32 [B, K], rows renormalised to sum to 1.
  """
  probs = tf.convert_to_tensor(probs, tf.float32)
  ratio = ((_EPS + tf.convert_to_tensor(target, tf.float32)) /
           (_EPS + tf.convert_to_tensor(p_model, tf.float32)))
  return _normalise(probs * ratio[tf.newaxis, :])


def sharpen(probs: tf.Tensor, temperature: float) -> tf.Tensor:
  """Sharpening: `probs ** (1/T)` renormalised; T = 0 gives one_hot(argmax).

  Args:
    probs: float32 [B, K].
    temperature: T >= 0 (a Python float: it selects the branch).

  Returns:
    float32 [B, K], rows sum to 1.
  """
  probs = tf.convert_to_tensor(probs, tf.float32)
  if temperature == 0:
    return tf.one_hot(tf.argmax(probs, axis=-1), tf.shape(probs)[-1],
                      dtype=tf.float32)
  if temperature < 0:
    raise ValueError(f'temperature must be >= 0, got {temperature}.')
  return _normalise(tf.pow(probs, 1.0 / temperature))


def pseudo_targets_from_probs(probs: tf.Tensor, *, p_model: tf.Tensor,
                              p_data: tf.Tensor, gt_p_data: tf.Tensor,
                              do_distalign: bool, how_dalign: Optional[str],
                              dalign_t: Scalar, threshold: float,
                              temperature: float
                              ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """Pseudo-targets from class probabilities (e.g. MixMatch's view average).

  If `do_distalign`, `probs` is aligned to
  `alignment_target(p_data, gt_p_data, how_dalign, dalign_t)`. The mask is
  `max(probs) >= threshold` and the target is `sharpen(probs, temperature)`,
  both on the aligned probabilities. No gradient flows through the outputs.

  Args:
    probs: float32 [B, K], rows sum to 1.
    p_model: float32 [K], running model distribution (see
      `crest.distributions.p_model`).
    p_data: float32 [K], running labeled distribution.
    gt_p_data: float32 [K], known class prior.
    do_distalign: whether to align.
    how_dalign: None, 'constant' or 'adaptive'.
    dalign_t: float or scalar tensor, the generation's alignment temperature.
    threshold: confidence threshold in [0, 1].
    temperature: sharpening temperature (0: hard one-hot).

  Returns:
    (target float32 [B, K], mask float32 [B] of 0/1, probs float32 [B, K]
    the (aligned) probabilities the mask was computed on).
  """
  probs = tf.stop_gradient(tf.convert_to_tensor(probs, tf.float32))
  if do_distalign:
    target_dist = alignment_target(p_data, gt_p_data, how_dalign, dalign_t)
    probs = align_probs(probs, p_model, target_dist)
  mask = tf.cast(tf.reduce_max(probs, axis=-1) >= threshold, tf.float32)
  target = sharpen(probs, temperature)
  return target, mask, probs


def pseudo_targets(logits: tf.Tensor, *, p_model: tf.Tensor,
                   p_data: tf.Tensor, gt_p_data: tf.Tensor,
                   do_distalign: bool, how_dalign: Optional[str],
                   dalign_t: Scalar, threshold: float, temperature: float
                   ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """FixMatch pseudo-targets from (weak-view) logits.

  `pseudo_targets_from_probs(softmax(logits), ...)`: same keyword arguments
  and outputs (target [B, K], mask [B], aligned probs [B, K]).

  Args:
    logits: float32 [B, K].
  """
  logits = tf.stop_gradient(tf.convert_to_tensor(logits, tf.float32))
  return pseudo_targets_from_probs(
      tf.nn.softmax(logits, axis=-1), p_model=p_model, p_data=p_data,
      gt_p_data=gt_p_data, do_distalign=do_distalign, how_dalign=how_dalign,
      dalign_t=dalign_t, threshold=threshold, temperature=temperature)
