"""Evaluation: replica-sliced forward passes on un-augmented images, and the
test metrics of the raw and EMA models (with and without logit
adjustment)."""
from __future__ import annotations

from typing import Callable, Dict

import numpy as np
import tensorflow as tf

from augment import registry as augment_registry
from crest import distributions
from crest import metrics as metrics_lib


class Evaluator:
  """Logits of a (model, EMA) pair on uint8 images, in image order.

  Args:
    strategy: the distribution strategy the models live in.
    model, ema: keras models, float32 [B, H, W, C] in [-1, 1] -> [B, K].
    image_size: side of the images (for the un-augmented conversion).
    batch_size: images per evaluation step (rounded up to a multiple of the
      replicas).
    compile_fn: wraps the per-replica forward passes (XLA with
      --jit_compile on one device; identity otherwise).
  """

  def __init__(self, strategy: tf.distribute.Strategy, model, ema,
               image_size: int, batch_size: int,
               compile_fn: Callable = lambda fn: fn):
    self.strategy = strategy
    self.model, self.ema = model, ema
    self.num_replicas = strategy.num_replicas_in_sync
    self.batch_size = batch_size + (-batch_size % self.num_replicas)
    self._unaugmented = augment_registry.build('x', image_size)
    self._forward_both = compile_fn(self._forward_both_fn)
    self._forward_ema = compile_fn(self._forward_ema_fn)
    # No autograph: nothing here has tensor-dependent Python control flow.
    self._eval_both = tf.function(self._eval_both_fn, autograph=False)
    self._eval_ema = tf.function(self._eval_ema_fn, autograph=False)

  def _to_float(self, x):
    """uint8 images [b, H, W, C] -> float32 in [-1, 1], as training's."""
    return self._unaugmented(x, tf.zeros([2], tf.int64))

  def _forward_both_fn(self, x):
    x = self._to_float(x)
    return (tf.cast(self.model(x, training=False), tf.float32),
            tf.cast(self.ema(x, training=False), tf.float32))

  def _forward_ema_fn(self, x):
    return tf.cast(self.ema(self._to_float(x), training=False), tf.float32)

  def _eval_both_fn(self, x):
    raw, ema = self.strategy.run(self._forward_both, args=(x,))
    return self.strategy.gather(raw, 0), self.strategy.gather(ema, 0)

  def _eval_ema_fn(self, x):
    return (self.strategy.gather(
        self.strategy.run(self._forward_ema, args=(x,)), 0),)

  def logits(self, images: np.ndarray, num_classes: int,
             raw: bool = True, positions: np.ndarray = None) -> tuple:
    """Logits on un-augmented images: (raw, EMA), or (EMA,) if not `raw`.

    Args:
      images: uint8 [N, H, W, C], in memory or memory-mapped: only one
        batch of it is read (copied) at a time.
      num_classes: K (for the shape of an empty result).
      raw: also the raw model's logits.
      positions: int [M], the rows of `images` to score (default: all).

    Returns: float32 [N, K] (or [M, K]) arrays.
    """
    n = len(images) if positions is None else len(positions)
    step_fn = self._eval_both if raw else self._eval_ema
    if n == 0:
      return tuple(np.zeros([0, num_classes], np.float32)
                   for _ in range(1 + raw))
    batch = self.batch_size
    # Global replica r (on any worker) takes rows [r b, (r + 1) b) of each
    # batch; strategy.gather puts them back in order. Slicing here instead of
    # distributing a tf.data pipeline saves seconds per call.
    per_replica = batch // self.num_replicas
    parts = []
    for start in range(0, n, batch):
      rows = (images[start:start + batch] if positions is None else
              images[np.asarray(positions[start:start + batch], np.int64)])
      if len(rows) < batch:  # Pad the last batch: one trace serves all.
        rows = np.concatenate([rows, np.zeros(
            (batch - len(rows),) + rows.shape[1:], rows.dtype)])

      def replica_rows(ctx, rows=rows):
        first = ctx.replica_id_in_sync_group * per_replica
        return tf.constant(rows[first:first + per_replica])

      parts.append(step_fn(
          self.strategy.experimental_distribute_values_from_function(
              replica_rows)))
    return tuple(np.concatenate([p[i].numpy() for p in parts])[:n]
                 for i in range(len(parts[0])))


def test_metrics(raw: np.ndarray, ema: np.ndarray, labels: np.ndarray,
                 p_data: np.ndarray, p_model: np.ndarray) -> Dict[str, object]:
  """Accuracy and per-class recall of the raw and EMA logits, each plain and
  logit-adjusted (logits - log p_data), plus KL(uniform || p_data / p_model).

  Args:
    raw, ema: float32 [N, K] test logits; labels: int [N].
    p_data, p_model: float32 [K] running distributions.

  Returns:
    {'acc.test', 'acc.test.la', 'acc.test.ema', 'acc.test.la.ema': float,
     'per_class_' + each: list of K recalls, 'monitor.kl_data',
     'monitor.kl_model': float}.
  """
  out = {}
  for name, logits in (('acc.test', raw), ('acc.test.ema', ema)):
    for suffix, lg in (('', logits),
                       ('.la', metrics_lib.logit_adjust(logits, p_data))):
      rep = metrics_lib.classification_report(labels, lg)
      key = name.replace('acc.test', 'acc.test' + suffix)
      out[key] = rep['accuracy']
      out['per_class_' + key] = rep['recall'].tolist()
  out['monitor.kl_data'] = float(distributions.kl_uniform(p_data))
  out['monitor.kl_model'] = float(distributions.kl_uniform(p_model))
  return out
