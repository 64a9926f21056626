"""The in-memory form every dataset loader returns."""
from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

import numpy as np

from data import checks
from data import splits

# The original's --percent_labeled when it is unset (long-tailed sets).
DEFAULT_PERCENT = 0.1


@dataclasses.dataclass(frozen=True)
class DataArgs:
  """What a loader needs to know; built from the run's config.

  Attributes:
    dataset: registry name, e.g. 'cifar10lt'.
    ml_data: data root directory ('' when unset).
    class_im_ratio: imbalance ratio N_min / N_max (for DARP sets: gamma).
    percent_labeled: labeled fraction per class (long-tailed sets).
    num_labeled: labeled examples per class (balanced sets).
    is_balanced: balanced labeled split (balanced sets).
    fold: seed of the labeled split.
    darp_n1: DARP labeled head-class count (None: the dataset's default).
    darp_m1: DARP unlabeled head-class count (None: the dataset's default).
    darp_gamma_u: DARP unlabeled imbalance (None: the labeled gamma,
      'consistent'; 1 uniform; negative: reversed, the unlabeled head being
      the labeled tail).
    darp_unlabeled_shape: DARP unlabeled profile shape: 'longtail' (class 0
      the head, or the tail when darp_gamma_u < 0), 'middle' or 'head_tail'
      (`data.splits.profile_ranks`).
    data_file: path of a user `.npz` file (own-data datasets).
    image_size: the image side, for datasets offered at several sizes
      (`data.registry.image_sizes`; STL-10-LT 96, 64, 32); None: their own.
    stl10_add_unused: STL-10-LT: add the training images the long-tailed
      labeled set leaves out to the unlabeled set.
    imagenet127_test: ImageNet-127's test set, 'imbalanced' (the whole
      validation set) or 'balanced' (as many images of each class).
  """
  dataset: str
  ml_data: str = ''
  class_im_ratio: float = 0.1
  percent_labeled: Optional[float] = None
  num_labeled: int = 25
  is_balanced: bool = True
  fold: int = 1
  darp_n1: Optional[int] = None
  darp_m1: Optional[int] = None
  darp_gamma_u: Optional[float] = None
  darp_unlabeled_shape: str = 'longtail'
  data_file: str = ''
  imagenet127_test: str = 'imbalanced'
  image_size: Optional[int] = None
  stl10_add_unused: bool = False


@dataclasses.dataclass(frozen=True)
class SSLData:
  """A dataset split for semi-supervised learning, held in memory.

  Positions index `train_images` / `train_labels` (the training file's record
  order; for datasets made of several files, their concatenation).

  Attributes:
    name: dataset name.
    num_classes: K.
    train_images: uint8 [N, H, W, C].
    train_labels: int64 [N], true labels (-1: unknown, e.g. STL-10's
      unlabeled images).
    test_images: uint8 [T, H, W, C].
    test_labels: int64 [T].
    labeled_positions: int64 [L], the original labeled set in reference order.
    unlabeled_positions: int64 [U], the pool pseudo-labelled between
      generations, in reference order.
    unlabeled_stream_positions: int64 [M], what the SSL unlabeled stream draws
      from (for long-tailed sets the whole training set, labeled included).
    gt_p_data: float64 [K], the class prior CReST aligns and selects with
      (normalised; class 0 the head for long-tailed sets).
  """
  name: str
  num_classes: int
  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  labeled_positions: np.ndarray
  unlabeled_positions: np.ndarray
  unlabeled_stream_positions: np.ndarray
  gt_p_data: np.ndarray

  @property
  def image_shape(self) -> Tuple[int, int, int]:
    return tuple(int(d) for d in self.train_images.shape[1:])


def percent_split(args: DataArgs, num_classes: int, train_images: np.ndarray,
                  train_labels: np.ndarray, test_images: np.ndarray,
                  test_labels: np.ndarray, gt_p_data: np.ndarray) -> SSLData:
  """The long-tailed sets' split: `labeled_split(train_labels, fold,
  percent_labeled or 0.1)`, the unlabeled stream the whole training set.

  Args:
    args: the data settings (fold, percent_labeled, dataset name).
    num_classes: K.
    train_images, test_images: uint8 [N, H, W, C], [T, H, W, C].
    train_labels, test_labels: int [N], [T].
    gt_p_data: float [K], the class prior.

  Raises:
    data.errors.DataError: a class without labeled example.
  """
  percent = (DEFAULT_PERCENT if args.percent_labeled is None
             else args.percent_labeled)
  labeled, unlabeled = splits.labeled_split(train_labels, args.fold, percent,
                                            num_classes)
  checks.check_split(train_labels, labeled, num_classes, args.dataset)
  return SSLData(
      name=args.dataset, num_classes=num_classes,
      train_images=train_images, train_labels=train_labels,
      test_images=test_images, test_labels=test_labels,
      labeled_positions=labeled, unlabeled_positions=unlabeled,
      unlabeled_stream_positions=np.arange(len(train_labels), dtype=np.int64),
      gt_p_data=np.asarray(gt_p_data, np.float64))
