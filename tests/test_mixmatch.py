"""Tests of the MixMatch plug-in (mixmatch.py)."""
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

import learnable
import mixmatch
from crest import config as config_lib
from crest import flags as crest_flags
from crest import losses
from crest import method_api
from crest import methods
from crest import run_dir as run_dir_lib
from crest.config import Config
from crest.trainer import GenerationTrainer
from data import pipeline
from data import registry as data_registry
from data.base import DataArgs

K = 4
H = 8
# Measured 0.89-1.0 (seeds 1-3: test_mixmatch_crest_plus_learns).
MIXMATCH_MIN_ACCURACY = 0.75

# One two-replica strategy for the whole module (no collective ops: see the
# note in tests/test_mixup.py).
_STRATEGIES = {}


def _strategy(devices):
  key = tuple(devices)
  if key not in _STRATEGIES:
    _STRATEGIES[key] = tf.distribute.MirroredStrategy(
        list(devices), cross_device_ops=tf.distribute.ReductionToOneDevice())
  return _STRATEGIES[key]


def _params(**kw):
  base = dict(num_classes=K, threshold=0.0, temperature=0.5,
              unsup_loss_type='mse', unsup_loss_divisor='full',
              weight_unsup=75.0, do_distalign=True, how_dalign='adaptive',
              reweight_labeled=False, mixup_beta=0.75, global_batch_size=4,
              global_unlabeled_batch_size=6)
  base.update(kw)
  return method_api.LossParams(**base)


def _stats(seed=(3, 4)):
  return method_api.Stats(
      p_model=tf.constant([0.4, 0.3, 0.2, 0.1]),
      p_data=tf.constant([0.25, 0.25, 0.3, 0.2]),
      gt_p_data=tf.constant([0.5, 0.25, 0.15, 0.1]),
      dalign_t=tf.constant(0.8), seed=tf.constant(seed, tf.int64))


def _batch(b=4, u=6, v=2, seed=0):
  rng = np.random.default_rng(seed)
  return {
      'x_l': rng.uniform(-1, 1, [b, H, H, 3]).astype(np.float32),
      'y_l': rng.integers(0, K, b).astype(np.int64),
      'x_w': rng.uniform(-1, 1, [u, v, H, H, 3]).astype(np.float32),
      'x_s': np.zeros([u, 0, H, H, 3], np.float32),
      'y_u': rng.integers(0, K, u).astype(np.int64),
  }


def _tiny_model():
  """Conv + Dense, no batch norm (replica-count independent)."""
  keras.utils.set_random_seed(11)
  return keras.Sequential([
      keras.Input((H, H, 3)),
      keras.layers.Conv2D(6, 3, padding='same', activation='tanh'),
      keras.layers.GlobalAveragePooling2D(),
      keras.layers.Dense(K),
  ])


# ------------------------------------------------------------ pure helpers
def test_views_first_is_view_major():
  x = tf.reshape(tf.range(3 * 2 * 2), [3, 2, 2])  # [N=3, V=2, 2]
  out = method_api.views_first(x).numpy()
  np.testing.assert_array_equal(out[:, 0], [0, 4, 8, 2, 6, 10])


def test_own_rows_partition_the_global_pool():
  # R=2, b=2, u=3, V=2: pool = [L0 L0 L1 L1 | v0: U0 U0 U0 U1 U1 U1 | v1: ...]
  r0 = mixmatch.own_rows(0, 2, 3, 2, 2).numpy()
  r1 = mixmatch.own_rows(1, 2, 3, 2, 2).numpy()
  np.testing.assert_array_equal(r0, [0, 1, 4, 5, 6, 10, 11, 12])
  np.testing.assert_array_equal(r1, [2, 3, 7, 8, 9, 13, 14, 15])
  np.testing.assert_array_equal(mixmatch.own_rows(0, 2, 3, 2, 1),
                                np.arange(8))


def test_pool_permutation_and_lambda():
  perm, lam = mixmatch.pool_permutation_and_lambda(50, 0.75, [1, 2])
  assert sorted(perm.numpy().tolist()) == list(range(50))
  assert lam.shape == (50,) and lam.numpy().min() >= 0.5
  assert lam.numpy().max() <= 1.0 and lam.numpy().std() > 0.01
  perm2, lam2 = mixmatch.pool_permutation_and_lambda(50, 0.75, [1, 2])
  np.testing.assert_array_equal(perm, perm2)
  np.testing.assert_array_equal(lam, lam2)
  perm3, _ = mixmatch.pool_permutation_and_lambda(50, 0.75, [1, 3])
  assert not np.array_equal(perm, perm3)
  _, ones = mixmatch.pool_permutation_and_lambda(50, 0.0, [1, 2])
  np.testing.assert_array_equal(ones, np.ones(50))


def test_permutation_mixes_across_replicas():
  b, u, v, r = 4, 6, 2, 2
  size = r * (b + v * u)
  perm, _ = mixmatch.pool_permutation_and_lambda(size, 0.75, [3, 4])
  r0 = mixmatch.own_rows(0, b, u, v, r).numpy()
  r1 = set(mixmatch.own_rows(1, b, u, v, r).numpy().tolist())
  partners = perm.numpy()[r0]
  crossed = [p in r1 for p in partners]
  assert 0 < sum(crossed) < len(r0)


def test_reweight_labeled_uses_each_rows_own_class():
  # A hand-made mixed labeled batch: row 0 is class 0 blended 0.6 / 0.4 with
  # class 2, row 1 class 1 blended with class 0. The original multiplies
  # each row's cross-entropy by the weight of the row's OWN class.
  stats = _stats()
  params = _params(reweight_labeled=True, global_batch_size=2)
  yl = tf.constant([0, 1])
  y_mix = tf.constant([[0.6, 0.0, 0.4, 0.0], [0.3, 0.7, 0.0, 0.0]])
  logits = tf.constant([[1.0, 0.2, -0.5, 0.3], [0.0, 2.0, 1.0, -1.0]])
  xe = losses.softmax_xe(y_mix, logits).numpy()
  w = 1 / (1e-6 + stats.p_data.numpy())
  w = w / w.sum() * K
  expected = (w[0] * xe[0] + w[1] * xe[1]) / 2
  got = float(method_api.labeled_loss(tf.constant(xe), yl, stats, params))
  assert got == pytest.approx(expected, rel=1e-6)
  # Weighting each class term of the mixed target would give another value.
  logp = tf.nn.log_softmax(logits).numpy()
  per_term = -(y_mix.numpy() * w * logp).sum(1).sum() / 2
  assert abs(per_term - expected) > 1e-2
  # Without reweighting: the plain mean.
  plain = float(method_api.labeled_loss(tf.constant(xe), yl, stats,
                                     _params(global_batch_size=2)))
  assert plain == pytest.approx(xe.mean(), rel=1e-6)


# --------------------------------------------------------- the loss itself
def _numpy_loss(model, batch, stats, params):
  """MixMatch recomputed in NumPy on one device (the specification): label
  guessing (view average, CReST+ alignment to gt_p_data ** t, threshold mask,
  sharpening), MixUp of the pool, supervised soft cross-entropy (with
  reweight_labeled: times the weight of each row's own class) and the masked
  mse with either divisor."""
  sm = lambda z: np.exp(z - z.max(1, keepdims=True)) / np.exp(
      z - z.max(1, keepdims=True)).sum(1, keepdims=True)
  xl, yl, xw = batch['x_l'], batch['y_l'], batch['x_w']
  b, u, v = len(xl), len(xw), xw.shape[1]
  views = np.concatenate([xw[:, i] for i in range(v)])
  probs = sm(model(views, training=False).numpy())
  avg = probs.reshape(v, u, K).mean(0)
  gt = stats.gt_p_data.numpy() ** float(stats.dalign_t)
  gt /= gt.sum()
  al = avg * (1e-6 + gt) / (1e-6 + stats.p_model.numpy())
  al /= al.sum(1, keepdims=True)
  mask = (al.max(1) >= params.threshold).astype(np.float64)
  tgt = al ** (1 / params.temperature)
  tgt /= tgt.sum(1, keepdims=True)
  pool_x = np.concatenate([xl, views])
  pool_y = np.concatenate([np.eye(K)[yl], np.tile(tgt, [v, 1])])
  perm, lam = mixmatch.pool_permutation_and_lambda(
      len(pool_x), params.mixup_beta, stats.seed)
  perm, lam = perm.numpy(), lam.numpy()
  mx = lam[:, None, None, None] * pool_x + (1 - lam[:, None, None, None]) * (
      pool_x[perm])
  my = lam[:, None] * pool_y + (1 - lam[:, None]) * pool_y[perm]
  p = sm(model(mx.astype(np.float32), training=False).numpy().astype(
      np.float64))
  row_xe = -(my[:b] * np.log(p[:b])).sum(1)
  if params.reweight_labeled:
    w = 1 / (1e-6 + stats.p_data.numpy().astype(np.float64))
    row_xe = row_xe * (w * K / w.sum())[yl]
  xe = row_xe.sum() / params.global_batch_size
  row_mse = ((p[b:] - my[b:]) ** 2).mean(1) * np.tile(mask, v)
  divisor = (params.global_unlabeled_batch_size * v
             if params.unsup_loss_divisor == 'full' else
             max(1.0, v * mask.sum()))
  mse = row_mse.sum() / divisor
  return (xe + params.weight_unsup * mse, xe, mse, probs.mean(0),
          mx.astype(np.float32), my.astype(np.float32), mask)


def test_loss_matches_numpy_specification():
  model = _tiny_model()
  batch, stats, params = _batch(), _stats(), _params()
  out = mixmatch.loss(model, {k: tf.constant(v) for k, v in batch.items()},
                      stats, params)
  total, xe, mse, pmean, _, _, _ = _numpy_loss(model, batch, stats, params)
  assert float(out.loss) == pytest.approx(total, rel=1e-4)
  assert float(out.metrics['loss.xe']) == pytest.approx(xe, rel=1e-4)
  assert float(out.metrics['loss.xeu']) == pytest.approx(mse, rel=1e-4)
  np.testing.assert_allclose(out.weak_probs_mean, pmean, rtol=1e-5)
  assert float(out.metrics['monitor.mask']) == 1.0  # threshold 0
  assert set(out.metrics) == {'loss.xe', 'loss.xeu', 'acc.train',
                              'acc.unlab', 'monitor.mask'}


@pytest.mark.parametrize('divisor', ['full', 'quality'])
def test_reweighted_masked_loss_matches_numpy_specification(divisor):
  """reweight_labeled, a threshold that masks some examples, each divisor."""
  model = _tiny_model()
  batch, stats = _batch(seed=2), _stats()
  params = _params(reweight_labeled=True, threshold=0.305,
                   unsup_loss_divisor=divisor)
  out = mixmatch.loss(model, {k: tf.constant(v) for k, v in batch.items()},
                      stats, params)
  total, xe, mse, _, _, _, mask = _numpy_loss(model, batch, stats, params)
  assert 0 < mask.sum() < len(mask)  # The mask shows in the loss.
  assert float(out.metrics['monitor.mask']) == pytest.approx(mask.mean())
  assert float(out.metrics['loss.xe']) == pytest.approx(xe, rel=1e-4)
  assert float(out.metrics['loss.xeu']) == pytest.approx(mse, rel=1e-4)
  assert float(out.loss) == pytest.approx(total, rel=1e-4)
  # Reweighting changes the supervised loss here (p_data is not uniform).
  plain = _numpy_loss(model, batch, stats, _params(
      threshold=0.305, unsup_loss_divisor=divisor))[1]
  assert abs(plain - xe) > 0.01 * xe


def test_no_mixing_with_beta_zero_and_threshold_mask():
  model = _tiny_model()
  batch = _batch()
  params = _params(mixup_beta=0.0, do_distalign=False, how_dalign=None,
                   threshold=0.3, temperature=0.0)
  out = mixmatch.loss(model, {k: tf.constant(v) for k, v in batch.items()},
                      _stats(), params)
  # No mixing: supervised loss is the plain cross-entropy of the batch.
  logits_l = model(batch['x_l'])
  expected_xe = np.mean(losses.sparse_xe(batch['y_l'], logits_l))
  assert float(out.metrics['loss.xe']) == pytest.approx(expected_xe,
                                                        rel=1e-5)
  views = np.concatenate([batch['x_w'][:, 0], batch['x_w'][:, 1]])
  probs = tf.nn.softmax(model(views)).numpy()
  avg = probs.reshape(2, 6, K).mean(0)
  mask = (avg.max(1) >= 0.3).astype(np.float32)
  hard = np.eye(K)[avg.argmax(1)]
  mse = ((probs - np.tile(hard, [2, 1])) ** 2).mean(1) * np.tile(mask, 2)
  assert float(out.metrics['loss.xeu']) == pytest.approx(mse.sum() / 12,
                                                         rel=1e-5)
  assert float(out.metrics['monitor.mask']) == pytest.approx(mask.mean())
  acc_unlab = np.mean(avg.argmax(1) == batch['y_u'])
  assert float(out.metrics['acc.unlab']) == pytest.approx(acc_unlab)


def test_no_gradient_through_targets():
  """The gradient equals that of the loss with frozen targets and inputs."""
  model = _tiny_model()
  batch, stats, params = _batch(), _stats(), _params()
  with tf.GradientTape() as tape:
    out = mixmatch.loss(model, {k: tf.constant(v) for k, v in batch.items()},
                        stats, params)
  grads = tape.gradient(out.loss, model.trainable_variables)
  _, _, _, _, mx, my, _ = _numpy_loss(model, batch, stats, params)
  b, nu = len(batch['x_l']), params.global_unlabeled_batch_size * 2
  with tf.GradientTape() as tape:
    logits = model(mx, training=True)
    frozen = (tf.reduce_sum(losses.softmax_xe(my[:b], logits[:b])) / b +
              params.weight_unsup * tf.reduce_sum(losses.unsupervised_loss(
                  my[b:], logits[b:], 'mse')) / nu)
  expected = tape.gradient(frozen, model.trainable_variables)
  assert float(frozen) == pytest.approx(float(out.loss), rel=1e-4)
  for g, e in zip(grads, expected):
    assert float(tf.reduce_max(tf.abs(e))) > 0
    np.testing.assert_allclose(g, e, rtol=1e-3, atol=1e-6)


def _replicated_loss(devices, batch, stats, params, weights):
  strategy = _strategy(devices)
  with strategy.scope():
    model = _tiny_model()
  model.set_weights(weights)
  ds = tf.data.Dataset.from_tensors(batch)
  dist = next(iter(strategy.experimental_distribute_dataset(ds)))

  @tf.function
  def step(b):
    def fn(b):
      with tf.GradientTape() as tape:
        out = mixmatch.loss(model, b, stats, params)
      grads = tape.gradient(out.loss, model.trainable_variables)
      ctx = tf.distribute.get_replica_context()
      return ctx.all_reduce(tf.distribute.ReduceOp.SUM,
                            (out.loss, out.metrics, grads))
    return strategy.run(fn, (b,))

  loss, metrics, grads = step(dist)
  first = lambda x: strategy.experimental_local_results(x)[0].numpy()
  return (first(loss), {k: first(v) for k, v in metrics.items()},
          [first(g) for g in grads])


@pytest.mark.parametrize('divisor', ['full', 'quality'])
def test_two_replicas_equal_one_device(divisor):
  batch = _batch(b=4, u=6, v=2, seed=5)
  stats = _stats(seed=(3, 4))
  params = _params(unsup_loss_divisor=divisor, threshold=0.3,
                   reweight_labeled=True)
  weights = _tiny_model().get_weights()
  l1, m1, g1 = _replicated_loss(['/cpu:0'], batch, stats, params, weights)
  l2, m2, g2 = _replicated_loss(['/cpu:0', '/cpu:1'], batch, stats, params,
                                weights)
  assert np.isfinite(l1) and l1 > 0
  assert l2 == pytest.approx(l1, rel=1e-5)
  for k in m1:
    assert m2[k] == pytest.approx(m1[k], rel=1e-5, abs=1e-7), k
  for a, b in zip(g1, g2):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  # Same global batch through the plain (no strategy) call.
  out = mixmatch.loss(_tiny_model(), {k: tf.constant(v)
                                      for k, v in batch.items()},
                      stats, params)
  assert float(out.loss) == pytest.approx(l1, rel=1e-5)
  # The seed matters (the permutation and lambdas are really used).
  l3, _, _ = _replicated_loss(['/cpu:0', '/cpu:1'], batch,
                              _stats(seed=(9, 9)), params, weights)
  assert abs(l3 - l1) > 1e-4


# ---------------------------------------------------- through the trainer
def _tiny_data(cfg):
  return data_registry.load(DataArgs(
      dataset=cfg.dataset, class_im_ratio=cfg.class_im_ratio,
      percent_labeled=cfg.percent_labeled, fold=cfg.fold))


def _mixmatch_config(model_dir, **kw):
  base = dict(method='mixmatch', dataset='synthetic_tiny', net_arch='small',
              num_weakaug=2, num_strongaug=0, temperature=0.5, threshold=0.0,
              unsup_loss_type='mse', weight_unsup=75.0, num_epoch=1,
              num_batch=2, num_generation=2, batch_size=8, unlab_ratio=2,
              percent_labeled=0.3, do_distalign=True, how_dalign='adaptive',
              dalign_t=0.5, alpha=2.0, model_dir=str(model_dir),
              ema_decay=0.5, eval_batch_size=128, progress=False, seed=3)
  base.update(kw)
  return Config(**base)


def test_trainer_step_two_replicas_bn_sync(tmp_path):
  """The real trainer step, batch norm synchronised: 2 replicas == 1."""
  cfg = _mixmatch_config(tmp_path, bn_sync=True, num_batch=1)
  data = _tiny_data(cfg)
  lab = data.labeled_positions
  spec = pipeline.StreamSpec(
      batch_size=cfg.batch_size, unlab_ratio=cfg.unlab_ratio,
      augment=cfg.augment, weakaug=cfg.weakaug, strongaug=cfg.strongaug,
      num_weakaug=2, num_strongaug=0, seed=1)
  results = []
  for name, devices in (('one', ['/cpu:0']), ('two', ['/cpu:0', '/cpu:1'])):
    strategy = _strategy(devices)
    trainer = GenerationTrainer(cfg, strategy, data, str(tmp_path / name),
                                dalign_t=0.8, seed=cfg.seed)
    ds = pipeline.train_dataset(
        data.train_images, lab, data.train_labels[lab],
        data.unlabeled_stream_positions,
        data.train_labels[data.unlabeled_stream_positions], spec, 0, 1)
    it = iter(strategy.experimental_distribute_dataset(ds))
    loss = float(trainer.train_steps(it, tf.constant(1)))
    results.append((loss, [v.numpy() for v in trainer.model.variables],
                    {k: float(v.numpy()) for k, v in trainer.sums.items()}))
  (l1, w1, s1), (l2, w2, s2) = results
  assert np.isfinite(l1)
  assert l2 == pytest.approx(l1, rel=1e-5, abs=1e-6)
  # Weights after one SGD step (updates up to 2e-2): synchronised batch norm
  # sums in another order, and the float noise of its statistics reaches a
  # few weights of the first convolution at ~5e-5 (without batch norm the
  # loss-level test above agrees to 1e-4 relative on every gradient).
  for a, b in zip(w1, w2):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=2e-4)
  for k in s1:
    assert s2[k] == pytest.approx(s1[k], rel=1e-3, abs=1e-5), k


def test_mixmatch_crest_plus_learns(tmp_path):
  """One generation of MixMatch + CReST+ (constant temperature 0.5) on the
  separable data of tests/learnable.py, 64 steps. weight_unsup 10, not the
  paper's 75 (tuned for CIFAR over long runs): measured EMA test accuracy
  1.0, 0.89, 0.97 (seeds 1-3; 0.75 with 75, seed 1) and every pick
  correct; chance is 0.25."""
  cfg = learnable.config(
      tmp_path / 'runs', learnable.write_npz(tmp_path), method='mixmatch',
      num_weakaug=2, num_strongaug=0, temperature=0.5, threshold=0.0,
      unsup_loss_type='mse', weight_unsup=10.0, num_batch=32,
      num_generation=1, how_dalign='constant', dalign_t=0.5, alpha=2.0)
  config_lib.validate(cfg, num_replicas=1)
  recs, _, seen = learnable.run_generations(cfg, learnable.load(cfg),
                                            mixmatch)
  assert recs[0]['test_accuracy'] >= MIXMATCH_MIN_ACCURACY
  assert min(recs[0]['test_per_class_recall']) > 1 / learnable.NUM_CLASSES
  # The temperature reached MixMatch's loss and the record.
  assert set(seen) == {0.5} and recs[0]['alignment_temperature'] == 0.5
  run_dir = run_dir_lib.path(cfg)
  saved = json.load(open(os.path.join(run_dir, 'config.json')))
  assert saved['method'] == 'mixmatch' and saved['num_weakaug'] == 2
  hist = json.load(open(os.path.join(run_dir, 'gen_00_t0.50', 'stats',
                                     'history.json')))
  assert np.all(np.isfinite(hist['loss.train']))
  assert hist['monitor.mask'] == pytest.approx([1.0, 1.0])  # threshold 0


# ------------------------------------------------------------ the command
def test_paper_mixmatch_command_parses_and_validates():
  fv = flags.FlagValues()
  crest_flags.define_flags(fv)
  fv(['prog', '--model_dir=/tmp/model', '--method=mixmatch',
      '--dataset=cifar10ltdarp', '--class_im_ratio=150', '--num_epoch=128',
      '--num_generation=6', '--sched_level=5', '--dalign_t=0.8',
      '--how_dalign=adaptive', '--do_distalign=True', '--num_weakaug=2',
      '--num_strongaug=0', '--alpha=2.0', '--temperature=0.5'])
  values, present = crest_flags.values_from_flags(fv)
  cfg = crest_flags.config_from_values(values, present)
  config_lib.validate(cfg, num_replicas=1)
  assert cfg.method == 'mixmatch' and cfg.dataset == 'cifar10ltdarp'
  assert (cfg.num_weakaug, cfg.num_strongaug, cfg.temperature) == (2, 0, 0.5)
  # MixMatch defaults for the flags the command leaves unset.
  assert (cfg.threshold, cfg.unsup_loss_type, cfg.weight_unsup) == (
      0.0, 'mse', 75.0)
  assert cfg.mixup_beta == 0.75 and cfg.alpha == 2.0
  assert methods.get(cfg.method).loss is mixmatch.loss
