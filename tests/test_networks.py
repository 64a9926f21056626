"""Tests of networks/: registry, WRN-28-k / WRN-37-k structure and their two
implementations, small CNN, init, BN sync."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from networks.errors import NetworkError
from networks import bn_act
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
  with pytest.raises(NetworkError, match='WRN28.*small.*ResNet50') as info:
    registry.build('resnet34', num_classes=10, input_shape=(32, 32, 3))
  assert isinstance(info.value, ValueError)
  assert registry.names()[1] == 'WRN37'
  assert registry.impls('WRN28') == registry.impls('wrn37') == (
      'lean', 'keras')
  with pytest.raises(NetworkError, match='lean, keras'):
    registry.build('WRN28', num_classes=10, input_shape=(32, 32, 3),
                   impl='fused')


@pytest.mark.parametrize('width', [2.5, 0.5, 0, 'two'])
def test_wrn_width_must_be_whole(width):
  with pytest.raises(NetworkError, match=f'width.*got {width}'):
    registry.build('WRN28', num_classes=10, input_shape=(32, 32, 3),
                   width=width)


def test_wrn_width_as_float(wrn):
  m = registry.build('WRN28', num_classes=10, input_shape=(32, 32, 3),
                     width=2.0)
  assert m.name == 'wrn28_2' and m.count_params() == wrn.count_params()


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
  with pytest.raises(NetworkError):
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
  # The first block of EVERY group takes its 1x1 shortcut conv from the
  # block's BN-act output (the original's conv_shortcut=True).
  assert blocks['g1b1'].shortcut == 'activation'
  assert blocks['g1b1'].shortcut_kernel.shape == (1, 1, 16, 32)
  assert blocks['g1b1'].stride == 1
  for name, filters in (('g2b1', 64), ('g3b1', 128)):
    assert blocks[name].shortcut == 'activation' and blocks[name].stride == 2
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
  assert isinstance(bns[0], bn_act.FusedBatchNorm)
  assert (bns[0].momentum, bns[0].epsilon) == (0.999, 1e-3)
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


def test_wrn28_1_first_block_shortcut_is_the_activation():
  """16 -> 16 channels: no 1x1 conv, but still the BN-act output (not x)."""
  m = registry.build('WRN28', num_classes=10, input_shape=(16, 16, 3),
                     width=1)
  blocks = {b.name: b for b in _blocks(m)}
  assert blocks['g1b1'].shortcut == 'activation_identity'
  assert blocks['g1b1'].shortcut_kernel is None
  assert blocks['g2b1'].shortcut == 'activation'
  names = registry.original_variables('WRN28', m)
  assert 'conv2_block1_0_conv/kernel' not in names
  assert 'conv3_block1_0_conv/kernel' in names


def _wrn_params(groups, k, classes=10, channels=3):
  """Parameter count from the architecture: (trainable, moving)."""
  trainable, moving, c = 9 * channels * 16, 0, 16
  for g in range(groups):
    f = (16 << g) * k
    for b in range(4):
      trainable += 2 * c + 9 * c * f + 2 * f + 9 * f * f
      moving += 2 * c + 2 * f
      if b == 0 and c != f:
        trainable += c * f
      c = f
  return trainable + 2 * c + c * classes + classes, moving + 2 * c


def test_wrn28_parameter_count_from_the_architecture(wrn):
  assert (_count(wrn.trainable_variables),
          _count(wrn.non_trainable_variables)) == _wrn_params(3, 2)


@pytest.mark.parametrize('impl', ['lean', 'keras'])
def test_wrn37_structure(impl):
  m = registry.build('WRN37', num_classes=10, input_shape=(32, 32, 3),
                     width=1, impl=impl)
  trainable, moving = _wrn_params(4, 1)
  assert _count(m.trainable_variables) == trainable
  assert _count(m.non_trainable_variables) == moving
  assert m.name == 'wrn37_1'
  # Four groups of four blocks: 16, 32, 64, 128 filters, final maps 4x4.
  names = registry.original_variables('WRN37', m)
  assert names['conv5_block4_2_conv/kernel'].shape == (3, 3, 128, 128)
  assert names['conv5_block1_0_conv/kernel'].shape == (1, 1, 64, 128)
  assert not any(n.startswith('conv6') for n in names)
  last = 'g4b4' if impl == 'lean' else 'g4b4_add'
  assert m.get_layer(last).output.shape == (None, 4, 4, 128)


@pytest.mark.parametrize('size,kernel,stride,pooled', [
    (32, 3, 1, False), (96, 3, 1, False), (128, 5, 1, True),
    (256, 7, 2, True)])
def test_wrn_stem_by_input_size(size, kernel, stride, pooled):
  """The original's WideResNet stem: 16 filters whatever the width."""
  m = registry.build('WRN28', num_classes=3, input_shape=(size, size, 3),
                     width=1, impl='keras')
  stem = m.get_layer('stem_conv')
  assert stem.kernel.shape == (kernel, kernel, 3, 16)
  assert stem.strides == (stride, stride)
  names = [l.name for l in m.layers]
  assert ('stem_pool' in names) == pooled
  side = size // stride // (2 if pooled else 1)
  assert m.get_layer('g1b1_add').output.shape == (None, side, side, 16)
  assert m.get_layer('g3b4_add').output.shape == (None, side // 4,
                                                  side // 4, 64)
  if size == 256:
    assert m.get_layer('stem_conv_pad').padding == ((3, 3), (3, 3))
    assert m.get_layer('stem_pool_pad').padding == ((1, 1), (1, 1))
    y = m(tf.zeros([1, size, size, 3]), training=False)
    assert y.shape == (1, 3)


def test_keras_impl_structure(wrn):
  keras.utils.set_random_seed(1)
  m = registry.build('WRN28', num_classes=10, input_shape=(32, 32, 3),
                     impl='keras')
  assert m.count_params() == 1_471_226 and not _blocks(m)
  layers = {l.name: l for l in m.layers}
  # Strided 3x3 convolutions: explicit one-pixel padding, then 'valid'.
  for g in (2, 3):
    assert layers[f'g{g}b1_conv1_pad'].padding == ((1, 1), (1, 1))
    assert layers[f'g{g}b1_conv1'].padding == 'valid'
    assert layers[f'g{g}b1_conv1'].strides == (2, 2)
    assert layers[f'g{g}b1_shortcut'].strides == (2, 2)
    assert layers[f'g{g}b1_shortcut'].padding == 'valid'
  assert layers['g1b1_conv1'].padding == 'same'  # Stride 1: identical.
  # Every group's first block: the shortcut conv reads the BN-act output.
  for g in (1, 2, 3):
    assert layers[f'g{g}b1_shortcut'].input is layers[f'g{g}b1_act1'].output
  assert 'g1b2_shortcut' not in layers
  assert layers['g1b2_add'].input[0] is layers['g1b1_add'].output
  bns = [l for l in m.layers if isinstance(l, keras.layers.BatchNormalization)]
  assert len(bns) == 12 * 2 + 1
  assert all(isinstance(b, bn_act.FusedBatchNorm) and b.momentum == 0.999
             and b.epsilon == 1e-3 for b in bns)
  decay = registry.decay_variables(m)
  assert len(decay) == 1 + 27 + 2
  assert _count(decay) + 2 * _count(b.gamma for b in bns) == _count(
      m.trainable_variables)
  assert set(registry.original_variables('WRN28', m)) == set(
      registry.original_variables('WRN28', wrn))


@pytest.mark.parametrize('arch,width,shape,activation', [
    ('WRN28', 2, (32, 32, 3), 'leaky_relu'),
    ('WRN28', 1, (12, 12, 2), 'relu'),
    ('WRN37', 1, (16, 16, 3), 'leaky_relu'),
])
def test_lean_equals_keras(arch, width, shape, activation):
  """Outputs, all gradients and moving statistics after one training
  forward, on a random batch with random (non-initial) weights."""
  keras.utils.set_random_seed(11)
  kw = dict(num_classes=5, input_shape=shape, width=width,
            activation=activation)
  lean = registry.build(arch, impl='lean', **kw)
  plain = registry.build(arch, impl='keras', **kw)
  rng = np.random.default_rng(2)
  a = registry.original_variables(arch, lean)
  b = registry.original_variables(arch, plain)
  assert set(a) == set(b)
  assert len(a) == len(lean.variables) == len(plain.variables)
  for name, v in a.items():
    value = v.numpy()
    if value.ndim == 1:  # Non-trivial batch-norm parameters and bias.
      value = value + rng.uniform(0.1, 0.5, value.shape).astype(np.float32)
    v.assign(value)
    b[name].assign(value)
  x = tf.constant(rng.uniform(-1, 1, (6,) + shape), tf.float32)
  probe = tf.constant(rng.normal(size=(6, 5)), tf.float32)
  outs = []
  for model, names in ((lean, a), (plain, b)):
    infer = model(x, training=False)
    keys = sorted(n for n in names if names[n].trainable)
    with tf.GradientTape() as tape:
      train = model(x, training=True)
      loss = tf.reduce_sum(train * probe)
    grads = tape.gradient(loss, [names[n] for n in keys])
    outs.append((infer.numpy(), train.numpy(), dict(zip(keys, grads)),
                 {n: v.numpy() for n, v in names.items() if not v.trainable}))
  (i1, t1, g1, m1), (i2, t2, g2, m2) = outs
  np.testing.assert_allclose(i1, i2, atol=1e-5)
  np.testing.assert_allclose(t1, t2, atol=1e-5)
  assert len(g1) == len(lean.trainable_variables)
  for n in g1:
    ref = g2[n].numpy()
    assert np.abs(ref).max() > 0, n
    np.testing.assert_allclose(g1[n].numpy(), ref,
                               atol=1e-4 * np.abs(ref).max(), err_msg=n)
  assert len(m1) == len(lean.non_trainable_variables)
  for n in m1:
    np.testing.assert_allclose(m1[n], m2[n], rtol=1e-6, atol=1e-6,
                               err_msg=n)


@pytest.mark.parametrize('impl', ['lean', 'keras'])
def test_wrn_initialisers(impl):
  """Conv kernels: VarianceScaling(2, fan_out) truncated normal (nothing
  beyond 2 stddev; std sqrt(2 / fan_out) after the truncation); classifier:
  Glorot uniform; zero bias."""
  keras.utils.set_random_seed(4)
  m = registry.build('WRN28', num_classes=10, input_shape=(32, 32, 3),
                     impl=impl)
  names = registry.original_variables('WRN28', m)
  for name in ('conv3_block2_1_conv/kernel', 'conv4_block1_0_conv/kernel',
               'conv1_conv/kernel'):
    w = names[name].numpy()
    fan_out = w.shape[0] * w.shape[1] * w.shape[3]
    stddev = np.sqrt(2 / fan_out) / 0.87962566103423978
    assert np.abs(w).max() <= 2 * stddev * (1 + 1e-6), name
    assert np.abs(w).max() > 1.9 * stddev, name  # Not a narrower law.
    assert w.std() == pytest.approx(np.sqrt(2 / fan_out), rel=0.1), name
  k = names['predictions/kernel'].numpy()
  bound = np.sqrt(6 / (128 + 10))
  assert np.abs(k).max() <= bound and np.abs(k).max() > 0.95 * bound
  assert k.std() == pytest.approx(bound / np.sqrt(3), rel=0.1)
  assert not names['predictions/bias'].numpy().any()
  # Each layer its own draw.
  a = names['conv3_block2_1_conv/kernel'].numpy()
  b = names['conv3_block3_1_conv/kernel'].numpy()
  assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.05


def test_independent_initialisation(wrn):
  a = wrn.get_layer('g2b2').kernel1.numpy()
  b = wrn.get_layer('g2b2').kernel2.numpy()
  assert a.shape == b.shape == (3, 3, 64, 64)
  assert not np.allclose(a, b)
  assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.05
  # He on fan-out (truncated normal): std = sqrt(2 / (3 * 3 * 64)).
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


@pytest.mark.parametrize('arch,impl', [('small', None), ('WRN28', 'lean')])
def test_jit_compiled_train_step(arch, impl):
  """XLA compiles a training step (the keras build's compiled step is in
  scripts/gpu_check.py's cells, tests/test_gpu_check.py)."""
  keras.utils.set_random_seed(5)
  m = registry.build(arch, num_classes=3, input_shape=(16, 16, 3), width=1,
                     impl=impl)
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



def _fused_bn_replicas(x, w, devices, bn_sync=True):
  """Gradients of sum(bn(x) * w) (x's gathered, parameters' summed) and the
  moving statistics after one training call under MirroredStrategy."""
  strategy = tf.distribute.MirroredStrategy(
      devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
  with strategy.scope():
    bn = bn_act.FusedBatchNorm(momentum=0.5, epsilon=1e-3,
                               synchronized=bn_sync)
    bn.build(x.shape)
    bn.gamma.assign(np.linspace(0.5, 1.5, x.shape[-1]))
  dist = strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensor_slices((x, w)).batch(len(x)))

  @tf.function
  def step(batch):
    def fn(t, w):
      with tf.GradientTape() as tape:
        tape.watch(t)
        loss = tf.reduce_sum(bn(t, training=True) * w)
      return tape.gradient(loss, [t, bn.gamma, bn.beta])
    return strategy.run(fn, args=batch)

  grads = [strategy.experimental_local_results(g)
           for g in step(next(iter(dist)))]
  grad_x = np.concatenate([g.numpy() for g in grads[0]])
  params = [sum(g.numpy() for g in per) for per in grads[1:]]
  for v in bn.non_trainable_variables:  # Replica copies never diverge.
    copies = [c.numpy() for c in v.value.values] if len(devices) > 1 else []
    for c in copies[1:]:
      np.testing.assert_array_equal(c, copies[0])
  return [grad_x] + params, [v.numpy() for v in bn.non_trainable_variables]


def test_fused_batch_norm_synchronised_on_two_replicas_equals_one_device():
  """The plain-Keras WRN's batch norm with bn_sync (the lean block's is
  tested in test_preact_block and, in a trainer step, test_distributed_step;
  a whole synchronised WRN takes ~20 s to trace on two replicas)."""
  assert len(tf.config.list_logical_devices('CPU')) >= 2
  rng = np.random.default_rng(0)
  x = np.concatenate([rng.normal(-1, 0.3, (4, 5, 5, 6)),
                      rng.normal(1, 0.6, (4, 5, 5, 6))]).astype(np.float32)
  w = rng.normal(size=x.shape).astype(np.float32)
  g1, m1 = _fused_bn_replicas(x, w, ['/cpu:0'])  # The fused kernel.
  g2, m2 = _fused_bn_replicas(x, w, ['/cpu:0', '/cpu:1'])  # Synchronised.
  for a, b in zip(g1, g2):
    np.testing.assert_allclose(b, a, atol=1e-5 * np.abs(a).max())
  for a, b in zip(m1, m2):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
  # Moving variance: towards the Bessel-corrected variance of the full batch.
  np.testing.assert_allclose(m1[0], 0.5 * x.mean((0, 1, 2)), rtol=1e-5)
  np.testing.assert_allclose(m1[1], 0.5 + 0.5 * x.var((0, 1, 2), ddof=1),
                             rtol=1e-5)
  g3, m3 = _fused_bn_replicas(x, w, ['/cpu:0', '/cpu:1'], bn_sync=False)
  assert np.abs(m3[1] - m1[1]).max() > 0.1  # (Means average to the same.)
  assert np.abs(g3[0] - g1[0]).max() > 1e-2

@pytest.mark.parametrize('impl', ['lean', 'keras'])
@pytest.mark.parametrize('policy', ['mixed_bfloat16', 'mixed_float16'])
def test_wrn_mixed_precision_and_mlp_head(policy, impl):
  old = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(policy)
  try:
    keras.utils.set_random_seed(9)
    m = registry.build('WRN28', num_classes=3, input_shape=(8, 8, 3),
                       width=1, head_arch='mlp', head_mlp_dims=(8,),
                       impl=impl)
  finally:
    keras.mixed_precision.set_global_policy(old)
  assert m.get_layer('stem_conv').compute_dtype == policy.split('_')[1]
  assert all(v.dtype == 'float32' for v in m.variables)
  x = tf.random.stateless_uniform([4, 8, 8, 3], [1, 2], -1, 1)
  with tf.GradientTape() as tape:
    y = m(x, training=True)
    loss = tf.reduce_mean(tf.square(y))
  grads = tape.gradient(loss, m.trainable_variables)
  assert y.dtype == tf.float32 and y.shape == (4, 3)
  assert all(g is not None and bool(tf.reduce_all(tf.math.is_finite(g)))
             for g in grads)
  assert m(x, training=False).dtype == tf.float32
  # Weight decay: kernels and dense biases, no batch-norm gamma / beta (the
  # mlp head's included).
  decay = {id(v) for v in registry.decay_variables(m)}
  bn = [v for v in m.trainable_variables
        if v.name.startswith(('gamma', 'beta'))]
  assert len(bn) == 2 * (12 * 2 + 1 + 1) and not decay & {id(v) for v in bn}
  assert len(decay) + len(bn) == len(m.trainable_variables)


@pytest.mark.parametrize('policy', ['mixed_bfloat16', 'mixed_float16'])
def test_wrn_blocks_store_their_maps_under_mixed_precision(policy):
  """16-bit maps cost half the memory: no block recomputes there."""
  from networks import wrn as wrn_lib  # pylint: disable=g-import-not-at-top
  assert wrn_lib.recompute_groups('float32') == wrn_lib.RECOMPUTE_GROUPS
  assert wrn_lib.recompute_groups(policy.split('_')[1]) == ()
  keras.mixed_precision.set_global_policy(policy)
  try:
    model = registry.build('WRN28', width=1, num_classes=10,
                           input_shape=(32, 32, 3))
  finally:
    keras.mixed_precision.set_global_policy('float32')
  blocks = list(_blocks(model))
  assert len(blocks) == 12 and not any(b.recompute for b in blocks)
  assert all(b.compute_dtype == policy.split('_')[1] for b in blocks)
