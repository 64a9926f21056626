"""One replica's loss and gradients, compiled by XLA with --jit_compile in
the pieces it can hold, and the combinations it cannot.

Under MirroredStrategy off GPUs, a cross-replica reduction in replica
context is a `merge_call` (the replica threads meet and one reduces), which
cannot happen inside a compiled function. So the trainer compiles each
replica's computation and keeps every reduction outside: the batch-norm
moving statistics (`networks.common.deferred_updates`), gradient clipping,
the metrics and running distributions. A loss that communicates in the
middle (MixMatch's MixUp over the global batch) declares `STAGES`
(`crest.method_api`): the piece before its exchange and the piece after are
compiled separately, and the exchange (plus what XLA has no kernel for:
MixMatch's stateless shuffle and gamma draws) runs between them, with the
moving-statistic updates of the first piece carried into the second.
"""
from __future__ import annotations

from typing import Callable, Optional

import tensorflow as tf

from crest import losses
from crest import method_api
from crest.errors import ConfigError
from networks import common as network_common


def check(cfg, num_replicas: Optional[int], method) -> None:
  """Raises ConfigError for --jit_compile settings no compiled step holds.

  Args:
    cfg: the run's config.
    num_replicas: replicas in sync (None: not known yet, nothing refused).
    method: its `crest.methods.Method`.
  """
  if not cfg.jit_compile or num_replicas is None or num_replicas <= 1:
    return
  where = (f'--jit_compile on {num_replicas} replicas compiles each '
           "replica's computation and keeps cross-replica reductions "
           'outside the compiled pieces')
  one = ('or train on one device (one GPU, or --cpu_replicas=1: one '
         'replica has nothing to reduce, and --jit_compile then works)')
  if cfg.bn_sync:
    raise ConfigError(
        f'{where}, but --bn_sync reduces the batch statistics across '
        'replicas inside every batch-norm layer, forward and backward (a '
        'cross-replica step XLA cannot compile off GPUs, and a split at every '
        f'layer is not done). Drop --bn_sync or --jit_compile, {one}.')
  if method.stages is not None:
    return  # Its exchange runs between its two compiled pieces.
  if method.gathers_across_replicas:
    raise ConfigError(
        f'{where}, but --method={cfg.method} gathers the batch across '
        'replicas inside its loss and declares no STAGES (the pieces before '
        f'and after its exchange). Drop --jit_compile, {one}.')
  if cfg.unsup_loss_divisor == 'quality':
    raise ConfigError(
        f'{where}, but --unsup_loss_divisor=quality divides by the number of '
        'confident rows over all replicas, which --method='
        f'{cfg.method} knows only inside its compiled loss (one forward pass '
        'gives both the mask and the loss). Use --unsup_loss_divisor=full '
        f'or drop --jit_compile, {one}.')


class ReplicaLoss:
  """`(batch, stats) -> (LossOutput, weight-decay term, total loss,
  gradients, [(moving-statistic variable, new value)])` of one replica,
  called inside `strategy.run`; the caller assigns the moving statistics.

  Args:
    cfg: the run's config (jit_compile, weight_decay).
    method: the `crest.methods.Method` (its loss, or its STAGES).
    params: the loss settings.
    model, optimizer: the model trained and its optimizer (loss scaling).
    decay_variables: the variables weight decay applies to.
    num_replicas: replicas in sync.
  """

  def __init__(self, cfg, method, params: method_api.LossParams, model,
               optimizer, decay_variables, num_replicas: int):
    self.method, self.params = method, params
    # The loss of the single-piece path (tests may wrap it).
    self.loss_fn = method.loss
    self.model, self.optimizer = model, optimizer
    self.decay_variables = decay_variables
    self.weight_decay = cfg.weight_decay
    self.num_replicas = num_replicas
    jit: Callable = ((lambda fn: tf.function(fn, jit_compile=True))
                     if cfg.jit_compile else (lambda fn: fn))
    # Compiled in two pieces when the method has them (even on one replica:
    # what runs between may be what XLA cannot compile).
    self.staged = bool(cfg.jit_compile and method.stages is not None)
    self._whole = jit(self._whole_fn)
    self._first = jit(self._first_fn)
    self._second = jit(self._second_fn)
    self._variables = {}  # Moving statistics each piece updates, in order.

  def __call__(self, batch, stats: method_api.Stats):
    if not self.staged:
      *out, values = self._whole(batch, stats)
      return (*out, list(zip(self._variables['whole'], values)))
    shared, first_values = self._first(batch, stats)
    # Not compiled: the exchange across replicas, then `between`.
    shared = self.method.stages[1](method_api.exchange(shared), stats,
                                   self.params)
    *out, values = self._second(batch, stats, shared, first_values)
    return (*out, list(zip(self._variables['second'], values)))

  def _differentiate(self, name, loss_fn, initial=()):
    variables = self.model.trainable_variables
    with tf.GradientTape() as tape, \
        network_common.deferred_updates(initial) as moving:
      out = loss_fn()
      wd = losses.l2_weight_decay(self.decay_variables)
      total = out.loss + self.weight_decay * wd / self.num_replicas
      scaled = (self.optimizer.scale_loss(total)
                if hasattr(self.optimizer, 'scale_loss') else total)
    self._variables[name] = [v for v, _ in moving]
    return (out, wd, total, tape.gradient(scaled, variables),
            [value for _, value in moving])

  def _whole_fn(self, batch, stats):
    """The whole loss and its gradients (one compiled piece with XLA)."""
    return self._differentiate('whole', lambda: self.loss_fn(
        self.model, batch, stats, self.params))

  def _first_fn(self, batch, stats):
    """STAGES[0] (no gradient): (its Exchange, new moving statistics)."""
    with network_common.deferred_updates() as moving:
      shared = self.method.stages[0](self.model, batch, stats, self.params)
    self._variables['first'] = [v for v, _ in moving]
    return shared, [value for _, value in moving]

  def _second_fn(self, batch, stats, shared, first_values):
    """STAGES[1] on the exchanged values, continuing the first piece's
    moving statistics, and the gradients."""
    initial = list(zip(self._variables['first'], first_values))
    return self._differentiate('second', lambda: self.method.stages[2](
        self.model, batch, stats, self.params, shared), initial)
