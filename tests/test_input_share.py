"""Per-worker input: a dataset that builds only some replicas' rows of every
global batch gives each replica exactly its slice of the global batch, byte
for byte (the multi-worker run itself: tests/test_multiworker.py)."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from augment import registry as augment_registry
from crest import input_stream
from crest.config import Config
from data import pipeline
from data import registry as data_registry
from data.base import DataArgs

# Every augmentation stage kind the methods use, several strong views.
SPEC = pipeline.StreamSpec(batch_size=8, unlab_ratio=2, augment='dh',
                           weakaug='dh', strongaug='dhrac', num_weakaug=1,
                           num_strongaug=2, seed=3)
STEPS, START = 3, 5


@pytest.fixture(scope='module')
def data():
  return data_registry.load(DataArgs(dataset='synthetic_tiny',
                                     class_im_ratio=0.1, percent_labeled=0.3))


def _batches(data, share=None, spec=SPEC):
  lab = data.labeled_positions
  stream = data.unlabeled_stream_positions
  ds = pipeline.train_dataset(
      data.train_images, lab, data.train_labels[lab], stream,
      data.train_labels[stream], spec, START, STEPS, skip=(6,), share=share)
  return [{k: v.numpy() for k, v in b.items()} for b in ds]


@pytest.fixture(scope='module')
def whole(data):
  return _batches(data)


@pytest.mark.parametrize('first,local,total', [(1, 1, 2), (2, 2, 4)])
def test_a_share_yields_its_replicas_slices_of_the_global_batch(
    data, whole, first, local, total):
  """Worker w of W with L replicas each (here e.g. (2, 2, 4): worker 1 of 2
  with 2 replicas) yields, per step, L per-replica batches: rows
  [r B / R, (r + 1) B / R) of every field, r = first .. first + L - 1."""
  got = _batches(data, pipeline.ReplicaShare(first, local, total))
  assert len(got) == local * len(whole) == local * STEPS
  for step, batch in enumerate(whole):
    for j in range(local):
      part = got[step * local + j]
      r = first + j
      for key, value in batch.items():
        per = len(value) // total
        np.testing.assert_array_equal(part[key], value[r * per:(r + 1) * per],
                                      err_msg=f'{key} step {step} replica {r}')
  assert whole[0]['x_s'].shape == (16, 2, 32, 32, 3)
  # Not vacuous: the two strong views and the steps differ.
  assert np.abs(whole[0]['x_s'][:, 0] - whole[0]['x_s'][:, 1]).max() > 0.5
  assert np.abs(whole[0]['x_w'] - whole[1]['x_w']).max() > 0.5


def test_a_share_without_strong_views(data):
  """MixMatch's stream: no strong views (an empty x_s per replica)."""
  spec = dataclasses.replace(SPEC, num_strongaug=0, num_weakaug=2)
  whole = _batches(data, spec=spec)
  got = _batches(data, pipeline.ReplicaShare(1, 1, 2), spec=spec)
  assert got[0]['x_s'].shape == (8, 0, 32, 32, 3)
  for batch, part in zip(whole, got):
    for key, value in batch.items():
      np.testing.assert_array_equal(part[key], value[len(value) // 2:])


def test_augmenting_a_slice_alone_would_not_match(data, whole):
  """What the share's global-size draws are for: the slice augmented as a
  batch of its own gets other augmentations."""
  stream = data.unlabeled_stream_positions
  base = tf.constant([SPEC.seed, 0x5EED], tf.int64)
  fold = pipeline._fold  # pylint: disable=protected-access
  idx = pipeline.stream_indices(fold(base, 2), START, 16, len(stream))
  assert np.array_equal(data.train_labels[stream][idx.numpy()],
                        whole[0]['y_u'])  # The stream's examples...
  x = tf.gather(data.train_images, tf.gather(stream, idx))
  strong = augment_registry.build(SPEC.strongaug, 32)
  view0 = fold(fold(base, 5, START), 0)
  np.testing.assert_array_equal(strong(x, view0).numpy(),
                                whole[0]['x_s'][:, 0])  # ... and seeds.
  alone = strong(x[8:], view0).numpy()
  assert np.abs(alone - whole[0]['x_s'][8:, 0]).max() > 0.5
  np.testing.assert_array_equal(strong(x[8:], view0, rows=(8, 16)).numpy(),
                                whole[0]['x_s'][8:, 0])


def test_bad_shares_are_refused(data):
  with pytest.raises(ValueError, match='within the 2 replicas'):
    pipeline.ReplicaShare(1, 2, 2)
  with pytest.raises(ValueError, match='does not split evenly over 3'):
    pipeline.ReplicaShare(0, 1, 3).rows(8)
  ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1,
                                   num_replicas_in_sync=3)
  with pytest.raises(ValueError, match='same number of devices'):
    input_stream.worker_share(ctx)


def test_worker_share_numbers_replicas_as_the_strategy_does():
  ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1,
                                   num_replicas_in_sync=4)
  assert input_stream.worker_share(ctx) == pipeline.ReplicaShare(2, 2, 4)
  ctx = tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0,
                                   num_replicas_in_sync=2)
  assert input_stream.worker_share(ctx) == pipeline.ReplicaShare(0, 2, 2)


def test_the_training_iterator_hands_each_replica_its_slice(data, whole,
                                                            tmp_path):
  """Through `distribute_datasets_from_function` on two logical devices:
  replica r's tensors are rows [r B / 2, (r + 1) B / 2) of the global batch,
  from the resumed step on, skipping what a rollback skipped."""
  strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
  cfg = Config(dataset='synthetic_tiny', model_dir=str(tmp_path),
               batch_size=SPEC.batch_size, unlab_ratio=SPEC.unlab_ratio,
               augment=SPEC.augment, weakaug=SPEC.weakaug,
               strongaug=SPEC.strongaug, num_weakaug=SPEC.num_weakaug,
               num_strongaug=SPEC.num_strongaug, num_epoch=1,
               num_batch=START + STEPS)
  lab = data.labeled_positions
  it, counter = input_stream.distributed_iterator(
      cfg, strategy, data, lab, data.train_labels[lab], SPEC.seed, START,
      [6])
  assert counter.take(STEPS) == [5, 7, 8]
  for step, batch in enumerate(whole):
    per_replica = next(it)
    for key, value in batch.items():
      parts = strategy.experimental_local_results(per_replica[key])
      assert len(parts) == 2
      np.testing.assert_array_equal(np.concatenate([p.numpy() for p in parts]),
                                    value, err_msg=f'{key} step {step}')
