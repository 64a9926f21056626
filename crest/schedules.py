"""Learning-rate schedules (pure TensorFlow, tensor step).

Formulas as in the reference, section "Schedules", computed in float32 like
the original. With `S = num_epoch * num_batch` total steps, the step wraps
modulo S; with `sched_freq='epoch'` it is floored to whole epochs first,
and the 'step' mode's `sched_step_size` counts epochs (the original's
`step_size * step_per_epoch`). The result is clipped to [0, base_lr].
"""
from __future__ import annotations

import math
from typing import Union

import tensorflow as tf

from crest import errors

SCHEDULES = ('const', 'linear', 'step', 'cos', 'halfcos')
SCHED_FREQS = ('step', 'epoch')


def learning_rate(step: Union[int, tf.Tensor], *, base_lr: float,
                  num_epoch: int, num_batch: int, sched_type: str,
                  sched_freq: str = 'step', sched_level: int = 1,
                  sched_min_rate: float = 0.0, sched_step_size: int = 1,
                  sched_gamma: float = 0.995) -> tf.Tensor:
  """The learning rate at a training step.

  With s the (wrapped, possibly epoch-floored) step and S the total:
  - 'const': base_lr;
  - 'linear': base_lr * (min + (1 - min) * clip(1 - s/S, 0, 1));
  - 'step': base_lr * gamma ** floor(s / step_size) (step_size in steps,
    or in epochs of num_batch steps with sched_freq='epoch');
  - 'cos': base_lr * (min + 0.5 * (1 - min) * (1 + cos(pi * s/S)));
  - 'halfcos': base_lr * cos(pi * s/S * level/16).

  Args:
    step: int or int tensor (any integer dtype), the global step.
    base_lr: peak learning rate.
    num_epoch: epochs per generation.
    num_batch: steps per epoch.
    sched_type: one of `SCHEDULES`.
    sched_freq: 'step' or 'epoch'.
    sched_level: halfcos level (1..8 in the original).
    sched_min_rate: floor as a fraction of base_lr (linear, cos).
    sched_step_size: steps (epochs with sched_freq='epoch') per decay.
    sched_gamma: decay factor (step).

  Returns:
    float32 scalar tensor in [0, base_lr].

  Raises:
    ValueError: unknown `sched_type` / `sched_freq`, or non-positive sizes.
  """
  if sched_type not in SCHEDULES:
    raise ValueError(f'Unknown sched_type {sched_type!r}; valid choices: '
                     f'{errors.choices(SCHEDULES)}.')
  if sched_freq not in SCHED_FREQS:
    raise ValueError(f'Unknown sched_freq {sched_freq!r}; valid choices: '
                     f'{errors.choices(SCHED_FREQS)}.')
  if num_epoch < 1 or num_batch < 1 or sched_step_size < 1:
    raise ValueError('num_epoch, num_batch and sched_step_size must be >= 1, '
                     f'got {num_epoch}, {num_batch}, {sched_step_size}.')
  total = num_epoch * num_batch
  s = tf.math.floormod(tf.cast(step, tf.int64), total)
  if sched_freq == 'epoch':
    s = (s // num_batch) * num_batch
  lr = tf.constant(base_lr, tf.float32)
  frac = tf.cast(s, tf.float32) / float(total)
  if sched_type == 'const':
    rate = tf.ones([], tf.float32)
  elif sched_type == 'linear':
    rate = sched_min_rate + (1.0 - sched_min_rate) * tf.clip_by_value(
        1.0 - frac, 0.0, 1.0)
  elif sched_type == 'step':
    unit = num_batch if sched_freq == 'epoch' else 1
    exponent = tf.cast(s // (sched_step_size * unit), tf.float32)
    rate = tf.pow(tf.constant(sched_gamma, tf.float32), exponent)
  elif sched_type == 'cos':
    rate = sched_min_rate + 0.5 * (1.0 - sched_min_rate) * (
        1.0 + tf.cos(math.pi * frac))
  else:  # halfcos
    rate = tf.cos(math.pi * frac * (sched_level / 16.0))
  return tf.clip_by_value(lr * rate, 0.0, lr)
