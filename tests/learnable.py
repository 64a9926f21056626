"""A tiny, clearly separable dataset for tests that must learn (test-only).

Four classes of 16x16x3 uint8 images. Class c is a blob of its own colour
(red, green, blue, yellow) at a random position on a noisy grey background,
with per-image colour jitter and pixel noise, so the class is the colour of
the blob: a small CNN separates the classes in a few dozen steps, while an
untrained one stays near chance. Written as an own-data `.npz`
(`--dataset=npz`, `data/own_npz.py`): the training set is long-tailed
(COUNTS) and the test set balanced.
"""
import os

import numpy as np

NUM_CLASSES = 4
SIZE = 16
COUNTS = (48, 32, 20, 12)
TEST_PER_CLASS = 16
COLOURS = np.array([[220, 40, 40], [40, 200, 40], [40, 60, 230],
                    [220, 210, 40]], np.float64)


def make_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """One image per label: uint8 [N, SIZE, SIZE, 3]."""
  n = len(labels)
  images = rng.uniform(90, 150, (n, 1, 1, 1)) + rng.normal(
      0, 20, (n, SIZE, SIZE, 3))
  grid = np.arange(SIZE)
  half = rng.integers(3, 6, n)
  cy = rng.integers(half, SIZE - half)
  cx = rng.integers(half, SIZE - half)
  inside = ((np.abs(grid[None, :, None] - cy[:, None, None]) <= half[:, None,
                                                                   None]) &
            (np.abs(grid[None, None, :] - cx[:, None, None]) <= half[:, None,
                                                                   None]))
  colour = COLOURS[labels] + rng.uniform(-30, 30, (n, 3))
  images = np.where(inside[..., None], colour[:, None, None, :] + rng.normal(
      0, 15, (n, SIZE, SIZE, 3)), images)
  return np.clip(np.rint(images), 0, 255).astype(np.uint8)


def write_npz(directory: str, seed: int = 0) -> str:
  """Writes the dataset to `directory`/learnable.npz; returns its path."""
  rng = np.random.default_rng(seed)
  y_train = rng.permutation(np.repeat(np.arange(NUM_CLASSES), COUNTS))
  y_test = np.repeat(np.arange(NUM_CLASSES), TEST_PER_CLASS)
  path = os.path.join(str(directory), 'learnable.npz')
  np.savez(path, x_train=make_images(y_train, rng), y_train=y_train,
           x_test=make_images(y_test, rng), y_test=y_test)
  return path


# ------------------------------------------------ a CReST+ run on these data
# Four generations of FixMatch + CReST+ (adaptive temperatures 1.0 -> 0.4),
# 32 steps each: measured (seeds 1-3) EMA test accuracy 0.92-1.0 per
# generation and every generation-0 pick correct (60-61 picks); with
# --learning_rate=1e-7 (nothing learned) 0.23. Strong views without
# RandAugment ('dhc'): its tracing cost seconds per generation.
RUN = dict(method='fixmatch', dataset='npz', input_shape=(SIZE, SIZE, 3),
           net_arch='small', net_width=1, num_epoch=2, num_batch=16,
           num_generation=4, batch_size=16, unlab_ratio=2,
           percent_labeled=0.25, do_distalign=True, how_dalign='adaptive',
           dalign_t=0.4, threshold=0.8, ema_decay=0.9, strongaug='dhc',
           eval_batch_size=128, progress=False, seed=1)


def config(model_dir, data_file: str, **kw):
  """The run's crest.config.Config (RUN, updated by `kw`)."""
  from crest.config import Config  # pylint: disable=g-import-not-at-top
  return Config(**(RUN | dict(model_dir=str(model_dir), data_file=data_file)
                   | kw))


def load(cfg):
  """The run's data (data.base.SSLData)."""
  from data import registry  # pylint: disable=g-import-not-at-top
  from data.base import DataArgs  # pylint: disable=g-import-not-at-top
  return registry.load(DataArgs(dataset=cfg.dataset, data_file=cfg.data_file,
                                class_im_ratio=cfg.class_im_ratio,
                                percent_labeled=cfg.percent_labeled,
                                fold=cfg.fold))


def run_generations(cfg, data, method_module):
  """Runs `cfg` on `data` in process on one CPU device.

  Returns: (records, strategy, the alignment temperature each trace of the
  method's loss received, in order).
  """
  import pytest  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from crest import generations  # pylint: disable=g-import-not-at-top
  seen = []
  real = method_module.loss

  def spy(model, batch, stats, params):
    # A graph constant at trace time: the trainer's temperature.
    seen.append(float(tf.get_static_value(stats.dalign_t)))
    return real(model, batch, stats, params)

  strategy = tf.distribute.MirroredStrategy(['/cpu:0'])
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(method_module, 'loss', spy)
    recs = generations.run(cfg, strategy, data)
  return recs, strategy, seen
