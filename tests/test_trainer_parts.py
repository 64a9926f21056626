"""The trainer's parts by numbers: EMA, optimizer, evaluation, checkpoints."""
import glob

import keras
import numpy as np
import pytest
import tensorflow as tf

from crest import checkpoints as checkpoints_lib
from crest import ema as ema_lib
from crest import evaluation
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


def test_optimizer_applies_the_schedule_with_nesterov_momentum():
  cfg = Config(model_dir='x', num_epoch=2, num_batch=4, sched_type='linear',
               learning_rate=0.1, momentum=0.9)
  opt = optimization.make_optimizer(cfg)
  w = keras.Variable(np.zeros(2, np.float32))
  opt.build([w])
  g = np.array([1.0, -2.0], np.float32)
  opt.apply_gradients([(tf.constant(g), w)])
  # First Nesterov step from zero velocity: w -= lr * g * (1 + momentum).
  np.testing.assert_allclose(w.numpy(), -0.1 * g * 1.9, rtol=1e-6)
  assert optimization.applied_learning_rate(opt) == pytest.approx(0.1)
  for _ in range(3):
    opt.apply_gradients([(tf.constant(g), w)])
  # Step 3 of 8 on the linear schedule: lr * (1 - 3/8).
  assert optimization.applied_learning_rate(opt) == pytest.approx(0.0625)


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
