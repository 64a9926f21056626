"""Tests of crest.selection against the reference fixture and by hand."""
import numpy as np
import pytest

from conftest import FIXTURES
from crest import selection as sel
from data.splits import labeled_split, long_tail_prior
from scripts.parity.splits import CASE as _CASE


def _cases():
  data = np.load(FIXTURES / 'splits_and_selection.npz')
  return data, sorted({k.split('__')[0] for k in data.files})


@pytest.mark.parametrize('dtype', [np.float64, np.float32])
def test_fixture_selection_exact(dtype):
  data, names = _cases()
  assert len(names) == 12
  total_picks = 0
  for case in names:
    k, gamma, _, _, alpha, _ = _CASE.fullmatch(case).groups()
    gt = long_tail_prior(1 / float(gamma), int(k)).astype(dtype)
    y = data[case + '__y_train']
    lab = data[case + '__labeled_positions']
    unl = data[case + '__unlabeled_positions']
    rows, labels, picked, predicted = sel.select_pseudo_labels(
        data[case + '__unlabeled_scores'], gt, float(alpha), 'distribution')
    np.testing.assert_array_equal(picked, data[case + '__picked_per_class'],
                                  err_msg=case)
    assert predicted.sum() == len(unl)
    assert np.all(picked <= predicted)
    pos, lbl = sel.next_labeled_set(unl, rows, labels, lab, y[lab])
    np.testing.assert_array_equal(pos, data[case + '__new_train_positions'],
                                  err_msg=case)
    np.testing.assert_array_equal(lbl, data[case + '__new_train_labels'],
                                  err_msg=case)
    assert pos.dtype == np.int64 and lbl.dtype == np.int64
    total_picks += len(rows)
  assert total_picks > 0


def test_fixture_split_matches():
  data, names = _cases()
  for case in names:
    k, _, _, percent, _, fold = _CASE.fullmatch(case).groups()
    lab, unl = labeled_split(data[case + '__y_train'], int(fold),
                             float(percent), int(k))
    np.testing.assert_array_equal(lab, data[case + '__labeled_positions'])
    np.testing.assert_array_equal(unl, data[case + '__unlabeled_positions'])


def test_select_by_hand_stable_ties_and_order():
  scores = np.array([[0.9, 0.1],   # row 0: class 0, 0.9
                     [0.2, 0.8],   # row 1: class 1, 0.8
                     [0.7, 0.3],   # row 2: class 0, 0.7
                     [0.9, 0.1],   # row 3: class 0, 0.9 (tie with row 0)
                     [0.1, 0.9]])  # row 4: class 1, 0.9
  rows, labels, picked, predicted = sel.select_pseudo_labels(
      scores, np.array([0.5, 0.5]), 1.0, 'distribution')
  np.testing.assert_array_equal(predicted, [3, 2])
  np.testing.assert_array_equal(picked, [3, 2])
  np.testing.assert_array_equal(rows, [0, 3, 2, 4, 1])
  np.testing.assert_array_equal(labels, [0, 0, 0, 1, 1])
  # Imbalanced prior 0.8 / 0.2, alpha 1: class 0 keeps int(3 * 0.25) = 0,
  # class 1 keeps int(2 * 1) = 2.
  rows, labels, picked, _ = sel.select_pseudo_labels(
      scores, np.array([0.8, 0.2]), 1.0, 'distribution')
  np.testing.assert_array_equal(picked, [0, 2])
  np.testing.assert_array_equal(rows, [4, 1])
  rows, _, picked, _ = sel.select_pseudo_labels(
      scores, np.array([0.8, 0.2]), 1.0, 'all')
  np.testing.assert_array_equal(picked, [3, 2])
  assert len(rows) == 5


def test_picks_per_class_formula():
  gt = np.array([0.5, 0.3, 0.2])
  got = sel.picks_per_class(np.array([100, 50, 10]), gt, 2.0, 'distribution')
  expected = [int(100 * (0.2 / 0.5) ** 0.5), int(50 * (0.3 / 0.5) ** 0.5),
              int(10 * 1.0)]
  np.testing.assert_array_equal(got, expected)
  np.testing.assert_array_equal(got, [63, 38, 10])


def test_invalid_update_mode():
  with pytest.raises(ValueError, match="'distribution', 'all'"):
    sel.picks_per_class(np.array([1]), np.array([1.0]), 1.0, 'half')
  with pytest.raises(ValueError, match='distribution'):
    sel.select_pseudo_labels(np.ones([2, 2]), np.array([.5, .5]), 1.0, 'x')


def test_next_labeled_set():
  pos, lbl = sel.next_labeled_set(np.array([10, 11, 12, 13]), np.array([3, 0]),
                                  np.array([1, 0]), np.array([5, 6]),
                                  np.array([0, 1]))
  np.testing.assert_array_equal(pos, [13, 10, 5, 6])
  np.testing.assert_array_equal(lbl, [1, 0, 0, 1])


def test_alignment_temperature():
  assert sel.alignment_temperature(0, 6, 0.5, None) is None
  assert sel.alignment_temperature(3, 6, 0.5, 'constant') == 0.5
  got = [sel.alignment_temperature(g, 6, 0.5, 'adaptive') for g in range(6)]
  np.testing.assert_allclose(got, [1.0, 0.9, 0.8, 0.7, 0.6, 0.5])
  # The original divided by zero here; the first generation's value is used.
  assert sel.alignment_temperature(0, 1, 0.5, 'adaptive') == 1.0
  with pytest.raises(ValueError):
    sel.alignment_temperature(6, 6, 0.5, 'adaptive')
  with pytest.raises(ValueError, match='adaptive'):
    sel.alignment_temperature(0, 6, 0.5, 'linear')
