"""A generation's training input: the stateless stream of
`data.pipeline.train_dataset`, resumed at a step, with the batches a
rollback decided to skip left out.

Each worker builds only its own replicas' rows of every global batch
(`pipeline.ReplicaShare`, through `distribute_datasets_from_function`), so
input work per worker does not grow with the number of workers, and each
replica still gets exactly its slice of the batch one machine would build.
"""
from __future__ import annotations

from typing import Iterable, List

import numpy as np
import tensorflow as tf

from crest.config import Config
from data import pipeline
from data.base import SSLData


def first_batch(step: int, skipped: Iterable[int]) -> int:
  """The stream's batch index of training step `step` when the batches in
  `skipped` are left out (each skipped index at or before it shifts it)."""
  index = int(step)
  for k in sorted(skipped):
    if k <= index:
      index += 1
  return index


class BatchCounter:
  """The stream indices of the next steps, skipping `skipped` (for naming
  the batches of a step whose loss became non-finite)."""

  def __init__(self, start: int, skipped: Iterable[int]):
    self.next_index = int(start)
    self.skipped = frozenset(skipped)

  def take(self, n: int) -> List[int]:
    """The stream indices of the next `n` steps."""
    out = []
    while len(out) < n:
      if self.next_index not in self.skipped:
        out.append(self.next_index)
      self.next_index += 1
    return out


def distributed_iterator(cfg: Config, strategy: tf.distribute.Strategy,
                         data: SSLData, labeled_positions: np.ndarray,
                         labeled_labels: np.ndarray, seed: int, step: int,
                         skipped: List[int]):
  """(distributed iterator from training step `step` to the generation's
  end, BatchCounter of the same steps)."""
  start = first_batch(step, skipped)
  spec = pipeline.StreamSpec(
      batch_size=cfg.batch_size, unlab_ratio=cfg.unlab_ratio,
      augment=cfg.augment, weakaug=cfg.weakaug, strongaug=cfg.strongaug,
      num_weakaug=cfg.num_weakaug, num_strongaug=cfg.num_strongaug,
      seed=seed)
  stream = data.unlabeled_stream_positions

  def worker_dataset(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
    return pipeline.train_dataset(
        data.train_images, labeled_positions, labeled_labels, stream,
        data.train_labels[stream], spec, start_step=start,
        num_steps=cfg.steps_per_generation - step, skip=skipped,
        share=worker_share(ctx))

  iterator = iter(strategy.distribute_datasets_from_function(worker_dataset))
  return iterator, BatchCounter(start, skipped)


def worker_share(ctx: tf.distribute.InputContext) -> pipeline.ReplicaShare:
  """The replicas input pipeline `ctx.input_pipeline_id` (one per worker)
  feeds: worker w of W holds global replicas [w R / W, (w + 1) R / W), as
  MultiWorkerMirroredStrategy numbers them."""
  total, workers = ctx.num_replicas_in_sync, ctx.num_input_pipelines
  if total % workers:
    raise ValueError(f'{total} replicas do not split evenly over {workers} '
                     'workers; give every worker the same number of devices.')
  local = total // workers
  return pipeline.ReplicaShare(first=ctx.input_pipeline_id * local,
                               local=local, total=total)
