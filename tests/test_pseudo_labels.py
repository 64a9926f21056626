"""Tests of crest.pseudo_labels against the reference fixture and by hand."""
import re

import numpy as np
import pytest
import tensorflow as tf

from conftest import FIXTURES
from crest import pseudo_labels as pl

_CASE = re.compile(r'c(\d+)_da([01])_(\w+?)_t([^_]+)_thr([^_]+)_T([^_]+)')


def _cases():
  data = np.load(FIXTURES / 'pseudo_targets.npz')
  names = sorted({k.split('__')[0] for k in data.files})
  return data, names


def _kwargs(data, case):
  _, da, how, t, thr, temp = _CASE.fullmatch(case).groups()
  return dict(p_model=data[case + '__p_model'], p_data=data[case + '__p_data'],
              gt_p_data=data[case + '__gt_p_data'], do_distalign=da == '1',
              how_dalign=None if how == 'None' else how, dalign_t=float(t),
              threshold=float(thr), temperature=float(temp))


def test_fixture_all_cases_match():
  data, names = _cases()
  assert len(names) == 36
  hows = set()
  for case in names:
    kw = _kwargs(data, case)
    hows.add(kw['how_dalign'])
    target, mask, probs = pl.pseudo_targets(data[case + '__logits'], **kw)
    np.testing.assert_allclose(target.numpy(), data[case + '__target'],
                               atol=1e-5, rtol=0, err_msg=case)
    np.testing.assert_allclose(mask.numpy(), data[case + '__mask'], atol=1e-5,
                               rtol=0, err_msg=case)
    assert target.dtype == tf.float32 and mask.dtype == tf.float32
    assert probs.shape == (16, 10)
  assert hows == {None, 'constant', 'adaptive'}


def test_fixture_alignment_changes_outcome():
  """Guards against a test passing because alignment were a no-op."""
  data, names = _cases()
  case = [n for n in names if '_da1_adaptive_' in n and '_T0.5' in n][0]
  kw = _kwargs(data, case)
  kw['do_distalign'] = False
  target, _, _ = pl.pseudo_targets(data[case + '__logits'], **kw)
  assert np.abs(target.numpy() - data[case + '__target']).max() > 1e-3


def test_fixture_in_tf_function_with_tensor_temperature():
  data, names = _cases()
  case = [n for n in names if '_da1_adaptive_t0.8' in n][0]
  kw = _kwargs(data, case)
  t = kw.pop('dalign_t')

  @tf.function
  def run(logits, t):
    return pl.pseudo_targets(logits, dalign_t=t, **kw)

  target, mask, _ = run(tf.constant(data[case + '__logits']), tf.constant(t))
  np.testing.assert_allclose(target.numpy(), data[case + '__target'], atol=1e-5)
  np.testing.assert_allclose(mask.numpy(), data[case + '__mask'], atol=1e-5)


def test_mirrored_strategy_replica_context():
  # ReductionToOneDevice: no collective ops, so strategies created by other
  # tests in this process cannot clash on collective instance keys.
  strategy = tf.distribute.MirroredStrategy(
      ['/cpu:0', '/cpu:1'],
      cross_device_ops=tf.distribute.ReductionToOneDevice())
  logits = np.log(np.array([[0.97, 0.02, 0.01], [0.5, 0.3, 0.2]] * 2,
                           np.float32))
  dataset = tf.data.Dataset.from_tensor_slices(logits).batch(4)
  dist = strategy.experimental_distribute_dataset(dataset)
  uni = np.full([3], 1 / 3, np.float32)

  @tf.function
  def step(batch):
    def fn(x):
      _, mask, _ = pl.pseudo_targets(
          x, p_model=uni, p_data=uni, gt_p_data=uni, do_distalign=True,
          how_dalign='constant', dalign_t=0.5, threshold=0.95, temperature=0.)
      return tf.reduce_sum(mask)
    per_replica = strategy.run(fn, args=(batch,))
    return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

  total = step(next(iter(dist)))
  assert float(total) == 2.0


def test_alignment_target():
  p_data = tf.constant([0.7, 0.2, 0.1])
  gt = tf.constant([0.6, 0.3, 0.1])
  np.testing.assert_allclose(pl.alignment_target(p_data, gt, None, 0.5),
                             [0.7, 0.2, 0.1])
  expected = np.sqrt([0.6, 0.3, 0.1])
  expected /= expected.sum()
  for how in ('constant', 'adaptive'):
    np.testing.assert_allclose(pl.alignment_target(p_data, gt, how, 0.5),
                               expected, rtol=1e-6)
  np.testing.assert_allclose(
      pl.alignment_target(p_data, gt, 'adaptive', tf.constant(0.0)),
      [1 / 3] * 3, rtol=1e-6)
  with pytest.raises(ValueError, match='adaptive'):
    pl.alignment_target(p_data, gt, 'bogus', 0.5)


def test_align_probs():
  probs = tf.constant([[0.5, 0.5], [0.9, 0.1]])
  out = pl.align_probs(probs, p_model=tf.constant([0.8, 0.2]),
                       target=tf.constant([0.5, 0.5])).numpy()
  # Row 0: 0.5 * 0.5 / 0.8 : 0.5 * 0.5 / 0.2 = 0.3125 : 1.25 -> 0.2 : 0.8.
  np.testing.assert_allclose(out[0], [0.2, 0.8], rtol=1e-5)
  np.testing.assert_allclose(out.sum(1), [1, 1], rtol=1e-6)
  # p_model == target: identity.
  same = pl.align_probs(probs, tf.constant([0.3, 0.7]), tf.constant([0.3, 0.7]))
  np.testing.assert_allclose(same, probs, rtol=1e-6)


def test_sharpen():
  probs = tf.constant([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
  hard = pl.sharpen(probs, 0.0).numpy()
  np.testing.assert_array_equal(hard, [[1, 0, 0], [0, 0, 1]])
  soft = pl.sharpen(probs, 0.5).numpy()
  expected = np.array([0.36, 0.09, 0.01]) / 0.46
  np.testing.assert_allclose(soft[0], expected, rtol=1e-5)
  np.testing.assert_allclose(pl.sharpen(probs, 1.0), probs, rtol=1e-6)
  with pytest.raises(ValueError):
    pl.sharpen(probs, -1.0)


def test_mask_on_aligned_probs_and_no_gradient():
  logits = tf.Variable(np.log([[0.96, 0.02, 0.02]]).astype(np.float32))
  uni = tf.fill([3], 1 / 3)
  with tf.GradientTape() as tape:
    target, mask, _ = pl.pseudo_targets(
        logits, p_model=tf.constant([0.9, 0.05, 0.05]), p_data=uni,
        gt_p_data=uni, do_distalign=True, how_dalign=None, dalign_t=1.0,
        threshold=0.95, temperature=0.5)
    loss = tf.reduce_sum(target)
  # 0.96 passes unaligned, but alignment to uniform lowers it below 0.95.
  assert float(mask[0]) == 0.0
  assert tape.gradient(loss, logits) is None
