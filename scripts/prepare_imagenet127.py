r"""Writes ImageNet-127 (`imagenet127_32` / `imagenet127_64`) from the
downsampled ImageNet files.

  python scripts/prepare_imagenet127.py --source=DIR --ml_data=$ML_DATA

DIR holds one resolution of downsampled ImageNet (Chrabaszcz et al., 2017;
https://image-net.org/download-images, "Downsampled ImageNet 32x32" or
"64x64"): `train_data_batch_1` ... `train_data_batch_10` and `val_data`
(pickles, or the same names with `.npz`). The resolution is read from the
files. Writes `$ML_DATA/imagenet127/{32,64}/` (see data/imagenet127.py):
train_images.npy, train_labels.npy, test_images.npy, test_labels.npy and
classes.tsv. Images keep the files' order (batch 1 to 10, then val_data);
each 1-based ILSVRC label becomes its ImageNet-127 group
(data/imagenet127_groups.tsv), and the groups are numbered by training-set
size, largest first (ties by group index), so class 0 is the head.

Memory: one source file at a time (the largest 64x64 batch file is about
1.6 GB) plus a chunk of --chunk images; the outputs are written as they are
read, never held whole. Disk: about 15.7 GB (64x64) or 3.9 GB (32x32) for
the training images. Files are written atomically (temporary name, then
rename). Exit status: 0 success, 2 bad input (message on stderr).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import List, Optional, Sequence, Tuple

import numpy as np

if __package__ in (None, ''):  # Run as a script: make the repo importable.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))

from data import downsampled_imagenet as source_files  # pylint: disable=g-import-not-at-top
from data import errors  # pylint: disable=g-import-not-at-top
from data import imagenet127  # pylint: disable=g-import-not-at-top

HEADER_BYTES = 128  # .npy v1.0 header, padded: room for any 4-D uint8 shape.
FULL_TRAIN = 1281167  # ILSVRC-2012 training images.


def npy_header(shape: Tuple[int, ...], dtype=np.uint8) -> bytes:
  """A .npy v1.0 header of exactly HEADER_BYTES bytes for a C-order array."""
  text = repr({'descr': np.lib.format.dtype_to_descr(np.dtype(dtype)),
               'fortran_order': False, 'shape': tuple(shape)})
  pad = HEADER_BYTES - 10 - len(text) - 1
  if pad < 0:
    raise ValueError(f'shape {shape} does not fit a {HEADER_BYTES}-byte header')
  text = (text + ' ' * pad + '\n').encode('latin1')
  return b'\x93NUMPY\x01\x00' + len(text).to_bytes(2, 'little') + text


class NpyWriter:
  """Appends rows to a .npy file whose length is known only at the end."""

  def __init__(self, path: str):
    self.path, self.tmp = path, path + '.tmp'
    self.rows, self.row_shape = 0, None
    self.f = open(self.tmp, 'wb')
    self.f.write(b'\0' * HEADER_BYTES)

  def append(self, rows: np.ndarray) -> None:
    if self.row_shape is None:
      self.row_shape = rows.shape[1:]
    assert rows.shape[1:] == self.row_shape and rows.dtype == np.uint8
    self.f.write(memoryview(np.ascontiguousarray(rows)).cast('B'))
    self.rows += len(rows)

  def close(self) -> None:
    self.f.seek(0)
    self.f.write(npy_header((self.rows,) + tuple(self.row_shape)))
    self.f.close()
    os.replace(self.tmp, self.path)

  def abort(self) -> None:
    self.f.close()
    if os.path.exists(self.tmp):
      os.remove(self.tmp)


def save_atomic(path: str, array: np.ndarray) -> None:
  with open(path + '.tmp', 'wb') as f:
    np.save(f, array, allow_pickle=False)
  os.replace(path + '.tmp', path)


def convert(paths: List[str], out_dir: Optional[str], name: str, size: int,
            groups: imagenet127.Groups, root: str, chunk: int,
            log=print) -> Tuple[np.ndarray, int, str]:
  """Writes the images of `paths` (in order) to `{name}_images.npy`.

  Args:
    out_dir: the output directory, or None to decide it from the first
      file's resolution (then `size` is that resolution or 0 for any).

  Returns:
    (group_index int64 [N] of every image, resolution, output directory).
  """
  writer, labels = None, []
  try:
    for path in paths:
      t0 = time.time()
      data, ds_labels, s = source_files.read_file(path)
      if size and s != size:
        raise errors.DataError(f'{path}: {s}x{s} images, but the other files '
                               f'(or --size) are {size}x{size}.')
      size = s
      if writer is None:
        out_dir = out_dir or imagenet127.directory(root, size)
        os.makedirs(out_dir, exist_ok=True)
        writer = NpyWriter(os.path.join(out_dir, f'{name}_images.npy'))
      for start in range(0, len(data), chunk):
        writer.append(source_files.to_nhwc(data[start:start + chunk], size))
      labels.append(groups.of_label[ds_labels])
      log(f'  {os.path.basename(path)}: {len(data)} images, '
          f'{time.time() - t0:.1f} s')
      del data
    writer.close()
  except BaseException:
    if writer is not None:
      writer.abort()
    raise
  return np.concatenate(labels), size, out_dir


def prepare(source: str, root: str, size: int = 0, chunk: int = 1024,
            log=print) -> str:
  """Converts one resolution. Returns the output directory.

  Raises:
    data.errors.DataError: missing or malformed source files, a group
      without training images, mixed resolutions.
  """
  groups = imagenet127.read_groups()
  train_paths, test_path = source_files.find_files(source)
  log(f'Training images from {len(train_paths)} file(s) in {source}:')
  train_groups, size, out_dir = convert(train_paths, None, 'train', size,
                                        groups, root, chunk, log)
  log(f'Test images from {os.path.basename(test_path)}:')
  test_groups, _, _ = convert([test_path], out_dir, 'test', size, groups,
                              root, chunk, log)
  k = imagenet127.NUM_CLASSES
  train_counts = np.bincount(train_groups, minlength=k)
  test_counts = np.bincount(test_groups, minlength=k)
  empty = np.flatnonzero(train_counts == 0)
  if empty.size:
    raise errors.DataError(
        f'{source}: no training images of ImageNet-127 group(s) '
        f'{[groups.names[g] for g in empty[:10]]}; the files do not hold the '
        f'whole downsampled ImageNet training set.')
  label_of_group = imagenet127.rank_labels(train_counts)
  save_atomic(os.path.join(out_dir, 'train_labels.npy'),
              label_of_group[train_groups])
  save_atomic(os.path.join(out_dir, 'test_labels.npy'),
              label_of_group[test_groups])
  rows = sorted(range(k), key=lambda g: label_of_group[g])
  tmp = os.path.join(out_dir, imagenet127.CLASSES_FILE + '.tmp')
  with open(tmp, 'w') as f:
    f.write('\t'.join(imagenet127.CLASSES_COLUMNS) + '\n')
    for g in rows:
      f.write(f'{label_of_group[g]}\t{g}\t{groups.synsets[g]}\t'
              f'{groups.names[g]}\t{train_counts[g]}\t{test_counts[g]}\n')
  os.replace(tmp, os.path.join(out_dir, imagenet127.CLASSES_FILE))
  n = int(train_counts.sum())
  log(f'Wrote {out_dir}: {n} training images ({size}x{size}), '
      f'{int(test_counts.sum())} test images; largest class '
      f'{groups.names[rows[0]]!r} ({train_counts[rows[0]]}), smallest '
      f'{groups.names[rows[-1]]!r} ({train_counts[rows[-1]]}), gamma '
      f'{train_counts[rows[0]] / train_counts[rows[-1]]:.1f}.')
  if n != FULL_TRAIN:
    log(f'Note: the full ILSVRC-2012 training set has {FULL_TRAIN} images; '
        f'these files hold {n}.')
  return out_dir


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--source', required=True,
                      help='directory of train_data_batch_* and val_data')
  parser.add_argument('--ml_data', default=os.environ.get('ML_DATA', ''),
                      help='data root (default: $ML_DATA)')
  parser.add_argument('--size', type=int, default=0, choices=[0, 32, 64],
                      help='expected resolution (default: read from the files)')
  parser.add_argument('--chunk', type=int, default=1024,
                      help='images converted at a time')
  args = parser.parse_args(argv)
  try:
    if not args.ml_data:
      raise errors.DataError('Set --ml_data (or ML_DATA) to the data root.')
    if args.chunk < 1:
      raise errors.DataError('--chunk must be >= 1.')
    prepare(args.source, args.ml_data, args.size, args.chunk)
  except errors.DataError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())
