"""Balanced CIFAR-10/100 in FixMatch's format: `cifar10`, `cifar100`.

Files: `$ML_DATA/cifar/cifar{10,100}-train.tfrecord`, `...-test.tfrecord`
(singular), PNG records. The labeled split is
`splits.count_split(labels, fold, num_labeled, is_balanced)`; the unlabeled
stream is the whole training set; `gt_p_data` is uniform.
"""
from __future__ import annotations

import numpy as np
from absl import logging

from data import errors
from data import base
from data import checks
from data import layout
from data import records
from data import splits

NUM_CLASSES = {'cifar10': 10, 'cifar100': 100}


def load(args: base.DataArgs) -> base.SSLData:
  """Loads `cifar10` / `cifar100` and splits it by `num_labeled`."""
  k = NUM_CLASSES[args.dataset]
  hint = layout.prepare_command(k)
  root = layout.require_root(args.ml_data, args.dataset, hint)
  paths = layout.balanced_paths(root, k)
  loaded = {}
  for split, path in paths.items():
    image_bytes, labels = records.read_examples(path, hint)
    images = records.decode_png(image_bytes, path, hint)
    checks.check_labels(labels, k, path, hint)
    loaded[split] = (images, labels)
  train_images, train_labels = loaded['train']
  checks.check_every_class(train_labels, k, paths['train'], hint)
  try:
    labeled, unlabeled = splits.count_split(
        train_labels, args.fold, args.num_labeled, args.is_balanced, k)
  except ValueError as e:
    raise errors.DataError(
        f'Dataset {args.dataset!r} ({paths["train"]}): cannot take '
        f'--num_labeled={args.num_labeled} per class: {e}. Lower '
        f'--num_labeled.') from None
  checks.check_split(train_labels, labeled, k, args.dataset)
  logging.info('%s: %d train (%d labeled), %d test', args.dataset,
               len(train_labels), len(labeled), len(loaded['test'][1]))
  return base.SSLData(
      name=args.dataset, num_classes=k,
      train_images=train_images, train_labels=train_labels,
      test_images=loaded['test'][0], test_labels=loaded['test'][1],
      labeled_positions=labeled, unlabeled_positions=unlabeled,
      unlabeled_stream_positions=np.arange(len(train_labels), dtype=np.int64),
      gt_p_data=np.full([k], 1.0 / k))
