"""Four CReST+ generations of FixMatch that learn, checked by numbers.

One session-wide run (`crest_plus_run` in tests/conftest.py) on the
clearly separable data of tests/learnable.py: every generation's test
accuracy far above chance, generation 0's picks nearly all correct (against
the true labels), the adaptive temperatures (computed here from the
formula) in the records and in the traced loss, each labeled set the
original one plus the previous generation's picks only, and each generation
starting from fresh weights, optimizer and EMA (read from its checkpoints).
"""
import glob
import os

import numpy as np
import pytest
import tensorflow as tf

import learnable
from crest import generations
from crest import models
from crest import optimization

CHANCE = 1 / learnable.NUM_CLASSES
# Measured 0.92-1.0 per generation (seeds 1-3), per-class recall >= 0.75;
# nothing learned (learning rate 1e-7) gave 0.23.
MIN_ACCURACY = 0.75
# Measured 60-61 of 60-61 correct (seeds 1-3); the selection of an
# untrained model (learning rate 1e-7) was 14% correct.
MIN_PRECISION = 0.9


def _gen_dirs(run_dir):
  return sorted(glob.glob(os.path.join(run_dir, 'gen_*')))


def _npz(path):
  with np.load(path) as f:
    return {k: f[k] for k in f.files}


def test_every_generation_learns(crest_plus_run):
  cfg, data, _, recs, _, _ = crest_plus_run
  assert len(recs) == cfg.num_generation == 4
  for rec in recs:
    assert rec['test_accuracy'] >= MIN_ACCURACY > 2.5 * CHANCE, rec
    # Per-class recall: no class is given up (each above chance).
    assert min(rec['test_per_class_recall']) > CHANCE, rec
  # The recorded accuracy is that of the confusion matrix it records.
  cm = np.array(recs[0]['test_confusion_matrix'])
  assert cm.sum() == len(data.test_labels)
  assert np.trace(cm) / cm.sum() == pytest.approx(recs[0]['test_accuracy'])


def test_generation_zero_picks_are_precise(crest_plus_run):
  _, data, _, recs, run_dir, _ = crest_plus_run
  picks = _npz(os.path.join(_gen_dirs(run_dir)[0], 'picks.npz'))
  true = data.train_labels[picks['positions']]
  assert len(true) >= 0.5 * len(data.unlabeled_positions)  # Not a handful.
  assert np.mean(picks['labels'] == true) >= MIN_PRECISION
  # Every class is picked, and the pool is where the picks come from.
  assert set(picks['labels'].tolist()) == set(range(data.num_classes))
  assert set(picks['positions'].tolist()) <= set(
      data.unlabeled_positions.tolist())
  # The recorded counts are those of the file.
  assert recs[0]['picked_per_class'] == np.bincount(
      picks['labels'], minlength=data.num_classes).tolist()
  assert recs[0]['picked_correct_per_class'] == np.bincount(
      picks['labels'][picks['labels'] == true],
      minlength=data.num_classes).tolist()


def test_temperatures_follow_the_adaptive_schedule(crest_plus_run):
  cfg, _, _, recs, run_dir, seen = crest_plus_run
  g_max = cfg.num_generation - 1
  # t_g = (1 - g / (G - 1)) * 1 + g / (G - 1) * dalign_t: 1.0 .. 0.4.
  expected = [(1 - g / g_max) + g / g_max * cfg.dalign_t
              for g in range(cfg.num_generation)]
  assert expected == pytest.approx([1.0, 0.8, 0.6, 0.4])
  assert [r['alignment_temperature'] for r in recs] == pytest.approx(expected)
  assert [os.path.basename(d) for d in _gen_dirs(run_dir)] == [
      f'gen_{g:02d}_t{t:.2f}' for g, t in enumerate(expected)]
  # The temperature each generation's traced loss received (one trace or
  # more per generation, in order).
  distinct = [t for i, t in enumerate(seen) if i == 0 or t != seen[i - 1]]
  assert distinct == pytest.approx(expected)


def test_each_labeled_set_is_the_original_plus_the_previous_picks(
    crest_plus_run):
  _, data, _, recs, run_dir, _ = crest_plus_run
  original = data.labeled_positions
  dirs = _gen_dirs(run_dir)
  lab0 = _npz(os.path.join(dirs[0], 'labeled_set.npz'))
  np.testing.assert_array_equal(lab0['positions'], original)
  np.testing.assert_array_equal(lab0['labels'], data.train_labels[original])
  for g in range(1, len(dirs)):
    picks = _npz(os.path.join(dirs[g - 1], 'picks.npz'))
    lab = _npz(os.path.join(dirs[g], 'labeled_set.npz'))
    # Exactly the previous picks, then the original set with true labels:
    # nothing of generations before g - 1 is kept.
    np.testing.assert_array_equal(
        lab['positions'], np.concatenate([picks['positions'], original]))
    np.testing.assert_array_equal(
        lab['labels'], np.concatenate([picks['labels'],
                                       data.train_labels[original]]))
    assert np.all(np.diff(picks['labels']) >= 0)  # Class 0 first.
    assert recs[g]['num_pseudo_labeled'] == len(picks['positions'])
    assert recs[g]['labeled_per_class'] == np.bincount(
        lab['labels'], minlength=data.num_classes).tolist()


def _restore(cfg, strategy, k, path):
  """Model, EMA and optimizer state of a checkpoint, read into a new model."""
  model, ema, _ = models.build_model_and_ema(cfg, strategy, k, seed=12345)
  with strategy.scope():
    opt = optimization.make_optimizer(cfg)
    opt.build(model.trainable_variables)
  tf.train.Checkpoint(model=model, ema=ema, optimizer=opt).restore(
      path).expect_partial()
  return {'model': [v.numpy() for v in model.variables],
          'trainable': [v.numpy() for v in model.trainable_variables],
          'ema': [v.numpy() for v in ema.variables],
          'iterations': int(opt.iterations.numpy()),
          'slots': [v.numpy() for v in opt.variables
                    if v is not opt.iterations and v.shape.rank]}


def test_each_generation_starts_from_fresh_weights(crest_plus_run):
  cfg, data, strategy, _, run_dir, _ = crest_plus_run
  k, steps = data.num_classes, cfg.steps_per_generation
  dirs = _gen_dirs(run_dir)
  restore = lambda g, step: _restore(cfg, strategy, k, os.path.join(
      dirs[g], 'ckpt', f'ckpt-{step}'))
  last = restore(0, steps)
  assert last['iterations'] == steps
  for g in range(1, len(dirs)):
    first = restore(g, 0)  # Saved before the generation's first step.
    assert first['iterations'] == 0
    assert first['slots'] and all(not s.any() for s in first['slots'])
    for m, e in zip(first['model'], first['ema']):
      np.testing.assert_array_equal(m, e)  # A fresh EMA: the model itself.
    # Not the previous generation's final weights (any kernel) ...
    kernels = [(a, b) for a, b in zip(first['trainable'], last['trainable'])
               if a.ndim >= 2]
    assert len(kernels) == 5  # Four convolutions and the head.
    for a, b in kernels:
      assert np.abs(a - b).max() > 1e-3
    # ... but a fresh initialisation from this generation's seed.
    fresh, _, _ = models.build_model_and_ema(
        cfg, strategy, k, generations.generation_seed(cfg.seed, g))
    for a, b in zip(first['model'], fresh.variables):
      np.testing.assert_array_equal(a, b.numpy())
    last = restore(g, steps)
    assert last['iterations'] == steps
