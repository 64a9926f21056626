"""The training input pipeline: index-based, stateless, resumable.

Batch `s` of a generation is a pure function of `(seed, s)`: which examples it
holds (each stream walks through successive random permutations of its
examples, one permutation per pass, drawn from the pass number) and the seeds
of their augmentations. Resuming at step `s` therefore rebuilds exactly the
stream an uninterrupted run would have seen, without saving iterator state,
and two runs with the same seed see the same batches.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence
import numpy as np
import tensorflow as tf

from augment import registry as augment_registry

# Stream identifiers folded into the seed.
_LABELED, _UNLABELED, _AUG_L, _AUG_W, _AUG_S = 1, 2, 3, 4, 5


@dataclasses.dataclass(frozen=True)
class StreamSpec:
  """How batches are drawn and augmented (global sizes)."""
  batch_size: int
  unlab_ratio: int
  augment: str
  weakaug: str
  strongaug: str
  num_weakaug: int
  num_strongaug: int
  seed: int


def _fold(seed: tf.Tensor, *values) -> tf.Tensor:
  for v in values:
    seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(v, tf.int64))
  return seed


def stream_indices(seed: tf.Tensor, step: tf.Tensor, batch: int,
                   size: int) -> tf.Tensor:
  """Indices in [0, size) of batch `step` of an endless shuffled stream.

  Element i of the stream (i = step * batch + j) is `perm_p[i % size]`, where
  p = i // size and perm_p is a permutation drawn from `(seed, p)`.

  Returns: int64 [batch].
  """
  step = tf.cast(step, tf.int64)
  i = step * batch + tf.range(batch, dtype=tf.int64)
  passes = i // size
  offsets = i % size
  first = passes[0]
  num_passes = passes[-1] - first + 1

  def perm(p):
    keys = tf.random.stateless_uniform([size], _fold(seed, p))
    return tf.argsort(keys, stable=True)

  perms = tf.map_fn(perm, first + tf.range(num_passes),
                    fn_output_signature=tf.TensorSpec([size], tf.int32))
  idx = tf.gather_nd(perms, tf.stack([passes - first, offsets], axis=1))
  return tf.cast(idx, tf.int64)


def _views(fn, images: tf.Tensor, num: int, seed: tf.Tensor) -> tf.Tensor:
  """`num` augmented views of `images` [N,H,W,C] -> float32 [N,num,H,W,C]."""
  if num == 0:
    shape = tf.shape(images)
    return tf.zeros([shape[0], 0, shape[1], shape[2], shape[3]], tf.float32)
  views = [fn(images, _fold(seed, v)) for v in range(num)]
  return tf.stack(views, axis=1)


def row_gather(images: np.ndarray):
  """A function positions int64 [n] -> uint8 [n, H, W, C], rows of `images`.

  An in-memory array becomes one constant, gathered in the graph. A
  memory-mapped one (`np.load(..., mmap_mode='r')`, e.g. ImageNet-127) is
  never copied whole: each batch reads its rows from the file (in ascending
  order, through the page cache). Both give the same batches.
  """
  if not isinstance(images, np.memmap):
    images_t = tf.constant(images)
    return lambda positions: tf.gather(images_t, positions)
  row_shape = tuple(images.shape[1:])

  def read(positions):
    order = np.argsort(positions, kind='stable')
    rows = np.empty((len(positions),) + row_shape, images.dtype)
    rows[order] = images[positions[order]]
    return rows

  def gather(positions):
    rows = tf.numpy_function(read, [positions], tf.as_dtype(images.dtype),
                             stateful=False)
    rows.set_shape(positions.shape.concatenate(row_shape))
    return rows

  return gather


def train_dataset(images: np.ndarray, labeled_positions: np.ndarray,
                  labeled_labels: np.ndarray, stream_positions: np.ndarray,
                  stream_labels: np.ndarray, spec: StreamSpec,
                  start_step: int, num_steps: int,
                  skip: Sequence[int] = ()) -> tf.data.Dataset:
  """`num_steps` batches of the training stream, from batch `start_step` on.

  Args:
    images: uint8 [N, H, W, C], the training images (in memory or
      memory-mapped; see `row_gather`).
    labeled_positions: int [L], rows of `images` in the labeled set.
    labeled_labels: int [L], the labels they are trained with.
    stream_positions: int [M], rows the unlabeled stream draws from.
    stream_labels: int [M], their true labels (monitoring only).
    spec: batch sizes, augmentations and seed.
    start_step: index of the first batch of the stream to produce.
    num_steps: how many batches to produce.
    skip: batch indices to leave out (batches that made the loss
      non-finite, with --do_rollback); later batches move up.

  Returns:
    A dataset of global batches, one per step, each a dict:
      'x_l' float32 [B, H, W, C], 'y_l' int64 [B],
      'x_w' float32 [uB, num_weakaug, H, W, C],
      'x_s' float32 [uB, num_strongaug, H, W, C], 'y_u' int64 [uB].
  """
  size = images.shape[1]
  aug_l = augment_registry.build(spec.augment, size)
  aug_w = augment_registry.build(spec.weakaug, size)
  aug_s = augment_registry.build(spec.strongaug, size)
  gather_rows = row_gather(images)
  lab_pos = tf.constant(np.asarray(labeled_positions, np.int64))
  lab_y = tf.constant(np.asarray(labeled_labels, np.int64))
  str_pos = tf.constant(np.asarray(stream_positions, np.int64))
  str_y = tf.constant(np.asarray(stream_labels, np.int64))
  seed = tf.constant([spec.seed, 0x5EED], tf.int64)
  bl, bu = spec.batch_size, spec.batch_size * spec.unlab_ratio
  n_l, n_u = len(labeled_positions), len(stream_positions)

  def make(step):
    il = stream_indices(_fold(seed, _LABELED), step, bl, n_l)
    iu = stream_indices(_fold(seed, _UNLABELED), step, bu, n_u)
    xl = gather_rows(tf.gather(lab_pos, il))
    xu = gather_rows(tf.gather(str_pos, iu))
    out = {
        'x_l': aug_l(xl, _fold(seed, _AUG_L, step)),
        'y_l': tf.gather(lab_y, il),
        'x_w': _views(aug_w, xu, spec.num_weakaug, _fold(seed, _AUG_W, step)),
        'x_s': _views(aug_s, xu, spec.num_strongaug,
                      _fold(seed, _AUG_S, step)),
        'y_u': tf.gather(str_y, iu),
    }
    return out

  skip = sorted(int(i) for i in skip if i >= start_step)
  ds = tf.data.Dataset.range(start_step, start_step + num_steps + len(skip))
  if skip:
    skipped = tf.constant(skip, tf.int64)
    ds = ds.filter(lambda s: tf.logical_not(tf.reduce_any(tf.equal(s,
                                                                  skipped))))
  # Autograph is off: the control flow in `make` is over Python values, and
  # converting it and the augmentations cost seconds per generation.
  ds = ds.map(tf.autograph.experimental.do_not_convert(make),
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.prefetch(tf.data.AUTOTUNE)


def shard_by_data(ds: tf.data.Dataset) -> tf.data.Dataset:
  """Shards global batches by element across workers.

  Every worker builds the same global batches; under
  MultiWorkerMirroredStrategy each takes its contiguous slice of every batch
  (worker w of W gets rows [w B / W, (w + 1) B / W)), which is exactly how
  one machine splits a batch among its replicas.
  """
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = (
      tf.data.experimental.AutoShardPolicy.DATA)
  return ds.with_options(options)
