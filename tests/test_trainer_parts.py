"""The trainer's parts by numbers: EMA, optimizer, evaluation, checkpoints."""
import glob
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from crest import checkpoints as checkpoints_lib
from crest import ema as ema_lib
from crest import evaluation
from crest import metrics
from crest import optimization
from crest.config import Config
from crest.errors import UserError
from networks import common


def _pair():
  def make():
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2),
                             common.batch_norm(False)])
  keras.utils.set_random_seed(1)
  return make(), make()


def test_ema_moves_trainables_and_copies_statistics():
  assert float(ema_lib.ema_rule(tf.constant(1.0), tf.constant(3.0), 0.75)) == (
      pytest.approx(1.5))
  model, ema = _pair()
  before = [v.numpy() for v in ema.trainable_variables]
  for v in model.non_trainable_variables:
    v.assign(v + 2.0)
  strategy = tf.distribute.get_strategy()
  ema_lib.update_ema(strategy, ema, model, decay=0.9)
  for e, b, m in zip(ema.trainable_variables, before,
                     model.trainable_variables):
    np.testing.assert_allclose(e.numpy(), b - 0.1 * (b - m.numpy()),
                               rtol=1e-6, atol=1e-7)
  assert any(np.abs(b - m.numpy()).max() > 1e-3
             for b, m in zip(before, model.trainable_variables))
  for e, m in zip(ema.non_trainable_variables, model.non_trainable_variables):
    np.testing.assert_array_equal(e.numpy(), m.numpy())


def _schedule(step, cfg):
  """The learning-rate schedules restated (reference, "Schedules"): the step
  wraps modulo S = num_epoch * num_batch; 'epoch' floors it to epochs."""
  total = cfg.num_epoch * cfg.num_batch
  s = step % total
  if cfg.sched_freq == 'epoch':
    s = s // cfg.num_batch * cfg.num_batch
  f, lo = s / total, cfg.sched_min_rate
  rate = {
      'const': 1.0,
      'linear': lo + (1 - lo) * min(1.0, max(0.0, 1 - f)),
      'cos': lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * f)),
      'halfcos': math.cos(math.pi * f * cfg.sched_level / 16),
      'step': cfg.sched_gamma ** (s // (cfg.sched_step_size * (
          cfg.num_batch if cfg.sched_freq == 'epoch' else 1))),
  }[cfg.sched_type]
  return cfg.learning_rate * rate


@pytest.mark.parametrize('kw', [
    dict(sched_type='halfcos', sched_level=7),
    dict(sched_type='cos', sched_min_rate=0.25),
    dict(sched_type='linear', sched_min_rate=0.1),
    dict(sched_type='step', sched_freq='epoch', sched_gamma=0.5),
    dict(sched_type='const'),
])
def test_each_step_applies_the_scheduled_learning_rate(kw):
  """Plain SGD (momentum 0) from w = 0 with gradient 1: the update of step s
  is -lr_s, over one wrap of the 3 x 3 steps."""
  cfg = Config(model_dir='x', num_epoch=3, num_batch=3, learning_rate=0.1,
               momentum=0.0, **kw)
  opt = optimization.make_optimizer(cfg)
  w = keras.Variable(np.zeros(1, np.float32))
  opt.build([w])
  applied = []
  for step in range(11):
    w.assign([0.0])
    opt.apply_gradients([(tf.constant([1.0]), w)])
    applied.append(-float(w.numpy()[0]))
    assert optimization.applied_learning_rate(opt) == pytest.approx(
        applied[-1], rel=1e-6)
  expected = [_schedule(s, cfg) for s in range(11)]
  np.testing.assert_allclose(applied, expected, rtol=1e-6)
  if kw['sched_type'] != 'const':  # The schedule really changes the rate.
    assert min(expected) < 0.8 * max(expected)


def test_sgd_nesterov_update_matches_numpy():
  """Keras SGD with Nesterov momentum, restated: v <- m v - lr_s g;
  w <- w + m v - lr_s g, on a changing learning rate and gradients."""
  cfg = Config(model_dir='x', num_epoch=2, num_batch=4, sched_type='linear',
               learning_rate=0.1, momentum=0.9)
  opt = optimization.make_optimizer(cfg)
  w = keras.Variable(np.array([0.5, -1.0, 2.0], np.float32))
  opt.build([w])
  rng = np.random.default_rng(0)
  w_np, v_np, v_plain = w.numpy().astype(np.float64), 0.0, 0.0
  w_plain = w_np.copy()
  for step in range(6):
    g = rng.normal(size=3)
    opt.apply_gradients([(tf.constant(g, tf.float32), w)])
    lr = _schedule(step, cfg)
    v_np = 0.9 * v_np - lr * g
    w_np = w_np + 0.9 * v_np - lr * g
    v_plain = 0.9 * v_plain - lr * g  # Momentum without Nesterov.
    w_plain = w_plain + v_plain
    np.testing.assert_allclose(w.numpy(), w_np, rtol=1e-5, atol=1e-6)
  # The check can fail: plain momentum is outside its tolerance.
  assert np.abs(w_plain - w_np).max() > 1e-2
  with pytest.raises(AssertionError):
    np.testing.assert_allclose(w.numpy(), w_plain, rtol=1e-5, atol=1e-6)


def test_classification_report_on_a_hand_made_confusion():
  # True 0 x3, 1 x2, 2 x4; predicted 0,0,1 | 1,1 | 0,1,1,1: class 2 is
  # never predicted.
  labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
  pred = np.array([0, 0, 1, 1, 1, 0, 1, 1, 1])
  logits = np.eye(3)[pred] * 2.0 + np.linspace(0, 0.1, 27).reshape(9, 3)
  rep = metrics.classification_report(labels, logits)
  np.testing.assert_array_equal(rep['confusion'],
                                [[2, 1, 0], [0, 2, 0], [1, 3, 0]])
  assert rep['accuracy'] == pytest.approx(4 / 9)
  np.testing.assert_allclose(rep['recall'], [2 / 3, 1.0, 0.0])
  np.testing.assert_allclose(rep['precision'], [2 / 3, 2 / 6, 0.0])
  # Logit adjustment: logits - log(prior); a zero prior counts as 1e-12.
  prior = np.array([0.6, 0.3, 0.1])
  adj = metrics.logit_adjust(logits, prior)
  np.testing.assert_allclose(adj, logits - np.log(prior), rtol=1e-12)
  np.testing.assert_allclose(metrics.logit_adjust(logits[:1], [0.5, 0.5, 0]),
                             [logits[0] - np.log([0.5, 0.5, 1e-12])])
  # By hand: -log(0.6, 0.3, 0.1) = (0.51, 1.20, 2.30): class 2 gains 1.79 on
  # class 0 and 1.10 on class 1, less than the margin of 2 (the noise adds
  # under 0.01): no row changes its prediction.
  rep_la = metrics.classification_report(labels, adj)
  np.testing.assert_array_equal(rep_la['confusion'], [[2, 1, 0], [0, 2, 0],
                                                      [1, 3, 0]])
  flipped = metrics.classification_report(
      labels, metrics.logit_adjust(logits, [0.98, 0.01, 0.01]))
  # Now classes 1 and 2 gain log(0.98 / 0.01) = 4.58 > 2 on class 0: the
  # rows predicted 0 go to 2 (its noise is larger than 1's by 0.008), the
  # rows predicted 1 stay.
  np.testing.assert_array_equal(flipped['confusion'],
                                [[0, 1, 2], [0, 2, 0], [0, 3, 1]])
  np.testing.assert_allclose(flipped['recall'], [0.0, 1.0, 0.25])


def test_test_metrics_plain_and_logit_adjusted():
  labels = np.array([0, 0, 1, 1])
  raw = np.array([[3., 0.], [0.2, 0.], [0.3, 0.], [0., 1.]], np.float32)
  p_data = np.array([0.9, 0.1], np.float32)
  out = evaluation.test_metrics(raw, raw, labels, p_data,
                                np.array([0.5, 0.5], np.float32))
  assert out['acc.test'] == pytest.approx(0.75)
  assert out['per_class_acc.test'] == pytest.approx([1.0, 0.5])
  # -log p_data lifts class 1 by 2.3 - 0.1 = 2.2: rows 1 and 2 flip to class 1.
  assert out['acc.test.la'] == pytest.approx(0.75)
  assert out['per_class_acc.test.la'] == pytest.approx([0.5, 1.0])
  assert out['monitor.kl_model'] == pytest.approx(0.0, abs=1e-7)
  expected_kl = 0.5 * (np.log(0.5 / 0.9) + np.log(0.5 / 0.1))
  assert out['monitor.kl_data'] == pytest.approx(expected_kl, rel=1e-5)


def test_checkpoints_fall_back_past_an_unreadable_one(tmp_path):
  v = tf.Variable(1.0)
  ckpt = tf.train.Checkpoint(v=v)
  cps = checkpoints_lib.Checkpoints(ckpt, str(tmp_path), True, keep=4)
  assert cps.restore_latest() is None
  cps.save(1)
  v.assign(2.0)
  cps.save(2)
  for path in glob.glob(str(tmp_path / 'ckpt-2.data-*')):
    with open(path, 'wb') as f:
      f.write(b'')  # Truncated.
  v.assign(5.0)
  assert cps.restore_latest().endswith('ckpt-1') and float(v) == 1.0
  for path in glob.glob(str(tmp_path / 'ckpt-1.data-*')):
    with open(path, 'wb') as f:
      f.write(b'')
  with pytest.raises(UserError, match='No readable checkpoint'):
    cps.restore_latest()


def test_rollback_record_round_trips(tmp_path):
  assert checkpoints_lib.read_skipped(str(tmp_path)) == []
  checkpoints_lib.write_skipped(str(tmp_path), [7, 3])
  assert checkpoints_lib.read_skipped(str(tmp_path)) == [3, 7]


def test_stream_index_after_skipped_batches():
  from crest import input_stream  # pylint: disable=g-import-not-at-top
  assert input_stream.first_batch(5, []) == 5
  # Batches 2 and 4 were skipped: step 5 reads batch 7; a later skip
  # (batch 9) does not matter yet.
  assert input_stream.first_batch(5, [4, 2, 9]) == 7
  counter = input_stream.BatchCounter(7, [4, 2, 9])
  assert counter.take(3) == [7, 8, 10]
  assert counter.take(1) == [11]
