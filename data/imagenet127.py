"""ImageNet-127 from downsampled ImageNet: `imagenet127_32`, `imagenet127_64`.

The 1000 ILSVRC-2012 classes grouped into 127 WordNet classes (the grouping,
with its source, is `data/imagenet127_groups.tsv`), at 32x32 or 64x64 (the
downsampled ImageNet of Chrabaszcz et al., 2017). The training set is
naturally long-tailed; the test set is the ILSVRC validation set, 50 images
per ILSVRC class, so also long-tailed over the 127 classes.

`scripts/prepare_imagenet127.py` converts the downsampled files into
`$ML_DATA/imagenet127/{32,64}/`:
  train_images.npy  uint8 [N, S, S, 3]  (NHWC, the batch files' order)
  train_labels.npy  int64 [N]
  test_images.npy   uint8 [T, S, S, 3]  (val_data's order)
  test_labels.npy   int64 [T]
  classes.tsv       label, group_index, group_synset, group_name,
                    train_count, test_count
Labels number the classes by training-set size, largest first (ties by
group_index), so that class 0 is the head as CReST's selection expects.

The image files are opened with `np.load(..., mmap_mode='r')`: nothing reads
the whole training set into memory; batches read their rows from the file.
The labeled split is `labeled_split(labels, fold, percent_labeled or 0.1)`,
the unlabeled stream the whole training set, `gt_p_data` the training set's
class frequencies. `--imagenet127_test`: 'imbalanced' (default) keeps the
whole validation set; 'balanced' keeps the first `min_c T_c` images of each
class (file order), 50 per class for the full set.
"""
from __future__ import annotations

import csv
import dataclasses
import os
from typing import Dict, Tuple

import numpy as np
from absl import logging

from data import base
from data import checks
from data import errors
from data import layout
from data import splits

NUM_CLASSES = 127
NUM_SOURCE_CLASSES = 1000
SIZES = {'imagenet127_32': 32, 'imagenet127_64': 64}
TEST_CHOICES = ('imbalanced', 'balanced')
FILES = ('train_images.npy', 'train_labels.npy', 'test_images.npy',
         'test_labels.npy')
CLASSES_FILE = 'classes.tsv'
CLASSES_COLUMNS = ('label', 'group_index', 'group_synset', 'group_name',
                   'train_count', 'test_count')
GROUPS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           'imagenet127_groups.tsv')


@dataclasses.dataclass(frozen=True)
class Groups:
  """The 1000 -> 127 grouping.

  Attributes:
    of_label: int64 [1001], group_index of each 1-based downsampled label
      (entry 0 is -1).
    synsets: [127] WordNet synsets, by group_index.
    names: [127] names, by group_index.
  """
  of_label: np.ndarray
  synsets: Tuple[str, ...]
  names: Tuple[str, ...]


def read_groups(path: str = GROUPS_FILE) -> Groups:
  """Reads `data/imagenet127_groups.tsv` ('#' lines are comments)."""
  with open(path, newline='') as f:
    rows = list(csv.DictReader((line for line in f
                                if not line.startswith('#')),
                               delimiter='\t'))
  of_label = np.full(NUM_SOURCE_CLASSES + 1, -1, np.int64)
  synsets, names = [''] * NUM_CLASSES, [''] * NUM_CLASSES
  for row in rows:
    g = int(row['group_index'])
    of_label[int(row['downsampled_label'])] = g
    synsets[g], names[g] = row['group_synset'], row['group_name']
  if len(rows) != NUM_SOURCE_CLASSES or (of_label[1:] < 0).any() or not all(
      synsets):
    raise errors.DataError(f'{path}: expected one row for each of the '
                           f'{NUM_SOURCE_CLASSES} labels covering all '
                           f'{NUM_CLASSES} groups.')
  return Groups(of_label, tuple(synsets), tuple(names))


def directory(root: str, size: int) -> str:
  """Where the prepared files of one resolution live."""
  return os.path.join(root, 'imagenet127', str(size))


def prepare_command(size: int) -> str:
  return (f'python scripts/prepare_imagenet127.py --source=DIR --ml_data='
          f'$ML_DATA (DIR holds the {size}x{size} downsampled ImageNet files '
          f'train_data_batch_1..10 and val_data)')


def rank_labels(group_counts: np.ndarray) -> np.ndarray:
  """The label of each group: its rank by count, largest first, ties by
  group_index. int64 [K] (label of group g)."""
  order = np.argsort(-np.asarray(group_counts, np.int64), kind='stable')
  labels = np.empty(len(order), np.int64)
  labels[order] = np.arange(len(order))
  return labels


def read_split(root: str, size: int, part: str, hint: str
               ) -> Tuple[np.ndarray, np.ndarray]:
  """One part ('train' or 'test'): (memory-mapped uint8 [N, S, S, 3],
  int64 [N] labels), checked.

  Raises:
    data.errors.DataError: missing files, wrong dtypes, shapes or labels.
  """
  images, labels, labels_path = checks.open_prepared_part(
      directory(root, size), part, size, hint)
  checks.check_labels(labels, NUM_CLASSES, labels_path, hint)
  return images, labels


def balanced_test_positions(labels: np.ndarray) -> np.ndarray:
  """The first `min_c T_c` positions of each class (ascending). int64."""
  counts = np.bincount(labels, minlength=NUM_CLASSES)
  return splits.first_per_class(labels, np.full(NUM_CLASSES, counts.min()))


def load(args: base.DataArgs) -> base.SSLData:
  """Loads `imagenet127_32` / `imagenet127_64` (see the module docstring)."""
  size = SIZES[args.dataset]
  hint = prepare_command(size)
  root = layout.require_root(args.ml_data, args.dataset, hint)
  train_images, train_labels = read_split(root, size, 'train', hint)
  test_images, test_labels = read_split(root, size, 'test', hint)
  where = os.path.join(directory(root, size), 'train_labels.npy')
  checks.check_every_class(train_labels, NUM_CLASSES, where, hint)
  counts = np.bincount(train_labels, minlength=NUM_CLASSES)
  if (np.diff(counts) > 0).any():
    raise errors.DataError(
        f'{where}: classes are not numbered by training-set size, largest '
        f'first (counts {counts.tolist()}); CReST needs class 0 the head. '
        f'Re-create the files: {hint}.')
  checks.check_every_class(test_labels, NUM_CLASSES, where.replace(
      'train_labels', 'test_labels'), hint)
  if args.imagenet127_test == 'balanced':
    keep = balanced_test_positions(test_labels)
    test_images, test_labels = test_images[keep], test_labels[keep]
  data = base.percent_split(args, NUM_CLASSES, train_images, train_labels,
                            test_images, test_labels,
                            counts / counts.sum())
  logging.info('%s: %d train (%d labeled), %d test (%s), gamma %.1f, from %s',
               args.dataset, len(train_labels), len(data.labeled_positions),
               len(test_labels), args.imagenet127_test,
               counts[0] / counts[-1], directory(root, size))
  return data


def read_classes(root: str, size: int) -> Dict[str, list]:
  """`classes.tsv` of prepared files, column -> values (strings)."""
  with open(os.path.join(directory(root, size), CLASSES_FILE),
            newline='') as f:
    rows = list(csv.DictReader(f, delimiter='\t'))
  return {c: [r[c] for r in rows] for c in CLASSES_COLUMNS}
