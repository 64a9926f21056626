"""Tests of the FixMatch loss (fixmatch.py) by numbers."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import fixmatch
from crest import method_api
from crest import pseudo_labels
from networks import common

K, H = 3, 6


def _params(**kw):
  base = dict(num_classes=K, threshold=0.5, temperature=0.0,
              unsup_loss_type='xe', unsup_loss_divisor='full',
              weight_unsup=2.0, do_distalign=True, how_dalign=None,
              reweight_labeled=False, mixup_beta=0.0, global_batch_size=4,
              global_unlabeled_batch_size=5)
  return method_api.LossParams(**(base | kw))


def _stats():
  return method_api.Stats(
      p_model=tf.constant([0.5, 0.3, 0.2]), p_data=tf.constant([0.6, 0.3, 0.1]),
      gt_p_data=tf.constant([0.6, 0.3, 0.1]), dalign_t=tf.constant(1.0),
      seed=tf.constant([1, 2], tf.int64))


def _model():
  """Pool + batch norm + dense: the loss depends on the batch composition."""
  keras.utils.set_random_seed(5)
  return keras.Sequential([
      keras.Input((H, H, 3)), keras.layers.GlobalAveragePooling2D(),
      common.batch_norm(False, momentum=0.5), keras.layers.Dense(K)])


def _batch(num_strong, seed=0):
  rng = np.random.default_rng(seed)
  u = 5
  return {'x_l': tf.constant(rng.normal(size=[4, H, H, 3]), tf.float32),
          'y_l': tf.constant([0, 1, 2, 0]),
          'x_w': tf.constant(rng.normal(size=[u, 1, H, H, 3]), tf.float32),
          'x_s': tf.constant(rng.normal(size=[u, num_strong, H, H, 3]),
                             tf.float32),
          'y_u': tf.constant([0, 1, 2, 0, 1])}


def _expected(model, batch, stats, params, repeat_weak=True):
  """The loss by hand: one forward over [x_l; x_w repeated S; strong]."""
  xl, xw, xs = batch['x_l'], batch['x_w'][:, 0], batch['x_s']
  u, s = xs.shape[0], xs.shape[1]
  strong = tf.reshape(tf.transpose(xs, [1, 0, 2, 3, 4]), [-1, H, H, 3])
  weak = tf.concat([xw] * (s if repeat_weak else 1), 0)
  logits = model(tf.concat([xl, weak, strong], 0), training=True).numpy()
  lg_l, lg_w, lg_s = logits[:4], logits[4:4 + u], logits[4 + len(weak):]
  logp = lambda z: z - np.log(np.exp(z).sum(1, keepdims=True))
  xe = -logp(lg_l)[np.arange(4), batch['y_l'].numpy()].mean()
  target, mask, _ = pseudo_labels.pseudo_targets(
      lg_w, p_model=stats.p_model, p_data=stats.p_data,
      gt_p_data=stats.gt_p_data, do_distalign=True, how_dalign=None,
      dalign_t=1.0, threshold=params.threshold, temperature=0.0)
  target, mask = np.tile(target.numpy(), [s, 1]), np.tile(mask.numpy(), s)
  xeu = (-(target * logp(lg_s)).sum(1) * mask).sum() / (u * s)
  return xe + params.weight_unsup * xeu, xe, xeu


@pytest.mark.parametrize('num_strong', [1, 2])
def test_loss_equals_the_formula(num_strong):
  model, batch, stats, params = _model(), _batch(num_strong), _stats(), _params()
  out = fixmatch.loss(model, batch, stats, params)
  total, xe, xeu = _expected(model, batch, stats, params)
  assert float(out.metrics['loss.xe']) == pytest.approx(xe, rel=1e-5)
  assert float(out.metrics['loss.xeu']) == pytest.approx(xeu, rel=1e-5)
  assert float(out.loss) == pytest.approx(total, rel=1e-5)
  assert 0 < xeu  # Some rows pass the threshold: the test sees the mask.
  probs = tf.nn.softmax(model(tf.concat(
      [batch['x_l']] + [batch['x_w'][:, 0]] * num_strong + [tf.reshape(
          tf.transpose(batch['x_s'], [1, 0, 2, 3, 4]), [-1, H, H, 3])], 0),
      training=True)[4:9]).numpy()
  np.testing.assert_allclose(out.weak_probs_mean, probs.mean(0), rtol=1e-5)


def test_weak_views_repeat_once_per_strong_view():
  # With S = 2 the batch-norm statistics count the weak views twice, as the
  # original's forward pass does; without the repeat the loss differs.
  model, batch, stats, params = _model(), _batch(2, seed=3), _stats(), _params()
  out = float(fixmatch.loss(model, batch, stats, params).loss)
  with_repeat, _, _ = _expected(model, batch, stats, params)
  without, _, _ = _expected(model, batch, stats, params, repeat_weak=False)
  assert out == pytest.approx(with_repeat, rel=1e-5)
  assert abs(with_repeat - without) > 1e-4 * abs(with_repeat)


def test_reweight_labeled_weights_each_row_by_its_class():
  model, batch, stats = _model(), _batch(1), _stats()
  params = _params(reweight_labeled=True)
  xe_plain = float(fixmatch.loss(model, batch, stats, _params()).metrics[
      'loss.xe'])
  out = fixmatch.loss(model, batch, stats, params)
  logits = model(tf.concat([batch['x_l'], batch['x_w'][:, 0],
                            batch['x_s'][:, 0]], 0), training=True)[:4]
  per_row = tf.keras.losses.sparse_categorical_crossentropy(
      batch['y_l'], logits, from_logits=True).numpy()
  w = 1 / (1e-6 + stats.p_data.numpy())
  w = w / w.sum() * K
  expected = (per_row * w[batch['y_l'].numpy()]).sum() / 4
  assert float(out.metrics['loss.xe']) == pytest.approx(expected, rel=1e-5)
  assert abs(expected - xe_plain) > 1e-3
