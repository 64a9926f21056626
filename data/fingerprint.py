"""A fingerprint of loaded data: SHA-256 digests of its arrays.

`fingerprint(data)` digests every array of a `data.base.SSLData` (images,
labels, the labeled / unlabeled / stream positions, the class prior) with
its shape and dtype. Arrays of up to `FULL_BYTES` are hashed in full (all
of CIFAR-10/100, 184 MB: about 0.15 s here). A larger array (a memory-mapped
ImageNet-127 training set: 3.9 GB at 32 px, 15.7 GB at 64 px) is hashed on
`BLOCKS` evenly spaced runs of consecutive rows, `FULL_BYTES` in all, so
that about as much is read whatever its size, in long sequential reads
(strided single rows would make the kernel's read-ahead pull in much of the
file). Labels and positions (8 bytes per example) are always hashed in
full. A change confined to rows between the blocks goes unnoticed there;
relabelled, re-ordered, re-sized or regenerated data do not.
"""
from __future__ import annotations

import hashlib
from typing import Any, Dict

import numpy as np

from data import base

ALGORITHM = 'sha256'
VERSION = 1  # Of the digest's definition; other versions do not compare.
FULL_BYTES = 256 * 2 ** 20
BLOCKS = 64
PARTS = ('train_images', 'train_labels', 'test_images', 'test_labels',
         'labeled_positions', 'unlabeled_positions',
         'unlabeled_stream_positions', 'gt_p_data')


def array_digest(a: np.ndarray, full_bytes: int = FULL_BYTES,
                 blocks: int = BLOCKS) -> Dict[str, Any]:
  """The digest of one array (in memory or memory-mapped).

  Returns:
    {'shape': [...], 'dtype': str, 'sample': 'all' or [blocks, rows per
    block], 'sha256': hex digest of the shape, dtype, sample and the rows
    hashed}.
  """
  a = np.asarray(a)
  n = a.shape[0] if a.ndim else 1
  if a.nbytes <= full_bytes or n <= blocks:
    sample, starts, rows = 'all', [0], n
  else:
    rows = max(1, full_bytes // (blocks * max(1, a.nbytes // n)))
    starts = sorted(set(np.linspace(0, n - rows, blocks).round()
                        .astype(int).tolist()))
    sample = [len(starts), rows]
  h = hashlib.new(ALGORITHM)
  h.update(repr((list(a.shape), a.dtype.str, sample)).encode())
  flat = a.reshape(1) if not a.ndim else a
  for start in starts:
    block = np.ascontiguousarray(flat[start:start + rows])
    h.update(block.reshape(-1).view(np.uint8))
  return {'shape': list(a.shape), 'dtype': a.dtype.str, 'sample': sample,
          ALGORITHM: h.hexdigest()}


def fingerprint(data: base.SSLData, full_bytes: int = FULL_BYTES
                ) -> Dict[str, Any]:
  """The fingerprint of a loaded dataset.

  Returns:
    {'algorithm': 'sha256', 'num_classes': K, 'parts': {name:
    array_digest}} for every name of `PARTS`.
  """
  return {'algorithm': ALGORITHM, 'version': VERSION,
          'num_classes': int(data.num_classes),
          'parts': {name: array_digest(getattr(data, name), full_bytes)
                    for name in PARTS}}


def comparable(recorded: Dict[str, Any], current: Dict[str, Any]) -> bool:
  """Whether two fingerprints were made the same way (algorithm, version)."""
  return all(recorded.get(k) == current.get(k)
             for k in ('algorithm', 'version'))


def differences(recorded: Dict[str, Any], current: Dict[str, Any]) -> list:
  """Names of the parts (or 'num_classes') that differ between two
  comparable fingerprints, [] when they match."""
  out = [k for k in ('num_classes',) if recorded.get(k) != current.get(k)]
  rec_parts = recorded.get('parts') if isinstance(
      recorded.get('parts'), dict) else {}
  for name, digest in current['parts'].items():
    if rec_parts.get(name) != digest:
      out.append(name)
  return out
