"""WideResNet-28-k with pre-activation blocks, as in FixMatch / MixMatch.

Structure (k = width, F = 16 k):
  conv3x3(16)
  group 1: 4 blocks, F filters, stride 1 (first block activates before the
           residual split, so its 1x1 shortcut conv sees BN-act output)
  group 2: 4 blocks, 2F filters, stride 2
  group 3: 4 blocks, 4F filters, stride 2
  BN + act, global average pool, head (linear or mlp).

A block: y = act(bn(x)); r = conv3x3(act(bn(conv3x3(y, stride))));
shortcut = x, or y if activate_before_residual; if the channel count changes
the shortcut goes through a 1x1 conv with the block's stride; out = shortcut + r.
Each block is one `PreActBlock` layer (`g{group}b{block}`), whose backward
pass keeps two maps per block instead of six (same numbers), and only the
block's input in the first group (RECOMPUTE_GROUPS), whose full-resolution
maps are the largest: this recomputes one convolution per block there.
WRN-28-2 with 10 classes, 32x32x3: 1,471,226 parameters, of which 1,467,610
trainable (3,616 batch-norm moving statistics).
"""
from __future__ import annotations

from typing import Sequence

import keras

from crest.errors import ConfigError
from networks import common
from networks import preact_block

DEPTH_BLOCKS = 4  # (28 - 4) / 6 blocks per group.
# Groups (0-based) whose blocks recompute their middle map in the backward
# pass instead of storing it: the first group's maps are 2x / 4x the
# others' size for the same arithmetic, so there the trade pays most.
RECOMPUTE_GROUPS = (0,)


def build_wrn28(*, num_classes: int, input_shape: tuple[int, int, int],
                width: int = 2, activation: str = 'leaky_relu',
                bn_sync: bool = False, head_arch: str = 'linear',
                head_mlp_dims: Sequence[int] = (),
                name: str | None = None) -> keras.Model:
  """Builds WideResNet-28-`width`.

  Args:
    num_classes: K.
    input_shape: (H, W, C) of the float32 images in [-1, 1].
    width: widening factor k (filters 16k, 32k, 64k).
    activation: 'leaky_relu' (slope 0.1) or 'relu'.
    bn_sync: synchronised batch norm across replicas.
    head_arch: 'linear' or 'mlp'.
    head_mlp_dims: hidden widths of the 'mlp' head.
    name: model name (default 'wrn28_{width}').

  Returns:
    A built keras.Model: images float32 [B, H, W, C] -> logits float32 [B, K].
  """
  common.check_common(num_classes=num_classes, input_shape=input_shape,
                      activation_kind=activation, head_arch=head_arch,
                      head_mlp_dims=head_mlp_dims, min_size=4)
  if int(width) < 1:
    raise ConfigError(f'WRN28 width must be >= 1, got {width}.')
  filters = 16 * int(width)
  inputs = keras.Input(shape=tuple(int(v) for v in input_shape), name='images')
  x = common.conv(16, 3, 1, name='stem_conv')(inputs)
  for group in range(3):
    for b in range(DEPTH_BLOCKS):
      x = preact_block.PreActBlock(
          filters << group, stride=(2 if group else 1) if b == 0 else 1,
          activate_before_residual=group == 0 and b == 0,
          activation=activation, synchronized=bn_sync,
          recompute=group in RECOMPUTE_GROUPS,
          name=f'g{group + 1}b{b + 1}')(x)
  x = common.bn_act(x, kind=activation, bn_sync=bn_sync, name='final')
  x = keras.layers.GlobalAveragePooling2D(name='pool')(x)
  logits = common.head(x, num_classes=int(num_classes), head_arch=head_arch,
                       head_mlp_dims=head_mlp_dims, kind=activation,
                       bn_sync=bn_sync)
  return keras.Model(inputs, logits, name=name or f'wrn28_{int(width)}')
