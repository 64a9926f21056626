"""Rollback on a non-finite loss, unreadable checkpoints, determinism."""
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from crest.config import Config
from crest.trainer import GenerationTrainer, NonFiniteLossError
from data import registry as data_registry
from data.base import DataArgs


def _cfg(tmp_path, **kw):
  base = dict(method='fixmatch', dataset='synthetic_tiny', net_arch='small',
              num_epoch=2, num_batch=3, num_generation=1, batch_size=8,
              unlab_ratio=1, percent_labeled=0.3, model_dir=str(tmp_path),
              threshold=0.5, eval_batch_size=128, progress=False, seed=11)
  base.update(kw)
  return Config(**base)


@pytest.fixture(scope='module')
def data():
  return data_registry.load(DataArgs(dataset='synthetic_tiny',
                                     class_im_ratio=0.1, percent_labeled=0.3))


@pytest.fixture(scope='module')
def strategy():
  return tf.distribute.MirroredStrategy(['/cpu:0'])


def _trainer(cfg, strategy, data, work_dir, nan_at=None):
  trainer = GenerationTrainer(cfg, strategy, data, str(work_dir),
                              dalign_t=None, seed=cfg.seed)
  if nan_at is not None:
    # Poison the loss at the given steps (a list; -1 = every step), once each.
    orig = trainer.loss_fn
    fired = tf.Variable(tf.zeros([64], tf.bool), trainable=False)
    steps = tf.constant(nan_at, tf.int64)

    def poisoned(model, batch, stats, params):
      out = orig(model, batch, stats, params)
      it = tf.cast(trainer.optimizer.iterations, tf.int64)
      hit = tf.logical_or(tf.reduce_any(tf.equal(steps, it)),
                          tf.reduce_any(tf.equal(steps, -1)))
      idx = tf.minimum(it, 63)
      trigger = tf.logical_and(hit, tf.logical_not(fired[idx]))
      if nan_at != [-1]:
        fired.scatter_nd_update([[idx]], [trigger | fired[idx]])
      return out._replace(loss=tf.where(trigger, np.float32(np.nan),
                                        out.loss))
    trainer.loss_fn = poisoned
  return trainer


def _train(trainer, data):
  lab = data.labeled_positions
  trainer.train(lab, data.train_labels[lab])


def test_non_finite_loss_stops_with_a_clear_error(tmp_path, data, strategy):
  cfg = _cfg(tmp_path)
  trainer = _trainer(cfg, strategy, data, tmp_path / 'gen', nan_at=[2])
  with pytest.raises(NonFiniteLossError, match='nan at step 3'):
    _train(trainer, data)


def test_rollback_skips_the_failing_batch_and_finishes(tmp_path, data,
                                                       strategy):
  cfg = _cfg(tmp_path, do_rollback=True)
  trainer = _trainer(cfg, strategy, data, tmp_path / 'gen', nan_at=[4])
  _train(trainer, data)
  assert trainer.step == cfg.steps_per_generation
  for v in trainer.model.trainable_variables:
    assert np.all(np.isfinite(v.numpy()))
  skipped = json.load(open(tmp_path / 'gen' / 'rollback.json'))['skipped']
  assert skipped == [4]  # The batch of the step that failed.
  assert len(trainer.epoch_log.history['acc.test.ema']) == cfg.num_epoch


def test_rollback_gives_up_after_repeated_failures(tmp_path, data, strategy):
  cfg = _cfg(tmp_path, do_rollback=True)
  trainer = _trainer(cfg, strategy, data, tmp_path / 'gen', nan_at=[-1])
  with pytest.raises(NonFiniteLossError, match='Gave up after 3'):
    _train(trainer, data)


def test_unreadable_checkpoint_falls_back_to_the_previous(tmp_path, data,
                                                          strategy, caplog):
  cfg = _cfg(tmp_path)
  first = _trainer(cfg, strategy, data, tmp_path / 'gen')
  _train(first, data)
  ckpts = first.checkpoints.paths()
  assert ckpts[-1].endswith(f'ckpt-{cfg.steps_per_generation}')
  for path in glob.glob(ckpts[-1] + '.data-*'):
    with open(path, 'r+b') as f:
      f.truncate(16)
  second = _trainer(cfg, strategy, data, tmp_path / 'gen')
  assert second.restore() == cfg.num_batch  # The epoch-1 checkpoint.
  assert 'unreadable' in caplog.text


def test_a_non_finite_learning_rate_stops_naming_the_schedule(
    tmp_path, data, strategy):
  """--sched_gamma=nan (here past the validator): the loss of the step it
  breaks is still finite, the learning rate and the weights are not."""
  cfg = _cfg(tmp_path, sched_type='step', sched_gamma=float('nan'),
             num_epoch=1)
  trainer = _trainer(cfg, strategy, data, tmp_path / 'gen')
  with pytest.raises(NonFiniteLossError,
                     match='learning rate became nan at step 2') as e:
    _train(trainer, data)
  assert '--sched_gamma=nan' in e.value.advice
  # Nothing non-finite was saved: the last checkpoint is the step-0 one.
  assert [os.path.basename(p) for p in trainer.checkpoints.paths()] == [
      'ckpt-0']


def test_non_finite_weights_after_a_finite_loss_stop_the_run(
    tmp_path, data, strategy):
  cfg = _cfg(tmp_path, num_epoch=1)
  trainer = _trainer(cfg, strategy, data, tmp_path / 'gen')
  orig = trainer.loss_fn

  @tf.custom_gradient
  def nan_gradient(x):
    return x, lambda dy: dy * np.float32(np.nan)

  def poisoned(model, batch, stats, params):
    out = orig(model, batch, stats, params)
    return out._replace(loss=nan_gradient(out.loss))  # Finite loss.
  trainer.loss_fn = poisoned
  with pytest.raises(NonFiniteLossError,
                     match='weights became NaN or infinite at step 1'):
    _train(trainer, data)
