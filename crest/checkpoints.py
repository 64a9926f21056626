"""A generation's checkpoints: multi-worker rules, unreadable-file fallback,
and the rollback record of input batches to skip.

Every worker saves; only the chief into the run directory (the others into
a temporary directory they delete); every worker restores from the chief's.
"""
from __future__ import annotations

import glob
import os
import shutil
import tempfile
from typing import List, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from crest import disk
from crest import records
from crest.errors import UserError

ROLLBACK_FILE = 'rollback.json'
MAX_ROLLBACKS = 3


class NonFiniteLossError(RuntimeError):
  """The training loss, the learning rate or the updated weights became NaN
  or infinite.

  Attributes:
    batches: the input-stream batch indices of the failing steps.
    advice: what to change (for the entry point's message).
  """

  def __init__(self, message: str, batches=(),
               advice: str = 'lower --learning_rate, set --clip_value, or '
               'use --do_rollback.'):
    super().__init__(message)
    self.batches = list(batches)
    self.advice = advice


class Checkpoints:
  """Saves and restores one `tf.train.Checkpoint` under `ckpt_dir`.

  Args:
    checkpoint: what to save (model, EMA, optimizer, running statistics).
    ckpt_dir: the chief's checkpoint directory.
    is_chief: whether this worker owns `ckpt_dir`.
    keep: checkpoints kept by the chief.
  """

  def __init__(self, checkpoint: tf.train.Checkpoint, ckpt_dir: str,
               is_chief: bool, keep: int, nbytes: Optional[int] = None):
    self.checkpoint = checkpoint
    self.nbytes = nbytes  # About what one checkpoint takes (for messages).
    self.ckpt_dir = ckpt_dir
    self.is_chief = is_chief
    if is_chief:
      _repair_state(ckpt_dir)
    save_dir = (ckpt_dir if is_chief else
                tempfile.mkdtemp(prefix='crest-worker-ckpt-'))
    self.manager = tf.train.CheckpointManager(
        checkpoint, save_dir, max_to_keep=keep if is_chief else 1)

  @property
  def directory(self) -> str:
    """Where this worker saves."""
    return self.manager.directory

  def paths(self) -> List[str]:
    """The chief's checkpoints, oldest first."""
    if self.is_chief:
      return list(self.manager.checkpoints)
    state = tf.train.get_checkpoint_state(self.ckpt_dir)
    return list(state.all_model_checkpoint_paths) if state else []

  def save(self, step: int) -> None:
    """Saves the checkpoint of `step`.

    Raises:
      crest.disk.DiskFullError: the disk is full (the partial files are
        removed; the previous checkpoints are kept).
    """
    try:
      with disk.writing(self.manager.directory, self._size()):
        self.manager.save(checkpoint_number=step)
    except disk.DiskFullError:
      for partial in glob.glob(os.path.join(self.manager.directory,
                                            f'ckpt-{step}_temp*')):
        shutil.rmtree(partial, ignore_errors=True)
      raise

  def _size(self) -> Optional[int]:
    """Bytes of the newest checkpoint on disk, else the estimate."""
    latest = self.manager.latest_checkpoint
    if latest:
      sizes = [os.path.getsize(p) for p in glob.glob(latest + '.*')]
      if sizes:
        return sum(sizes)
    return self.nbytes

  def restore_latest(self) -> Optional[str]:
    """Restores the newest readable checkpoint; returns its path (None if
    there is none). An unreadable one (truncated, corrupt) is reported and
    the previous one used.

    Raises:
      UserError: checkpoints exist but none is readable.
    """
    for path in reversed(self.paths()):
      try:
        self.checkpoint.restore(path).assert_existing_objects_matched()
      except Exception as e:  # pylint: disable=broad-except
        # Truncated files raise IndexError, corrupt ones OpError/ValueError.
        logging.warning('Checkpoint %s is unreadable (%s: %s); falling back '
                        'to the previous one.', path, type(e).__name__,
                        str(e).splitlines()[0][:200])
        continue
      return path
    if self.paths():
      raise UserError(
          f'No readable checkpoint in {self.ckpt_dir}; delete that '
          'directory to retrain this generation, or use --force_init.')
    return None

  def finish(self) -> None:
    """A worker's temporary checkpoints are deleted when it is done."""
    if not self.is_chief:
      shutil.rmtree(self.manager.directory, ignore_errors=True)


def _repair_state(ckpt_dir: str) -> None:
  """Rewrites an unreadable `checkpoint` state file from the checkpoint
  files there (else TensorFlow would see no checkpoint and retrain)."""
  numbered = []
  for index in glob.glob(os.path.join(ckpt_dir, 'ckpt-*.index')):
    prefix = index[:-len('.index')]
    number = prefix.rsplit('-', 1)[-1]
    if number.isdigit():
      numbered.append((int(number), prefix))
  if not numbered or tf.train.get_checkpoint_state(ckpt_dir) is not None:
    return
  paths = [p for _, p in sorted(numbered)]
  logging.warning('The checkpoint state file in %s is missing or unreadable; '
                  'rebuilding it from %d checkpoint(s).', ckpt_dir,
                  len(paths))
  times = []  # Increasing with the step, after the "preserved" time.
  for p in paths:
    t = os.path.getmtime(p + '.index')
    times.append(max(t, times[-1] + 1e-3) if times else t)
  with disk.writing(ckpt_dir, 4096):
    tf.compat.v1.train.update_checkpoint_state(
        ckpt_dir, os.path.basename(paths[-1]),
        all_model_checkpoint_paths=[os.path.basename(p) for p in paths],
        all_model_checkpoint_timestamps=times,
        last_preserved_timestamp=times[0] - 1.0)


def read_skipped(work_dir: str) -> List[int]:
  """Input batches a rollback decided to skip (none if never rolled back).

  Raises:
    UserError: the rollback record is unreadable.
  """
  path = os.path.join(work_dir, ROLLBACK_FILE)
  if not os.path.exists(path):
    return []
  try:
    skipped = records.read_json(path)['skipped']
    if not all(isinstance(b, int) and b >= 0 for b in skipped):
      raise ValueError('not a list of batch indices')
    return list(skipped)
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise UserError(
        f'{path} (the input batches a rollback skips) is unreadable ({e}). '
        'Delete it to resume without skipping them (a non-finite loss there '
        'rolls back again), or use --force_init to start over.') from None


def write_skipped(work_dir: str, skipped: List[int]) -> None:
  records.write_json(os.path.join(work_dir, ROLLBACK_FILE),
                     {'skipped': sorted(skipped)})


def check_finite(cfg, loss: float, lr: float, weights_finite: bool, batches,
                 where: str) -> None:
  """Raises NonFiniteLossError unless a training call's loss, the learning
  rate it applied and the updated weights are all finite (the caller saves
  nothing before this check).

  Args:
    cfg: the run's config (for the advice on a bad learning rate).
    loss, lr: the last step's loss and learning rate.
    weights_finite: whether every model variable is finite.
    batches: the input-stream batch indices of the call (to skip them on
      rollback).
    where: e.g. 'at step 12 (epoch 2)', for the message.
  """
  if not np.isfinite(lr):
    raise NonFiniteLossError(
        f'The learning rate became {lr} {where}.', batches,
        advice=f'check --learning_rate={cfg.learning_rate:g} and the '
        f'schedule (--sched_type={cfg.sched_type}, --sched_gamma='
        f'{cfg.sched_gamma:g}, --sched_min_rate={cfg.sched_min_rate:g}, '
        f'--sched_level={cfg.sched_level}).')
  if not np.isfinite(loss):
    raise NonFiniteLossError(f'The training loss became {loss} {where}.',
                             batches)
  if not weights_finite:
    raise NonFiniteLossError(
        f'The model weights became NaN or infinite {where} (the loss was '
        f'{loss:.4g}).', batches)
