"""The memory-lean batch norm + activation + conv op equals plain autodiff."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from networks import bn_act_conv as bac
from networks import common


def _plain(x, gamma, beta, kernels, strides, slope):
  """Autodiff reference: moments, tf.nn.batch_normalization, act, convs."""
  mean, var = tf.nn.moments(x, [0, 1, 2])
  y = tf.nn.batch_normalization(x, mean, var, beta, gamma, 1e-3)
  a = tf.nn.leaky_relu(y, slope) if slope else tf.nn.relu(y)
  return [tf.nn.conv2d(a, k, s, 'SAME') for k, s in zip(kernels, strides)]


def _lean(x, gamma, beta, kernels, strides, slope):
  mean, var = tf.nn.moments(x, [0, 1, 2])
  return bac.bn_act_conv(x, mean, var, gamma, beta, kernels, strides,
                         epsilon=1e-3, slope=slope)


@pytest.mark.parametrize('slope,strides,shapes', [
    (0.1, [1], [(3, 3, 6, 8)]),
    (0.0, [2], [(3, 3, 6, 8)]),
    (0.1, [2, 2], [(3, 3, 6, 8), (1, 1, 6, 8)]),
])
def test_outputs_and_gradients_equal_autodiff(slope, strides, shapes):
  rng = np.random.default_rng(0)
  x = tf.constant(rng.normal(0.3, 2.0, (4, 8, 8, 6)), tf.float32)
  gamma = tf.constant(rng.uniform(0.5, 1.5, 6), tf.float32)
  beta = tf.constant(rng.normal(0, 0.5, 6), tf.float32)
  kernels = [tf.constant(rng.normal(0, 0.3, s), tf.float32) for s in shapes]
  # A loss that weights every output element differently.
  weights = [tf.constant(rng.normal(size=(4, 8 // s, 8 // s, 8)), tf.float32)
             for s in strides]
  results = []
  for fn in (_plain, _lean):
    with tf.GradientTape() as tape:
      tape.watch([x, gamma, beta] + kernels)
      outs = fn(x, gamma, beta, kernels, strides, slope)
      loss = sum(tf.reduce_sum(o * w) for o, w in zip(outs, weights))
    grads = tape.gradient(loss, [x, gamma, beta] + kernels)
    results.append(([o.numpy() for o in outs], [g.numpy() for g in grads]))
  (outs_p, grads_p), (outs_l, grads_l) = results
  for a, b in zip(outs_p, outs_l):
    assert a.shape == b.shape
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
  for name, a, b in zip(['x', 'gamma', 'beta', 'k0', 'k1'], grads_p,
                        grads_l):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4, err_msg=name)
    assert np.abs(a).max() > 1e-3, name  # Not trivially zero.


def test_layer_updates_moving_statistics_and_infers_with_them():
  keras.utils.set_random_seed(0)
  layer = bac.BNActConv([(8, 3, 1), (8, 1, 2)], 'leaky_relu', momentum=0.9)
  x = tf.random.stateless_normal([4, 8, 8, 5], [1, 2]) * 3.0 + 1.0
  outs = layer(x, training=True)
  assert [tuple(o.shape) for o in outs] == [(4, 8, 8, 8), (4, 4, 4, 8)]
  mean, var = tf.nn.moments(x, [0, 1, 2])
  np.testing.assert_allclose(layer.moving_mean.numpy(), 0.1 * mean.numpy(),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(layer.moving_variance.numpy(),
                             0.9 + 0.1 * var.numpy(), rtol=1e-5)
  # Inference uses the moving statistics: y = act((x - m) / sqrt(v + eps)).
  a = tf.nn.leaky_relu((x - layer.moving_mean) * tf.math.rsqrt(
      layer.moving_variance + 1e-3), 0.1)
  expected = tf.nn.conv2d(a, layer.kernels[0], 1, 'SAME')
  np.testing.assert_allclose(layer(x, training=False)[0].numpy(),
                             expected.numpy(), rtol=1e-4, atol=1e-4)
  assert [v.name for v in layer.non_trainable_variables] == [
      'moving_mean', 'moving_variance']
  assert len(layer.trainable_variables) == 4


def _mirrored_moving_stats(x, synchronized):
  strategy = tf.distribute.MirroredStrategy(
      ['/cpu:0', '/cpu:1'],
      cross_device_ops=tf.distribute.ReductionToOneDevice())
  with strategy.scope():
    layer = bac.BNActConv([(4, 3, 1)], 'relu', momentum=0.0,
                          synchronized=synchronized)
    layer.build(x.shape)
  dist = strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensor_slices(x).batch(len(x)))

  @tf.function
  def step(images):
    def fn(t):
      with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(t, training=True)[0])
      return tape.gradient(loss, layer.gamma)
    return strategy.run(fn, args=(images,))

  step(next(iter(dist)))
  for v in layer.non_trainable_variables:  # Replica copies never diverge.
    a, b = (c.numpy() for c in v.value.values)
    np.testing.assert_array_equal(a, b)
  return layer.moving_mean.numpy(), layer.moving_variance.numpy()


def test_synchronized_batch_statistics_under_mirrored_strategy():
  rng = np.random.default_rng(0)
  x = np.concatenate([rng.normal(-1, 0.3, (4, 6, 6, 3)),
                      rng.normal(1, 0.6, (4, 6, 6, 3))]).astype(np.float32)
  mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))  # momentum 0: the batch's.
  synced = _mirrored_moving_stats(x, synchronized=True)
  np.testing.assert_allclose(synced[0], mean, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(synced[1], var, rtol=1e-4, atol=1e-5)
  # Unsynchronised: the mean of the two halves' statistics (not the same).
  local = _mirrored_moving_stats(x, synchronized=False)
  halves = [x[:4].var((0, 1, 2)), x[4:].var((0, 1, 2))]
  np.testing.assert_allclose(local[1], np.mean(halves, 0), rtol=1e-4)
  assert np.abs(local[1] - var).max() > 0.1


@pytest.mark.parametrize('policy', ['mixed_bfloat16', 'mixed_float16'])
def test_mixed_precision_layer(policy):
  layer = bac.BNActConv([(4, 3, 1)], 'leaky_relu', dtype=policy)
  x = tf.random.stateless_normal([2, 6, 6, 3], [3, 4])
  with tf.GradientTape() as tape:
    (y,) = layer(x, training=True)
    loss = tf.reduce_sum(tf.cast(y, tf.float32))
  grads = tape.gradient(loss, layer.trainable_variables)
  assert y.dtype == policy.split('_')[1]
  assert all(v.dtype == 'float32' for v in layer.variables)
  assert all(bool(tf.reduce_all(tf.math.is_finite(g))) for g in grads)
  (z,) = layer(x, training=False)  # Inference reads float32 statistics.
  assert z.dtype == y.dtype and z.shape == (2, 6, 6, 4)


@pytest.mark.parametrize('make', [
    lambda: bac.BNActConv([(4, 3, 1)], 'relu', momentum=0.5),
    lambda: common.BatchNorm(momentum=0.5),
])
def test_deferred_updates_equal_direct_ones_when_called_twice(make):
  """MixMatch calls the network twice per step: recorded updates compose."""
  x1 = tf.random.stateless_normal([4, 6, 6, 3], [5, 6]) * 2.0 + 1.0
  x2 = tf.random.stateless_normal([4, 6, 6, 3], [7, 8]) - 3.0
  direct, deferred = make(), make()
  direct(x1, training=True)
  direct(x2, training=True)
  deferred.build(x1.shape)
  with common.deferred_updates() as updates:
    deferred(x1, training=True)
    deferred(x2, training=True)
  assert len(updates) == 2  # One entry per statistic, the composed value.
  np.testing.assert_allclose(deferred.moving_mean.numpy(), 0.0)  # Not yet.
  for v, value in updates:
    v.assign(value)
  for a, b in zip(direct.non_trainable_variables,
                  deferred.non_trainable_variables):
    np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-6)
  assert np.abs(direct.moving_mean.numpy()).max() > 0.1
