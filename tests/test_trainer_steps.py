"""The trainer's step by numbers: weight decay in the total loss, the EMA
after one and several steps, the learning rate of every step.

Real `GenerationTrainer` steps (small network, tests/learnable.py's 16x16
data, one CPU device), each compared with the rule restated here.
"""
import math

import numpy as np
import pytest
import tensorflow as tf

import learnable
from crest import input_stream
from crest.trainer import GenerationTrainer


@pytest.fixture(scope='module')
def data_file(tmp_path_factory):
  return learnable.write_npz(tmp_path_factory.mktemp('data'))


def _trainer(tmp_path, data_file, name, **kw):
  """A trainer and its input stream from step 0 (the same batches for every
  trainer with the same seed)."""
  cfg = learnable.config(tmp_path / 'runs', data_file, **kw)
  data = learnable.load(cfg)
  strategy = tf.distribute.MirroredStrategy(['/cpu:0'])
  trainer = GenerationTrainer(cfg, strategy, data, str(tmp_path / name),
                              dalign_t=None, seed=7)
  lab = data.labeled_positions
  it, _ = input_stream.distributed_iterator(
      cfg, strategy, data, lab, data.train_labels[lab], 7, 0, [])
  return trainer, it


def _step(trainer, it):
  trainer.train_steps(it, tf.constant(1))
  return {k: float(v.numpy()) for k, v in trainer.sums.items()}


def test_weight_decay_in_the_total_loss_over_exactly_the_decayed_variables(
    tmp_path, data_file):
  """loss.train = xe + weight_unsup * xeu + weight_decay * 0.5 * sum(w^2) over
  every kernel and dense bias (not batch norm's gamma / beta); and the
  gradient of that term is in the step: with and without weight decay, the
  first Nesterov step (zero velocity) differs by -lr (1 + m) wd w."""
  wd, lr, m = 0.05, 0.1, 0.9
  kw = dict(learning_rate=lr, momentum=m, weight_unsup=2.0, threshold=0.3)
  a, it_a = _trainer(tmp_path, data_file, 'wd', weight_decay=wd, **kw)
  b, it_b = _trainer(tmp_path, data_file, 'no_wd', weight_decay=0.0, **kw)
  before = {v.path: v.numpy() for v in a.model.trainable_variables}
  decayed = [p for p in before if not p.endswith(('/gamma', '/beta'))]
  assert len(decayed) == 6 and len(before) == 14  # 5 kernels, 1 bias.
  l2 = 0.5 * sum(float(np.sum(before[p].astype(np.float64) ** 2))
                 for p in decayed)
  sa, sb = _step(a, it_a), _step(b, it_b)
  assert sa['loss.wd'] == pytest.approx(l2, rel=1e-5)
  assert sa['loss.xeu'] > 0  # The unsupervised term is in the total too.
  assert sa['loss.train'] == pytest.approx(
      sa['loss.xe'] + 2.0 * sa['loss.xeu'] + wd * l2, rel=1e-5)
  assert sb['loss.train'] == pytest.approx(
      sb['loss.xe'] + 2.0 * sb['loss.xeu'], rel=1e-5)
  assert sb['loss.xe'] == pytest.approx(sa['loss.xe'], rel=1e-6)
  after_b = {v.path: v.numpy() for v in b.model.trainable_variables}
  for v in a.model.trainable_variables:
    expected = (-lr * (1 + m) * wd * before[v.path] if v.path in decayed
                else np.zeros_like(before[v.path]))
    np.testing.assert_allclose(v.numpy() - after_b[v.path], expected,
                               rtol=1e-3, atol=1e-7, err_msg=v.path)
  # The check can fail: a decay 10% off is outside its tolerance.
  kernel = a.model.trainable_variables[0]
  with pytest.raises(AssertionError):
    np.testing.assert_allclose(
        kernel.numpy() - after_b[kernel.path],
        -lr * (1 + m) * 1.1 * wd * before[kernel.path], rtol=1e-3, atol=1e-7)


def _cos_lr(step, base, total, floor):
  """The 'cos' schedule restated: base (floor + (1 - floor) (1 + cos(pi
  s / S)) / 2)."""
  return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(
      math.pi * (step % total) / total)))


def test_ema_and_learning_rate_after_one_and_several_steps(tmp_path,
                                                           data_file):
  """ema_t = d ema_{t-1} + (1 - d) w_t on trainable variables (ema_0 = w_0),
  batch-norm statistics copied, after each of 4 steps; decay 0.7 (not 0.5,
  where swapping d and 1 - d would not show), far from 1 so that the EMA
  moves well beyond the tolerance at each step; and the
  learning rate of each step is the cos schedule's."""
  decay, base = 0.7, 0.05
  trainer, it = _trainer(tmp_path, data_file, 'ema', ema_decay=decay,
                         learning_rate=base, sched_type='cos',
                         sched_min_rate=0.2, num_epoch=1, num_batch=4)
  weights = lambda m: [v.numpy() for v in m.trainable_variables]
  stats = lambda m: [v.numpy() for v in m.non_trainable_variables]
  ema = weights(trainer.model)
  np.testing.assert_array_equal(np.concatenate([e.ravel() for e in ema]),
                                np.concatenate([e.ravel() for e in weights(
                                    trainer.ema)]))
  for step in range(4):
    _step(trainer, it)
    w = weights(trainer.model)
    previous, ema = ema, [decay * e + (1 - decay) * x for e, x in zip(ema, w)]
    for got, want, x, p in zip(weights(trainer.ema), ema, w, previous):
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    # Far from the weights and from the previous EMA: a wrong decay (0.8)
    # or a skipped update would be seen.
    moved = max(np.abs(x - p).max() for x, p in zip(w, previous))
    assert moved > 1e-3
    with pytest.raises(AssertionError):
      for got, x, p in zip(weights(trainer.ema), w, previous):
        np.testing.assert_allclose(got, 0.8 * p + 0.2 * x, rtol=1e-5,
                                   atol=1e-7)
    for e, x in zip(stats(trainer.ema), stats(trainer.model)):
      np.testing.assert_array_equal(e, x)
    # The learning rate this step applied, read back from the optimizer.
    lr, _ = trainer.health()
    assert float(lr) == pytest.approx(_cos_lr(step, base, 4, 0.2), rel=1e-6)
  # The batch-norm statistics the EMA copied had moved from (0, 1).
  assert max(np.abs(s).max() for s in stats(trainer.ema)[0::2]) > 1e-3
