"""A generation's epoch log: the message line, TensorBoard scalars and the
`stats/` JSON files, and the history they are made from.

TensorBoard scalar summaries with core TensorFlow only:

`tf.summary.scalar` needs the `tensorboard` package; the event files it
writes are plain `tf.summary.write` calls with the scalars plugin's metadata,
which core TensorFlow can write itself. Viewing them needs TensorBoard
(`pip install tensorboard`), training does not.
"""
from __future__ import annotations

import os
from typing import Dict, List

import tensorflow as tf
from absl import logging
from tensorflow.core.framework import summary_pb2

from crest import disk
from crest import records
from crest.errors import UserError

# About what one epoch's TensorBoard events take (for a full-disk message).
TB_BYTES_PER_EPOCH = 64 * 1024

_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(
        plugin_name='scalars')).SerializeToString()


def scalar(tag: str, value: float, step: int) -> None:
  """Writes one scalar to the default summary writer."""
  tf.summary.write(tag, tf.constant(value, tf.float32), step=step,
                   metadata=_SCALAR_METADATA)


class EpochLog:
  """Per-epoch values of one generation, written where they belong.

  Args:
    work_dir: the generation's directory (`tb/` and `stats/` inside).
    is_chief: only the chief writes files; every worker logs.
    num_epoch, num_batch: the generation's length (for the step axis).
  """

  def __init__(self, work_dir: str, is_chief: bool, num_epoch: int,
               num_batch: int):
    self.name = os.path.basename(work_dir)
    self.stats_dir = os.path.join(work_dir, 'stats')
    self.is_chief = is_chief
    self.num_epoch, self.num_batch = num_epoch, num_batch
    self.tb_dir = os.path.join(work_dir, 'tb')
    with disk.writing(self.tb_dir, TB_BYTES_PER_EPOCH):
      self.writer = (tf.summary.create_file_writer(self.tb_dir)
                     if is_chief else tf.summary.create_noop_writer())
    self.history: Dict[str, List] = {}

  def restore(self, epochs_done: int) -> None:
    """Reloads the history of the first `epochs_done` epochs (a resumed
    generation); nothing when none is done."""
    path = os.path.join(self.stats_dir, 'history.json')
    self.history = {}
    if epochs_done and os.path.exists(path):
      try:
        history = records.read_json(path)
        ok = isinstance(history, dict) and all(
            isinstance(v, list) and len(v) >= epochs_done
            for v in history.values())
      except (OSError, ValueError) as e:
        history, ok = str(e), False
      if not ok:
        raise UserError(
            f'{path} is damaged or shorter than the {epochs_done} epoch(s) '
            'the checkpoint has done; the generation\'s record and '
            'statistics are computed from that history. Delete '
            f'{os.path.dirname(self.stats_dir)} to train this generation '
            'again, or use --force_init to start the run over.')
      self.history = {k: v[:epochs_done] for k, v in history.items()}

  def log(self, epoch: int, values: Dict[str, object]) -> None:
    """Appends one epoch's values (floats, or per-class lists) and writes
    the log line, the scalars and the statistics files."""
    for k, v in values.items():
      self.history.setdefault(k, []).append(v)
    logging.info(
        '%s epoch %d/%d: loss %.4f xe %.4f xeu %.4f mask %.3f | test %.4f '
        'ema %.4f (la %.4f / %.4f) | %.2f steps/s', self.name, epoch + 1,
        self.num_epoch, values['loss.train'], values['loss.xe'],
        values['loss.xeu'], values['monitor.mask'], values['acc.test'],
        values['acc.test.ema'], values['acc.test.la'],
        values['acc.test.la.ema'], values['monitor.steps_per_sec'])
    if not self.is_chief:
      return
    step = (epoch + 1) * self.num_batch
    with disk.writing(self.tb_dir, TB_BYTES_PER_EPOCH), \
        self.writer.as_default():
      for k, v in values.items():
        if isinstance(v, list):
          for c, x in enumerate(v):
            scalar(f'{k}/class_{c:03d}', x, step)
        else:
          scalar(k, v, step)
      self.writer.flush()
    records.write_stats(self.stats_dir, self.history)
