"""A small, fast CNN for CPU runs and tests (registry name 'small').

Same conventions as the WideResNet (bias-free He fan-out convs, batch norm
epsilon 1e-3, selectable activation, same heads, same variables), so the
trainer treats both alike, with one exception: batch-norm momentum is 0.99,
not 0.999. This network is for runs of a few hundred steps, and with 0.999
the moving statistics are still ~75% their initial values (0, 1) after 300
steps (0.999 ** 300 = 0.74). Supervised on 1,236 long-tailed synthetic
images (data.synthetic, gamma 100), batch 64, SGD 0.03: after 300 steps the
balanced test accuracy in inference mode was 12% with 0.999 and 64% with
0.99 (identical training losses). With b = 16 * width (32 at width 2):

  conv3x3(b)            -> BN -> act     H x W
  conv3x3(2b, stride 2) -> BN -> act     H/2
  conv3x3(2b)           -> BN -> act     H/2
  conv3x3(4b, stride 2) -> BN -> act     H/4
  global average pool -> head

Width 2, 10 classes: 132,330 parameters for 3 channels (131,754 for 1),
of which 576 are batch-norm moving statistics;
about 20 M multiply-adds per 32x32 image (WRN-28-2: about 360 M).
Any input with height and width >= 16 and any channel count works.
"""
from __future__ import annotations

from typing import Sequence

import keras

from networks.errors import NetworkError
from networks import common

MIN_SIZE = 16
BN_MOMENTUM = 0.99  # Short runs; see the module docstring.


def build_small(*, num_classes: int, input_shape: tuple[int, int, int],
                width: float = 2, activation: str = 'leaky_relu',
                bn_sync: bool = False, head_arch: str = 'linear',
                head_mlp_dims: Sequence[int] = (),
                name: str | None = None) -> keras.Model:
  """Builds the small CNN.

  Args:
    num_classes: K.
    input_shape: (H, W, C), H and W >= 16, images float32 in [-1, 1].
    width: base filters are 16 * width.
    activation: 'leaky_relu' (slope 0.1) or 'relu'.
    bn_sync: synchronised batch norm across replicas.
    head_arch: 'linear' or 'mlp'.
    head_mlp_dims: hidden widths of the 'mlp' head.
    name: model name (default 'small_{width}').

  Returns:
    A built keras.Model: images float32 [B, H, W, C] -> logits float32 [B, K].
  """
  common.check_common(num_classes=num_classes, input_shape=input_shape,
                      activation_kind=activation, head_arch=head_arch,
                      head_mlp_dims=head_mlp_dims, min_size=MIN_SIZE)
  if float(width) < 1 or not float(width).is_integer():
    raise NetworkError(f'small width must be a whole number >= 1 (base '
                      f'filters 16 * width), got {width}.')
  b = 16 * int(width)
  inputs = keras.Input(shape=tuple(int(v) for v in input_shape), name='images')
  x = inputs
  for i, (filters, stride) in enumerate(
      ((b, 1), (2 * b, 2), (2 * b, 1), (4 * b, 2))):
    x = common.conv(filters, 3, stride, name=f'conv{i + 1}')(x)
    x = common.bn_act(x, kind=activation, bn_sync=bn_sync, name=f'conv{i + 1}',
                      momentum=BN_MOMENTUM)
  x = keras.layers.GlobalAveragePooling2D(name='pool')(x)
  logits = common.head(x, num_classes=int(num_classes), head_arch=head_arch,
                       head_mlp_dims=head_mlp_dims, kind=activation,
                       bn_sync=bn_sync, bn_momentum=BN_MOMENTUM)
  return keras.Model(inputs, logits, name=name or f'small_{int(width)}')
