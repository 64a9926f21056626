"""Tests of crest.losses."""
import math

import numpy as np
import pytest
import tensorflow as tf

from crest import losses


def test_softmax_and_sparse_xe():
  logits = tf.constant([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
  lse0 = math.log(math.exp(2) + math.exp(1) + 1)
  sparse = losses.sparse_xe(tf.constant([0, 2]), logits).numpy()
  np.testing.assert_allclose(sparse, [lse0 - 2, math.log(3)], rtol=1e-6)
  hard = losses.softmax_xe(tf.one_hot([0, 2], 3), logits).numpy()
  np.testing.assert_allclose(hard, sparse, rtol=1e-6)
  soft = losses.softmax_xe(tf.constant([[0.5, 0.5, 0.0], [1 / 3] * 3]),
                           logits).numpy()
  np.testing.assert_allclose(soft, [lse0 - 1.5, math.log(3)], rtol=1e-6)
  assert soft.shape == (2,)


def test_softmax_xe_no_gradient_to_targets():
  targets = tf.Variable([[0.3, 0.7]])
  logits = tf.Variable([[0.1, 0.2]])
  with tf.GradientTape(persistent=True) as tape:
    loss = tf.reduce_sum(losses.softmax_xe(targets, logits))
  assert tape.gradient(loss, targets) is None
  assert tape.gradient(loss, logits) is not None


def test_labeled_class_weights():
  w = losses.labeled_class_weights(tf.constant([0.5, 0.25, 0.25])).numpy()
  np.testing.assert_allclose(w.sum(), 3.0, rtol=1e-6)
  np.testing.assert_allclose(w, [0.6, 1.2, 1.2], rtol=1e-5)


def test_unsupervised_loss():
  logits = tf.constant([[0.0, 0.0], [math.log(3.0), 0.0]])
  targets = tf.constant([[1.0, 0.0], [0.75, 0.25]])
  mse = losses.unsupervised_loss(targets, logits, 'mse').numpy()
  # Row 0: probs (0.5, 0.5): ((0.5)^2 + (0.5)^2) / 2 = 0.25; row 1 exact: 0.
  np.testing.assert_allclose(mse, [0.25, 0.0], atol=1e-7)
  xe = losses.unsupervised_loss(targets, logits, 'xe').numpy()
  np.testing.assert_allclose(xe[0], math.log(2), rtol=1e-6)
  with pytest.raises(ValueError, match="'xe', 'mse'"):
    losses.unsupervised_loss(targets, logits, 'l1')


def test_masked_unsup_divisor():
  mask = tf.constant([1.0, 0.0, 1.0, 0.0])
  assert float(losses.masked_unsup_divisor(mask, 16, 'full')) == 16.0
  assert float(losses.masked_unsup_divisor(mask, 16, 'quality')) == 2.0
  assert float(losses.masked_unsup_divisor(tf.zeros([4]), 16, 'quality')) == 1
  assert float(losses.masked_unsup_divisor(
      mask, 16, 'quality', global_mask_sum=tf.constant(7.0))) == 7.0
  with pytest.raises(ValueError, match="'full', 'quality'"):
    losses.masked_unsup_divisor(mask, 16, 'mean')


def test_l2_weight_decay():
  vs = [tf.Variable([1.0, 2.0]), tf.Variable([[3.0]])]
  assert float(losses.l2_weight_decay(vs)) == pytest.approx(0.5 * 14)
  assert float(losses.l2_weight_decay([])) == 0.0


def test_global_batch_average_under_mirrored_strategy():
  # ReductionToOneDevice: no collective ops, so strategies created by other
  # tests in this process cannot clash on collective instance keys.
  strategy = tf.distribute.MirroredStrategy(
      ['/cpu:0', '/cpu:1'],
      cross_device_ops=tf.distribute.ReductionToOneDevice())
  labels = np.array([0, 1, 0, 1], np.int64)
  logits = np.array([[2., 0.], [2., 0.], [0., 0.], [1., 3.]], np.float32)
  ds = tf.data.Dataset.from_tensor_slices((labels, logits)).batch(4)
  batch = next(iter(strategy.experimental_distribute_dataset(ds)))

  @tf.function
  def step(batch):
    def fn(y, z):
      return tf.nn.compute_average_loss(losses.sparse_xe(y, z),
                                        global_batch_size=4)
    per_replica = strategy.run(fn, batch)
    return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

  expected = float(tf.reduce_mean(losses.sparse_xe(labels, logits)))
  np.testing.assert_allclose(float(step(batch)), expected, rtol=1e-6)
