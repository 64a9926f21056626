"""The original CReST's WideResNets, WRN-28-k and WRN-37-k (pre-activation).

As the original's `model/resnet.py` (`WRN28`, `WRN37`) and
`model/resnet_util.py` (`WideResNet`, `stack_v3`, `block3`) define them, with
k = width (a whole number) and F = 16 k:

  stem by input height (the original's `WideResNet`): 256: conv7x7(16)
    stride 2; 128: conv5x5(16) stride 1; otherwise conv3x3(16) stride 1
    (the original accepts only 32, 64 and 96 there and refuses the rest;
    we accept any size). The 128 and 256 stems are followed by zero-pad 1 +
    max-pool 3x3 stride 2. The stem always has 16 filters, no bias, no BN.
  groups: WRN28 three, WRN37 four, of 4 blocks each, with F, 2F, 4F (, 8F)
    filters; the first block of a group has the stride (1, then 2).
  BN + act ('post'), global average pool, classifier (the original's
    'predictions'; here 'logits', float32) with a Glorot uniform kernel and
    a zero bias. `head_arch='mlp'` (not in the original) adds hidden layers.

A block (`block3`): y = act(bn(x)); r = conv3x3(act(bn(conv3x3(y, stride))));
out = shortcut + r. The FIRST block of EVERY group takes its shortcut from y,
the others from x; the shortcut goes through a 1x1 convolution with the
block's stride exactly when the channel count changes (so in WRN-28-1 the
first block's shortcut is y itself: 16 -> 16 channels).

Padding: every k x k convolution pads k // 2 zeros on each side and then
convolves 'valid' (the original's `convnxn`); for stride 2 on even sizes
that samples other positions than 'same' (which pads (0, 1)).
Initialisation: conv kernels VarianceScaling(2.0, fan_out, truncated normal)
(`preact_block.kernel_initializer`), classifier Glorot uniform, zero bias,
batch norm gamma 1, beta 0, moving mean 0, variance 1. Every layer has its
own initialiser instance (see `networks.common`). Batch norm: momentum
0.999, epsilon 1e-3 everywhere, computed as the original's Keras 2 layer
(the fused kernel; the moving variance moves towards the Bessel-corrected
batch variance): `networks.bn_act`.

Two implementations of the same function and variables (`impl`):
  'lean' (default): each block is one `PreActBlock` layer (`g{group}b{block}`)
    whose backward pass keeps two maps per block instead of six (same
    numbers), and only the block's input in the first group
    (RECOMPUTE_GROUPS), whose full-resolution maps are the largest: this
    recomputes one convolution per block there (float32 only: with
    mixed precision every block stores its two maps).
  'keras': plain Keras layers (`bn_act.FusedBatchNorm`, activation layers,
    `ZeroPadding2D` + 'valid' `Conv2D` for strided 3x3 convolutions, 'same'
    for stride 1, which is identical, `Add`), names `g{group}b{block}_bn1`,
    `_act1`, `_conv1` (`_conv1_pad`), `_bn2`, `_act2`, `_conv2`,
    `_shortcut`, `_add`: standard (fused) kernels everywhere, more memory.
The stem (`stem_conv`), `final_bn` / `final_act`, `pool` and the head are the
same layers in both. `original_variables(model)` maps the original's
variable names to either's variables.

WRN-28-2 with 10 classes, 32x32x3: 1,471,226 parameters, of which 1,467,610
trainable (3,616 batch-norm moving statistics).
"""
from __future__ import annotations

import functools
import re
from typing import Callable, Dict, Sequence

import keras

from networks.errors import NetworkError
from networks import bn_act
from networks import common
from networks import preact_block

# Architecture -> blocks per group, as the original's BLOCK table.
ARCHS = {'WRN28': (4, 4, 4), 'WRN37': (4, 4, 4, 4)}
IMPLS = ('lean', 'keras')
STEM_FILTERS = 16
# Input height -> (stem kernel, stem stride, max-pool), as the original;
# any other height: DEFAULT_STEM.
STEMS = {256: (7, 2, True), 128: (5, 1, True)}
DEFAULT_STEM = (3, 1, False)
# Groups (0-based) whose blocks recompute their middle map in the backward
# pass instead of storing it, in float32: the first group's maps are 2x / 4x
# the others' size for the same arithmetic, so there the trade pays most.
# With 16-bit maps (mixed precision) no block recomputes: storing costs half
# as much there (bare WRN-28-2 step on 960 images, bfloat16, AVX-512 EPYC:
# peak RSS 1.80 vs 1.51 GB) and the step is about 10% faster.
RECOMPUTE_GROUPS = (0,)


def recompute_groups(compute_dtype: str) -> tuple:
  """The groups that recompute in this compute dtype (RECOMPUTE_GROUPS for
  float32, none for 16-bit maps)."""
  return RECOMPUTE_GROUPS if str(compute_dtype) == 'float32' else ()


def check_width(arch: str, width) -> int:
  """The widening factor k as an int.

  Raises:
    NetworkError: `width` is not a whole number >= 1 (2.0 is fine, 2.5 not).
  """
  try:
    value = float(width)
  except (TypeError, ValueError):
    value = float('nan')
  if not value.is_integer() or value < 1:
    raise NetworkError(f'{arch} width must be a whole number >= 1 (filters '
                      f'16k, 32k, 64k, ...), got {width}.')
  return int(value)


def _conv(x, filters: int, kernel: int, stride: int, name: str):
  """The original's `convnxn`: k // 2 zeros each side, then 'valid'; as
  'same' where that is identical (stride 1), else ZeroPadding2D + 'valid'."""
  pad = preact_block.padding(kernel, stride)
  if isinstance(pad, list):
    x = keras.layers.ZeroPadding2D(kernel // 2, name=f'{name}_pad')(x)
    pad = 'VALID'
  return keras.layers.Conv2D(
      filters, kernel, strides=stride, padding=pad.lower(), use_bias=False,
      kernel_initializer=preact_block.kernel_initializer(), name=name)(x)


def _stem(x, height: int):
  kernel, stride, maxpool = STEMS.get(int(height), DEFAULT_STEM)
  x = _conv(x, STEM_FILTERS, kernel, stride, 'stem_conv')
  if maxpool:
    x = keras.layers.ZeroPadding2D(1, name='stem_pool_pad')(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name='stem_pool')(x)
  return x


def _batch_norm(x, bn_sync: bool, name: str):
  """The original's batch norm (Keras 2's fused kernel; 0.999, 1e-3)."""
  return bn_act.FusedBatchNorm(
      momentum=common.BN_MOMENTUM, epsilon=common.BN_EPSILON,
      synchronized=bn_sync, name=name)(x)


def _keras_block(x, filters: int, *, stride: int, first: bool,
                 activation: str, bn_sync: bool, name: str):
  """`PreActBlock`'s function in plain Keras layers."""
  kind = preact_block.shortcut_kind(x.shape[-1], filters, stride, first)
  y = _batch_norm(x, bn_sync, f'{name}_bn1')
  y = common.activation(activation, name=f'{name}_act1')(y)
  shortcut = {'identity': x, 'activation_identity': y}.get(kind)
  if shortcut is None:
    shortcut = _conv(y if kind == 'activation' else x, filters, 1, stride,
                     f'{name}_shortcut')
  r = _conv(y, filters, 3, stride, f'{name}_conv1')
  r = _batch_norm(r, bn_sync, f'{name}_bn2')
  r = common.activation(activation, name=f'{name}_act2')(r)
  r = _conv(r, filters, 3, 1, f'{name}_conv2')
  return keras.layers.Add(name=f'{name}_add')([shortcut, r])


def build_wrn(arch: str, *, num_classes: int,
              input_shape: tuple[int, int, int], width: float = 2,
              activation: str = 'leaky_relu', bn_sync: bool = False,
              head_arch: str = 'linear', head_mlp_dims: Sequence[int] = (),
              impl: str = 'lean', name: str | None = None) -> keras.Model:
  """Builds WRN-28-`width` or WRN-37-`width`.

  Args:
    arch: 'WRN28' or 'WRN37'.
    num_classes: K.
    input_shape: (H, W, C) of the float32 images in [-1, 1].
    width: widening factor k, a whole number (2 or 2.0; filters 16k, 32k,
      64k (, 128k)).
    activation: 'leaky_relu' (slope 0.1) or 'relu'.
    bn_sync: synchronised batch norm across replicas.
    head_arch: 'linear' or 'mlp'.
    head_mlp_dims: hidden widths of the 'mlp' head.
    impl: 'lean' or 'keras' (see the module docstring).
    name: model name (default 'wrn28_{width}' / 'wrn37_{width}').

  Returns:
    A built keras.Model: images float32 [B, H, W, C] -> logits float32 [B, K].

  Raises:
    NetworkError: invalid argument.
  """
  if arch not in ARCHS:
    raise NetworkError(f'Unknown WideResNet {arch!r}; valid choices: '
                      f'{", ".join(ARCHS)}.')
  groups = ARCHS[arch]
  common.check_common(num_classes=num_classes, input_shape=input_shape,
                      activation_kind=activation, head_arch=head_arch,
                      head_mlp_dims=head_mlp_dims,
                      min_size=2 ** (len(groups) - 1))
  k = check_width(arch, width)
  if impl not in IMPLS:
    raise NetworkError(f'Unknown WideResNet implementation {impl!r}; valid '
                      f'choices: {", ".join(IMPLS)}.')
  shape = tuple(int(v) for v in input_shape)
  inputs = keras.Input(shape=shape, name='images')
  x = _stem(inputs, shape[0])
  # The compute dtype the layers get (the global mixed-precision policy).
  recompute = recompute_groups(keras.mixed_precision.global_policy()
                               .compute_dtype)
  for group, blocks in enumerate(groups):
    filters = (16 << group) * k
    for b in range(blocks):
      stride = (2 if group else 1) if b == 0 else 1
      block_name = f'g{group + 1}b{b + 1}'
      if impl == 'lean':
        x = preact_block.PreActBlock(
            filters, stride=stride, activate_before_residual=b == 0,
            activation=activation, synchronized=bn_sync,
            recompute=group in recompute, name=block_name)(x)
      else:
        x = _keras_block(x, filters, stride=stride, first=b == 0,
                         activation=activation, bn_sync=bn_sync,
                         name=block_name)
  x = _batch_norm(x, bn_sync, 'final_bn')
  x = common.activation(activation, name='final_act')(x)
  x = keras.layers.GlobalAveragePooling2D(name='pool')(x)
  logits = common.head(x, num_classes=int(num_classes), head_arch=head_arch,
                       head_mlp_dims=head_mlp_dims, kind=activation,
                       bn_sync=bn_sync,
                       kernel_initializer=keras.initializers.GlorotUniform)
  return keras.Model(inputs, logits, name=name or f'{arch.lower()}_{k}')


def builder(arch: str) -> Callable[..., keras.Model]:
  """`build_wrn` for one architecture (the registry's builder)."""
  return functools.partial(build_wrn, arch)


build_wrn28 = builder('WRN28')
build_wrn37 = builder('WRN37')

_BN = ('gamma', 'beta', 'moving_mean', 'moving_variance')
_BLOCK = re.compile(r'g(\d+)b(\d+)')


def _bn_variables(prefix: str, layer_or_weights) -> Dict[str, object]:
  if isinstance(layer_or_weights, tuple):
    values = layer_or_weights
  else:
    values = tuple(getattr(layer_or_weights, n) for n in _BN)
  return {f'{prefix}/{n}': v for n, v in zip(_BN, values)}


def original_variables(model: keras.Model) -> Dict[str, object]:
  """{the original's variable name (':0' dropped): our variable}.

  Names: `conv1_conv/kernel` (stem), `conv{g+1}_block{b}_preact_bn/...`
  (block b of group g's first batch norm: gamma, beta, moving_mean,
  moving_variance), `..._1_conv/kernel`, `..._1_bn/...`, `..._2_conv/kernel`,
  `..._0_conv/kernel` (1x1 shortcut, where there is one), `post_bn/...`,
  `predictions/{kernel,bias}`. Works for both implementations; the 'mlp'
  head's hidden layers (not in the original) are not listed.

  Args:
    model: a model from `build_wrn`.
  """
  names = {l.name: l for l in model.layers}
  out = {'conv1_conv/kernel': names['stem_conv'].kernel}
  blocks = sorted({tuple(int(v) for v in m.groups())
                   for m in map(_BLOCK.match, names) if m})
  for g, b in blocks:
    ours, prefix = f'g{g}b{b}', f'conv{g + 1}_block{b}'
    layer = names.get(ours)
    if isinstance(layer, preact_block.PreActBlock):
      bn1, bn2 = layer.bn1, layer.bn2
      kernels = (layer.kernel1, layer.kernel2, layer.shortcut_kernel)
    else:
      bn1, bn2 = names[f'{ours}_bn1'], names[f'{ours}_bn2']
      shortcut = names.get(f'{ours}_shortcut')
      kernels = (names[f'{ours}_conv1'].kernel, names[f'{ours}_conv2'].kernel,
                 None if shortcut is None else shortcut.kernel)
    out.update(_bn_variables(f'{prefix}_preact_bn', bn1))
    out[f'{prefix}_1_conv/kernel'] = kernels[0]
    out.update(_bn_variables(f'{prefix}_1_bn', bn2))
    out[f'{prefix}_2_conv/kernel'] = kernels[1]
    if kernels[2] is not None:
      out[f'{prefix}_0_conv/kernel'] = kernels[2]
  out.update(_bn_variables('post_bn', names['final_bn']))
  out['predictions/kernel'] = names['logits'].kernel
  out['predictions/bias'] = names['logits'].bias
  return out
