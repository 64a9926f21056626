"""Tests of data.registry and the synthetic dataset."""
import numpy as np
import pytest

from data import errors
from data import base
from data import registry
from data import splits
from data import synthetic


def test_names_lists_synthetic_and_is_sorted():
  assert registry.names() == [
      'cifar10', 'cifar100', 'cifar100lt', 'cifar100ltdarp', 'cifar10lt',
      'cifar10ltdarp', 'fashionmnistlt', 'imagenet127_32', 'imagenet127_64',
      'npz', 'npzlt', 'stl10lt', 'synthetic', 'synthetic_tiny']


def test_unknown_dataset_names_the_choices():
  with pytest.raises(errors.DataSettingError) as info:
    registry.validate(base.DataArgs('cifar11'))
  assert 'cifar11' in str(info.value)
  assert 'synthetic' in str(info.value)
  assert isinstance(info.value, ValueError)


@pytest.mark.parametrize('kwargs,needle', [
    (dict(class_im_ratio=0.0), 'class_im_ratio'),
    (dict(class_im_ratio=2.0), 'class_im_ratio'),
    (dict(percent_labeled=0.0), 'percent_labeled'),
    (dict(percent_labeled=1.5), 'percent_labeled'),
    (dict(fold=-1), 'fold'),
    (dict(fold=1.5), 'fold'),
    (dict(fold=2 ** 32), 'fold'),
])
def test_validate_rejects_bad_values(kwargs, needle):
  with pytest.raises(errors.DataSettingError, match=needle):
    registry.validate(base.DataArgs('synthetic', **kwargs))


def test_validate_accepts_numpy_integers():
  registry.validate(base.DataArgs('synthetic', fold=np.int64(3)))


def test_synthetic_counts_split_and_prior():
  args = base.DataArgs('synthetic', class_im_ratio=0.1, percent_labeled=0.2,
                       fold=3)
  d = registry.load(args)
  assert d.num_classes == 10 and d.image_shape == (32, 32, 3)
  assert d.train_images.dtype == np.uint8 and d.test_images.dtype == np.uint8
  counts = np.bincount(d.train_labels, minlength=10)
  np.testing.assert_array_equal(counts, splits.long_tail_counts(200, 0.1, 10))
  np.testing.assert_array_equal(counts, [200, 154, 119, 92, 71, 55, 43, 33,
                                         25, 20])
  np.testing.assert_array_equal(np.bincount(d.test_labels), [50] * 10)
  lab, unl = splits.labeled_split(d.train_labels, 3, 0.2, 10)
  np.testing.assert_array_equal(d.labeled_positions, lab)
  np.testing.assert_array_equal(d.unlabeled_positions, unl)
  assert len(d.labeled_positions) == sum(int(np.ceil(c * 0.2)) for c in counts)
  np.testing.assert_array_equal(d.unlabeled_stream_positions,
                                np.arange(counts.sum()))
  np.testing.assert_allclose(d.gt_p_data, splits.long_tail_prior(0.1, 10))
  assert d.gt_p_data[0] > d.gt_p_data[-1]


def test_synthetic_is_deterministic_and_fold_only_changes_split():
  a = registry.load(base.DataArgs('synthetic_tiny', fold=1))
  b = registry.load(base.DataArgs('synthetic_tiny', fold=1))
  c = registry.load(base.DataArgs('synthetic_tiny', fold=2))
  np.testing.assert_array_equal(a.train_images, b.train_images)
  np.testing.assert_array_equal(a.train_images, c.train_images)
  np.testing.assert_array_equal(a.test_images, c.test_images)
  np.testing.assert_array_equal(a.labeled_positions, b.labeled_positions)
  assert not np.array_equal(a.labeled_positions, c.labeled_positions)
  # Default percent_labeled is 0.1 (ceil per class).
  counts = np.bincount(a.train_labels)
  assert len(a.labeled_positions) == sum(int(np.ceil(n * 0.1)) for n in counts)


def test_synthetic_classes_are_distinct_but_not_trivial():
  images = synthetic.make_images(np.repeat(np.arange(10), 40), seed=5)
  x = images.reshape(400, -1).astype(np.float64)
  # Not constant, not identical within a class.
  assert x.std() > 20
  assert len({row.tobytes() for row in images[:40]}) == 40
  # Nearest class mean on raw pixels is far from perfect (position varies)...
  means = x.reshape(10, 40, -1).mean(1)
  pred = np.argmin(((x[:, None] - means[None]) ** 2).sum(-1), 1)
  acc = (pred == np.repeat(np.arange(10), 40)).mean()
  assert acc < 0.9
  # ...but the colour family (warm 0-4, cool 5-9) shows in the channels.
  rgb = x.reshape(400, 32 * 32, 3)
  warmth = (rgb[..., 0] - rgb[..., 2]).max(axis=1)
  assert warmth[:200].mean() > warmth[200:].mean() + 100
