"""A small deterministic long-tailed image dataset that needs no files.

Ten classes of 32x32x3 uint8 images. Class `c` is a shape (`c % 5`: filled
square, disk, horizontal bars, vertical bars, cross) drawn in a colour family
(`c // 5`: warm or cool, with per-image jitter) at a random position and size
on a noisy dark background, plus pixel noise. A small CNN learns it in a few
hundred steps; it is not linearly trivial (shape and colour must be combined,
position varies).

The images depend only on the dataset's size and the fixed seeds below, never
on the fold; the fold only changes the labeled split.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from data import base
from data import splits

NUM_CLASSES = 10
IMAGE_SIZE = 32
_TRAIN_SEED = 20210601
_TEST_SEED = 20210602


@dataclasses.dataclass(frozen=True)
class SyntheticSize:
  """Size of a synthetic dataset.

  Attributes:
    n_max: training images of the head class (class 0).
    test_per_class: test images per class (balanced test set).
  """
  n_max: int
  test_per_class: int


SIZES = {
    'synthetic': SyntheticSize(n_max=200, test_per_class=50),
    'synthetic_tiny': SyntheticSize(n_max=40, test_per_class=10),
}


def _shape_masks(shape_ids: np.ndarray, cy: np.ndarray, cx: np.ndarray,
                 half: np.ndarray) -> np.ndarray:
  """Boolean masks of the class shapes.

  Args:
    shape_ids: int [N] in [0, 5).
    cy, cx: float [N], shape centres in pixels.
    half: float [N], half side / radius in pixels.

  Returns:
    bool [N, 32, 32].
  """
  grid = np.arange(IMAGE_SIZE, dtype=np.float32)
  dy = grid[None, :, None] - cy[:, None, None]
  dx = grid[None, None, :] - cx[:, None, None]
  h = half[:, None, None]
  inside = (np.abs(dy) <= h) & (np.abs(dx) <= h)
  square = inside
  disk = dy ** 2 + dx ** 2 <= h ** 2
  hbars = inside & (np.floor((dy + h) / 2.0) % 2 == 0)
  vbars = inside & (np.floor((dx + h) / 2.0) % 2 == 0)
  cross = inside & ((np.abs(dy) <= h / 3.0) | (np.abs(dx) <= h / 3.0))
  all_masks = np.stack([square, disk, hbars, vbars, cross], axis=1)
  return all_masks[np.arange(len(shape_ids)), shape_ids]


def make_images(labels: np.ndarray, seed: int) -> np.ndarray:
  """Draws one image per label.

  Args:
    labels: int [N] in [0, 10).
    seed: seed of the image randomness.

  Returns:
    uint8 [N, 32, 32, 3].
  """
  labels = np.asarray(labels, np.int64)
  n = len(labels)
  rng = np.random.default_rng(seed)
  half = rng.uniform(4.0, 8.0, n).astype(np.float32)
  cy = rng.uniform(half, IMAGE_SIZE - 1 - half).astype(np.float32)
  cx = rng.uniform(half, IMAGE_SIZE - 1 - half).astype(np.float32)
  mask = _shape_masks(labels % 5, cy, cx, half)
  # Warm family: red dominant; cool family: blue dominant. Jitter overlaps.
  warm = labels // 5 == 0
  base_colour = np.where(warm[:, None], [[200.0, 110.0, 50.0]],
                         [[50.0, 110.0, 200.0]])
  colour = base_colour + rng.uniform(-45.0, 45.0, (n, 3))
  background = rng.uniform(20.0, 90.0, (n, 1, 1, 3))
  images = np.broadcast_to(background, (n, IMAGE_SIZE, IMAGE_SIZE, 3)).copy()
  images = np.where(mask[..., None], colour[:, None, None, :], images)
  images += rng.normal(0.0, 18.0, images.shape)
  return np.clip(np.rint(images), 0, 255).astype(np.uint8)


def _labels(counts: np.ndarray, seed: int) -> np.ndarray:
  """Labels with `counts[k]` of class k, in a fixed shuffled order. int64."""
  labels = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
  return np.random.default_rng(seed).permutation(labels)


def load(args: base.DataArgs) -> base.SSLData:
  """Builds the synthetic dataset named `args.dataset`.

  Train counts are `long_tail_counts(n_max, class_im_ratio, 10)` (class 0 the
  head) in a fixed shuffled order; the test set is balanced. The labeled split
  is `labeled_split(labels, fold, percent_labeled or 0.1)`; the unlabeled
  stream is the whole training set; `gt_p_data = long_tail_prior(ratio, 10)`.
  """
  size = SIZES[args.dataset]
  counts = splits.long_tail_counts(size.n_max, args.class_im_ratio,
                                   NUM_CLASSES)
  counts = np.maximum(counts, 1)
  train_labels = _labels(counts, _TRAIN_SEED)
  test_labels = _labels(np.full(NUM_CLASSES, size.test_per_class), _TEST_SEED)
  return base.percent_split(
      args, NUM_CLASSES, make_images(train_labels, _TRAIN_SEED + 1),
      train_labels, make_images(test_labels, _TEST_SEED + 1), test_labels,
      splits.long_tail_prior(args.class_im_ratio, NUM_CLASSES))
