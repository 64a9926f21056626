"""Your own data from a `.npz` file: `npz` (as is) and `npzlt` (long-tailed).

The file (`DataArgs.data_file`, read with `allow_pickle=False`) holds:
  x_train: uint8 [N, H, W, C] or [N, H, W] (a channel is added), C 1 or 3;
  y_train: integer [N], labels in [0, K) with K = max(y_train) + 1, every
    class present;
  x_test: uint8 [T, H, W, C] or [T, H, W], same H, W, C;
  y_test: integer [T], labels in [0, K).

`npz`: the training set as is; `gt_p_data` = its empirical class frequencies.
`npzlt`: made long-tailed by `class_im_ratio`: class k keeps its first
`int(N_max * ratio ** (k / (K - 1)))` examples in file order (at least 1),
N_max = the smallest class count, kept in file order; `gt_p_data =
long_tail_prior(ratio, K)`.
Both: labeled split `labeled_split(labels, fold, percent_labeled or 0.1)`,
unlabeled stream = the whole training set, test set as is.
"""
from __future__ import annotations

import os
import zipfile

import numpy as np
from absl import logging

from data import errors
from data import base
from data import checks
from data import splits

KEYS = ('x_train', 'y_train', 'x_test', 'y_test')
FORMAT = ('a .npz with x_train (uint8 [N, H, W, C] or [N, H, W]), y_train '
          '(int [N]), x_test, y_test, e.g. np.savez(path, x_train=..., '
          'y_train=..., x_test=..., y_test=...)')


def read_npz(path: str):
  """Reads and validates an own-data file.

  Returns:
    (x_train uint8 [N, H, W, C], y_train int64 [N], x_test uint8 [T, H, W, C],
    y_test int64 [T], K).

  Raises:
    data.errors.DataError: missing/unreadable file, missing keys, wrong
      dtypes or shapes, labels out of range, a class without examples.
  """
  if not path:
    raise errors.DataError(f'No --data_file given: it must be {FORMAT}.')
  if os.path.isdir(path):
    raise errors.DataError(f'--data_file {path} is a directory; give the '
                           f'.npz file itself: {FORMAT}.')
  if not os.path.isfile(path):
    raise errors.DataError(f'--data_file {path} does not exist; it must be '
                           f'{FORMAT}.')
  _check_magic(path)
  try:
    with np.load(path, allow_pickle=False) as f:
      missing = [k for k in KEYS if k not in f.files]
      if missing:
        raise errors.DataError(
            f'{path}: missing array(s) {missing} (has {sorted(f.files)}); it '
            f'must be {FORMAT}.')
      arrays = {k: f[k] for k in KEYS}
  except errors.DataError:
    raise
  except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
    raise errors.DataError(
        f'{path}: cannot read it as a .npz without pickles ({e}); it must be '
        f'{FORMAT}.') from None
  for part in ('train', 'test'):
    x, y = arrays['x_' + part], arrays['y_' + part]
    if x.dtype != np.uint8:
      raise errors.DataError(
          f'{path}: x_{part} has dtype {x.dtype}, expected uint8 pixels in '
          f'[0, 255] (convert with np.clip(x, 0, 255).astype(np.uint8)).')
    if x.ndim == 3:
      x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or min(x.shape[1:3]) < 1:
      raise errors.DataError(
          f'{path}: x_{part} has shape {list(arrays["x_" + part].shape)}, '
          f'expected [N, H, W], [N, H, W, 1] or [N, H, W, 3].')
    if x.shape[1] != x.shape[2]:
      raise errors.DataError(
          f'{path}: x_{part} has {x.shape[1]}x{x.shape[2]} images; they must '
          f'be square (H == W: the augmentations crop, flip and rotate '
          f'square images). Crop or pad them to a square first.')
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
      raise errors.DataError(
          f'{path}: y_{part} is {y.dtype} {list(y.shape)}, expected a 1-D '
          f'integer array of labels.')
    if len(y) != len(x):
      raise errors.DataError(
          f'{path}: x_{part} has {len(x)} images but y_{part} has {len(y)} '
          f'labels.')
    if len(y) == 0:
      raise errors.DataError(f'{path}: x_{part} / y_{part} are empty.')
    arrays['x_' + part], arrays['y_' + part] = x, y
  # Label ranges in the file's own dtype (a cast first would show a uint64
  # label as negative, and a huge label would size the class counts).
  y_train = arrays['y_train']
  _check_label_range(y_train, len(y_train), f'{path} (y_train)',
                     'classes are numbered 0..K-1, each with training '
                     f'examples, so labels are below the number of training '
                     f'examples ({len(y_train)}); renumber the classes')
  arrays['y_train'] = y_train = y_train.astype(np.int64)
  k = int(y_train.max()) + 1
  _check_label_range(arrays['y_test'], k, f'{path} (y_test)',
                     f'test labels must be classes of y_train, 0..{k - 1}')
  arrays['y_test'] = arrays['y_test'].astype(np.int64)
  if arrays['x_train'].shape[1:] != arrays['x_test'].shape[1:]:
    raise errors.DataError(
        f'{path}: train images are {list(arrays["x_train"].shape[1:])} but '
        f'test images are {list(arrays["x_test"].shape[1:])}; they must '
        f'match.')
  if k < 2:
    raise errors.DataError(f'{path}: y_train has a single class; need >= 2.')
  checks.check_every_class(y_train, k, f'{path} (y_train)',
                           'every label from 0 to max(y_train) needs '
                           'training examples; renumber the classes')
  return (arrays['x_train'], y_train, arrays['x_test'], arrays['y_test'], k)


def _check_magic(path: str) -> None:
  """A .npz is a zip archive; anything else gets a message saying what."""
  try:
    with open(path, 'rb') as f:
      head = f.read(6)
  except OSError as e:
    raise errors.DataError(f'--data_file {path} cannot be read: '
                           f'{e.strerror or e}.') from None
  if head.startswith(b'PK'):
    return
  what = ('a .npy file (one array)' if head.startswith(b'\x93NUMPY') else
          'empty' if not head else
          'not a .npz (zip) file: it starts with ' + repr(head))
  raise errors.DataError(f'--data_file {path} is {what}; it must be '
                         f'{FORMAT}.')


def _check_label_range(y: np.ndarray, high: int, where: str,
                       hint: str) -> None:
  """Every label of `y` (any integer dtype) in [0, high), compared exactly."""
  lo, hi = int(y.min()), int(y.max())
  if lo >= 0 and hi < high:
    return
  bad = lo if lo < 0 else hi
  position = int(np.flatnonzero(y == y.dtype.type(bad))[0])
  raise errors.DataError(f'{where}: label {bad} at position {position} is '
                         f'out of range; expected labels in [0, {high}): '
                         f'{hint}.')


def load(args: base.DataArgs) -> base.SSLData:
  """Loads `npz` / `npzlt` from `args.data_file`."""
  x_train, y_train, x_test, y_test, k = read_npz(args.data_file)
  if args.dataset == 'npzlt':
    n_max = int(np.bincount(y_train, minlength=k).min())
    counts = np.maximum(
        splits.long_tail_counts(n_max, args.class_im_ratio, k), 1)
    keep = splits.first_per_class(y_train, counts)
    x_train, y_train = x_train[keep], y_train[keep]
    gt_p_data = splits.long_tail_prior(args.class_im_ratio, k)
  else:
    gt_p_data = np.bincount(y_train, minlength=k) / len(y_train)
  data = base.percent_split(args, k, x_train, y_train, x_test, y_test,
                            gt_p_data)
  logging.info('%s from %s: %d classes, %d train (%d labeled), %d test',
               args.dataset, args.data_file, k, len(y_train),
               len(data.labeled_positions), len(y_test))
  return data
