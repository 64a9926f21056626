"""The original's '+'-joined augmentation strings: grammar, shortcuts, ops.

'cnr1+...' starts a spec without the implicit random shift (crop-and-resize
discards what precedes it, and at min_scale 1 it is the identity), so an op's
effect can be compared pixel for pixel with a numpy restatement.
"""
import numpy as np
import pytest
import tensorflow as tf

from augment import blur
from augment import convert
from augment import crop_resize
from augment import cutout
from augment import jitter
from augment import ops_spec
from augment import pipeline
from augment import randaugment
from augment import registry
from augment import rotate
from augment import stages as st
from augment.errors import AugmentError

SEED = tf.constant([5, 11])


def _images(n=8, size=32, channels=3, seed=0, low=0, high=256):
  rng = np.random.RandomState(seed)
  return rng.randint(low, high, size=(n, size, size, channels)).astype(
      np.uint8)


def _float(images):
  return np.float32(2.0 / 255.0) * images.astype(np.float32) - np.float32(1)


def _run(spec, images, seed=SEED, **kwargs):
  return registry.build(spec, images.shape[1], **kwargs)(images, seed).numpy()


# ---------------------------------------------------------------- grammar --

@pytest.mark.parametrize('short,long', [
    ('dhrac', 'hflip+randaug2-0.5---all+cutout0.5'),
    ('dhc', 'hflip+cutout0.5'),
    ('dh', 'hflip'),
    ('d', 'base'),
    ('dhrc', 'hflip+randaug2-0.5---color'),
    ('drg', 'randaug---0-GEO'),
])
def test_shortcuts_parse_like_their_long_forms(short, long):
  assert ops_spec.parse_stages(short) == ops_spec.parse_stages(long)
  registry.validate(long)


def test_x_is_no_stage():
  assert ops_spec.parse_stages('x') == ()


@pytest.mark.parametrize('spec,stages', [
    ('cutout', (st.Shift(), st.Cutout(0.5))),  # the original: empty = 0.5
    ('cutout0.25', (st.Shift(), st.Cutout(0.25))),
    ('randaug1-1-0.3-10-cutout',
     (st.Shift(), st.RandAugment(1, 1.0, 0.3, 10, 'cutout'))),
    ('randaug2-0.5--0-all', (st.Shift(), st.RandAugment())),  # 0 levels
    ('jitter', (st.Shift(), st.Jitter())),
    ('jitterb0.3', (st.Shift(), st.Jitter(brightness=0.3))),
    ('jitter_h0.7_c0', (st.Shift(), st.Jitter(contrast=0.0, hue=0.5))),
    ('blur', (st.Shift(), st.Blur(0.5))),
    ('blur0', (st.Shift(), st.Blur(0.0))),
    ('cnr', (st.CropResize(0.4),)),
    ('hflip+crop_and_resize0.7+hflip', (st.CropResize(0.7), st.HFlip())),
    ('randerase', (st.Shift(), st.RandErase())),
    ('rotate90+rotate270', (st.Shift(), st.Rotate90(1), st.Rotate90(3))),
    ('hflip+base+cutout', (st.Shift(), st.Cutout(0.5))),
])
def test_long_form_stages(spec, stages):
  assert ops_spec.parse_stages(spec) == stages


@pytest.mark.parametrize('spec', [
    'foo', 'randaug2-x', 'hflip++x', 'randaug', 'randaug2-0.5---bogus',
    'randaug2.5-0.5---all', 'randaug2-1.5---all', 'cutout1.5', 'cutoutx',
    'jitter_q1', 'jitter_c2', 'jitter_b', 'cnr0', 'blurnan', 'rotate45',
    'x+hflip', 'dh+cutout0.5', 'HFLIP', 'hflip+', '+hflip', 'hflip x',
    'dh,dhrac'])
def test_bad_strings_raise_config_error_listing_the_ops(spec):
  with pytest.raises(AugmentError) as info:
    registry.validate(spec)
  message = str(info.value)
  for op in registry.ops():
    assert op in message
  for key in registry.names():
    assert f'{key} = ' in message
  assert 'hflip+randaug2-0.5---all+cutout0.5' in message  # an example
  with pytest.raises(AugmentError):
    registry.build(spec, 32)


def test_bad_strings_say_what_is_wrong():
  cases = {'randaug2-x': '5 fields', 'hflip++x': 'empty op',
           'jitter_c2': 'contrast must be in [0, 1]', 'x+hflip': "'x'",
           'dh+cutout0.5': 'short keys', 'rotate45': 'unknown op',
           'dh,hflip': 'one spec per view'}
  for spec, fragment in cases.items():
    with pytest.raises(AugmentError) as info:
      registry.validate(spec)
    assert fragment in str(info.value), spec


# ------------------------------------------------- same images, same seed --

@pytest.mark.parametrize('short,long,size,channels', [
    ('dhrac', 'hflip+randaug2-0.5---all+cutout0.5', 32, 3),
    ('dh', 'hflip', 32, 3), ('dh', 'hflip', 28, 1),
    ('dhc', 'hflip+cutout0.5', 28, 1)])
def test_shortcut_and_long_form_give_identical_images(short, long, size,
                                                       channels):
  images = _images(6, size, channels)
  a = _run(short, images)
  b = _run(long, images)
  assert a.tobytes() == b.tobytes()


# ------------------------------------------------------------ op semantics --

@pytest.mark.parametrize('size,channels', [(32, 3), (28, 1)])
def test_cnr1_is_the_identity(size, channels):
  images = _images(4, size, channels)
  np.testing.assert_array_equal(_run('cnr1', images), _run('x', images))


def test_rotations_are_counter_clockwise_like_np_rot90():
  images = _images(3)
  x = _float(images)
  for k in (1, 2, 3):
    out = _run(f'cnr1+rotate{90 * k}', images)
    np.testing.assert_array_equal(out, np.rot90(x, k, axes=(1, 2)))
  # Counter-clockwise: the top-right pixel becomes the top-left one.
  out = _run('cnr1+rotate90', images)
  np.testing.assert_array_equal(out[:, 0, 0], x[:, 0, -1])
  for k in range(5):  # and the original's tf.image.rot90
    np.testing.assert_array_equal(rotate.rotate90(tf.constant(images), k),
                                  tf.image.rot90(images, k))


def test_rotation_moves_a_pending_cutout():
  images = _images(4)
  stages = (st.Cutout(0.5), st.Rotate90(1))
  out = pipeline.Augmenter('c+rotate90', stages, 32)(images, SEED).numpy()
  seed = pipeline.stage_seeds(SEED, 2)[0]
  mask = cutout.cutout_mask(4, 32, 32, seed).numpy()
  want = np.rot90(np.where(mask, np.float32(0), _float(images)), 1, (1, 2))
  np.testing.assert_array_equal(out, want)


def test_hflip_flips_about_half_of_a_known_image():
  image = np.arange(32 * 32 * 3).reshape(1, 32, 32, 3) % 256
  images = np.repeat(image.astype(np.uint8), 64, axis=0)
  x = _float(images)
  out = _run('cnr1+hflip', images)
  flipped = np.array([np.array_equal(o, xi[:, ::-1]) for o, xi in
                      zip(out, x)])
  same = np.array([np.array_equal(o, xi) for o, xi in zip(out, x)])
  assert np.all(flipped ^ same)
  assert 16 <= flipped.sum() <= 48


@pytest.mark.parametrize('size,side', [(32, 8), (28, 6)])  # 2 * (s * side // 2)
def test_cutout_025_zeroes_a_square_of_a_quarter_side(size, side):
  images = _images(64, size, 3)  # no level maps to 0.0
  out = _run('cnr1+cutout0.25', images)
  x = _float(images)
  full = 0
  for o, xi in zip(out, x):
    zero = np.all(o == 0.0, axis=-1)
    rows, cols = np.nonzero(zero)
    assert rows.size, 'nothing cut'
    h = rows.max() - rows.min() + 1
    w = cols.max() - cols.min() + 1
    assert zero.sum() == h * w  # one rectangle
    assert h <= side and w <= side  # clipped at the border at most
    full += (h, w) == (side, side)
    np.testing.assert_array_equal(o[~zero], xi[~zero])
  assert full > 20


def test_jitter_with_all_strengths_zero_is_the_identity():
  images = _images(4)
  np.testing.assert_array_equal(_run('cnr1+jitter_b0_c0_s0_h0', images),
                                _run('x', images))


def test_jitter_brightness_adds_one_delta_per_image():
  images = _images(16, low=64, high=192)  # far from the clip
  delta = _run('cnr1+jitter_b0.2_c0_s0', images) - _float(images)
  per_image = delta.reshape(16, -1)
  np.testing.assert_allclose(per_image, per_image[:, :1] + 0 * per_image,
                             atol=1e-6)
  assert np.all(np.abs(per_image[:, 0]) <= 0.2)
  assert np.std(per_image[:, 0]) > 0.02


@pytest.mark.parametrize('factor', [0.6, 1.0, 1.4])
def test_saturation_and_hue_are_tf_kernels_per_image(factor):
  rng = np.random.RandomState(1)
  x = rng.uniform(-1, 1, (3, 6, 6, 3)).astype(np.float32)
  x[0, 0, :] = x[0, 0, :, :1]  # gray pixels
  x[1, 0, 0] = [0.5, 0.5, -0.2]  # ties
  got = jitter.saturation(tf.constant(x), tf.fill([3], factor)).numpy()
  np.testing.assert_array_equal(got, tf.image.adjust_saturation(x, factor))
  delta = (factor - 1.0) * 1.2  # -0.48 .. 0.48
  got = jitter.hue(tf.constant(x), tf.fill([3], delta)).numpy()
  np.testing.assert_array_equal(got, tf.image.adjust_hue(x, delta))
  got = jitter.contrast(tf.constant(x), tf.fill([3], factor)).numpy()
  np.testing.assert_allclose(got, tf.image.adjust_contrast(x, factor),
                             rtol=0, atol=3e-7)
  gray = x[..., :1]
  assert jitter.saturation(tf.constant(gray), tf.fill([3], factor)) is not None
  np.testing.assert_array_equal(
      jitter.hue(tf.constant(gray), tf.fill([3], delta)), gray)


def test_jitter_order_is_a_permutation_per_image():
  order, u = jitter.draw_jitter(tf.constant(200), SEED, 4)
  order = order.numpy()
  assert np.all(np.sort(order, axis=1) == np.arange(4))
  assert len({tuple(o) for o in order}) == 24
  assert np.all((u.numpy() >= 0) & (u.numpy() < 1))


def test_blur_is_a_no_op_as_in_the_original_unless_asked():
  images = _images(8)
  x = _run('x', images)
  np.testing.assert_array_equal(_run('cnr1+blur1', images), x)
  np.testing.assert_array_equal(
      _run('cnr1+blur0', images, emulate_blur_noop=False), x)
  blurred = _run('cnr1+blur1', images, emulate_blur_noop=False)
  assert np.all(np.abs(blurred - x).reshape(8, -1).max(axis=1) > 0.05)


def test_gaussian_blur_is_simclrs_separable_convolution():
  rng = np.random.RandomState(2)
  x = rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
  sigma = np.float32([0.3, 1.7])
  got = blur.gaussian_blur(tf.constant(x), tf.constant(sigma),
                           blur.radius(32)).numpy()
  assert blur.radius(32) == 1 and blur.radius(28) == 1
  for i, s in enumerate(sigma):
    taps = np.arange(-1, 2, dtype=np.float32)
    k = np.exp(-taps ** 2 / (2 * s ** 2))
    k /= k.sum()
    kh = np.tile(k.reshape(1, 3, 1, 1), [1, 1, 3, 1])
    kv = np.tile(k.reshape(3, 1, 1, 1), [1, 1, 3, 1])
    want = tf.nn.depthwise_conv2d(
        tf.nn.depthwise_conv2d(x[i:i + 1], kh, [1] * 4, 'SAME'), kv,
        [1] * 4, 'SAME').numpy()[0]
    np.testing.assert_allclose(got[i], want, rtol=0, atol=3e-7)


@pytest.mark.parametrize('size,side', [(32, 18), (28, 15)])
def test_randerase_sets_a_square_of_30_percent_to_half(size, side):
  images = _images(16, size, 3)
  out = _run('cnr1+randerase', images)
  x = _float(images)
  for o, xi in zip(out, x):
    changed = np.any(o != xi, axis=-1)
    rows, cols = np.nonzero(changed)
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (
        side, side)
    assert changed.sum() == side * side
    assert np.all(o[changed] == np.float32(0.5))


def test_crop_and_resize_is_tf_bilinear_resize_of_the_crop():
  x = np.random.RandomState(3).uniform(-1, 1, (1, 32, 32, 3)).astype(
      np.float32)
  for crop in (1, 5, 12, 13, 31, 32):
    for top, left in ((0, 0), (32 - crop, 32 - crop), ((32 - crop) // 2, 0)):
      got = crop_resize.crop_and_resize(
          tf.constant(x), tf.constant([top]), tf.constant([left]),
          tf.constant([crop])).numpy()
      want = tf.image.resize(x[:, top:top + crop, left:left + crop],
                             [32, 32]).numpy()
      np.testing.assert_array_equal(got, want)
  top, left, crop = crop_resize.draw_crops(tf.constant(500), SEED, 32, 0.4)
  top, left, crop = top.numpy(), left.numpy(), crop.numpy()
  assert crop.min() == 12 and crop.max() == 32  # int(32 * 0.4) .. 32
  assert np.all((top >= 0) & (top + crop <= 32))
  assert np.all((left >= 0) & (left + crop <= 32))
  assert crop_resize.min_side(28, 0.5) == 14 and crop_resize.min_side(8, .1) == 1


def test_randaug_arguments():
  n = tf.constant(400)
  fixed = randaugment.draw_layer(n, 16, SEED, magnitude=0.3)['m'].numpy()
  assert np.all(fixed == np.float32(0.3))
  quantised = randaugment.draw_layer(n, 16, SEED, levels=4)['m'].numpy()
  assert set(quantised.tolist()) == {0.0, 0.25, 0.5, 0.75, 1.0}
  always = randaugment.draw_layer(n, 16, SEED, prob=1.0)['apply'].numpy()
  assert always.all()
  images = _images(8)
  # prob 0: only the float -> uint8 round trip, exact without emulation...
  np.testing.assert_array_equal(
      _run('cnr1+randaug2-0---all', images, emulate_wrap_rounding=False),
      _run('x', images))
  # ... and with it, the original's truncating wrap of the data scaling.
  table = convert.wrap_table(convert.Encoding.SCALED)
  np.testing.assert_array_equal(_run('cnr1+randaug2-0---all', images),
                                convert.to_float(table[images]).numpy())


def test_randaug_cutout_mode_layers():
  draws = randaugment.draw_layer(tf.constant(3400), 16, SEED, cutout_side=32)
  share = draws['cutout'].numpy().mean()
  assert abs(share - 1 / 17) < 0.015
  scale = draws['cutout_scale'].numpy()
  assert scale.min() >= 0 and scale.max() < 0.5
  centre = cutout.draw_centres(8, 32, 32, SEED)
  np.testing.assert_array_equal(
      randaugment.cutout_square(centre, tf.fill([8], 0.5), 32),
      cutout.cutout_mask(8, 32, 32, SEED))
  images = _images(4)
  draws = {'op': tf.zeros([4], tf.int32), 'm': tf.zeros([4]),
           'negate': tf.zeros([4], tf.bool), 'apply': tf.ones([4], tf.bool),
           'cutout': tf.ones([4], tf.bool),
           'cutout_scale': tf.constant([0.0, 0.1, 0.25, 0.49]),
           'cutout_centre': tf.constant([[16., 16.]] * 4)}
  out = randaugment.apply_layer(tf.constant(images), draws,
                                randaugment.ALL_OPS, 32).numpy()
  wrapped = convert.wrap_table(convert.Encoding.UNWRAPPED)[images]
  for i, side in enumerate([0, 2, 8, 14]):  # max(1, 32 s) // 2 * 2
    cut = np.zeros((32, 32), bool)
    cut[16 - side // 2:16 + side // 2, 16 - side // 2:16 + side // 2] = True
    np.testing.assert_array_equal(out[i][cut], 127)
    np.testing.assert_array_equal(out[i][~cut], wrapped[i][~cut])


# ---------------------------------------------------------------- contract --

_SPECS = ['hflip+jitter+randaug2-0.5---cutout+cutout0.5',
          'cnr0.5+blur1+randerase+rotate270+randaug1-1-0.5--color',
          'jitter_b0.5_c1_s1_h0.5+hflip+rotate180',
          'randaug3-0.8--10-geo+randerase+cutout0.3']


@pytest.mark.parametrize('size,channels', [(32, 3), (28, 1)])
def test_contract_dtype_shape_range_determinism(size, channels):
  images = _images(6, size, channels)
  for spec in _SPECS:
    fn = registry.build(spec, size, emulate_blur_noop=False)
    out = fn(images, SEED).numpy()
    assert out.dtype == np.float32 and out.shape == images.shape, spec
    assert out.min() >= -1.0 and out.max() <= 1.0, spec
    again = fn(images, SEED).numpy()
    assert again.tobytes() == out.tobytes(), spec
    other = fn(images, tf.constant([6, 11])).numpy()
    assert not np.array_equal(other, out), spec


def _contexts(fn, x):
  """fn(x) eagerly, in tf.function (grappler) and in tf.data."""
  eager = fn(tf.constant(x)).numpy()
  graph = tf.function(fn, autograph=False)(tf.constant(x)).numpy()
  data = next(iter(tf.data.Dataset.from_tensors(x).map(fn))).numpy()
  return eager, graph, data


def test_float_ops_same_bits_in_every_context():
  rng = np.random.RandomState(4)
  x = rng.uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)
  factor = tf.constant([0.7, 1.0, 1.2, 1.4])
  ops = [lambda t: jitter.saturation(t, factor),
         lambda t: jitter.hue(t, factor - 1.0),
         lambda t: jitter.jitter(t, SEED, st.Jitter(0.2, 0.4, 0.4, 0.3)),
         lambda t: crop_resize.random_crop_and_resize(t, SEED, 0.3),
         lambda t: blur.random_blur(t, SEED, 1.0)]
  for op in ops:
    eager, graph, data = _contexts(op, x)
    np.testing.assert_array_equal(graph, eager)
    np.testing.assert_array_equal(data, eager)
  # e.g. grappler rewrites 1 / (6 s) as (1 / 6) / s; the kernel does not.
  want = np.stack([tf.image.adjust_saturation(x[i], factor[i]).numpy()
                   for i in range(4)])
  np.testing.assert_array_equal(_contexts(ops[0], x)[1], want)


def test_long_form_in_tf_data_matches_eager():
  images = _images(4)
  fn = registry.build('hflip+jitter+randerase+rotate90', 32)
  ds = tf.data.Dataset.from_tensors(images).map(lambda x: fn(x, SEED))
  np.testing.assert_array_equal(next(iter(ds)).numpy(),
                                fn(images, SEED).numpy())
