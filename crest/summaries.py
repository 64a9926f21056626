"""TensorBoard scalar summaries with core TensorFlow only.

`tf.summary.scalar` needs the `tensorboard` package; the event files it
writes are plain `tf.summary.write` calls with the scalars plugin's metadata,
which core TensorFlow can write itself. Viewing them needs TensorBoard
(`pip install tensorboard`), training does not.
"""
from __future__ import annotations

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(
        plugin_name='scalars')).SerializeToString()


def scalar(tag: str, value: float, step: int) -> None:
  """Writes one scalar to the default summary writer."""
  tf.summary.write(tag, tf.constant(value, tf.float32), step=step,
                   metadata=_SCALAR_METADATA)
