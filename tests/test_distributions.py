"""Tests of crest.distributions."""
import math

import numpy as np
import tensorflow as tf

from crest import distributions as dist


def test_p_model_history_order_and_mean():
  hist = dist.initial_p_model_history(4)
  assert hist.shape == (dist.P_MODEL_HISTORY, 4) and hist.dtype == tf.float32
  np.testing.assert_allclose(dist.p_model(hist), [0.25] * 4)
  batch = tf.constant([[1., 0, 0, 0], [0, 1., 0, 0]])
  new = dist.update_p_model_history(hist, batch)
  assert new.shape == hist.shape
  np.testing.assert_allclose(new[-1], [0.5, 0.5, 0, 0])  # newest last
  np.testing.assert_allclose(new[:-1], hist[1:])         # oldest dropped
  expected = (127 * 0.25 + np.array([0.5, 0.5, 0, 0])) / 128
  np.testing.assert_allclose(dist.p_model(new), expected, rtol=1e-6)
  # An already-reduced mean, [K] or [1, K], gives the same update.
  for mean in (tf.constant([0.5, 0.5, 0, 0]), tf.constant([[0.5, 0.5, 0, 0]])):
    np.testing.assert_allclose(dist.update_p_model_history(hist, mean), new)
  # After 128 identical updates the uniform start is gone entirely.
  for _ in range(dist.P_MODEL_HISTORY):
    new = dist.update_p_model_history(new, batch)
  np.testing.assert_allclose(dist.p_model(new), [0.5, 0.5, 0, 0], atol=1e-6)


def test_p_data_ema():
  p = dist.initial_p_data(3)
  np.testing.assert_allclose(p, [1 / 3] * 3)
  out = dist.update_p_data(p, tf.constant([0, 0, 1, 0]), 3, decay=0.9)
  np.testing.assert_allclose(out, 0.9 / 3 + 0.1 * np.array([0.75, 0.25, 0]),
                             rtol=1e-6)
  same = dist.update_p_data_from_mean(p, tf.constant([0.75, 0.25, 0.]), 0.9)
  np.testing.assert_allclose(out, same, rtol=1e-7)
  np.testing.assert_allclose(float(tf.reduce_sum(out)), 1.0, rtol=1e-6)
  default = dist.update_p_data(p, tf.constant([2]), 3)
  np.testing.assert_allclose(default, 0.999 / 3 + 0.001 * np.array([0, 0, 1]),
                             rtol=1e-6)


def test_kl_uniform():
  assert abs(float(dist.kl_uniform(tf.fill([5], 0.2)))) < 1e-6
  p = np.array([0.5, 0.25, 0.25])
  expected = sum(1 / 3 * math.log((1 / 3) / q) for q in p)
  np.testing.assert_allclose(float(dist.kl_uniform(p.astype(np.float32))),
                             expected, rtol=1e-5)


def test_under_mirrored_strategy_with_all_reduced_mean():
  # ReductionToOneDevice: no collective ops, so strategies created by other
  # tests in this process cannot clash on collective instance keys.
  strategy = tf.distribute.MirroredStrategy(
      ['/cpu:0', '/cpu:1'],
      cross_device_ops=tf.distribute.ReductionToOneDevice())
  labels = tf.data.Dataset.from_tensor_slices(
      tf.constant([0, 0, 1, 2], tf.int64)).batch(4)
  it = iter(strategy.experimental_distribute_dataset(labels))

  @tf.function
  def step(batch):
    def fn(y):
      ctx = tf.distribute.get_replica_context()
      local_sum = tf.reduce_sum(tf.one_hot(y, 3), axis=0)
      count = tf.cast(tf.shape(y)[0], tf.float32)
      total, n = ctx.all_reduce(tf.distribute.ReduceOp.SUM, [local_sum, count])
      return dist.update_p_data_from_mean(dist.initial_p_data(3), total / n,
                                          decay=0.5)
    return strategy.experimental_local_results(strategy.run(fn, (batch,)))

  results = step(next(it))
  assert len(results) == 2
  for r in results:  # every replica holds the same, global value
    np.testing.assert_allclose(r, 0.5 / 3 + 0.5 * np.array([0.5, 0.25, 0.25]),
                               rtol=1e-6)
