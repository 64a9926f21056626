"""Row windows of a global batch (issue #23): `augmenter(images[o:o + n], seed,
rows=(o, total))` equals `augmenter(images, seed)[o:o + n]` byte for byte.

Every spec form the registry parses is covered (short keys, the original's
'+'-joined ops, blur with emulate_blur_noop False); one augmenter per spec is
built and traced once for the module (tracing RandAugment is the slow part).
"""
import numpy as np
import pytest
import tensorflow as tf

from augment import draws
from augment import pipeline
from augment import randaugment
from augment import registry

TOTAL = 11
WINDOWS = ((0, 4), (4, 5), (9, 2), (0, TOTAL))
# Draws Cutout layers in the mode 'cutout' case (rows 0, 2, 8).
SEED = (3, 24)

# (spec, channels, emulate_blur_noop).
CASES = [
    ('x', 3, True), ('d', 3, True), ('h', 3, True), ('c', 3, True),
    ('dh', 3, True), ('dhrac', 3, True), ('rc', 3, True), ('rg', 3, True),
    ('cdd', 3, True),
    # RandAugment variants: mode cutout; fixed magnitude after a rotation;
    # levels; after a float stage (jitter: saturation and hue here).
    ('hflip+randaug1-1---cutout', 3, True),
    ('hflip+rotate180+randaug1-0.8-0.3--geo', 3, True),
    ('randaug1-1--4-geo', 3, True),
    ('hflip+jitter_b0.2_s0.4_h0.1+randaug1-0.5---geo+cutout0.25', 3, True),
    ('hflip+blur0.5', 3, True), ('hflip+blur0.5', 3, False),
    ('cnr0.5+rotate90', 3, True),
    ('crop_and_resize0.3+hflip+rotate270', 3, True),
    ('hflip+cutout0.25+base+hflip+randerase', 3, True),
    ('hflip+jitter_c0.4_s0.4+randaug1-1---all+cutout0.5', 1, True),
    ('hflip+blur1', 1, False),
]


@pytest.fixture(scope='module')
def images():
  rng = np.random.RandomState(23)
  return {c: rng.randint(0, 256, (TOTAL, 32, 32, c)).astype(np.uint8)
          for c in (1, 3)}


@pytest.fixture(scope='module')
def built():
  cache = {}

  def get(spec, emulate_blur_noop=True):
    key = (spec, emulate_blur_noop)
    if key not in cache:
      cache[key] = registry.build(spec, 32,
                                  emulate_blur_noop=emulate_blur_noop)
    return cache[key]
  return get


@pytest.mark.parametrize('spec,channels,noop', CASES)
def test_windows_equal_the_sliced_global_batch(spec, channels, noop, images,
                                               built):
  fn = built(spec, noop)
  x = images[channels]
  seed = tf.constant(SEED)
  whole = fn(x, seed).numpy()
  for offset, n in WINDOWS:
    got = fn(x[offset:offset + n], seed, rows=(offset, TOTAL)).numpy()
    assert got.dtype == np.float32 and got.shape == (n, 32, 32, channels)
    np.testing.assert_array_equal(got, whole[offset:offset + n],
                                  err_msg=f'{spec} rows ({offset}, {TOTAL})')


def test_rows_none_is_todays_whole_batch(images, built):
  """rows=None and rows=(0, n) agree; the window path traces once for any
  window (offset, total and n are not baked into the trace)."""
  fn = built('dhrac')
  x, seed = images[3], tf.constant(SEED)
  np.testing.assert_array_equal(fn(x, seed).numpy(),
                                fn(x, seed, rows=(0, TOTAL)).numpy())
  before = fn._function(3, window=True).experimental_get_tracing_count()
  for offset, n in ((1, 3), (2, 9)):
    fn(x[offset:offset + n], seed, rows=(tf.constant(offset, tf.int64),
                                         tf.constant(TOTAL)))
    fn(x[offset:offset + n], seed, rows=(offset, TOTAL + 5))
  assert fn._function(3, window=True).experimental_get_tracing_count() == before


def test_one_augmenter_serves_both_channel_counts(images, built):
  """Traces are per channel count (the ops branch on it): a 3-channel call
  first does not change a later 1-channel call."""
  spec = 'hflip+jitter_s0.4'
  seed = tf.constant(SEED)
  built(spec)(images[3], seed)
  np.testing.assert_array_equal(built(spec)(images[1], seed).numpy(),
                                registry.build(spec, 32)(images[1],
                                                         seed).numpy())


def test_a_window_of_a_larger_batch_uses_its_rows(images, built):
  """The same images as rows (2, 20) and as rows (5, 20) differ: the draws
  are those of the global rows."""
  fn = built('dh')
  x, seed = images[3][:4], tf.constant(SEED)
  a = fn(x, seed, rows=(2, 20)).numpy()
  b = fn(x, seed, rows=(5, 20)).numpy()
  assert not np.array_equal(a, b)


@pytest.mark.parametrize('rows', [(8, 11), (-1, 11), (0, 3), (0, -4),
                                  (1.0, 11), (0, True), (0,), 5, (0, 11, 1)])
def test_bad_windows_raise_value_error(rows, images, built):
  fn = built('dh')
  with pytest.raises(ValueError, match='rows'):
    fn(images[3][:4], tf.constant(SEED), rows=rows)


def test_symbolic_bad_window_fails_when_run(images, built):
  fn = built('dh')
  x = images[3][7:]

  @tf.function(autograph=False)
  def run(offset, total):
    return fn(x, tf.constant(SEED), rows=(offset, total))

  np.testing.assert_array_equal(
      run(tf.constant(7), tf.constant(TOTAL)).numpy(),
      fn(images[3], tf.constant(SEED)).numpy()[7:])
  with pytest.raises(tf.errors.InvalidArgumentError, match='offset'):
    run(tf.constant(8), tf.constant(TOTAL))


def test_the_cutout_mode_case_draws_cutouts():
  """'hflip+randaug1-1---cutout' under SEED replaces some layers by a Cutout
  (its third stage; one layer, always applied)."""
  seed = pipeline.stage_seeds(tf.constant(SEED), 3)[2]
  layer = randaugment.draw_layer(
      TOTAL, 16, randaugment.layer_seeds(seed, 1)[0], prob=1.0,
      cutout_side=32)
  assert list(np.nonzero(layer['cutout'].numpy())[0]) == [0, 2, 8]


def test_uniform_draws_the_global_rows():
  seed = tf.constant([5, 6], tf.int64)
  full = tf.random.stateless_uniform([TOTAL, 2], seed).numpy()
  np.testing.assert_array_equal(draws.uniform(TOTAL, seed, [2]).numpy(),
                                full)
  window = draws.Rows.window(tf.constant(4), tf.constant(5),
                             tf.constant(TOTAL))
  np.testing.assert_array_equal(draws.uniform(window, seed, [2]).numpy(),
                                full[4:9])
  layer = randaugment.draw_layer(window, 16, seed, cutout_side=32)
  whole = randaugment.draw_layer(TOTAL, 16, seed, cutout_side=32)
  for key, value in whole.items():
    np.testing.assert_array_equal(layer[key].numpy(), value.numpy()[4:9])
