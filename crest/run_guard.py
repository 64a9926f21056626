"""What keeps a run directory honest: one writer, and the same data.

- `RunLock`: an exclusive `fcntl.flock` on `run.lock` in the run directory,
  held by the chief for the whole run (the other workers of a multi-worker
  run write nothing and take no lock). The operating system releases it
  when the process ends, however it ends (SIGKILL included), so a lock is
  never stale; a second process into the same directory is refused.
- `check_data`: the run records its data's fingerprint
  (`data.fingerprint`) in `data.json` when it starts; a resumed attempt
  whose data differ is refused (its later generations would train on
  positions and pseudo-labels of the old data).
"""
from __future__ import annotations

import errno
import fcntl
import os
import shutil
import socket
import time
from typing import Any, Dict

from absl import logging
import numpy as np

from crest import records
from crest import run_dir as run_dir_lib
from crest.config import Config
from crest.errors import UserError
from data import fingerprint as fingerprint_lib
from data import registry as data_registry
from data.base import SSLData


class RunLock:
  """`with RunLock(run_dir, is_chief):` holds the run directory's lock.

  Raises (on entry):
    UserError: another process holds it, or the directory cannot be made.
  """

  def __init__(self, run_dir: str, is_chief: bool = True):
    self.run_dir = run_dir
    self.path = os.path.join(run_dir, run_dir_lib.LOCK_FILE)
    self.is_chief = is_chief
    self.fd = None

  def __enter__(self) -> 'RunLock':
    if not self.is_chief:
      return self
    try:
      os.makedirs(self.run_dir, exist_ok=True)
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise UserError(f'Cannot write to the run directory {self.run_dir}: '
                      f'{e}. Choose a writable --model_dir with free space.'
                      ) from None
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 200, 0).decode('utf-8', 'replace').strip()
      os.close(fd)
      holder = holder or f'its lock {self.path} is held'
      raise UserError(
          f'Another process is writing to {self.run_dir} ({holder}). Two '
          'runs in one directory would '
          'overwrite each other\'s checkpoints and records: wait for it to '
          'finish or stop it, or use another --model_dir / --file_suffix.'
      ) from None
    except OSError as e:  # A filesystem without locks.
      if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
        os.close(fd)
        raise
      logging.warning('Cannot lock %s (%s): nothing stops a second run from '
                      'writing into this directory.', self.path, e)
    try:
      os.ftruncate(fd, 0)
      os.pwrite(fd, (f'pid {os.getpid()} on {socket.gethostname()}, since '
                     f'{time.strftime("%Y-%m-%d %H:%M:%S")}\n').encode(), 0)
    except OSError:
      pass  # The lock holds without the note.
    self.fd = fd
    return self

  def __exit__(self, *exc) -> None:
    if self.fd is not None:
      os.close(self.fd)  # Releases the lock.
      self.fd = None


def clear(run_dir: str) -> None:
  """Deletes everything in `run_dir` but its lock (--force_init)."""
  for name in os.listdir(run_dir):
    if name == run_dir_lib.LOCK_FILE:
      continue
    path = os.path.join(run_dir, name)
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path)
    else:
      os.remove(path)


def describe_source(cfg: Config) -> str:
  """Where `cfg`'s data come from, for messages."""
  if cfg.data_file:
    return f'--data_file={cfg.data_file}'
  if data_registry.needs_ml_data(cfg.dataset) and cfg.ml_data:
    return f'--dataset={cfg.dataset} under --ml_data={cfg.ml_data}'
  return f'--dataset={cfg.dataset}'


def check_data(run_dir: str, cfg: Config, data: SSLData,
               is_chief: bool = True) -> Dict[str, Any]:
  """Records the data's fingerprint in `data.json` (first attempt, chief)
  or checks the data against it (later attempts).

  Returns: the current fingerprint.

  Raises:
    UserError: the data differ from those the run was started with, or
      `data.json` is unreadable.
  """
  start = time.time()
  current = fingerprint_lib.fingerprint(data)
  logging.info('Data fingerprint computed in %.2f s.', time.time() - start)
  path = os.path.join(run_dir, run_dir_lib.DATA_FILE)
  source = describe_source(cfg)
  if os.path.exists(path):
    try:
      recorded = records.read_json(path)
      if not isinstance(recorded, dict):
        raise ValueError('not a JSON object')
    except (OSError, ValueError) as e:
      raise UserError(
          f'{path} (the fingerprint of the data this run was started with) '
          f'is unreadable ({e}). If the data are unchanged, delete that file '
          'to record them again; else use --force_init to start over.'
      ) from None
    if not fingerprint_lib.comparable(recorded, current):
      logging.warning('%s was made by another version of the fingerprint; '
                      'recording the current data\'s instead (they are not '
                      'compared this once).', path)
      if is_chief:
        _record(path, current, source, data)
      return current
    diff = fingerprint_lib.differences(recorded, current)
    if diff:
      raise UserError(
          f'The data changed since this run started: {source} now gives '
          f'other {", ".join(diff)} than the fingerprint recorded in {path}. '
          'Resuming would train the next generations on positions and '
          'pseudo-labels of the old data. Restore the original data, or use '
          '--force_init to start this run over on the new data (or another '
          '--model_dir / --file_suffix).')
  elif is_chief:
    _record(path, current, source, data)
  return current


def _record(path: str, current: Dict[str, Any], source: str,
            data: SSLData) -> None:
  """Writes data.json: the fingerprint, where the data come from, and the
  training images per class."""
  records.write_json(path, dict(current, source=source,
                                train_per_class=train_per_class(data)))


def train_per_class(data: SSLData) -> list:
  """Training images per class (labeled + unlabeled pool), [K] ints: the
  data's own imbalance, which the tables show for data used as is."""
  positions = np.union1d(np.asarray(data.labeled_positions),
                         np.asarray(data.unlabeled_positions))
  labels = np.asarray(data.train_labels)[positions].reshape(-1).astype(
      np.int64)
  labels = labels[labels >= 0]  # Unlabeled images without a label (STL-10).
  return np.bincount(labels, minlength=int(data.num_classes)).tolist()
