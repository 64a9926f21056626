"""Tests of crest.schedules against the reference fixture and by hand."""
import math

import numpy as np
import pytest
import tensorflow as tf

from conftest import FIXTURES
from crest.schedules import SCHEDULES, learning_rate
from scripts.parity.lr_schedule import schedule_kwargs

_BASE = dict(base_lr=0.03, num_epoch=64, num_batch=1024)


@pytest.mark.parametrize('name, count', [('lr_schedule.npz', 6),
                                         ('lr_schedule_per_epoch.npz', 5)])
def test_fixture_all_schedules(name, count):
  data = np.load(FIXTURES / name)
  keys = [k for k in data.files if k != 'steps']
  assert len(keys) == count
  for key in keys:
    kwargs = schedule_kwargs(key)
    assert kwargs['sched_freq'] == ('epoch' if 'per_epoch' in name else 'step')
    got = np.array([learning_rate(s, **_BASE, **kwargs)
                    for s in data['steps']])
    np.testing.assert_allclose(got, data[key], rtol=1e-6, atol=0, err_msg=key)
  # float32: the step schedule at step 0 is float32(0.03), not 0.03.
  assert data[keys[0]][0] == np.float32(0.03)


def test_per_epoch_step_size_counts_epochs():
  # The original's step mode decays every step_size * step_per_epoch steps.
  kw = dict(_BASE, sched_type='step', sched_freq='epoch', sched_gamma=0.995)
  assert float(learning_rate(1023, **kw)) == pytest.approx(0.03)
  assert float(learning_rate(1024, **kw)) == pytest.approx(0.02985, rel=1e-6)
  kw.update(sched_step_size=2, sched_gamma=0.9)
  assert float(learning_rate(2047, **kw)) == pytest.approx(0.03)
  assert float(learning_rate(4096, **kw)) == pytest.approx(0.03 * 0.81)
  # Per step, step_size counts steps.
  assert float(learning_rate(1024, **dict(kw, sched_freq='step'))) == (
      pytest.approx(0.03 * 0.9 ** 512, rel=1e-5))


def test_tensor_step_in_tf_function():
  fn = tf.function(lambda s: learning_rate(s, sched_type='halfcos', **_BASE))
  for dtype in (tf.int32, tf.int64):
    got = fn(tf.constant(30000, dtype))
    assert got.dtype == tf.float32 and got.shape == ()
    np.testing.assert_allclose(
        float(got), 0.03 * math.cos(math.pi * 30000 / 65536 / 16), rtol=1e-6)


def test_wrap_and_epoch_freq():
  kw = dict(base_lr=1.0, num_epoch=4, num_batch=10, sched_type='linear')
  assert float(learning_rate(40, **kw)) == 1.0
  np.testing.assert_allclose(float(learning_rate(45, **kw)), 1 - 5 / 40)
  np.testing.assert_allclose(float(learning_rate(19, **kw, sched_freq='epoch')),
                             1 - 10 / 40, rtol=1e-6)
  np.testing.assert_allclose(float(learning_rate(19, **kw)), 1 - 19 / 40,
                             rtol=1e-6)


def test_formulas_by_hand():
  kw = dict(base_lr=0.1, num_epoch=1, num_batch=100)
  np.testing.assert_allclose(
      float(learning_rate(50, sched_type='cos', sched_min_rate=0.2, **kw)),
      0.1 * (0.2 + 0.5 * 0.8 * (1 + math.cos(math.pi / 2))), rtol=1e-6)
  np.testing.assert_allclose(
      float(learning_rate(25, sched_type='step', sched_step_size=10,
                          sched_gamma=0.5, **kw)), 0.1 * 0.25, rtol=1e-6)
  np.testing.assert_allclose(
      float(learning_rate(50, sched_type='halfcos', sched_level=8, **kw)),
      0.1 * math.cos(math.pi * 0.5 * 0.5), rtol=1e-6)
  # Clipped to [0, base_lr]: halfcos with level 16 goes negative past S/2.
  assert float(learning_rate(90, sched_type='halfcos', sched_level=16,
                             **kw)) == 0.0
  assert float(learning_rate(7, sched_type='const', **kw)) == np.float32(0.1)


def test_invalid_choices():
  with pytest.raises(ValueError, match="'const', 'linear', 'step'"):
    learning_rate(0, sched_type='cosine', **_BASE)
  with pytest.raises(ValueError, match="'step', 'epoch'"):
    learning_rate(0, sched_type='cos', sched_freq='batch', **_BASE)
  assert SCHEDULES == ('const', 'linear', 'step', 'cos', 'halfcos')

