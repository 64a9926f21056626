"""The spec grammar, the AugmentFn contract, determinism, tf.data use."""
import numpy as np
import pytest
import tensorflow as tf

from augment import registry
from augment import spec as spec_lib
from augment.errors import AugmentError


def _images(n=8, size=32, channels=3, seed=0):
  rng = np.random.RandomState(seed)
  return rng.randint(0, 256, size=(n, size, size, channels)).astype(np.uint8)


def test_names():
  assert registry.names() == ['d', 'h', 'ra', 'rc', 'rg', 'c', 'x']


@pytest.mark.parametrize('spec,keys', [
    ('dh', ('d', 'h')), ('dhrac', ('d', 'h', 'ra', 'c')), ('x', ('x',)),
    ('rcrg', ('rc', 'rg')), ('cdd', ('c', 'd', 'd')), ('ra', ('ra',))])
def test_parse(spec, keys):
  assert spec_lib.parse(spec) == keys
  registry.validate(spec)  # no exception


@pytest.mark.parametrize('spec,fragment', [
    ('dhq', "'q' at position 2"), ('dhr', "'r' at position 2"),
    ('rb', "'rb' at position 0"), ('DH', "'D' at position 0"),
    ('dhx', "mixes 'x'"), ('', 'non-empty'), ('d h', "' ' at position 1")])
def test_bad_spec_raises_config_error_listing_keys(spec, fragment):
  with pytest.raises(AugmentError) as info:
    registry.validate(spec)
  message = str(info.value)
  assert fragment in message
  for key in registry.names():
    assert f'{key} = ' in message
  assert isinstance(info.value, ValueError)
  with pytest.raises(AugmentError):
    registry.build(spec, 32)


@pytest.mark.parametrize('size', [0, 4, 32.0, True, '32'])
def test_bad_image_size(size):
  with pytest.raises(AugmentError, match='image size'):
    registry.build('dh', size)


def test_numpy_integer_size():
  fn = registry.build('dh', np.int64(28))
  assert fn(_images(2, 28, 1), [0, 1]).shape == (2, 28, 28, 1)


def test_x_is_the_original_scaling():
  images = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
  images = np.repeat(np.tile(images, (1, 2, 2, 1)), 3, axis=-1)
  out = registry.build('x', 32)(images, tf.constant([1, 2])).numpy()
  expected = np.float32(2.0 / 255.0) * images.astype(np.float32) - 1.0
  np.testing.assert_array_equal(out, expected)
  assert out.min() == -1.0 and out.max() == 1.0


@pytest.mark.parametrize('spec', ['x', 'dhrac', 'rcrg', 'cdh'])
@pytest.mark.parametrize('size,channels', [(32, 3), (28, 1)])
def test_shapes_dtype_range(spec, size, channels):
  images = _images(5, size, channels)
  out = registry.build(spec, size)(images, tf.constant([3, 4], tf.int64))
  assert out.dtype == tf.float32
  assert out.shape == (5, size, size, channels)
  out = out.numpy()
  assert out.min() >= -1.0 and out.max() <= 1.0
  # Every output value is a pixel level (k / 127.5 - 1 up to rounding) or 0.
  scaled = (out[out != 0.0] + 1.0) * 127.5
  assert np.all(np.abs(scaled - np.round(scaled)) < 1e-3)


def test_empty_batch():
  out = registry.build('dhrac', 32)(np.zeros((0, 32, 32, 3), np.uint8),
                                    tf.constant([1, 1]))
  assert out.shape == (0, 32, 32, 3)


@pytest.mark.parametrize('spec', ['dh', 'dhrac', 'c'])
def test_deterministic_in_seed(spec):
  fn = registry.build(spec, 32)
  images = _images(16)
  a = fn(images, tf.constant([7, 9])).numpy()
  b = fn(images, tf.constant([7, 9], tf.int64)).numpy()
  c = fn(images, tf.constant([7, 10])).numpy()
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  # A fresh build gives the same output too (nothing stateful).
  np.testing.assert_array_equal(registry.build(spec, 32)(images, [7, 9]), a)


def test_augmentation_changes_images():
  images = _images(16)
  plain = registry.build('x', 32)(images, [0, 0]).numpy()
  strong = registry.build('dhrac', 32)(images, [0, 0]).numpy()
  changed = np.mean(np.any(plain != strong, axis=(1, 2, 3)))
  assert changed > 0.9


def test_inside_tf_data_map_on_batches():
  fn = registry.build('dhrac', 32)
  images = _images(12)
  ds = tf.data.Dataset.from_tensor_slices(images).batch(5)  # 5, 5, 2
  ds = ds.enumerate().map(
      lambda i, x: fn(x, tf.stack([tf.constant(11, tf.int64), i])))
  batches = list(ds.as_numpy_iterator())
  assert [b.shape[0] for b in batches] == [5, 5, 2]
  for i, start in enumerate([0, 5, 10]):
    eager = fn(images[start:start + 5], tf.constant([11, i], tf.int64))
    np.testing.assert_array_equal(batches[i], eager.numpy())


def test_inside_tf_function():
  fn = registry.build('dhrac', 28)
  images = _images(4, 28, 1)

  @tf.function
  def step(x, seed):
    return tf.reduce_sum(fn(x, seed), axis=[1, 2, 3])

  got = step(tf.constant(images), tf.constant([5, 6]))
  want = tf.reduce_sum(fn(images, tf.constant([5, 6])), axis=[1, 2, 3])
  np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6)


def test_bad_inputs():
  fn = registry.build('dh', 32)
  with pytest.raises(ValueError, match='uint8'):
    fn(np.zeros((2, 32, 32, 3), np.float32), [1, 2])
  with pytest.raises(ValueError, match='32x32'):
    fn(np.zeros((2, 28, 28, 3), np.uint8), [1, 2])
  with pytest.raises(ValueError, match='seed'):
    fn(np.zeros((2, 32, 32, 3), np.uint8), [1, 2, 3])
