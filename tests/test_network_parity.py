"""The WideResNets against the original's (network_wrn.npz) through the
fixture checker, for both implementations; the checker fails a perturbed
copy and reads other cases of the same format."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import FIXTURES
from networks import registry
from scripts.parity import network as network_parity

WRN_FIXTURE = FIXTURES / 'network_wrn.npz'
# Reproduced bit for bit (logits error 0) with TF's oneDNN kernels, the
# default and what train_and_eval_loop uses.
needs_onednn = pytest.mark.skipif(
    os.environ.get('TF_ENABLE_ONEDNN_OPTS') == '0',
    reason='the WRN fixture is reproduced with oneDNN kernels')


@needs_onednn
def test_fixture_passes_for_both_implementations():
  result = network_parity.check(WRN_FIXTURE)
  assert result.ok, result.failures
  with np.load(WRN_FIXTURE) as data:
    cases = {k.split('__')[0] for k in data.files}
  assert result.total == len(cases) * len(registry.impls('WRN28')) >= 2
  assert result.worst_error < 2e-5


def test_fixture_with_one_perturbed_kernel_fails(tmp_path):
  with np.load(WRN_FIXTURE) as data:
    arrays = dict(data)
  key = next(k for k in arrays if k.endswith('__w__conv3_block1_0_conv/kernel'))
  arrays[key] = arrays[key] * 1.01
  path = tmp_path / 'network_wrn.npz'
  np.savez(path, **arrays)
  result = network_parity.check(path)
  assert not result.ok and result.passed == 0
  assert result.total == len(registry.impls('WRN28'))
  assert all('[lean]' in f or '[keras]' in f for f in result.failures)


def _synthesize(path, width: int, activation: str, seed: int = 0):
  """A file of network_wrn.npz's format for `wrn28_{width}_{activation}`,
  from the keras build with random weights (non-trivial batch norm)."""
  case = f'wrn28_{width}_{activation}'
  rng = np.random.default_rng(seed)
  keras.utils.set_random_seed(seed)
  model = registry.build('WRN28', num_classes=7, input_shape=(32, 32, 3),
                         width=width, activation=activation, impl='keras')
  named = registry.original_variables('WRN28', model)
  out = {}
  for name, v in named.items():
    value = v.numpy()
    if value.ndim == 1:
      value = value + rng.uniform(0.05, 0.5, value.shape).astype(np.float32)
    v.assign(value)
    out[f'{case}__w__{name}'] = value
  images = rng.uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)
  probe = rng.normal(size=(4, 7)).astype(np.float32)
  out[f'{case}__images'] = images
  out[f'{case}__probe'] = probe
  out[f'{case}__logits_infer'] = model(images, training=False).numpy()
  trainable = [(n, v) for n, v in named.items() if v.trainable]
  with tf.GradientTape() as tape:
    logits = model(images, training=True)
    loss = tf.reduce_sum(logits * probe)
  grads = tape.gradient(loss, [v for _, v in trainable])
  out[f'{case}__logits_train'] = logits.numpy()
  for (name, _), g in zip(trainable, grads):
    out[f'{case}__grad__{name}'] = g.numpy()
  for name, v in named.items():
    if not v.trainable:
      out[f'{case}__moving__{name}'] = v.numpy()
  np.savez(path, **out)
  return case


def test_other_width_and_relu_round_trip(tmp_path):
  """WRN-28-1 with ReLU (its first block's shortcut is the unprojected
  activation): the checker parses the case and both builds pass."""
  path = tmp_path / 'network_wrn.npz'
  case = _synthesize(path, 1, 'relu')
  result = network_parity.check(path)
  assert result.ok, result.failures
  assert result.total == 2 and case == 'wrn28_1_relu'
  with np.load(path) as data:
    assert f'{case}__w__conv2_block1_0_conv/kernel' not in data.files
    assert f'{case}__w__conv3_block1_0_conv/kernel' in data.files
