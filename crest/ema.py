"""The exponential moving average (EMA) of the model's weights.

Trainable variables: `ema <- ema - (1 - decay) * (ema - var)`; the
non-trainable ones (batch-norm moving statistics) are copied, as the
original does.
"""
from __future__ import annotations

from typing import Callable, Sequence

import keras
import tensorflow as tf


def ema_rule(ema: tf.Tensor, value: tf.Tensor, decay: float) -> tf.Tensor:
  """One EMA step of one tensor: ema - (1 - decay) * (ema - value)."""
  return ema - (1.0 - decay) * (ema - value)


def _tf_var(v):
  """The tf.Variable behind a Keras variable."""
  return getattr(v, 'value', v) if isinstance(v, keras.Variable) else v


def _each_copy(strategy: tf.distribute.Strategy, targets: Sequence,
               sources: Sequence, update: Callable) -> None:
  """update(target copy, source copy) for every device's copy directly
  (what strategy.extended.update does, without its per-variable tracing
  cost: seconds for a WRN-28-2). Cross-replica context."""
  local = lambda v: strategy.experimental_local_results(_tf_var(v))
  for t, s in zip(targets, sources):
    for t_i, s_i in zip(local(t), local(s)):
      with tf.device(t_i.device):
        update(t_i, s_i)


def update_ema(strategy: tf.distribute.Strategy, ema: keras.Model,
               model: keras.Model, decay: float) -> None:
  """Moves `ema`'s weights towards `model`'s (same architecture), on every
  device's copy; call after the optimizer step, in cross-replica context."""
  _each_copy(strategy, ema.trainable_variables, model.trainable_variables,
             lambda e, v: e.assign(ema_rule(e, v, decay)))
  _each_copy(strategy, ema.non_trainable_variables,
             model.non_trainable_variables, lambda e, v: e.assign(v))
