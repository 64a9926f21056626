"""Long-tailed Fashion-MNIST: `fashionmnistlt`.

Reads the four official IDX files (`train-images-idx3-ubyte`,
`train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
`t10k-labels-idx1-ubyte`, each plain or `.gz`) from `$ML_DATA/fashion-mnist/`,
else from `/usr/share/datasets/fashion-mnist/` (Debian package
`dataset-fashion-mnist`). Images are 28x28x1 uint8.

Training set: `long_tail_counts(N_max, class_im_ratio, 10)` with N_max the
smallest class count of the training file (6000 for the official one); class
k keeps its first n_k images in file order, and the kept images stay in file
order. Then the long-tailed split `labeled_split(labels, fold,
percent_labeled or 0.1)`; the unlabeled stream is the whole long-tailed
training set; `gt_p_data = long_tail_prior(ratio, 10)`. Test set: the full
balanced 10,000-image test file.
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence

import numpy as np
from absl import logging

from data import errors
from data import base
from data import checks
from data import idx
from data import splits

NUM_CLASSES = 10
SUBDIR = 'fashion-mnist'
SYSTEM_DIRS = ('/usr/share/datasets/fashion-mnist',)
FILES = {
    'train_images': 'train-images-idx3-ubyte',
    'train_labels': 'train-labels-idx1-ubyte',
    'test_images': 't10k-images-idx3-ubyte',
    'test_labels': 't10k-labels-idx1-ubyte',
}
HINT = ('Put the four files from https://github.com/zalandoresearch/'
        'fashion-mnist (data/fashion/*.gz) into $ML_DATA/fashion-mnist/, or '
        'install the Debian package dataset-fashion-mnist')


def search_dirs(ml_data: str,
                system_dirs: Optional[Sequence[str]] = None) -> List[str]:
  """Directories searched, in order (`system_dirs` None: SYSTEM_DIRS)."""
  if system_dirs is None:
    system_dirs = SYSTEM_DIRS
  dirs = [os.path.join(ml_data, SUBDIR)] if ml_data else []
  return dirs + list(system_dirs)


def find_files(ml_data: str,
               system_dirs: Optional[Sequence[str]] = None) -> dict:
  """Paths of the four files, from the first directory that has all of them.

  Raises:
    data.errors.DataError: no searched directory has all four files.
  """
  dirs = search_dirs(ml_data, system_dirs)
  for d in dirs:
    found = {}
    for key, name in FILES.items():
      for candidate in (name, name + '.gz'):
        if os.path.isfile(os.path.join(d, candidate)):
          found[key] = os.path.join(d, candidate)
          break
    if len(found) == len(FILES):
      return found
  raise errors.DataError(
      f'Fashion-MNIST files not found: looked for '
      f'{", ".join(n + "[.gz]" for n in FILES.values())} in '
      f'{", ".join(dirs)}. {HINT}.')


def load(args: base.DataArgs,
         system_dirs: Optional[Sequence[str]] = None) -> base.SSLData:
  """Loads long-tailed Fashion-MNIST for `args.class_im_ratio`."""
  paths = find_files(args.ml_data, system_dirs)
  arrays = {key: idx.read_idx(path, 3 if key.endswith('images') else 1, HINT)
            for key, path in paths.items()}
  for part in ('train', 'test'):
    images, labels = arrays[part + '_images'], arrays[part + '_labels']
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
      raise errors.DataError(
          f'{paths[part + "_images"]}: images of shape {list(images.shape)} '
          f'with {len(labels)} labels; expected [N, 28, 28] and N labels. '
          f'{HINT}.')
    checks.check_labels(labels, NUM_CLASSES, paths[part + '_labels'], HINT)
  all_labels = arrays['train_labels'].astype(np.int64)
  checks.check_every_class(all_labels, NUM_CLASSES, paths['train_labels'],
                           HINT)
  n_max = int(np.bincount(all_labels, minlength=NUM_CLASSES).min())
  counts = splits.long_tail_counts(n_max, args.class_im_ratio, NUM_CLASSES)
  counts = np.maximum(counts, 1)
  keep = splits.first_per_class(all_labels, counts)
  train_labels = all_labels[keep]
  data = base.percent_split(
      args, NUM_CLASSES, arrays['train_images'][keep][..., None],
      train_labels, arrays['test_images'][..., None],
      arrays['test_labels'].astype(np.int64),
      splits.long_tail_prior(args.class_im_ratio, NUM_CLASSES))
  logging.info('%s ratio %s: %d train %s (%d labeled), from %s',
               args.dataset, args.class_im_ratio, len(keep), counts.tolist(),
               len(data.labeled_positions),
               os.path.dirname(paths['train_images']))
  return data
