"""A full disk: one error with the path and the space needed.

Every write that can fill a disk (records, checkpoints, TensorBoard events)
runs inside `writing(path, needed_bytes)`, which turns the operating
system's ENOSPC / EDQUOT, or TensorFlow's error carrying "No space left on
device", into `DiskFullError`: a `crest.errors.UserError`, so exit code 2
with a message instead of a traceback.

Needs no TensorFlow: its errors are recognised by their message.
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
from typing import Iterator, Optional

from crest.errors import UserError

NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
NO_SPACE_TEXTS = ('No space left on device', 'Disk quota exceeded')


class DiskFullError(UserError):
  """A write failed because the disk (or the quota) is full."""


def is_disk_full(e: BaseException) -> bool:
  """Whether `e` is a failed write to a full disk or quota."""
  if isinstance(e, OSError) and e.errno in NO_SPACE_ERRNOS:
    return True
  return (type(e).__module__.startswith('tensorflow')
          and any(t in str(e) for t in NO_SPACE_TEXTS))


def free_bytes(path: str) -> Optional[int]:
  """Free bytes on the filesystem of `path` (or of its nearest existing
  parent); None if unknown."""
  p = os.path.abspath(path)
  while not os.path.exists(p) and os.path.dirname(p) != p:
    p = os.path.dirname(p)
  try:
    return shutil.disk_usage(p).free
  except OSError:
    return None


def format_bytes(n: Optional[int]) -> str:
  if n is None:
    return 'an unknown amount'
  for unit, size in (('GB', 1e9), ('MB', 1e6), ('kB', 1e3)):
    if n >= size:
      return f'{n / size:.1f} {unit}'
  return f'{int(n)} bytes'


def error(path: str, needed_bytes: Optional[int],
          cause: BaseException) -> DiskFullError:
  """The DiskFullError of a failed write of about `needed_bytes` to `path`."""
  reason = (cause.strerror if isinstance(cause, OSError) and cause.strerror
            else next((t for t in NO_SPACE_TEXTS if t in str(cause)),
                      NO_SPACE_TEXTS[0]))
  return DiskFullError(
      f'Cannot write {path}: {reason} (the write needs about '
      f'{format_bytes(needed_bytes)}; {format_bytes(free_bytes(path))} free '
      'there). Free space or choose another --model_dir; re-running the same '
      'command resumes from the last complete checkpoint.')


@contextlib.contextmanager
def writing(path: str, needed_bytes: Optional[int]) -> Iterator[None]:
  """Turns a full-disk failure of the enclosed write into DiskFullError."""
  try:
    yield
  except DiskFullError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    if is_disk_full(e):
      raise error(path, needed_bytes, e) from None
    raise
