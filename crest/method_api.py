"""What every SSL method's loss is built from (methods import this module).

A method is a top-level module (`fixmatch.py`, `mixmatch.py`, ...) that
declares (see `crest.methods` for the registry):

  LABEL: str                   its name in tables, e.g. 'FixMatch';
  CREST_LABEL: str             the label of CReST on top of it ('{crest}'
                               is replaced by 'CReST', 'CReST+', ...);
  DEFAULTS: dict               flag defaults it applies to flags the user
                               did not set;
  GATHERS_ACROSS_REPLICAS: bool  its loss communicates across replicas
                               (then, on several replicas, --jit_compile
                               needs STAGES);
  check(cfg) -> None           raises `crest.errors.ConfigError` on settings
                               it cannot run with;
  loss(model, batch, stats, params) -> LossOutput;
  STAGES (optional)            (first, between, second): the loss in two
                               pieces that communicate only through an
                               `Exchange`: `loss = second(..., between(
                               exchange(first(...)), ...))` (`run_stages`).
                               With --jit_compile `first` and `second` are
                               compiled; the exchange and `between` (what XLA
                               lacks, e.g. random shuffles) run uncompiled.
                               `first` carries no gradient.

Everything here is pure: tensors and the frozen `LossParams` in, tensors
out; no flags, no config.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, NamedTuple, Optional

import tensorflow as tf

from crest import errors
from crest import losses


@dataclasses.dataclass(frozen=True)
class LossParams:
  """The settings a method's loss reads (never the flags)."""
  num_classes: int
  threshold: float
  temperature: float
  unsup_loss_type: str
  unsup_loss_divisor: str
  weight_unsup: float
  do_distalign: bool
  how_dalign: Optional[str]
  reweight_labeled: bool
  mixup_beta: float
  global_batch_size: int
  global_unlabeled_batch_size: int


class Stats(NamedTuple):
  """Running distributions a loss reads (identical on every replica).

  Attributes:
    p_model: float32 [K], mean prediction on unlabeled data.
    p_data: float32 [K], running labeled class distribution.
    gt_p_data: float32 [K], the dataset's class prior.
    dalign_t: float32 [], this generation's alignment temperature.
    seed: int64 [2], this step's seed (for MixUp).
  """
  p_model: tf.Tensor
  p_data: tf.Tensor
  gt_p_data: tf.Tensor
  dalign_t: tf.Tensor
  seed: tf.Tensor


class LossOutput(NamedTuple):
  """What a method's loss returns, per replica.

  Attributes:
    loss: scalar, this replica's share of the global mean loss (summing it
      over replicas gives the loss of the global batch); weight decay excluded.
    weak_probs_mean: float32 [K], this replica's mean softmax on weak views
      (before alignment), for `p_model`.
    metrics: name -> scalar, this replica's share of the global value (the
      trainer sums them over replicas).
  """
  loss: tf.Tensor
  weak_probs_mean: tf.Tensor
  metrics: Dict[str, tf.Tensor]


class Exchange(NamedTuple):
  """What the first piece of a two-piece loss hands the second.

  Attributes:
    keep: name -> this replica's tensors, handed on as they are.
    gather: name -> [n, ...] tensors; after `exchange`, [R n, ...], every
      replica's rows in replica order (the order one device would see).
    total: name -> tensors; after `exchange`, summed over the replicas.
  """
  keep: Dict[str, tf.Tensor]
  gather: Dict[str, tf.Tensor]
  total: Dict[str, tf.Tensor]


def _replicas() -> int:
  ctx = tf.distribute.get_replica_context()
  return 1 if ctx is None else int(ctx.num_replicas_in_sync)


def replica_sum(value: tf.Tensor) -> tf.Tensor:
  """`value` summed over the replicas (replica context); on one replica
  `value` itself, with no synchronisation point (which an XLA-compiled
  replica function cannot hold)."""
  if _replicas() == 1:
    return value
  return tf.distribute.get_replica_context().all_reduce(
      tf.distribute.ReduceOp.SUM, value)


def exchange(shared: Exchange) -> Exchange:
  """Gathers and sums `shared` across the replicas (replica context; the
  identity on one replica). Outside any compiled piece with --jit_compile."""
  if _replicas() == 1:
    return shared
  ctx = tf.distribute.get_replica_context()
  gathered = {k: ctx.all_gather(v, axis=0) for k, v in shared.gather.items()}
  total = (ctx.all_reduce(tf.distribute.ReduceOp.SUM, shared.total)
           if shared.total else {})
  return Exchange(keep=shared.keep, gather=gathered, total=total)


def run_stages(stages, model, batch: Dict[str, tf.Tensor], stats: Stats,
               params: LossParams) -> LossOutput:
  """A two-piece loss in one go: `second(..., between(exchange(first(...)),
  stats, params))`."""
  first, between, second = stages
  shared = between(exchange(first(model, batch, stats, params)), stats,
                   params)
  return second(model, batch, stats, params, shared)


def check_loss_settings(cfg) -> None:
  """The loss settings every method shares (raises ConfigError)."""
  errors.require_choice('unsup_loss_type', cfg.unsup_loss_type,
                        losses.UNSUP_LOSS_TYPES)
  errors.require_choice('unsup_loss_divisor', cfg.unsup_loss_divisor,
                        losses.UNSUP_DIVISORS)
  errors.require_range('threshold', cfg.threshold, 0, 1,
                       meaning='a confidence')
  errors.require_range('temperature', cfg.temperature, 0,
                       meaning='0 = one-hot pseudo-labels')
  errors.require_range('weight_unsup', cfg.weight_unsup, 0,
                       meaning='the weight of the unsupervised loss')
  errors.require_range('mixup_beta', cfg.mixup_beta,
                       meaning='<= 0 disables MixUp')


def params_from_config(cfg, num_classes: int) -> LossParams:
  """The loss settings of a `crest.config.Config`."""
  return LossParams(
      num_classes=num_classes, threshold=cfg.threshold,
      temperature=cfg.temperature, unsup_loss_type=cfg.unsup_loss_type,
      unsup_loss_divisor=cfg.unsup_loss_divisor,
      weight_unsup=cfg.weight_unsup, do_distalign=cfg.do_distalign,
      how_dalign=cfg.how_dalign, reweight_labeled=cfg.reweight_labeled,
      mixup_beta=cfg.mixup_beta, global_batch_size=cfg.batch_size,
      global_unlabeled_batch_size=cfg.unlabeled_batch_size)


def views_first(x: tf.Tensor) -> tf.Tensor:
  """Example-major views to view-major rows.

  Args:
    x: [N, V, ...].

  Returns:
    [V * N, ...]; row v * N + i is view v of example i.
  """
  perm = [1, 0] + list(range(2, x.shape.rank))
  x = tf.transpose(x, perm)
  return tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], 0))


def labeled_loss(xe: tf.Tensor, labels: tf.Tensor, stats: Stats,
                 params: LossParams) -> tf.Tensor:
  """This replica's share of the supervised loss.

  With `reweight_labeled`, row i's loss is multiplied by the weight of its
  own class `labels[i]` (`losses.labeled_class_weights(p_data)`), as the
  original does for FixMatch and MixMatch alike (for MixMatch the row's
  class before mixing, whatever its mixed target).

  Args:
    xe: float32 [b], per-row cross-entropy.
    labels: int [b], the rows' own classes.
    stats: the running distributions (p_data).
    params: the loss settings.

  Returns: float32 scalar, sum / global labeled batch size.
  """
  if params.reweight_labeled:
    weights = losses.labeled_class_weights(stats.p_data)
    xe = xe * tf.gather(weights, tf.cast(labels, tf.int32))
  return tf.reduce_sum(xe) / params.global_batch_size


def masked_unsupervised_loss(targets: tf.Tensor, logits: tf.Tensor,
                             mask: tf.Tensor, params: LossParams,
                             num_views: int,
                             mask_sum: Optional[tf.Tensor] = None
                             ) -> tf.Tensor:
  """This replica's share of the masked unsupervised loss (replica context).

  Sums `unsupervised_loss * mask` over the replica's rows and divides by the
  global divisor: the global number of unlabeled rows (`full`) or
  `max(1, global number of rows above the threshold)` (`quality`, summed over
  all replicas), so that summing the shares over replicas gives the loss of
  the global batch.

  Args:
    targets: float32 [R, K]; logits: float32 [R, K]; mask: float32 [R].
    params: the loss settings.
    num_views: unlabeled rows per unlabeled example.
    mask_sum: float32 [], `mask` summed over all replicas when the caller
      has it (`quality`; default: all-reduced here).

  Returns: float32 scalar.
  """
  per_row = losses.unsupervised_loss(targets, logits,
                                     params.unsup_loss_type) * mask
  if params.unsup_loss_divisor != 'quality':
    mask_sum = None
  elif mask_sum is None:
    mask_sum = replica_sum(tf.reduce_sum(mask))
  divisor = losses.masked_unsup_divisor(
      mask, params.global_unlabeled_batch_size * num_views,
      params.unsup_loss_divisor, mask_sum)
  return tf.reduce_sum(per_row) / divisor


def replica_metrics(params: LossParams, *, loss_xe: tf.Tensor,
                    loss_xeu: tf.Tensor, labeled_scores: tf.Tensor,
                    labels: tf.Tensor, unlabeled_scores: tf.Tensor,
                    unlabeled_labels: tf.Tensor,
                    mask: tf.Tensor) -> Dict[str, tf.Tensor]:
  """The metrics every method reports, as this replica's shares of the
  global means (the trainer sums them over replicas).

  Args:
    params: the loss settings (global batch sizes).
    loss_xe, loss_xeu: this replica's shares of the two losses.
    labeled_scores: [b, K] logits or probabilities on labeled rows.
    labels: int [b].
    unlabeled_scores: [u, K] on unlabeled examples (one row each).
    unlabeled_labels: int [u], true labels (monitoring only).
    mask: float32 [u], the pseudo-label mask per unlabeled example.
  """
  def correct(scores, y):
    return tf.cast(tf.argmax(scores, 1) == tf.cast(y, tf.int64), tf.float32)
  return {
      'loss.xe': loss_xe,
      'loss.xeu': loss_xeu,
      'acc.train': tf.reduce_sum(correct(labeled_scores, labels)) /
                   params.global_batch_size,
      'acc.unlab': tf.reduce_sum(correct(unlabeled_scores, unlabeled_labels))
                   / params.global_unlabeled_batch_size,
      'monitor.mask': tf.reduce_sum(mask) /
                      params.global_unlabeled_batch_size,
  }


def finish(params: LossParams, *, loss_xe: tf.Tensor, loss_xeu: tf.Tensor,
           labeled_scores: tf.Tensor, labels: tf.Tensor,
           unlabeled_scores: tf.Tensor, unlabeled_labels: tf.Tensor,
           mask: tf.Tensor, weak_probs: tf.Tensor) -> LossOutput:
  """The common tail of a method's loss: total, metrics, LossOutput.

  Args:
    params: the loss settings.
    loss_xe, loss_xeu: this replica's shares of the two losses.
    labeled_scores, labels, unlabeled_scores, unlabeled_labels, mask: as
      `replica_metrics`.
    weak_probs: float32 [rows, K], softmax on the weak views before
      alignment (their mean feeds `p_model`).

  Returns:
    LossOutput with loss = loss_xe + weight_unsup * loss_xeu.
  """
  metrics = replica_metrics(
      params, loss_xe=loss_xe, loss_xeu=loss_xeu,
      labeled_scores=labeled_scores, labels=labels,
      unlabeled_scores=unlabeled_scores, unlabeled_labels=unlabeled_labels,
      mask=mask)
  return LossOutput(loss=loss_xe + params.weight_unsup * loss_xeu,
                    weak_probs_mean=tf.reduce_mean(weak_probs, 0),
                    metrics=metrics)
