"""The training input pipeline: index-based, stateless, resumable.

Batch `s` of a generation is a pure function of `(seed, s)`: which examples it
holds (each stream walks through successive random permutations of its
examples, one permutation per pass, drawn from the pass number) and the seeds
of their augmentations. Resuming at step `s` therefore rebuilds exactly the
stream an uninterrupted run would have seen, without saving iterator state,
and two runs with the same seed see the same batches.

`ReplicaShare` makes a worker's dataset yield only its replicas' rows of
each global batch (per-worker input under MultiWorkerMirroredStrategy):
the batch's example indices are computed whole (cheap), only the share's rows
are read and augmented, and the augmentations draw at the global size
(`augment.draws`), so every replica gets exactly the rows, byte for byte,
that slicing the global batch would give it.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

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


@dataclasses.dataclass(frozen=True)
class ReplicaShare:
  """The replicas a dataset yields rows for: global replicas [first, first +
  local) of `total`; per step it yields `local` consecutive per-replica
  batches (replica r: rows [r B / total, (r + 1) B / total) of each part)."""
  first: int
  local: int
  total: int

  def __post_init__(self):
    if not (0 < self.local and 0 <= self.first and
            self.first + self.local <= self.total):
      raise ValueError(f'replicas [{self.first}, {self.first + self.local}) '
                       f'are not within the {self.total} replicas in sync.')

  def rows(self, batch: int) -> tuple:
    """(first row, rows held) of a global batch of `batch` rows."""
    if batch % self.total:
      raise ValueError(f'a global batch of {batch} does not split evenly '
                       f'over {self.total} replicas.')
    per = batch // self.total
    return self.first * per, self.local * per


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


def _views(fn, images: tf.Tensor, num: int, seed: tf.Tensor,
           rows=None) -> tf.Tensor:
  """`num` augmented views of `images` [N,H,W,C] -> float32 [N,num,H,W,C]
  (`rows`: the augmentations' (offset, total) window, None for all)."""
  if num == 0:
    shape = tf.shape(images)
    return tf.zeros([shape[0], 0, shape[1], shape[2], shape[3]], tf.float32)
  views = [fn(images, _fold(seed, v), rows=rows) for v in range(num)]
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
                  skip: Sequence[int] = (),
                  share: Optional[ReplicaShare] = None) -> tf.data.Dataset:
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
    share: None for global batches; else only these replicas' rows.

  Returns:
    A dataset of global batches, one per step, each a dict:
      'x_l' float32 [B, H, W, C], 'y_l' int64 [B],
      'x_w' float32 [uB, num_weakaug, H, W, C],
      'x_s' float32 [uB, num_strongaug, H, W, C], 'y_u' int64 [uB];
    with `share`, `share.local` dicts per step, one per replica in order,
    each with B / share.total and uB / share.total rows.
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

  def part(step, stream, positions, labels, batch, count, views):
    """One part's (labels, [augmented views]) of batch `step`: all rows, or
    the share's (`views`: (seed key, fn(images, seed, rows))) pairs)."""
    idx = stream_indices(_fold(seed, stream), step, batch, count)
    rows = None
    if share is not None:
      first, held = share.rows(batch)
      idx, rows = idx[first:first + held], (first, batch)
    x = gather_rows(tf.gather(positions, idx))
    return tf.gather(labels, idx), [fn(x, _fold(seed, key, step), rows)
                                    for key, fn in views]

  def make(step):
    y_l, (x_l,) = part(step, _LABELED, lab_pos, lab_y, bl, n_l, [
        (_AUG_L, lambda x, s, r: aug_l(x, s, rows=r))])
    y_u, (x_w, x_s) = part(step, _UNLABELED, str_pos, str_y, bu, n_u, [
        (_AUG_W, lambda x, s, r: _views(aug_w, x, spec.num_weakaug, s, r)),
        (_AUG_S, lambda x, s, r: _views(aug_s, x, spec.num_strongaug, s, r))])
    out = {'x_l': x_l, 'y_l': y_l, 'x_w': x_w, 'x_s': x_s, 'y_u': y_u}
    if share is None:
      return out
    # [local * per, ...] -> [local, per, ...]: one element per replica.
    return {k: tf.reshape(v, [share.local, v.shape[0] // share.local] +
                          v.shape.as_list()[1:]) for k, v in out.items()}

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
  if share is not None:
    # One element per replica. Not `unbatch()`: on a component with no
    # elements (MixMatch's x_s, [local, per, 0, H, W, C]) it crashes the
    # process (segmentation fault, TF 2.21).
    local = share.local
    ds = ds.flat_map(lambda batch: tf.data.Dataset.range(local).map(
        lambda j: {k: tf.gather(v, j) for k, v in batch.items()}))
  return ds.prefetch(tf.data.AUTOTUNE)

