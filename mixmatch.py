"""MixMatch (Berthelot et al., 2019) for CReST: the loss only.

The original CReST release could not run MixMatch (see the reference's list
of defects); this is what it set out to do, with these choices:

* Label guessing: the K weak views of each unlabeled example are forwarded in
  training mode; the pseudo-target is the mean of their softmax
  (`crest.mixup.average_views`), distribution-aligned like FixMatch (incl.
  CReST+ temperature), sharpened with `temperature`, and masked by
  `max(aligned probs) >= threshold` (MixMatch's default threshold 0 keeps
  all). No gradient flows through the targets.
* Batch norm: both forward passes (label guessing, then the mixed batch) are
  in training mode, so batch norm normalises with batch statistics and its
  moving statistics are updated by both (the weak views are closer to test
  images than MixUp blends). Labeled and unlabeled rows go through ONE
  forward pass, so MixMatch's interleaving trick is not needed.
* MixUp: the pool is [labeled (one-hot); every unlabeled view (its example's
  pseudo-target)] of the GLOBAL batch, gathered from all replicas in the
  order one device would see it. One permutation of the pool and one
  `lambda' = max(lambda, 1 - lambda)`, lambda ~ Beta(mixup_beta, mixup_beta),
  per pool row (as the original MixMatch code draws it) come from
  `stats.seed`, so they are identical on every replica and across replica
  counts; each replica forwards its own rows of the mixed pool.
  `mixup_beta <= 0` disables mixing.
* Loss: soft cross-entropy on the mixed labeled rows / global labeled batch
  (with `reweight_labeled`, each row's loss times the weight of that row's
  own class before mixing, as the original);
  `unsup_loss_type` (default mse) on the mixed unlabeled rows times the mask
  of the row's own example / (global unlabeled batch x K views) ('full') or
  max(1, global mask sum) ('quality'); times `weight_unsup` (constant: the
  reference mentions no ramp-up).
"""
from __future__ import annotations

from typing import Dict, Tuple, Union

import tensorflow as tf

from crest import losses
from crest import method_api
from crest import mixup
from crest import pseudo_labels
from crest.errors import ConfigError
from crest.method_api import Exchange, LossOutput, LossParams, Stats
from crest.method_api import views_first

LABEL = 'MixMatch'
CREST_LABEL = 'MixMatch + {crest}'
# What the original needed to run MixMatch at all (see the reference's list
# of defects), applied to every flag the user did not set.
DEFAULTS = {
    'num_weakaug': 2,
    'num_strongaug': 0,
    'temperature': 0.5,
    'threshold': 0.0,
    'unsup_loss_type': 'mse',
    'weight_unsup': 75.0,
}
# MixUp gathers the global batch in the loss (see above); STAGES (below)
# splits the loss around the gather.
GATHERS_ACROSS_REPLICAS = True


def check(cfg) -> None:
  """Weak views only, at least one."""
  if cfg.num_weakaug < 1:
    raise ConfigError(
        '--method=mixmatch needs at least one weak view (--num_weakaug).')
  if cfg.num_strongaug != 0:
    raise ConfigError(
        '--method=mixmatch uses weak views only; set --num_strongaug=0.')


def own_rows(replica: tf.Tensor, num_labeled: Union[int, tf.Tensor],
             num_unlabeled: Union[int, tf.Tensor], num_views: int,
             num_replicas: int) -> tf.Tensor:
  """Rows of the global pool that belong to one replica.

  The global pool is [labeled (R * b rows); view 0 of the R * u unlabeled
  examples; view 1; ...], i.e. the order one device would see, where replica
  r holds labeled rows [r b, (r + 1) b) and unlabeled examples
  [r u, (r + 1) u).

  Args:
    replica: int scalar, the replica id r.
    num_labeled: b, labeled examples per replica.
    num_unlabeled: u, unlabeled examples per replica.
    num_views: V, weak views per unlabeled example.
    num_replicas: R.

  Returns:
    int32 [b + V * u]: r's labeled rows, then its unlabeled rows view-major
    (the order of `views_first` on r's own views).
  """
  r = tf.cast(replica, tf.int32)
  b = tf.cast(num_labeled, tf.int32)
  u = tf.cast(num_unlabeled, tf.int32)
  lab = r * b + tf.range(b, dtype=tf.int32)
  base = num_replicas * b + r * u
  unl = (base + num_replicas * u * tf.range(num_views, dtype=tf.int32)[:, None]
         + tf.range(u, dtype=tf.int32)[None, :])
  return tf.concat([lab, tf.reshape(unl, [-1])], 0)


def pool_permutation_and_lambda(size: Union[int, tf.Tensor], beta: float,
                                seed: tf.Tensor
                                ) -> Tuple[tf.Tensor, tf.Tensor]:
  """The MixUp partner permutation and per-row lambda' of the global pool.

  Args:
    size: number of rows in the global pool.
    beta: Beta(beta, beta) parameter; <= 0 gives lambda' = 1 (no mixing).
    seed: int [2], this step's seed (the same on every replica).

  Returns:
    (permutation int32 [size], lam float32 [size] in [0.5, 1]).
  """
  seeds = tf.random.experimental.stateless_split(
      tf.cast(seed, tf.int64), num=2)
  perm = tf.random.experimental.stateless_shuffle(
      tf.range(size, dtype=tf.int32), seed=seeds[0])
  lam = mixup.mixup_lambda(beta, [size], seeds[1])
  return perm, lam


def _views(xw: tf.Tensor) -> int:
  if xw.shape[1] is None:
    raise ValueError('mixmatch needs a static number of views; x_w has '
                     f'shape {xw.shape}.')
  return int(xw.shape[1])


def _size(x: tf.Tensor):
  return x.shape[0] if x.shape[0] is not None else tf.shape(x)[0]


def guess(model, batch: Dict[str, tf.Tensor], stats: Stats,
          params: LossParams) -> Exchange:
  """The first piece: label guessing from the V weak views (training mode,
  no gradient), and what the global pool needs from this replica.

  Args: as `loss`.

  Returns:
    Exchange: keep 'probs_w' [V u, K] (softmax of the weak views), 'avg'
    [u, K] (their mean per example), 'mask' [u]; gather 'x_l' [b, H, W, C],
    'y_l' [b, K] (one-hot), 'x_w' [u, V, H, W, C], 'target' [u, K]; total
    'mask_sum' [] (the mask summed over the V u unlabeled rows, for the
    `quality` divisor).
  """
  k = params.num_classes
  xw = batch['x_w']
  num_views = _views(xw)
  logits_w = tf.cast(model(views_first(xw), training=True), tf.float32)
  probs_w = tf.stop_gradient(tf.nn.softmax(logits_w))  # [V * u, K]
  avg = mixup.average_views(tf.reshape(probs_w, [num_views, -1, k]))
  target, mask, _ = pseudo_labels.pseudo_targets_from_probs(
      avg, p_model=stats.p_model, p_data=stats.p_data,
      gt_p_data=stats.gt_p_data, do_distalign=params.do_distalign,
      how_dalign=params.how_dalign, dalign_t=stats.dalign_t,
      threshold=params.threshold, temperature=params.temperature)
  yl_hot = tf.one_hot(tf.cast(batch['y_l'], tf.int32), k, dtype=tf.float32)
  return Exchange(
      keep={'probs_w': probs_w, 'avg': avg, 'mask': mask},
      gather={'x_l': tf.cast(batch['x_l'], tf.float32), 'y_l': yl_hot,
              'x_w': tf.cast(xw, tf.float32),
              'target': tf.stop_gradient(target)},
      total={'mask_sum': tf.reduce_sum(tf.tile(mask, [num_views]))})


def draw(shared: Exchange, stats: Stats, params: LossParams) -> Exchange:
  """Between the pieces (XLA has no stateless shuffle or gamma): the pool's
  partner permutation 'perm' int32 [P] and 'lam' float32 [P] (P rows of the
  global pool), added to `shared.keep`."""
  g = shared.gather
  shape = tf.shape(g['x_w'])  # Gathered shapes may not be static.
  size = tf.shape(g['x_l'])[0] + shape[0] * shape[1]
  perm, lam = pool_permutation_and_lambda(size, params.mixup_beta, stats.seed)
  return shared._replace(keep=dict(shared.keep, perm=perm, lam=lam))


def mixed_loss(model, batch: Dict[str, tf.Tensor], stats: Stats,
               params: LossParams, shared: Exchange) -> LossOutput:
  """The second piece: MixUp over the global pool (`shared`, gathered from
  every replica), one forward pass over this replica's mixed rows, the loss.

  Args: as `loss`, plus `guess`'s Exchange after `method_api.exchange` and
    `draw`.
  """
  ctx = tf.distribute.get_replica_context()
  num_replicas = ctx.num_replicas_in_sync
  yl = batch['y_l']
  num_views = _views(batch['x_w'])
  b, u = _size(batch['x_l']), _size(batch['x_w'])
  mask = shared.keep['mask']
  g = shared.gather

  # The global pool, in the order one device would see it.
  pool_x = tf.concat([g['x_l'], views_first(g['x_w'])], 0)
  pool_y = tf.concat([g['y_l'], tf.tile(g['target'], [num_views, 1])], 0)
  perm, lam = shared.keep['perm'], shared.keep['lam']
  rows = own_rows(ctx.replica_id_in_sync_group, b, u, num_views, num_replicas)
  # Every replica mixes the (small) global pool identically and keeps its rows.
  mixed_x, mixed_y = mixup.mixup(pool_x, pool_y, perm, lam)
  mixed_x = tf.gather(mixed_x, rows)
  mixed_y = tf.stop_gradient(tf.gather(mixed_y, rows))

  # One forward pass over this replica's mixed labeled and unlabeled rows.
  logits = tf.cast(model(mixed_x, training=True), tf.float32)
  logits_l, logits_u = logits[:b], logits[b:]
  y_mix_l, y_mix_u = mixed_y[:b], mixed_y[b:]

  # Row i of the mixed labeled rows is labeled example i blended with a
  # partner (lambda' >= 0.5): reweighting uses example i's own class.
  loss_xe = method_api.labeled_loss(losses.softmax_xe(y_mix_l, logits_l),
                                    yl, stats, params)

  # Each mixed row carries its own example's mask.
  loss_xeu = method_api.masked_unsupervised_loss(
      y_mix_u, logits_u, tf.tile(mask, [num_views]), params, num_views,
      mask_sum=shared.total.get('mask_sum'))

  return method_api.finish(
      params, loss_xe=loss_xe, loss_xeu=loss_xeu, labeled_scores=logits_l,
      labels=yl, unlabeled_scores=shared.keep['avg'],
      unlabeled_labels=batch['y_u'], mask=mask,
      weak_probs=shared.keep['probs_w'])


# The loss in two pieces around the gather (compiled each with --jit_compile).
STAGES = (guess, draw, mixed_loss)


def loss(model, batch: Dict[str, tf.Tensor], stats: Stats,
         params: LossParams) -> LossOutput:
  """MixMatch loss on one replica's batch (see the module docstring):
  `guess`, the exchange across replicas, `draw`, `mixed_loss`.

  Args:
    model: maps float32 [N, H, W, C] to logits [N, K].
    batch: 'x_l' [b, H, W, C], 'y_l' int [b], 'x_w' [u, V, H, W, C] (V >= 1
      weak views), 'x_s' [u, 0, H, W, C] (unused), 'y_u' int [u] (true
      labels, monitoring only).
    stats: running distributions, this generation's temperature and this
      step's seed.
    params: loss settings; batch sizes are global.

  Returns:
    LossOutput (loss scaled by the global batch sizes). 'acc.train' is the
    accuracy on the mixed labeled inputs against their own labels (their own
    label carries weight lambda' >= 0.5).
  """
  return method_api.run_stages(STAGES, model, batch, stats, params)
