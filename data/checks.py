"""Checks of loaded data shared by the loaders; failures are DataError."""
from __future__ import annotations

import os

import numpy as np

from data import errors


def check_labels(labels: np.ndarray, num_classes: int, where: str,
                 hint: str = '') -> None:
  """Every label in [0, K).

  Args:
    labels: int [N].
    num_classes: K.
    where: what the labels came from (a path), for the message.
    hint: how to fix it.
  """
  labels = np.asarray(labels)
  bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
  if bad.size:
    raise errors.DataError(
        f'{where}: label {int(labels[bad[0]])} at position {int(bad[0])} is '
        f'out of range; expected labels in [0, {num_classes}). '
        + (f'Re-create the file: {hint}.' if hint else ''))


def check_every_class(labels: np.ndarray, num_classes: int, where: str,
                      hint: str = '') -> None:
  """Every class 0..K-1 occurs in `labels` (int [N])."""
  counts = np.bincount(np.asarray(labels, np.int64), minlength=num_classes)
  empty = np.flatnonzero(counts[:num_classes] == 0)
  if empty.size:
    raise errors.DataError(
        f'{where}: no examples of class(es) {empty.tolist()}; every class in '
        f'[0, {num_classes}) needs examples. '
        + (f'Re-create the data: {hint}.' if hint else ''))


def check_split(labels: np.ndarray, labeled: np.ndarray, num_classes: int,
                dataset: str) -> None:
  """The labeled set has at least one example of every class.

  Args:
    labels: int [N], training labels.
    labeled: int [L], labeled positions.
    num_classes: K.
    dataset: dataset name, for the message.
  """
  counts = np.bincount(np.asarray(labels)[np.asarray(labeled, np.int64)],
                       minlength=num_classes)
  empty = np.flatnonzero(counts == 0)
  if empty.size:
    raise errors.DataError(
        f'Dataset {dataset!r}: after the labeled split, class(es) '
        f'{empty.tolist()} have no labeled example. Increase '
        f'--percent_labeled / --num_labeled, or use data with more examples '
        f'of those classes.')


def check_images(images: np.ndarray, shape: tuple, where: str,
                 hint: str = '') -> None:
  """Images are uint8 [N, *shape]."""
  if images.dtype != np.uint8 or tuple(images.shape[1:]) != tuple(shape):
    raise errors.DataError(
        f'{where}: images are {images.dtype} {list(images.shape)}, expected '
        f'uint8 [N, {", ".join(str(s) for s in shape)}]. '
        + (f'Re-create the data: {hint}.' if hint else ''))


def open_npy(path: str, hint: str, mmap: bool) -> np.ndarray:
  """A prepared `.npy` array, memory-mapped (read-only) if `mmap`.

  Raises:
    data.errors.DataError: missing or unreadable, naming the command that
      prepares it (`hint`).
  """
  try:
    return np.load(path, mmap_mode='r' if mmap else None, allow_pickle=False)
  except FileNotFoundError:
    raise errors.DataError(f'No file {path}. Prepare the data: {hint}.'
                           ) from None
  except (OSError, ValueError) as e:
    raise errors.DataError(f'{path}: not a readable .npy file ({e}). '
                           f'Re-create it: {hint}.') from None


def open_prepared_part(directory: str, part: str, size: int,
                       hint: str) -> tuple:
  """A prepared part (`{part}_images.npy`, `{part}_labels.npy` in
  `directory`): (memory-mapped uint8 [N, size, size, 3], int64 [N] labels),
  shapes and dtypes checked; the caller checks the label values.

  Raises:
    data.errors.DataError: missing files, wrong dtypes or shapes.
  """
  images = open_npy(os.path.join(directory, f'{part}_images.npy'), hint,
                    mmap=True)
  labels_path = os.path.join(directory, f'{part}_labels.npy')
  labels = open_npy(labels_path, hint, mmap=False)
  check_images(images, (size, size, 3), images.filename, hint)
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or len(
      labels) != len(images):
    raise errors.DataError(
        f'{labels_path}: {labels.dtype} {list(labels.shape)}, expected '
        f'{len(images)} integer labels (one per image). Re-create it: {hint}.')
  return images, labels.astype(np.int64), labels_path
