"""Long-tailed CIFAR-10/100 in Cui et al.'s format: `cifar10lt`, `cifar100lt`.

Files: `$ML_DATA/cifar-lt/cifar-{10,100}-data-im-{ratio}/train.tfrecords` and
`eval.tfrecords`, raw channel-major records (see `data.records`). The labeled
split is `labeled_split(labels, fold, percent_labeled or 0.1)`; the unlabeled
stream is the whole training set; `gt_p_data = long_tail_prior(ratio, K)`.
"""
from __future__ import annotations

import os

from absl import logging

from data import base
from data import checks
from data import layout
from data import records
from data import splits

NUM_CLASSES = {'cifar10lt': 10, 'cifar100lt': 100}


def load(args: base.DataArgs) -> base.SSLData:
  """Loads `cifar10lt` / `cifar100lt` for `args.class_im_ratio`."""
  k = NUM_CLASSES[args.dataset]
  hint = layout.prepare_command(
      k, f'--class_im_ratio={layout.number_name(args.class_im_ratio)}')
  root = layout.require_root(args.ml_data, args.dataset, hint)
  directory = layout.find_lt_dir(root, k, args.class_im_ratio)
  train_path = os.path.join(directory, 'train.tfrecords')
  test_path = os.path.join(directory, 'eval.tfrecords')
  train_images, train_labels = read_raw_file(train_path, k, hint)
  test_images, test_labels = read_raw_file(test_path, k, hint)
  checks.check_every_class(train_labels, k, train_path, hint)
  data = base.percent_split(args, k, train_images, train_labels, test_images,
                            test_labels, splits.long_tail_prior(
                                args.class_im_ratio, k))
  logging.info('%s ratio %s: %d train (%d labeled), %d test, from %s',
               args.dataset, args.class_im_ratio, len(train_labels),
               len(data.labeled_positions), len(test_labels), directory)
  return data


def read_raw_file(path: str, num_classes: int, hint: str):
  """Reads a raw-format file and checks its labels.

  Returns:
    (uint8 [N, 32, 32, 3], int64 [N]).
  """
  image_bytes, labels = records.read_examples(path, hint)
  images = records.decode_raw(image_bytes, path, hint)
  checks.check_labels(labels, num_classes, path, hint)
  return images, labels
