"""The original CReST's ResNet family: V1 (post-activation) and V2 (pre-act).

`--net_arch` ResNet18 / 50 / 101 / 152 (V1) and ResNet18V2 / 50V2 / 101V2 /
152V2 (V2), as the original's `model/resnet.py` defines them. With
f = int(64 * width) (Python truncation, the original's `--net_width`):

  stem by input size (height and width each one of SIZES):
    32:       conv3x3(64), stride 1, no pool
    64, 96:   conv5x5(64), stride 1, zero-pad 1 + max-pool 3x3 stride 2
    128, 256: conv7x7(64), stride 2, zero-pad 1 + max-pool 3x3 stride 2
    The stem always has 64 filters, whatever the width. V1: conv (no bias)
    + BN + act. V2: conv WITH bias, no BN (each block normalises first).
  stages conv2..conv5: f, 2f, 4f, 8f filters (x4 outputs for bottlenecks),
    blocks [2,2,2,2] (18), [3,4,6,3] (50), [3,4,23,3] (101), [3,8,36,3] (152);
    basic blocks (two 3x3) for 18, bottlenecks (1x1, 3x3, 1x1) otherwise.
  V1: a stage's first block has the stride (conv2: 1, others 2), on the 3x3
    conv (the middle conv of a bottleneck); a projection shortcut (1x1 conv
    with that stride + BN) where the stride is not 1 or the channel count
    changes; out = act(bn(last conv) + shortcut).
  V2: every block starts with BN + act ("preact"); the shortcut is taken
    from the preact output (a 1x1 conv, no BN, in each stage's first block,
    or the preact itself, max-pool 1x1 with the stride to subsample); the
    stride is on the 3x3 conv of each stage's LAST block (conv2..conv4: 2,
    conv5: 1); out = last conv + shortcut; after conv5: BN + act (post_).
  global average pool, classifier 'logits' (float32; the original's
  'predictions') with a Glorot uniform kernel and zero bias.

Every convolution pads k // 2 pixels explicitly (ZeroPadding2D) and then
convolves 'valid' (for stride 2 this samples other positions than 'same');
kernels VarianceScaling(2, fan_out, truncated normal), no biases except the
V2 stem. Batch norm: momentum 0.9, epsilon 1e-5 (the original's BN_MOM,
BN_EPS), through TF's fused kernel as Keras 2 ran it (`FusedBatchNorm`: the
moving variance takes the unbiased batch variance). Layers carry the
original's Keras names ('conv1_conv', 'conv2_block1_1_bn', ...), so
`original_variables` is a direct mapping.

One deliberate difference: the original's V2 stage conv5 (stride 1) gives its
first block an identity shortcut although that block changes the channel
count (4f -> 8f times the expansion), so the original cannot build any V2
model (Keras refuses to add maps of 4f and 8f channels). Here that block
takes a 1x1 projection ('conv5_block1_0_conv') from its preact output, the
rule the original uses for the other stages. And a tightening: the original
picks the stem by the height alone and accepts any width; here the width must
be one of SIZES too.

10 classes, 32x32x3, width 1 (total / trainable; the rest are moving stats):
ResNet18 11,183,562 / 11,173,962; ResNet50 23,573,962 / 23,520,842.
"""
from __future__ import annotations

from typing import Callable, Dict, Sequence

import keras
import tensorflow as tf

from networks.errors import NetworkError
from networks import common

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
STEM_FILTERS = 64
# Input size -> (stem kernel, stem stride, max-pool), as the original.
STEMS = {32: (3, 1, False), 64: (5, 1, True), 96: (5, 1, True),
         128: (7, 2, True), 256: (7, 2, True)}
SIZES = tuple(sorted(STEMS))
# Name -> (blocks per stage, bottleneck, pre-activation (V2)).
ARCHS = {
    'ResNet18': ((2, 2, 2, 2), False, False),
    'ResNet50': ((3, 4, 6, 3), True, False),
    'ResNet101': ((3, 4, 23, 3), True, False),
    'ResNet152': ((3, 8, 36, 3), True, False),
    'ResNet18V2': ((2, 2, 2, 2), False, True),
    'ResNet50V2': ((3, 4, 6, 3), True, True),
    'ResNet101V2': ((3, 4, 23, 3), True, True),
    'ResNet152V2': ((3, 8, 36, 3), True, True),
}
STAGE_FILTERS = (64, 128, 256, 512)


def stage_filters(width: float) -> tuple:
  """The stages' base filter counts, int(64 * width) etc., as the original."""
  return tuple(int(f * float(width)) for f in STAGE_FILTERS)


def _conv(x, filters: int, kernel: int, stride: int, name: str,
          use_bias: bool = False):
  """Explicit k // 2 zero padding, then a 'valid' convolution."""
  pad = kernel // 2
  if pad:
    x = keras.layers.ZeroPadding2D(pad, name=f'{name}_pad')(x)
  return keras.layers.Conv2D(
      filters, kernel, strides=stride, padding='valid', use_bias=use_bias,
      kernel_initializer=keras.initializers.VarianceScaling(
          scale=2.0, mode='fan_out', distribution='truncated_normal'),
      bias_initializer='zeros', name=name)(x)


@keras.saving.register_keras_serializable(package='crest')
class FusedBatchNorm(common.BatchNorm):
  """`common.BatchNorm` computed as the original's Keras 2 layer computes it.

  Keras 2 ran 4-D batch norm through TF's fused kernel (FusedBatchNormV3):
  its training output rounds differently from Keras 3's formula, and the
  moving variance is updated with the UNBIASED batch variance (n / (n - 1),
  n = values per channel: 1/127 at 4x4 maps of a batch of 8, which the
  fixture resolves). The same kernel is used here, so the outputs are the
  original's bit for bit (network_resnet.npz: logits error 0), which
  matters: one ReLU input at 1e-7 from zero that rounds to the other side
  changes a channel's gradient by percents. With `synchronized` (bn_sync)
  in a replica context, moments are the cross-replica ones (Keras'
  synchronised moments), normalised with the kernel's formula and
  Bessel-corrected with the global count. Moving-statistic updates go
  through `common.update_moving` (deferrable); computed in float32.
  """

  def call(self, inputs, training=None, mask=None):
    if (mask is not None or self.renorm or len(inputs.shape) != 4
        or self.axis not in (-1, 3)):
      return super().call(inputs, training=training, mask=mask)
    x = tf.cast(inputs, tf.float32)
    gamma = tf.cast(self.gamma, tf.float32)
    beta = tf.cast(self.beta, tf.float32)
    if training and self.trainable:
      replica = tf.distribute.get_replica_context()
      if self.synchronized and replica is not None and (
          replica.num_replicas_in_sync > 1):
        mean, variance = self._moments(x, None)
        y = (x - mean) * (tf.math.rsqrt(variance + self.epsilon) * gamma) + beta
        count = tf.cast(tf.size(x) // tf.size(mean), tf.float32) * float(
            replica.num_replicas_in_sync)
        variance *= count / tf.maximum(count - 1.0, 1.0)
      else:
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            x, gamma, beta, epsilon=self.epsilon, is_training=True)[:3]
      common.update_moving_average(self.moving_mean, mean, self.momentum)
      common.update_moving_average(self.moving_variance, variance,
                                   self.momentum)
    else:
      y = tf.compat.v1.nn.fused_batch_norm(
          x, gamma, beta, mean=tf.cast(self.moving_mean, tf.float32),
          variance=tf.cast(self.moving_variance, tf.float32),
          epsilon=self.epsilon, is_training=False)[0]
    return tf.cast(y, self.compute_dtype)


def _bn(x, bn_sync: bool, name: str):
  return FusedBatchNorm(momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                        synchronized=bn_sync, name=name)(x)


def _act(x, kind: str, name: str):
  return common.activation(kind, name=f'{name}_{kind}')(x)


def _residual_branch(x, filters: int, out_filters: int, *, bottleneck: bool,
                     stride: int, act: str, bn_sync: bool, name: str):
  """The residual branch up to its last convolution: bottleneck 1x1 -> 3x3
  (strided) -> 1x1, or basic 3x3 (strided) -> 3x3, BN + activation between.
  Returns (features, index of the last convolution in the layer names)."""
  if bottleneck:
    x = _conv(x, filters, 1, 1, f'{name}_1_conv')
    x = _act(_bn(x, bn_sync, f'{name}_1_bn'), act, f'{name}_1')
  i = 2 if bottleneck else 1
  x = _conv(x, filters, 3, stride, f'{name}_{i}_conv')
  x = _act(_bn(x, bn_sync, f'{name}_{i}_bn'), act, f'{name}_{i}')
  x = _conv(x, out_filters, 1 if bottleneck else 3, 1, f'{name}_{i + 1}_conv')
  return x, i + 1


def _block_v1(x, filters: int, *, bottleneck: bool, stride: int,
              act: str, bn_sync: bool, name: str):
  """Post-activation block; the stride is on the 3x3 convolution."""
  out_filters = filters * (4 if bottleneck else 1)
  if stride != 1 or out_filters != x.shape[-1]:
    shortcut = _conv(x, out_filters, 1, stride, f'{name}_0_conv')
    shortcut = _bn(shortcut, bn_sync, f'{name}_0_bn')
  else:
    shortcut = x
  x, last = _residual_branch(x, filters, out_filters, bottleneck=bottleneck,
                             stride=stride, act=act, bn_sync=bn_sync,
                             name=name)
  x = _bn(x, bn_sync, f'{name}_{last}_bn')
  x = keras.layers.Add(name=f'{name}_add')([shortcut, x])
  return _act(x, act, f'{name}_out')


def _block_v2(x, filters: int, *, bottleneck: bool, stride: int,
              conv_shortcut: bool, act: str, bn_sync: bool, name: str):
  """Pre-activation block; both branches start from the preact output."""
  out_filters = filters * (4 if bottleneck else 1)
  x = _act(_bn(x, bn_sync, f'{name}_preact_bn'), act, f'{name}_preact')
  if conv_shortcut:
    shortcut = _conv(x, out_filters, 1, stride, f'{name}_0_conv')
  elif stride > 1:
    shortcut = keras.layers.MaxPooling2D(1, strides=stride,
                                         name=f'{name}_skip_pool')(x)
  else:
    shortcut = x
  x, _ = _residual_branch(x, filters, out_filters, bottleneck=bottleneck,
                          stride=stride, act=act, bn_sync=bn_sync, name=name)
  return keras.layers.Add(name=f'{name}_add')([shortcut, x])


def _stage_v2(x, filters, blocks, stride, *, stage, bottleneck, **kw):
  """The original's stack_v2: first block unstrided (1x1-conv shortcut if
  the stage is strided, or, unlike the original, if the channel count
  changes), the last block strided."""
  out_filters = filters * (4 if bottleneck else 1)
  for b in range(blocks):
    first, last = b == 0, b == blocks - 1
    x = _block_v2(
        x, filters, bottleneck=bottleneck,
        stride=stride if last else 1,
        conv_shortcut=first and (stride != 1 or x.shape[-1] != out_filters),
        name=f'{stage}_block{b + 1}', **kw)
  return x


def build_resnet(arch: str, *, num_classes: int,
                 input_shape: tuple[int, int, int], width: float = 1.0,
                 activation: str = 'relu', bn_sync: bool = False,
                 head_arch: str = 'linear', head_mlp_dims: Sequence[int] = (),
                 name: str | None = None) -> keras.Model:
  """Builds one of ARCHS.

  Args:
    arch: a key of ARCHS (case-insensitive).
    num_classes: K.
    input_shape: (H, W, C); H and W each one of SIZES (the stem follows H).
    width: multiplies the stage filters (int(64 * width), ...); the stem
      keeps 64.
    activation: 'relu' or 'leaky_relu' (slope 0.1).
    bn_sync: synchronised batch norm across replicas.
    head_arch: 'linear' or 'mlp'.
    head_mlp_dims: hidden widths of the 'mlp' head.
    name: model name (default '{arch}_w{width:g}_{activation}').

  Returns:
    A built keras.Model: images float32 [B, H, W, C] -> logits float32 [B, K].

  Raises:
    NetworkError: unknown arch, unsupported input size, width too small, or
      an invalid common argument.
  """
  by_lower = {k.lower(): k for k in ARCHS}
  if str(arch).lower() not in by_lower:
    raise NetworkError(f'Unknown ResNet {arch!r}; valid: {", ".join(ARCHS)}.')
  arch = by_lower[str(arch).lower()]
  blocks, bottleneck, preact = ARCHS[arch]
  shape = tuple(int(v) for v in input_shape)
  if len(shape) == 3 and (shape[0] not in STEMS or shape[1] not in STEMS):
    raise NetworkError(
        f'{arch} has stems for input sizes {", ".join(map(str, SIZES))} '
        f'only (height and width each one of them, as the original); got '
        f'input_shape {shape}. Resize the images or use --net_arch=WRN28.')
  common.check_common(num_classes=num_classes, input_shape=shape,
                      activation_kind=activation, head_arch=head_arch,
                      head_mlp_dims=head_mlp_dims, min_size=min(SIZES))
  filters = stage_filters(width)
  if min(filters) < 1:
    raise NetworkError(f'--net_width={width} leaves int(64 * width) = '
                      f'{filters[0]} filters; use a width >= 1/64.')
  kernel, stem_stride, maxpool = STEMS[shape[0]]
  kw = dict(act=activation, bn_sync=bn_sync)

  inputs = keras.Input(shape=shape, name='images')
  x = _conv(inputs, STEM_FILTERS, kernel, stem_stride, 'conv1_conv',
            use_bias=preact)
  if not preact:
    x = _act(_bn(x, bn_sync, 'conv1_bn'), activation, 'conv1')
  if maxpool:
    x = keras.layers.ZeroPadding2D(1, name='pool1_pad')(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name='pool1_pool')(x)
  for s, (f, n) in enumerate(zip(filters, blocks)):
    stage = f'conv{s + 2}'
    if preact:
      x = _stage_v2(x, f, n, 1 if s == 3 else 2, stage=stage,
                    bottleneck=bottleneck, **kw)
    else:
      for b in range(n):
        x = _block_v1(x, f, bottleneck=bottleneck,
                      stride=(1 if s == 0 else 2) if b == 0 else 1,
                      name=f'{stage}_block{b + 1}', **kw)
  if preact:
    x = _act(_bn(x, bn_sync, 'post_bn'), activation, 'post')
  x = keras.layers.GlobalAveragePooling2D(name='avg_pool')(x)
  logits = common.head(x, num_classes=int(num_classes), head_arch=head_arch,
                       head_mlp_dims=head_mlp_dims, kind=activation,
                       bn_sync=bn_sync, bn_momentum=BN_MOMENTUM,
                       kernel_initializer=keras.initializers.GlorotUniform)
  return keras.Model(inputs, logits,
                     name=name or f'{arch}_w{float(width):g}_{activation}')


def builder(arch: str) -> Callable[..., keras.Model]:
  """`build_resnet` bound to `arch`, with the registry's keyword signature."""
  if arch not in ARCHS:
    raise ValueError(f'Unknown ResNet {arch!r}; valid: {", ".join(ARCHS)}.')

  def build(**kwargs) -> keras.Model:
    return build_resnet(arch, **kwargs)

  build.__name__ = build.__qualname__ = f'build_{arch.lower()}'
  build.__doc__ = f'Builds {arch}; see `networks.resnet.build_resnet`.'
  return build


def original_variables(model: keras.Model) -> Dict[str, object]:
  """{the original's variable name: our variable} of a model from here.

  Our layers carry the original's names, except the classifier 'logits'
  (the original's 'predictions'). Names look like 'conv1_conv/kernel',
  'conv1_conv/bias' (V2), 'conv2_block1_0_bn/moving_mean',
  'post_bn/gamma' (V2), 'predictions/kernel'. The 'mlp' head's hidden
  layers, which the original has not, keep our names.
  """
  named = {}
  for layer in model.layers:
    prefix = 'predictions' if layer.name == 'logits' else layer.name
    if isinstance(layer, keras.layers.BatchNormalization):
      for attr in ('gamma', 'beta', 'moving_mean', 'moving_variance'):
        if getattr(layer, attr, None) is not None:
          named[f'{prefix}/{attr}'] = getattr(layer, attr)
    elif isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
      named[f'{prefix}/kernel'] = layer.kernel
      if layer.use_bias:
        named[f'{prefix}/bias'] = layer.bias
  return named
