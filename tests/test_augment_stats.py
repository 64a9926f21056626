"""Statistics of the random draws, with fixed seeds and enough samples.

Bounds are 5 standard deviations (or wider), so the tests are deterministic
(fixed seeds) and would also pass for other seeds.
"""
import numpy as np
import pytest
import tensorflow as tf

from augment import color_ops
from augment import cutout
from augment import randaugment
from augment import registry


def _coded_images(n, size):
  """uint8 [n, size, size, 3]: channel 0 = 7 * row, 1 = 7 * column."""
  r = np.arange(size) * 7
  img = np.zeros((size, size, 3), np.uint8)
  img[..., 0] = r[:, None]
  img[..., 1] = r[None, :]
  return np.repeat(img[None], n, axis=0)


def _decode(out):
  """float [-1, 1] output -> integer (row, col) of each pixel's source."""
  levels = np.round((out + 1.0) * 127.5).astype(int)
  return levels[..., 0] // 7, levels[..., 1] // 7


def _within(count, n, p, sigmas=5.0):
  return abs(count - n * p) <= sigmas * np.sqrt(n * p * (1 - p))


def test_randaugment_draws():
  n = 32000
  draws = randaugment.draw_layer(tf.constant(n), 16, tf.constant([1, 2]))
  ops = draws['op'].numpy()
  counts = np.bincount(ops, minlength=16)
  assert ops.min() == 0 and ops.max() == 15
  assert all(_within(c, n, 1 / 16) for c in counts), counts
  assert _within(draws['apply'].numpy().sum(), n, 0.5)
  assert _within(draws['negate'].numpy().sum(), n, 0.5)
  m = draws['m'].numpy()
  assert m.min() >= 0.0 and m.max() < 1.0
  assert m.min() < 1e-3 and m.max() > 1 - 1e-3
  hist = np.histogram(m, bins=10, range=(0, 1))[0]
  assert all(_within(h, n, 0.1) for h in hist), hist


def test_randaugment_layer_skips_and_applies_per_image():
  """Skipped images are untouched; images that drew Invert are inverted."""
  n = 2000
  rng = np.random.RandomState(3)
  images = tf.constant(rng.randint(0, 256, (n, 8, 8, 3)).astype(np.uint8))
  draws = randaugment.draw_layer(tf.constant(n), 16, tf.constant([4, 5]))
  out = randaugment.apply_layer(images, draws, randaugment.ALL_OPS, 8).numpy()
  images = images.numpy()
  apply = draws['apply'].numpy()
  same = np.all(out == images, axis=(1, 2, 3))
  assert np.all(same[~apply])
  assert _within((~apply).sum(), n, 0.5)
  invert = apply & (draws['op'].numpy() == randaugment.ALL_OPS.index('Invert'))
  assert invert.sum() > 30
  np.testing.assert_array_equal(out[invert], 255 - images[invert])
  # Applied ops mostly change a noise image (Identity and tiny magnitudes
  # do not): between 80% and 97% of the applied ones.
  assert 0.8 < np.mean(~same[apply]) < 0.97


def test_op_lists():
  assert len(randaugment.ALL_OPS) == 16 == len(set(randaugment.ALL_OPS))
  assert randaugment.COLOR_OPS == (
      'AutoContrast', 'Equalize', 'Posterize', 'Solarize', 'Color',
      'Contrast', 'Brightness', 'Identity', 'Invert', 'Sharpness',
      'SolarizeAdd')
  assert randaugment.GEO_OPS == ('Rotate', 'ShearX', 'ShearY', 'TranslateX',
                                 'TranslateY', 'Identity')
  assert [randaugment.translate_const(s) for s in (32, 96, 128, 256, 28)] == [
      10., 30., 40., 100., 8.]


def _expected_cut_length(side, half):
  p = np.full(side + 1, 1.0 / side)
  p[0] = p[-1] = 0.5 / side  # round(U[0, side)) half to even
  c = np.arange(side + 1)
  length = np.minimum(side, c + half) - np.maximum(0, c - half)
  return float(np.sum(p * length)), length


@pytest.mark.parametrize('size,half', [(32, 8), (28, 7)])
def test_cutout_area_and_clipping(size, half):
  n = 40000
  mask = cutout.cutout_mask(tf.constant(n), size, size,
                            tf.constant([8, size])).numpy()[..., 0]
  rows = mask.any(axis=2).sum(axis=1)
  cols = mask.any(axis=1).sum(axis=1)
  # Each mask is a single rectangle rows x cols, clipped at the border.
  np.testing.assert_array_equal(mask.sum(axis=(1, 2)), rows * cols)
  mean_len, lengths = _expected_cut_length(size, half)
  assert set(np.unique(rows)) == set(np.unique(lengths))
  assert rows.max() == 2 * half and rows.min() == half
  assert abs(rows.mean() - mean_len) < 0.05
  assert abs(mask.mean() - (mean_len / size) ** 2) < 0.005
  # How often each row (and column) is cut, against the exact law of the
  # centre round(U[0, side)): checks the rounding at the borders too.
  p = np.full(size + 1, 1.0 / size)
  p[0] = p[-1] = 0.5 / size
  c = np.arange(size + 1)[:, None]
  r = np.arange(size)[None]
  covered = (r >= np.maximum(0, c - half)) & (r < np.minimum(size, c + half))
  expected = (p[:, None] * covered).sum(axis=0)
  observed = (mask.any(axis=2).mean(axis=0) + mask.any(axis=1).mean(axis=0))
  observed = observed / 2
  sd = np.sqrt(expected * (1 - expected) / (2 * n))
  assert np.all(np.abs(observed - expected) < 5 * sd + 1e-9), (
      observed - expected) / sd


def test_cutout_in_pipeline_sets_zero():
  n = 512
  images = np.full((n, 32, 32, 3), 255, np.uint8)
  out = registry.build('c', 32)(images, tf.constant([1, 1])).numpy()
  assert set(np.unique(out)) == {0.0, 1.0}
  zero = out == 0.0
  assert np.all(zero == zero[..., :1])  # all channels together
  mean_len, _ = _expected_cut_length(32, 8)
  assert abs(zero[..., 0].mean() - (mean_len / 32) ** 2) < 0.02


@pytest.mark.parametrize('size', [32, 28])
def test_shift_within_pad_and_uniform(size):
  n = 1800
  pad = int(0.125 * size)
  out = registry.build('d', size)(_coded_images(n, size),
                                  tf.constant([2, 3])).numpy()
  src_r, src_c = _decode(out)
  pos = np.arange(size)
  dy = src_r[:, pad:size - pad, pad] - pos[None, pad:size - pad]
  dx = src_c[:, pad, pad:size - pad] - pos[None, pad:size - pad]
  # One offset per image, constant across the interior.
  assert np.all(dy == dy[:, :1]) and np.all(dx == dx[:, :1])
  dy, dx = dy[:, 0], dx[:, 0]
  assert dy.min() == -pad and dy.max() == pad
  assert dx.min() == -pad and dx.max() == pad
  for offsets in (dy, dx):
    counts = np.bincount(offsets + pad, minlength=2 * pad + 1)
    assert all(_within(c, n, 1 / (2 * pad + 1)) for c in counts), counts
  # Border pixels come from the reflection (no edge repeat).
  expected_r = np.abs(pos[None] + dy[:, None])
  expected_r = (size - 1) - np.abs((size - 1) - expected_r)
  np.testing.assert_array_equal(src_r[:, :, 0], expected_r)


def test_flip_half_the_time():
  n = 4000
  out = registry.build('h', 32)(_coded_images(n, 32),
                                tf.constant([5, 5])).numpy()
  _, src_c = _decode(out)
  identity = np.all(src_c == np.arange(32)[None, None], axis=(1, 2))
  flipped = np.all(src_c == np.arange(31, -1, -1)[None, None], axis=(1, 2))
  assert np.all(identity | flipped)
  assert _within(flipped.sum(), n, 0.5)


def test_grayscale_color_is_identity_and_contrast_works():
  rng = np.random.RandomState(0)
  gray = tf.constant(rng.randint(0, 256, (4, 28, 28, 1)).astype(np.uint8))
  f = tf.constant([0.3] * 4)
  np.testing.assert_array_equal(color_ops.color(gray, f), gray)
  low = color_ops.contrast(gray, f).numpy().astype(int)
  assert low.std() < 0.5 * gray.numpy().std()
