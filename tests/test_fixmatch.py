"""Tests of the FixMatch loss (fixmatch.py) by numbers.

The expected values are restated here in NumPy from the reference
(`../shared/reference/original-crest.md`, "FixMatch step" and "Pseudo-labels"):
one forward pass over [labeled; weak views once per strong view; strong
views], the pseudo-targets of the weak logits (CReST+ alignment to
`gt_p_data ** t`, threshold, sharpening), supervised + weight_unsup * masked
unsupervised cross-entropy with either divisor.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

import fixmatch
from crest import method_api
from networks import common

K, H, B, U = 3, 6, 4, 5


def _params(**kw):
  base = dict(num_classes=K, threshold=0.5, temperature=0.0,
              unsup_loss_type='xe', unsup_loss_divisor='full',
              weight_unsup=2.0, do_distalign=True, how_dalign='adaptive',
              reweight_labeled=False, mixup_beta=0.0, global_batch_size=B,
              global_unlabeled_batch_size=U)
  return method_api.LossParams(**(base | kw))


def _stats(dalign_t=0.6):
  return method_api.Stats(
      p_model=tf.constant([0.5, 0.3, 0.2]), p_data=tf.constant([0.6, 0.3, 0.1]),
      gt_p_data=tf.constant([0.7, 0.2, 0.1]), dalign_t=tf.constant(dalign_t),
      seed=tf.constant([1, 2], tf.int64))


def _model():
  """Pool + batch norm + dense: the loss depends on the batch composition."""
  keras.utils.set_random_seed(5)
  return keras.Sequential([
      keras.Input((H, H, 3)), keras.layers.GlobalAveragePooling2D(),
      common.batch_norm(False, momentum=0.5), keras.layers.Dense(K)])


def _batch(num_strong, seed=0):
  rng = np.random.default_rng(seed)
  return {'x_l': tf.constant(rng.normal(size=[B, H, H, 3]), tf.float32),
          'y_l': tf.constant([0, 1, 2, 0]),
          'x_w': tf.constant(rng.normal(size=[U, 1, H, H, 3]), tf.float32),
          'x_s': tf.constant(rng.normal(size=[U, num_strong, H, H, 3]),
                             tf.float32),
          'y_u': tf.constant([0, 1, 2, 0, 1])}


def _softmax(z):
  e = np.exp(z - z.max(1, keepdims=True))
  return e / e.sum(1, keepdims=True)


def _targets(logits_w, stats, params):
  """NumPy pseudo-targets: (targets [U, K], mask [U])."""
  p = _softmax(logits_w.astype(np.float64))
  if params.do_distalign:
    if params.how_dalign is None:
      goal = stats.p_data.numpy()
    else:
      goal = stats.gt_p_data.numpy() ** float(stats.dalign_t)
      goal = goal / goal.sum()
    p = p * (1e-6 + goal) / (1e-6 + stats.p_model.numpy())
    p = p / p.sum(1, keepdims=True)
  mask = (p.max(1) >= params.threshold).astype(np.float64)
  if params.temperature == 0:
    target = np.eye(K)[p.argmax(1)]
  else:
    target = p ** (1 / params.temperature)
    target = target / target.sum(1, keepdims=True)
  return target, mask


def _expected(model, batch, stats, params, repeat_weak=True):
  """The loss by hand: (total, supervised, unsupervised, mask [U])."""
  xl, xw, xs = batch['x_l'], batch['x_w'][:, 0], batch['x_s']
  s = xs.shape[1]
  strong = tf.reshape(tf.transpose(xs, [1, 0, 2, 3, 4]), [-1, H, H, 3])
  weak = tf.concat([xw] * (s if repeat_weak else 1), 0)
  logits = model(tf.concat([xl, weak, strong], 0), training=True).numpy()
  lg_l, lg_w, lg_s = logits[:B], logits[B:B + U], logits[B + len(weak):]
  logp = lambda z: np.log(_softmax(z.astype(np.float64)))
  xe = -logp(lg_l)[np.arange(B), batch['y_l'].numpy()].sum() / B
  target, mask = _targets(lg_w, stats, params)
  # Strong view v of example i is row v * U + i; its target is example i's.
  per_row = -(np.tile(target, [s, 1]) * logp(lg_s)).sum(1) * np.tile(mask, s)
  divisor = (U * s if params.unsup_loss_divisor == 'full' else
             max(1.0, s * mask.sum()))
  xeu = per_row.sum() / divisor
  return xe + params.weight_unsup * xeu, xe, xeu, mask


@pytest.mark.parametrize('num_strong,divisor,temperature', [
    (1, 'full', 0.0), (2, 'full', 0.0), (3, 'quality', 0.0),
    (2, 'quality', 0.5)])
def test_loss_equals_the_formula(num_strong, divisor, temperature):
  model, batch, stats = _model(), _batch(num_strong), _stats()
  params = _params(unsup_loss_divisor=divisor, temperature=temperature)
  out = fixmatch.loss(model, batch, stats, params)
  total, xe, xeu, mask = _expected(model, batch, stats, params)
  assert float(out.metrics['loss.xe']) == pytest.approx(xe, rel=1e-5)
  assert float(out.metrics['loss.xeu']) == pytest.approx(xeu, rel=1e-5)
  assert float(out.loss) == pytest.approx(total, rel=1e-5)
  # The mask is neither all 0 nor all 1, so both it and the divisors show.
  assert 0 < mask.sum() < U
  assert float(out.metrics['monitor.mask']) == pytest.approx(mask.mean())
  other = 'quality' if divisor == 'full' else 'full'
  _, _, xeu_other, _ = _expected(model, batch, stats,
                                 _params(unsup_loss_divisor=other,
                                         temperature=temperature))
  assert abs(xeu_other - xeu) > 0.1 * xeu  # The divisor matters here.
  # p_model's input: the weak views' softmax before alignment.
  probs = _softmax(model(tf.concat(
      [batch['x_l']] + [batch['x_w'][:, 0]] * num_strong + [tf.reshape(
          tf.transpose(batch['x_s'], [1, 0, 2, 3, 4]), [-1, H, H, 3])], 0),
      training=True).numpy()[B:B + U])
  np.testing.assert_allclose(out.weak_probs_mean, probs.mean(0), rtol=1e-5)


def test_the_temperature_reaches_the_targets():
  # CReST+: the alignment goal is gt_p_data ** t; t = 1 and t = 0.3 give
  # other masks or targets here, and the loss follows the formula for each.
  model, batch, params = _model(), _batch(1), _params(temperature=0.5)
  losses = []
  for t in (1.0, 0.3):
    stats = _stats(dalign_t=t)
    out = float(fixmatch.loss(model, batch, stats, params).metrics['loss.xeu'])
    assert out == pytest.approx(_expected(model, batch, stats, params)[2],
                                rel=1e-5)
    losses.append(out)
  assert abs(losses[0] - losses[1]) > 1e-3


def test_weak_views_repeat_once_per_strong_view():
  # With S = 2 the batch-norm statistics count the weak views twice, as the
  # original's forward pass does; without the repeat the loss differs.
  model, batch, stats, params = _model(), _batch(2, seed=3), _stats(), _params()
  out = float(fixmatch.loss(model, batch, stats, params).loss)
  with_repeat = _expected(model, batch, stats, params)[0]
  without = _expected(model, batch, stats, params, repeat_weak=False)[0]
  assert out == pytest.approx(with_repeat, rel=1e-5)
  assert abs(with_repeat - without) > 1e-4 * abs(with_repeat)


def test_reweight_labeled_weights_each_row_by_its_class():
  model, batch, stats = _model(), _batch(1), _stats()
  params = _params(reweight_labeled=True)
  xe_plain = float(fixmatch.loss(model, batch, stats, _params()).metrics[
      'loss.xe'])
  out = fixmatch.loss(model, batch, stats, params)
  logits = model(tf.concat([batch['x_l'], batch['x_w'][:, 0],
                            batch['x_s'][:, 0]], 0), training=True)[:B]
  per_row = -np.log(_softmax(logits.numpy()))[np.arange(B),
                                              batch['y_l'].numpy()]
  w = 1 / (1e-6 + stats.p_data.numpy())
  w = w / w.sum() * K
  expected = (per_row * w[batch['y_l'].numpy()]).sum() / B
  assert float(out.metrics['loss.xe']) == pytest.approx(expected, rel=1e-5)
  assert abs(expected - xe_plain) > 1e-3
