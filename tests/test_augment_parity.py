"""Every RandAugment op equals the original to the byte on the fixture."""
import numpy as np
import pytest
import tensorflow as tf

from augment import parity
from conftest import FIXTURES

FIXTURE = FIXTURES / 'augment_ops.npz'


def _keys():
  with np.load(FIXTURE) as data:
    return [k for k in data.files if k != 'inputs']


@pytest.fixture(scope='module')
def fixture():
  with np.load(FIXTURE) as data:
    return {k: data[k] for k in data.files}


def test_fixture_covers_all_ops():
  prefixes = {k.rstrip('0123456789.-').rstrip('_') for k in _keys()}
  assert prefixes == {
      'rotate_deg', 'shear_x', 'shear_y', 'translate_x', 'translate_y',
      'autocontrast', 'equalize', 'invert', 'posterize', 'solarize',
      'solarize_add', 'color', 'contrast', 'brightness', 'sharpness'}


@pytest.mark.parametrize('key', _keys())
def test_op_matches_original_bytes(fixture, key):
  ours = parity.apply_fixture_op(key, fixture['inputs'])
  assert ours.dtype == np.uint8
  np.testing.assert_array_equal(ours, fixture[key])


def test_ops_match_in_graphs(fixture):
  """Same bytes inside tf.function and tf.data (graph rewrites)."""
  for key in _keys():
    fn = parity.fixture_op(key)
    graph = tf.function(fn)(tf.constant(fixture['inputs'])).numpy()
    data = next(iter(tf.data.Dataset.from_tensors(fixture['inputs']).map(
        fn))).numpy()
    np.testing.assert_array_equal(graph, fixture[key], err_msg=key)
    np.testing.assert_array_equal(data, fixture[key], err_msg=key)


def test_ops_change_the_images(fixture):
  """Guards against a vacuous comparison: most ops are not the identity."""
  changed = [k for k in _keys()
             if not np.array_equal(fixture[k], fixture['inputs'])]
  assert len(changed) >= 40


def test_check_file_reports_every_key():
  results = parity.check_file(FIXTURE)
  assert [r[0] for r in results] == _keys()
  assert all(r[1] == r[2] == 6 and r[3] == 0 for r in results)


def test_check_file_other_directory_finds_errors(tmp_path, fixture):
  rng = np.random.RandomState(0)
  inputs = rng.randint(0, 256, size=(3, 20, 24, 3)).astype(np.uint8)
  good = parity.apply_fixture_op('shear_y_0.2', inputs)
  bad = parity.apply_fixture_op('solarize_add_50', inputs).copy()
  bad[1, 3, 4, 0] ^= 0x10  # one byte off by 16 in the second case
  path = tmp_path / 'other' / 'augment_ops.npz'
  path.parent.mkdir()
  np.savez(path, inputs=inputs, **{'shear_y_0.2': good,
                                   'solarize_add_50': bad})
  results = parity.check_file(path)
  assert results == [('shear_y_0.2', 3, 3, 0), ('solarize_add_50', 2, 3, 16)]


@pytest.mark.parametrize('key', ['rotate_deg', 'blur_3', 'posterize_1.5',
                                 'solarize_add', 'Invert', 'shear_z_0.1'])
def test_unknown_key_raises(fixture, key):
  with pytest.raises(ValueError):
    parity.apply_fixture_op(key, fixture['inputs'])


def test_bad_images_raise():
  with pytest.raises(ValueError, match='uint8'):
    parity.apply_fixture_op('invert', np.zeros((2, 8, 8, 3), np.float32))
