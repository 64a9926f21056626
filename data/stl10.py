"""STL-10-LT (`stl10lt`): STL-10 with a long-tailed labeled set, the DARP
protocol's STL-10 setting (DARP, DASO, ACR, SimPro).

The official binary files (`stl10_binary/` in `stl10_binary.tar.gz`):
`train_X.bin` (5,000 images), `test_X.bin` (8,000), `unlabeled_X.bin`
(100,000): uint8, each image 3 x 96 x 96 in column-major order (the first
96 * 96 bytes the red channel, then green, then blue; each channel stored
column by column); `train_y.bin`, `test_y.bin`: one uint8 label per image,
1..10 (airplane, bird, car, cat, deer, dog, horse, monkey, ship, truck).

`scripts/prepare_stl10.py` converts them into `$ML_DATA/stl10/{96,64,32}/`
(the 96 px images as they are, or resized with bilinear filtering):
  train_images.npy  uint8 [5000 + 100000, S, S, 3]: the training images,
                    then the unlabeled ones, in the files' order
  train_labels.npy  int64 [105000]: 0..9, -1 for the unlabeled images
  test_images.npy   uint8 [8000, S, S, 3]
  test_labels.npy   int64 [8000]
The image files are memory-mapped (nothing reads them whole).

Split: `class_im_ratio` is the labeled gamma (10 and 20 in the field),
`darp_n1` the labeled head count N1 (default 450): class k keeps its first
`int(N1 * gamma ** (-k / 9))` training images (file order), like the DARP
CIFAR files. The unlabeled set, whose class distribution is unknown, is the
100,000 unlabeled images, plus the training images left out of the labeled
set with `stl10_add_unused`. The unlabeled stream draws from the labeled
and the unlabeled set (as on DARP CIFAR); the test set is the whole test set
(balanced, 800 per class). `gt_p_data` is the labeled prior; `fold` does not
change the data. `image_size` (from --input_shape) picks 96, 64 or 32.
"""
from __future__ import annotations

import os
from typing import Dict, Tuple

import numpy as np
from absl import logging

from data import base
from data import checks
from data import errors
from data import layout
from data import splits

NUM_CLASSES = 10
SIDE = 96
IMAGE_BYTES = 3 * SIDE * SIDE
SIZES = (96, 64, 32)
DEFAULT_N1 = 450
CLASSES = ('airplane', 'bird', 'car', 'cat', 'deer', 'dog', 'horse',
           'monkey', 'ship', 'truck')
# The official archive's members used, by part: (images, labels or None).
MEMBERS = {'train': ('train_X.bin', 'train_y.bin'),
           'test': ('test_X.bin', 'test_y.bin'),
           'unlabeled': ('unlabeled_X.bin', None)}
ARCHIVE = 'stl10_binary.tar.gz'
URL = 'http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz'
MD5 = '91f7769df0f17e558f3565bffb0c7dfb'
UNLABELED = -1  # The label of an unlabeled image.


def decode(raw: bytes) -> np.ndarray:
  """Official binary images -> uint8 [n, 96, 96, 3] (rows, columns, RGB).

  Args:
    raw: n * 27648 bytes, each image 3 x 96 x 96 column-major.
  """
  flat = np.frombuffer(raw, np.uint8)
  if flat.size % IMAGE_BYTES:
    raise ValueError(f'{flat.size} bytes is not a whole number of '
                     f'{IMAGE_BYTES}-byte images')
  # [n, channel, column, row] -> [n, row, column, channel].
  return flat.reshape(-1, 3, SIDE, SIDE).transpose(0, 3, 2, 1)


def encode(images: np.ndarray) -> bytes:
  """uint8 [n, 96, 96, 3] -> the official binary layout (`decode`'s
  inverse), for writing test files."""
  return np.ascontiguousarray(
      np.asarray(images, np.uint8).transpose(0, 3, 2, 1)).tobytes()


def resize(images: np.ndarray, size: int) -> np.ndarray:
  """uint8 [n, 96, 96, 3] -> uint8 [n, size, size, 3], bilinear (Pillow's
  `Image.resize(..., BILINEAR)`, as torchvision's `Resize` on images); the
  images themselves at 96."""
  if size == images.shape[1]:
    return np.asarray(images, np.uint8)
  from PIL import Image  # pylint: disable=g-import-not-at-top
  out = np.empty((len(images), size, size, 3), np.uint8)
  for i, image in enumerate(images):
    out[i] = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize(
        (size, size), Image.BILINEAR))
  return out


def directory(root: str, size: int) -> str:
  """Where the prepared files of one image size live."""
  return os.path.join(root, 'stl10', str(size))


def prepare_command(size: int = SIDE) -> str:
  return (f'python scripts/prepare_stl10.py --archive={ARCHIVE} '
          f'--ml_data=$ML_DATA --sizes={size} (add --download to fetch the '
          f'official archive)')


def read_part(root: str, size: int, part: str, hint: str
              ) -> Tuple[np.ndarray, np.ndarray]:
  """(memory-mapped uint8 [N, S, S, 3], int64 [N] labels) of 'train' or
  'test', checked (train labels may be -1: unlabeled)."""
  images, labels, labels_path = checks.open_prepared_part(
      directory(root, size), part, size, hint)
  known = labels if part == 'test' else labels[labels != UNLABELED]
  checks.check_labels(known, NUM_CLASSES, labels_path, hint)
  return images, labels


def labeled_counts(n1: int, gamma: float) -> np.ndarray:
  """Labeled images per class: `int(N1 * gamma ** (-k / 9))`. int64 [10]."""
  return splits.darp_counts(n1, gamma, NUM_CLASSES)


def load(args: base.DataArgs) -> base.SSLData:
  """Loads `stl10lt` (see the module docstring)."""
  size = args.image_size or SIDE
  hint = prepare_command(size)
  root = layout.require_root(args.ml_data, args.dataset, hint)
  train_images, train_labels = read_part(root, size, 'train', hint)
  test_images, test_labels = read_part(root, size, 'test', hint)
  where = os.path.join(directory(root, size), 'train_labels.npy')
  n1 = DEFAULT_N1 if args.darp_n1 is None else args.darp_n1
  gamma = float(args.class_im_ratio)
  want = labeled_counts(n1, gamma)
  have = np.bincount(train_labels[train_labels >= 0], minlength=NUM_CLASSES)
  if (have < want).any():
    c = int(np.flatnonzero(have < want)[0])
    raise errors.DataError(
        f'{where}: class {c} has {have[c]} training images, {want[c]} needed '
        f'for --darp_n1={n1} --class_im_ratio={layout.number_name(gamma)}; '
        f'lower --darp_n1 (the official set has 500 per class).')
  checks.check_every_class(test_labels, NUM_CLASSES, where.replace(
      'train_labels', 'test_labels'), hint)
  labeled = splits.first_per_class(
      np.where(train_labels >= 0, train_labels, NUM_CLASSES), want)
  unlabeled = np.flatnonzero(train_labels == UNLABELED)
  if args.stl10_add_unused:
    unused = np.setdiff1d(np.flatnonzero(train_labels >= 0), labeled)
    unlabeled = np.concatenate([unused, unlabeled])
  logging.info('%s %dx%d gamma %s: %d labeled (N1=%d), %d unlabeled%s, %d '
               'test, from %s', args.dataset, size, size,
               layout.number_name(gamma), len(labeled), n1, len(unlabeled),
               ' (with the unused labeled images)' if args.stl10_add_unused
               else '', len(test_labels), directory(root, size))
  return base.SSLData(
      name=args.dataset, num_classes=NUM_CLASSES,
      train_images=train_images, train_labels=train_labels,
      test_images=test_images, test_labels=test_labels,
      labeled_positions=labeled.astype(np.int64),
      unlabeled_positions=unlabeled.astype(np.int64),
      unlabeled_stream_positions=np.sort(np.concatenate(
          [labeled, unlabeled])).astype(np.int64),
      gt_p_data=splits.darp_prior(gamma, NUM_CLASSES))


def files(root: str, size: int) -> Dict[str, str]:
  """The prepared files of one size: name -> path."""
  d = directory(root, size)
  return {n: os.path.join(d, f'{n}.npy') for n in (
      'train_images', 'train_labels', 'test_images', 'test_labels')}
