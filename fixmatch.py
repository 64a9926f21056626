"""FixMatch (Sohn et al., 2020) as in the CReST reference.

The method declaration (`crest.method_api` lists the fields) and its loss.
"""
from __future__ import annotations

from typing import Dict

import tensorflow as tf

from crest import losses
from crest import method_api
from crest import pseudo_labels
from crest.errors import ConfigError
from crest.method_api import LossOutput, LossParams, Stats

LABEL = 'FixMatch'
# The CReST paper's tables call FixMatch + CReST simply 'CReST'.
CREST_LABEL = '{crest}'
DEFAULTS: Dict[str, object] = {}
GATHERS_ACROSS_REPLICAS = False


def check(cfg) -> None:
  """One weak view and at least one strong view per unlabeled example."""
  if cfg.num_weakaug != 1:
    raise ConfigError(f'--method=fixmatch uses exactly one weak view per '
                      f'example (--num_weakaug=1); got {cfg.num_weakaug}.')
  if cfg.num_strongaug < 1:
    raise ConfigError('--method=fixmatch needs at least one strong view '
                      '(--num_strongaug >= 1).')


def loss(model, batch: Dict[str, tf.Tensor], stats: Stats,
         params: LossParams) -> LossOutput:
  """FixMatch loss on one replica's batch.

  One forward pass in training mode over [labeled; weak views repeated S
  times; strong views] (S strong views per example, as the original).
  Pseudo-targets come from the weak logits (aligned, sharpened, masked by the
  threshold) and supervise every strong view of the same example.

  Args:
    model: maps float32 [N, H, W, C] to logits [N, K].
    batch: 'x_l' [b, H, W, C], 'y_l' int [b], 'x_w' [u, 1, H, W, C],
      'x_s' [u, S, H, W, C], 'y_u' int [u] (true labels, monitoring only).
    stats: running distributions and this generation's temperature.
    params: loss settings; batch sizes are global.

  Returns:
    LossOutput (loss scaled by the global batch sizes).
  """
  xl, yl = batch['x_l'], batch['y_l']
  xw = batch['x_w'][:, 0]
  num_strong = batch['x_s'].shape[1]
  xs = method_api.views_first(batch['x_s'])
  nl, nu = tf.shape(xl)[0], tf.shape(xw)[0]
  # As the original, the weak views go through the forward pass once per
  # strong view (the batch-norm statistics count the repeats); their logits
  # are identical, so the first copy serves.
  xw_repeated = xw if num_strong == 1 else tf.tile(xw, [num_strong, 1, 1, 1])
  logits = model(tf.concat([xl, xw_repeated, xs], 0), training=True)
  logits = tf.cast(logits, tf.float32)
  logits_l = logits[:nl]
  logits_w = tf.stop_gradient(logits[nl:nl + nu])
  logits_s = logits[nl + num_strong * nu:]

  loss_xe = method_api.labeled_loss(losses.sparse_xe(yl, logits_l), yl,
                                    stats, params)

  # Pseudo-labels from the weak view; one target per strong view.
  target, mask, _ = pseudo_labels.pseudo_targets(
      logits_w, p_model=stats.p_model, p_data=stats.p_data,
      gt_p_data=stats.gt_p_data, do_distalign=params.do_distalign,
      how_dalign=params.how_dalign, dalign_t=stats.dalign_t,
      threshold=params.threshold, temperature=params.temperature)
  target = tf.stop_gradient(tf.tile(target, [num_strong, 1]))
  loss_xeu = method_api.masked_unsupervised_loss(
      target, logits_s, tf.tile(mask, [num_strong]), params, num_strong)

  return method_api.finish(
      params, loss_xe=loss_xe, loss_xeu=loss_xeu, labeled_scores=logits_l,
      labels=yl, unlabeled_scores=logits_w, unlabeled_labels=batch['y_u'],
      mask=mask, weak_probs=tf.nn.softmax(logits_w))
