"""A training step on two logical CPU devices (or under XLA) equals the
plain one-device step, and each comparison can fail.

States are compared by their updates (after the step minus before; both
sides start from the same state): each group (weights, batch-norm
statistics, EMA, the newest p_model row, p_data) agrees within 1% of its
largest update, and each such test also shows that the same step with a 3%
error in any one group's update is rejected at that tolerance. Measured
(largest difference / largest update): 1 vs 2 replicas 0.4%, XLA 0.3% on one
device and 0.006% on two; the WRN on 2 replicas 1.2% (its own tolerance).
"""
import numpy as np
import pytest
import tensorflow as tf

from crest.config import Config
from crest.trainer import GenerationTrainer
from data import pipeline
from data import registry as data_registry
from data.base import DataArgs


def _setup(tmp_path, devices, **kw):
  base = dict(method='fixmatch', dataset='synthetic_tiny', net_arch='small',
              num_epoch=1, num_batch=4, batch_size=8, unlab_ratio=2,
              percent_labeled=0.3, model_dir=str(tmp_path), bn_sync=True,
              do_distalign=True, threshold=0.3, progress=False, seed=5,
              ema_decay=0.5)  # The EMA moves by half the update.
  base.update(kw)
  cfg = Config(**base)
  data = data_registry.load(DataArgs(dataset=cfg.dataset,
                                     class_im_ratio=cfg.class_im_ratio,
                                     percent_labeled=cfg.percent_labeled))
  strategy = tf.distribute.MirroredStrategy(
      devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
  trainer = GenerationTrainer(cfg, strategy, data, str(tmp_path / 'gen'),
                              dalign_t=None, seed=cfg.seed)
  spec = pipeline.StreamSpec(
      batch_size=cfg.batch_size, unlab_ratio=cfg.unlab_ratio,
      augment=cfg.augment, weakaug=cfg.weakaug, strongaug=cfg.strongaug,
      num_weakaug=1, num_strongaug=1, seed=1)
  lab = data.labeled_positions
  ds = pipeline.train_dataset(
      data.train_images, lab, data.train_labels[lab],
      data.unlabeled_stream_positions,
      data.train_labels[data.unlabeled_stream_positions], spec, 0, 2)
  it = iter(strategy.experimental_distribute_dataset(ds))
  return trainer, it


def _state(trainer):
  local = lambda v: [x.numpy() for x in
                     trainer.strategy.experimental_local_results(v)]
  return {
      'weights': [v.numpy() for v in trainer.model.trainable_variables],
      'bn': [v.numpy() for v in trainer.model.non_trainable_variables],
      'ema': [v.numpy() for v in trainer.ema.trainable_variables],
      'p_model': local(trainer.p_model_history),
      'p_data': local(trainer.p_data),
  }


def _one_step_each(a, it_a, b, it_b, rel):
  """One training step on each trainer; their losses agree within `rel`.

  Returns: the state before (both trainers start equal) and the two
  trainers' states after the step.
  """
  before = _state(a)
  loss_a = float(a.train_steps(it_a, tf.constant(1)))
  loss_b = float(b.train_steps(it_b, tf.constant(1)))
  assert np.isfinite(loss_a)
  assert loss_b == pytest.approx(loss_a, rel=rel, abs=1e-6)
  return before, _state(a), _state(b)


def _updates(before, after):
  """The step's update of each compared group, a flat float64 array each
  (p_model: its newest row; the older rows shift by one)."""
  flat = lambda xs: np.concatenate([np.ravel(x) for x in xs]).astype(
      np.float64)
  out = {k: flat(after[k]) - flat(before[k]) for k in ('weights', 'bn', 'ema')}
  out['p_model'] = (after['p_model'][0][-1].astype(np.float64) -
                    before['p_model'][0][-1])
  out['p_data'] = after['p_data'][0].astype(np.float64) - before['p_data'][0]
  return out


def _assert_steps_agree(before, s1, s2, rel):
  """Each group's update in `s2` is `s1`'s within `rel` of `s1`'s largest."""
  d1, d2 = _updates(before, s1), _updates(before, s2)
  for key, u in d1.items():
    scale = np.abs(u).max()
    assert scale > 1e-6, f'{key}: the step did not change it'
    err = np.abs(d2[key] - u).max()
    assert err <= rel * scale, (
        f'{key}: updates differ by {err:.3g} = {err / scale:.3g} of the '
        f'largest ({scale:.3g}); tolerance {rel}')


def _with_larger_update(before, state, key, factor):
  """`state` with group `key`'s update multiplied by `factor`."""
  grow = lambda x, x0: x0 + factor * (x - x0)
  changed = dict(state)
  if key == 'p_model':
    changed[key] = [np.concatenate([h[:-1], grow(h[-1:], h0[-1:])])
                    for h, h0 in zip(state[key], before[key])]
  else:
    changed[key] = [grow(x, x0) for x, x0 in zip(state[key], before[key])]
  return changed


def _assert_a_small_change_is_seen(before, s1, s2, rel, factor=1.03):
  """The same comparison rejects `s2` with any one group's update `factor`
  times larger (a learning rate, EMA decay or momentum slightly off)."""
  for key in ('weights', 'bn', 'ema', 'p_model', 'p_data'):
    with pytest.raises(AssertionError, match=key):
      _assert_steps_agree(before, s1,
                          _with_larger_update(before, s2, key, factor), rel)


@pytest.mark.parametrize('kw', [{}, {'unsup_loss_divisor': 'quality',
                                     'clip_value': 0.05}])
def test_two_replicas_reproduce_one_device(tmp_path, kw):
  one, it1 = _setup(tmp_path / 'one', ['/cpu:0'], **kw)
  two, it2 = _setup(tmp_path / 'two', ['/cpu:0', '/cpu:1'], **kw)
  assert two.strategy.num_replicas_in_sync == 2
  for a, b in zip(one.model.trainable_variables,
                  two.model.trainable_variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())  # Same init.
  before, s1, s2 = _one_step_each(one, it1, two, it2, rel=1e-5)
  # Float sums in another order: the updates agree to 0.4% (measured).
  _assert_steps_agree(before, s1, s2, rel=0.01)
  _assert_a_small_change_is_seen(before, s1, s2, rel=0.01)
  # Running distributions: identical on both replicas.
  for key in ('p_model', 'p_data'):
    np.testing.assert_array_equal(s2[key][0], s2[key][1])
  for k, v in one.sums.items():
    assert float(v.numpy()) == pytest.approx(float(two.sums[k].numpy()),
                                             rel=1e-4, abs=1e-6), k
  # A second step still agrees.
  loss1 = float(one.train_steps(it1, tf.constant(1)))
  loss2 = float(two.train_steps(it2, tf.constant(1)))
  assert loss2 == pytest.approx(loss1, rel=1e-4)


def test_xla_step_equals_plain_step(tmp_path):
  """FixMatch, one compiled step on two replicas (one replica with XLA:
  tests/test_xla_step.py)."""
  devices, kw = ['/cpu:0', '/cpu:1'], dict(bn_sync=False)
  plain, it1 = _setup(tmp_path / 'plain', devices, **kw)
  xla, it2 = _setup(tmp_path / 'xla', devices, jit_compile=True, **kw)
  # Evaluation forward on the same weights: XLA logits equal the plain ones.
  images = plain.data.test_images[:10]
  for a, b in zip(plain.logits(images), xla.logits(images)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  # Logits 0.1% larger would be outside that tolerance.
  raw, _ = xla.logits(images)
  with pytest.raises(AssertionError):
    np.testing.assert_allclose(raw * 1.001, plain.logits(images)[0],
                               rtol=1e-4, atol=1e-5)
  before, s1, s2 = _one_step_each(plain, it1, xla, it2, rel=1e-4)
  # Kernels fuse and sum in another order: the updates agree to 0.3%.
  _assert_steps_agree(before, s1, s2, rel=0.01)
  _assert_a_small_change_is_seen(before, s1, s2, rel=0.01)


def test_evaluation_on_two_replicas_equals_one_device(tmp_path):
  """Each replica takes its slice of every eval batch; gathered logits come
  back in image order, padding removed (29 images, batch 7 -> 8 on two)."""
  one, _ = _setup(tmp_path / 'one', ['/cpu:0'], eval_batch_size=7)
  two, _ = _setup(tmp_path / 'two', ['/cpu:0', '/cpu:1'], eval_batch_size=7)
  images = one.data.test_images[:29]
  raw1, ema1 = one.logits(images)
  raw2, ema2 = two.logits(images)
  assert raw1.shape == raw2.shape == (29, one.num_classes)
  np.testing.assert_allclose(raw2, raw1, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(ema2, ema1, rtol=1e-5, atol=1e-5)
  # Order: image i's logits do not depend on the batch it was in.
  (alone,) = two.logits(images[13:14], raw=False)
  np.testing.assert_allclose(alone[0], ema2[13], rtol=1e-5, atol=1e-5)
  assert len({tuple(np.round(r, 4)) for r in ema2}) > 20  # Not constant.
  probs = two.predict_ema(images)
  np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
  # Scoring rows by position (the unlabeled pool of a memory-mapped set)
  # reads them batch by batch and gives the scores of the copied rows.
  positions = np.array([28, 3, 3, 17, 0, 9, 21, 11, 5])
  np.testing.assert_allclose(two.predict_ema(one.data.test_images, positions),
                             two.predict_ema(images[positions]), rtol=1e-6,
                             atol=1e-7)
