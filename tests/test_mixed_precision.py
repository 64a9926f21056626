"""Mixed precision: a step stays finite and close to the float32 step.

Compared: the first step's loss and its p_model update (the newest history
row; the other 127 rows are the uniform start and say nothing). Measured
against float32: loss 1.2e-4 (bfloat16) and 6e-6 (float16) relative, the
row's update within 0.13% / 0.014% of its largest entry (0.10). The
tolerances (loss 2e-3, row 1%) reject a loss 1% off or a row update 3% off,
which each test shows.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from crest.config import Config
from crest.trainer import GenerationTrainer
from data import pipeline
from data import registry as data_registry
from data.base import DataArgs


@pytest.fixture(scope='module')
def data():
  return data_registry.load(DataArgs(dataset='synthetic_tiny',
                                     class_im_ratio=0.1, percent_labeled=0.3))


def _first_loss(tmp_path, data, precision):
  cfg = Config(method='fixmatch', dataset='synthetic_tiny', net_arch='small',
               num_epoch=1, num_batch=2, batch_size=8, unlab_ratio=1,
               percent_labeled=0.3, model_dir=str(tmp_path), threshold=0.3,
               progress=False, seed=3, mixed_precision=precision)
  strategy = tf.distribute.MirroredStrategy(['/cpu:0'])
  try:
    trainer = GenerationTrainer(cfg, strategy, data, str(tmp_path / precision),
                                dalign_t=None, seed=cfg.seed)
    assert trainer.model.trainable_variables[0].dtype == 'float32'
    spec = pipeline.StreamSpec(8, 1, 'dh', 'dh', 'dhrac', 1, 1, seed=1)
    lab = data.labeled_positions
    ds = pipeline.train_dataset(
        data.train_images, lab, data.train_labels[lab],
        data.unlabeled_stream_positions,
        data.train_labels[data.unlabeled_stream_positions], spec, 0, 1)
    it = iter(strategy.experimental_distribute_dataset(ds))
    loss = float(trainer.train_steps(it, tf.constant(1)))
    p_model = trainer.p_model_history.numpy()
  finally:
    keras.config.set_dtype_policy('float32')
  return loss, p_model


@pytest.fixture(scope='module')
def reference(tmp_path_factory, data):
  return _first_loss(tmp_path_factory.mktemp('ref'), data, 'float32')


@pytest.mark.parametrize('precision', ['bfloat16', 'float16'])
def test_mixed_precision_step_is_close_to_float32(tmp_path, data, reference,
                                                  precision):
  ref, ref_pm = reference
  loss, pm = _first_loss(tmp_path, data, precision)
  assert np.isfinite(loss)
  assert loss != ref  # It did compute in lower precision.
  assert pm.dtype == np.float32
  uniform = 1 / pm.shape[1]
  np.testing.assert_array_equal(pm[:-1], np.float32(uniform))  # One new row.

  def agree(loss, row):
    assert loss == pytest.approx(ref, rel=2e-3)
    update, ref_update = row - uniform, ref_pm[-1] - uniform
    scale = np.abs(ref_update).max()
    assert scale > 0.01  # The step moved p_model: the check means something.
    assert np.abs(update - ref_update).max() <= 0.01 * scale

  agree(loss, pm[-1])
  with pytest.raises(AssertionError):
    agree(loss * 1.01, pm[-1])
  with pytest.raises(AssertionError):
    agree(loss, uniform + 1.03 * (pm[-1] - uniform))
