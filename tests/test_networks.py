"""Tests of networks/: registry, WRN-28-k structure, small CNN, init, BN sync."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from crest.errors import ConfigError
from networks import preact_block
from networks import common
from networks import registry


def _count(variables) -> int:
  return int(sum(np.prod(v.shape) for v in variables))


@pytest.fixture(scope='module')
def wrn():
  keras.utils.set_random_seed(0)
  return registry.build('WRN28', num_classes=10, input_shape=(32, 32, 3))


def test_names_and_lookup():
  assert registry.names()[0] == 'WRN28'
  assert {'small', 'ResNet50', 'ResNet152V2'} <= set(registry.names())
  m = registry.build('SMALL', num_classes=4, input_shape=(16, 16, 3))
  assert m.output_shape == (None, 4)
  with pytest.raises(ConfigError, match='WRN28.*small.*ResNet50') as info:
    registry.build('resnet34', num_classes=10, input_shape=(32, 32, 3))
  assert isinstance(info.value, ValueError)


@pytest.mark.parametrize('kwargs', [
    dict(input_shape=(8, 8, 3)),
    dict(activation='gelu'),
    dict(head_arch='deep'),
    dict(head_arch='mlp', head_mlp_dims=()),
    dict(num_classes=0),
    dict(width=0),
])
def test_bad_arguments(kwargs):
  args = dict(num_classes=10, input_shape=(32, 32, 3)) | kwargs
  with pytest.raises(ConfigError):
    registry.build('small', **args)


def _blocks(model):
  return [l for l in model.layers if isinstance(l, preact_block.PreActBlock)]


def test_wrn28_2_parameter_count(wrn):
  assert _count(wrn.trainable_variables) == 1_467_610
  assert wrn.count_params() == 1_471_226  # + 3,616 BN moving statistics.
  assert wrn.name == 'wrn28_2'
  convs = [l for l in wrn.layers if isinstance(l, keras.layers.Conv2D)]
  assert [c.name for c in convs] == ['stem_conv']  # The rest are in blocks.
  blocks = _blocks(wrn)
  assert [b.name for b in blocks] == [f'g{g}b{b}' for g in (1, 2, 3)
                                      for b in (1, 2, 3, 4)]
  assert sum(len(b.kernels) for b in blocks) == 3 * 4 * 2 + 3


def test_wrn28_block_structure(wrn):
  blocks = {b.name: b for b in _blocks(wrn)}
  # First group: the shortcut conv takes the BN-act output of the block.
  assert blocks['g1b1'].shortcut == 'activation'
  assert blocks['g1b1'].shortcut_kernel.shape == (1, 1, 16, 32)
  assert blocks['g1b1'].stride == 1
  # Later groups: the shortcut conv (stride 2) sees the raw block input.
  for name, filters in (('g2b1', 64), ('g3b1', 128)):
    assert blocks[name].shortcut == 'input' and blocks[name].stride == 2
    assert blocks[name].kernel1.shape == (3, 3, filters // 2, filters)
    assert blocks[name].kernel2.shape == (3, 3, filters, filters)
    assert blocks[name].shortcut_kernel.shape == (1, 1, filters // 2, filters)
  # Identity shortcut inside a group.
  assert blocks['g2b2'].input is blocks['g2b1'].output
  assert blocks['g2b2'].shortcut == 'identity'
  assert blocks['g2b2'].shortcut_kernel is None
  assert blocks['g3b4'].output.shape == (None, 8, 8, 128)
  assert all(b.momentum == 0.999 and b.epsilon == 1e-3 for b in blocks.values())
  assert all(not b.synchronized and b.activation == 'leaky_relu'
             for b in blocks.values())
  # Only the first group's full-resolution blocks recompute their middle map.
  assert [b.name for b in blocks.values() if b.recompute] == [
      'g1b1', 'g1b2', 'g1b3', 'g1b4']
  bns = [l for l in wrn.layers if isinstance(l, keras.layers.BatchNormalization)]
  assert [b.name for b in bns] == ['final_bn']
  act = wrn.get_layer('final_act')
  assert isinstance(act, keras.layers.LeakyReLU)
  assert act.negative_slope == pytest.approx(0.1)
  decay = registry.decay_variables(wrn)
  assert len(decay) == 1 + 27 + 2  # Stem, block kernels, logits.
  assert not any(v.name.startswith(('gamma', 'beta')) for v in decay)
  assert sum(v.name.startswith(('gamma', 'beta'))
             for v in wrn.trainable_variables) == 12 * 4 + 2


def test_wrn_forward(wrn):
  x = tf.random.uniform([3, 32, 32, 3], -1, 1)
  for training in (True, False):
    y = wrn(x, training=training)
    assert y.shape == (3, 10) and y.dtype == tf.float32
    assert isinstance(y, tf.Tensor)


def test_independent_initialisation(wrn):
  a = wrn.get_layer('g2b2').kernel1.numpy()
  b = wrn.get_layer('g2b2').kernel2.numpy()
  assert a.shape == b.shape == (3, 3, 64, 64)
  assert not np.allclose(a, b)
  assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.05
  # He normal on fan-out: std = sqrt(2 / (3 * 3 * 64)).
  assert a.std() == pytest.approx(np.sqrt(2 / (9 * 64)), rel=0.05)
  assert a.mean() == pytest.approx(0, abs=0.01)


def _small(seed, **kwargs):
  keras.utils.set_random_seed(seed)
  return registry.build('small', num_classes=10, input_shape=(32, 32, 3),
                        **kwargs)


def test_seeded_builds_reproducible():
  m1, m2, m3 = _small(7), _small(7), _small(8)
  w1, w2, w3 = m1.get_weights(), m2.get_weights(), m3.get_weights()
  assert all(np.array_equal(a, b) for a, b in zip(w1, w2))
  kernels = [i for i, w in enumerate(w1) if w.ndim > 1]
  assert all(not np.allclose(w1[i], w3[i]) for i in kernels)
  # Two models built in a row are different too (no shared initialiser).
  m4 = registry.build('small', num_classes=10, input_shape=(32, 32, 3))
  assert not np.allclose(m4.get_weights()[0], w1[0])


def test_small_structure():
  m = _small(0)
  bns = [l for l in m.layers if isinstance(l, keras.layers.BatchNormalization)]
  assert len(bns) == 4
  assert all(b.momentum == 0.99 and b.epsilon == 1e-3 for b in bns)
  convs = [l for l in m.layers if isinstance(l, keras.layers.Conv2D)]
  assert [c.filters for c in convs] == [32, 64, 64, 128]
  assert [c.strides[0] for c in convs] == [1, 2, 1, 2]
  assert all(not c.use_bias for c in convs)
  assert m.count_params() == 132_330


@pytest.mark.parametrize('shape', [(16, 16, 1), (28, 28, 1), (32, 32, 3),
                                   (17, 23, 3)])
def test_small_any_input(shape):
  m = registry.build('small', num_classes=5, input_shape=shape)
  y = m(tf.zeros((2,) + shape), training=False)
  assert y.shape == (2, 5) and y.dtype == tf.float32
  assert 50_000 <= m.count_params() <= 150_000


def test_decay_variables_and_moving_statistics():
  m = _small(1, head_arch='mlp', head_mlp_dims=(32, 16), activation='relu')
  assert isinstance(m.get_layer('head_mlp1_act'), keras.layers.ReLU)
  decay = registry.decay_variables(m)
  names = sorted(v.path for v in decay)
  bns = [l for l in m.layers if isinstance(l, keras.layers.BatchNormalization)]
  assert len(bns) == 4 + 2
  bn_ids = {id(v) for l in bns for v in l.trainable_variables}
  assert not any(id(v) in bn_ids for v in decay)
  assert len(decay) + len(bn_ids) == len(m.trainable_variables)
  assert 'logits/kernel' in names and 'logits/bias' in names
  assert 'head_mlp0_dense/kernel' in names and 'conv1/kernel' in names
  assert not any('gamma' in n or 'beta' in n for n in names)
  # Moving statistics: exactly the non-trainable variables.
  moving = {id(l.moving_mean) for l in bns} | {
      id(l.moving_variance) for l in bns}
  assert {id(v) for v in m.non_trainable_variables} == moving
  before = [v.numpy() for v in m.non_trainable_variables]
  x = tf.random.uniform([4, 32, 32, 3], -1, 1)
  m(x, training=False)
  assert all(np.array_equal(a, v.numpy())
             for a, v in zip(before, m.non_trainable_variables))
  m(x, training=True)
  assert not np.array_equal(before[0], m.non_trainable_variables[0].numpy())


def _distributed_moving_stats(x, bn_sync):
  strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
  with strategy.scope():
    keras.utils.set_random_seed(3)
    m = registry.build('small', num_classes=3, input_shape=(16, 16, 3),
                       bn_sync=bn_sync)
  dist = strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensor_slices(x).batch(len(x)))

  @tf.function
  def step(images):
    return strategy.run(lambda t: m(t, training=True), args=(images,))

  step(next(iter(dist)))
  for v in m.non_trainable_variables:  # Replica copies never diverge.
    a, b = (c.numpy() for c in v.value.values)
    np.testing.assert_array_equal(a, b)
  return [v.numpy() for v in m.non_trainable_variables]


def test_bn_sync_under_mirrored_strategy():
  assert len(tf.config.list_logical_devices('CPU')) >= 2
  rng = np.random.default_rng(0)
  x = np.concatenate([rng.normal(-1, 0.3, (8, 16, 16, 3)),
                      rng.normal(1, 0.6, (8, 16, 16, 3))]).astype(np.float32)
  keras.utils.set_random_seed(3)
  ref = registry.build('small', num_classes=3, input_shape=(16, 16, 3))
  ref(x, training=True)
  expected = [v.numpy() for v in ref.non_trainable_variables]
  synced = _distributed_moving_stats(x, bn_sync=True)
  for a, b in zip(expected, synced):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  local = _distributed_moving_stats(x, bn_sync=False)
  assert max(np.abs(a - b).max() for a, b in zip(expected, local)) > 1e-4


@pytest.mark.parametrize('policy', ['mixed_bfloat16', 'mixed_float16'])
def test_mixed_precision(policy):
  old = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(policy)
  try:
    m = registry.build('small', num_classes=3, input_shape=(16, 16, 3),
                       head_arch='mlp', head_mlp_dims=(8,))
  finally:
    keras.mixed_precision.set_global_policy(old)
  assert m.get_layer('conv2').compute_dtype == policy.split('_')[1]
  assert all(v.dtype == 'float32' for v in m.variables)
  x = tf.random.uniform([4, 16, 16, 3], -1, 1)
  with tf.GradientTape() as tape:
    y = m(x, training=True)
    loss = tf.reduce_mean(tf.square(y))
  grads = tape.gradient(loss, m.trainable_variables)
  assert y.dtype == tf.float32 and y.shape == (4, 3)
  assert all(g is not None and bool(tf.reduce_all(tf.math.is_finite(g)))
             for g in grads)


@pytest.mark.parametrize('arch', ['small', 'WRN28'])
def test_jit_compiled_train_step(arch):
  keras.utils.set_random_seed(5)
  m = registry.build(arch, num_classes=3, input_shape=(16, 16, 3), width=1)
  x = tf.random.uniform([6, 16, 16, 3], -1, 1)
  labels = tf.constant([0, 1, 2, 0, 1, 2])
  variables = m.trainable_variables

  @tf.function(jit_compile=True)
  def step(images, labels):
    with tf.GradientTape() as tape:
      logits = m(images, training=True)
      loss = tf.reduce_mean(
          tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    grads = tape.gradient(loss, variables)
    for v, g in zip(variables, grads):
      v.assign_sub(0.05 * g)
    return loss

  losses = [float(step(x, labels)) for _ in range(4)]
  assert all(np.isfinite(losses)) and losses[-1] < losses[0]
  eager = m(x, training=False)
  compiled = tf.function(lambda t: m(t, training=False), jit_compile=True)(x)
  np.testing.assert_allclose(eager, compiled, rtol=1e-3, atol=1e-3)


def test_small_learns_synthetic_task():
  """Three classes told apart by colour and a bright quadrant, 60 SGD steps."""
  rng = np.random.default_rng(0)
  n = 192
  labels = rng.integers(0, 3, n)
  x = rng.normal(0, 0.3, (n, 20, 20, 3)).astype(np.float32)
  for i, c in enumerate(labels):
    x[i, :, :, c] += 0.5
    x[i, (c % 2) * 10:(c % 2) * 10 + 10, (c // 2) * 10:(c // 2) * 10 + 10] += 0.5
  x = np.clip(x, -1, 1)
  keras.utils.set_random_seed(0)
  m = registry.build('small', num_classes=3, input_shape=(20, 20, 3), width=1)
  opt = keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True)

  @tf.function
  def step(images, y):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
          y, m(images, training=True)))
    opt.apply_gradients(zip(tape.gradient(loss, m.trainable_variables),
                            m.trainable_variables))
    return loss

  for s in range(60):
    idx = rng.integers(0, n, 32)
    step(x[idx], labels[idx])
  accuracy = np.mean(np.argmax(m(x, training=False), -1) == labels)
  assert accuracy > 0.9


def test_batch_norm_layer_is_plain_outside_strategies():
  bn = common.batch_norm(bn_sync=True, name='bn')
  y = bn(tf.random.normal([8, 4, 4, 2]), training=True)
  assert y.shape == (8, 4, 4, 2)
  assert bn.synchronized
  config = bn.get_config()
  assert common.BatchNorm.from_config(config).momentum == 0.999
