"""Tests of crest.mixup (MixMatch helpers)."""
import numpy as np
import tensorflow as tf

from crest import mixup as mx


def test_average_views_list_and_tensor():
  a = tf.constant([[0.2, 0.8], [1.0, 0.0]])
  b = tf.constant([[0.6, 0.4], [0.0, 1.0]])
  np.testing.assert_allclose(mx.average_views([a, b]),
                             [[0.4, 0.6], [0.5, 0.5]], rtol=1e-6)
  np.testing.assert_allclose(mx.average_views(tf.stack([a, b])),
                             [[0.4, 0.6], [0.5, 0.5]], rtol=1e-6)


def test_sharpen_reexport():
  out = mx.sharpen(tf.constant([[0.25, 0.75]]), 0.5).numpy()
  np.testing.assert_allclose(out, [[0.1, 0.9]], rtol=1e-5)


def test_mixup_lambda_range_determinism_and_distribution():
  seed = tf.constant([3, 7], tf.int32)
  lam = mx.mixup_lambda(0.75, [4000], seed).numpy()
  assert lam.shape == (4000,) and lam.dtype == np.float32
  assert lam.min() >= 0.5 and lam.max() <= 1.0
  np.testing.assert_array_equal(lam, mx.mixup_lambda(0.75, [4000], seed))
  assert not np.array_equal(lam, mx.mixup_lambda(0.75, [4000], [3, 8]))
  # E[max(L, 1 - L)] for L ~ Beta(0.75, 0.75) is 0.7782 (std 0.150; NumPy,
  # 1e7 draws); for Beta(2, 2) it is 0.6875. 0.01 is about 4 standard errors.
  assert abs(lam.mean() - 0.7782) < 0.01
  assert abs(lam.std() - 0.150) < 0.01
  lam2 = mx.mixup_lambda(2.0, [4000], seed).numpy()
  assert abs(lam2.mean() - 0.6875) < 0.01


def test_mixup_lambda_beta_zero_no_mixing():
  lam = mx.mixup_lambda(0.0, [5], [1, 2])
  np.testing.assert_array_equal(lam, np.ones(5))
  x = tf.random.stateless_normal([5, 4, 4, 3], [0, 1])
  y = tf.one_hot([0, 1, 2, 0, 1], 3)
  xm, ym = mx.mixup(x, y, tf.constant([4, 3, 2, 1, 0]), lam)
  np.testing.assert_array_equal(xm, x)
  np.testing.assert_array_equal(ym, y)


def test_mixup_values_and_label_mass():
  x = tf.constant([[0.0, 0.0], [10.0, 20.0]])
  y = tf.constant([[1.0, 0.0], [0.0, 1.0]])
  xm, ym = mx.mixup(x, y, tf.constant([1, 0]), tf.constant([0.75, 0.6]))
  np.testing.assert_allclose(xm, [[2.5, 5.0], [6.0, 12.0]], rtol=1e-6)
  np.testing.assert_allclose(ym, [[0.75, 0.25], [0.4, 0.6]], rtol=1e-6)
  # Scalar lambda, rank-4 inputs, soft targets: mass is conserved.
  imgs = tf.random.stateless_uniform([8, 4, 4, 3], [5, 5])
  soft = tf.nn.softmax(tf.random.stateless_normal([8, 5], [6, 6]))
  perm = tf.random.experimental.stateless_shuffle(tf.range(8), [1, 1])
  lam = mx.mixup_lambda(0.75, [8], [9, 9])
  xm, ym = mx.mixup(imgs, soft, perm, lam)
  assert xm.shape == (8, 4, 4, 3)
  np.testing.assert_allclose(tf.reduce_sum(ym, 1), np.ones(8), rtol=1e-6)
  xs, _ = mx.mixup(imgs, soft, perm, 0.7)
  np.testing.assert_allclose(xs, 0.7 * imgs + 0.3 * tf.gather(imgs, perm),
                             rtol=1e-6)


def test_mixup_across_the_global_pool_of_two_replicas():
  """A permutation over the gathered pool pairs examples across replicas."""
  # ReductionToOneDevice: no collective ops, so strategies created by other
  # tests in this process cannot clash on collective instance keys.
  strategy = tf.distribute.MirroredStrategy(
      ['/cpu:0', '/cpu:1'],
      cross_device_ops=tf.distribute.ReductionToOneDevice())
  n_per_replica = 16
  # Replica r holds examples whose "feature" is its replica id.
  feats = np.repeat([0.0, 1.0], n_per_replica).astype(np.float32)[:, None]
  ds = tf.data.Dataset.from_tensor_slices(feats).batch(2 * n_per_replica)
  batch = next(iter(strategy.experimental_distribute_dataset(ds)))

  @tf.function
  def step(batch):
    def fn(x):
      ctx = tf.distribute.get_replica_context()
      pool = ctx.all_gather(x, axis=0)                  # [2 * n, 1]
      y = tf.one_hot(tf.cast(pool[:, 0], tf.int32), 2)  # replica id as label
      perm = tf.random.experimental.stateless_shuffle(
          tf.range(tf.shape(pool)[0]), seed=[4, 2])     # same on all replicas
      lam = mx.mixup_lambda(0.75, [tf.shape(pool)[0]], [1, 2])
      xm, ym = mx.mixup(pool, y, perm, lam)
      start = ctx.replica_id_in_sync_group * n_per_replica
      return ym[start:start + n_per_replica], tf.gather(
          perm, tf.range(start, start + n_per_replica))
    return [strategy.experimental_local_results(r)
            for r in strategy.run(fn, (batch,))]

  ym_parts, perm_parts = step(batch)
  for replica, (ym, perm) in enumerate(zip(ym_parts, perm_parts)):
    ym, perm = ym.numpy(), perm.numpy()
    np.testing.assert_allclose(ym.sum(1), np.ones(n_per_replica), rtol=1e-6)
    partner_replica = perm // n_per_replica
    crossed = partner_replica != replica
    assert crossed.any(), 'no example mixed with the other replica'
    # Crossed examples carry label mass of the other replica's class.
    assert np.all(ym[crossed, 1 - replica] > 0)
    assert np.all(ym[~crossed, 1 - replica] == 0)
