"""The optimizer and its learning-rate schedule, built from the config."""
from __future__ import annotations

import keras

from crest import errors
from crest import schedules
from crest.config import Config

OPTIMIZERS = ('sgd', 'adam')


def check(cfg: Config) -> None:
  """The optimisation settings (raises crest.errors.ConfigError)."""
  errors.require_choice('optim_type', cfg.optim_type, OPTIMIZERS)
  errors.require_choice('sched_type', cfg.sched_type, schedules.SCHEDULES)
  errors.require_choice('sched_freq', cfg.sched_freq, schedules.SCHED_FREQS)
  errors.require(cfg.num_epoch >= 1, '--num_epoch must be at least 1.')
  errors.require(cfg.num_batch >= 1, '--num_batch must be at least 1.')
  errors.require(1 <= cfg.sched_level, '--sched_level must be at least 1.')
  errors.require(cfg.sched_step_size >= 1,
                 '--sched_step_size must be at least 1.')
  rng = errors.require_range
  rng('learning_rate', cfg.learning_rate, 0, low_open=True,
      meaning='the base learning rate')
  rng('weight_decay', cfg.weight_decay, 0, meaning='an L2 coefficient')
  rng('clip_value', cfg.clip_value, 0, meaning='0 = no clipping')
  rng('ema_decay', cfg.ema_decay, 0, 1, high_open=True,
      meaning='a decay per step')
  rng('momentum', cfg.momentum, 0, 1, high_open=True,
      meaning='SGD momentum')
  rng('sched_gamma', cfg.sched_gamma, 0, 1, low_open=True,
      meaning="the step schedule's decay factor; 1 = no decay")
  rng('sched_min_rate', cfg.sched_min_rate, 0, 1,
      meaning='a fraction of the base learning rate')


class LearningRate(keras.optimizers.schedules.LearningRateSchedule):
  """`crest.schedules.learning_rate` as a Keras schedule (tensor step)."""

  def __init__(self, cfg: Config):
    self.kwargs = dict(
        base_lr=cfg.learning_rate, num_epoch=cfg.num_epoch,
        num_batch=cfg.num_batch, sched_type=cfg.sched_type,
        sched_freq=cfg.sched_freq, sched_level=cfg.sched_level,
        sched_min_rate=cfg.sched_min_rate,
        sched_step_size=cfg.sched_step_size, sched_gamma=cfg.sched_gamma)

  def __call__(self, step):
    return schedules.learning_rate(step, **self.kwargs)

  def get_config(self):
    return dict(self.kwargs)


def make_optimizer(cfg: Config) -> keras.optimizers.Optimizer:
  """SGD with (Nesterov) momentum, or AMSGrad Adam, on the schedule; wrapped
  in loss scaling under float16."""
  lr = LearningRate(cfg)
  if cfg.optim_type == 'sgd':
    opt = keras.optimizers.SGD(learning_rate=lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov)
  else:
    opt = keras.optimizers.Adam(learning_rate=lr, amsgrad=True)
  if cfg.mixed_precision == 'float16':
    opt = keras.optimizers.LossScaleOptimizer(opt)
  return opt


def last_learning_rate(optimizer: keras.optimizers.Optimizer):
  """The learning rate the optimizer applied at its last step (its own
  schedule at iterations - 1), a float32 scalar tensor (usable in a
  tf.function)."""
  inner = getattr(optimizer, 'inner_optimizer', optimizer)
  schedule = inner._learning_rate  # pylint: disable=protected-access
  step = optimizer.iterations - 1
  return schedule(step) if callable(schedule) else schedule


def applied_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
  """`last_learning_rate` as a Python float."""
  return float(keras.ops.convert_to_numpy(last_learning_rate(optimizer)))
