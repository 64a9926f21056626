"""A pre-activation residual block whose backward pass keeps little memory.

  a1 = act(bn1(x));  r1 = conv3x3(a1, stride);  a2 = act(bn2(r1))
  out = shortcut + conv3x3(a2)
  shortcut = x                      ('identity': same channels, stride 1)
           | conv1x1(a1, stride)    ('activation': the original's first
                                     block of every group, conv_shortcut)
           | a1                     ('activation_identity': such a first
                                     block when the channel count stays,
                                     e.g. WRN-28-1's 16 -> 16)
           | conv1x1(x, stride)     ('input': other channel changes; not
                                     used by the WideResNets)

Padding as the original's `convnxn`: every k x k convolution has k // 2 zero
pixels on each side and then convolves without padding. For stride 1 that is
'SAME'; for stride 2 on an even size 'SAME' would pad (0, 1) and sample other
positions, so the strided 3x3 convolution zero-pads its input with
`tf.pad` and convolves 'VALID' (TF's kernels for an explicit padding
attribute are Eigen's, not oneDNN's: 2x-20x slower). 1x1 convolutions have
no padding ('VALID' = 'SAME' there).

Autodiff through these ops keeps about six feature maps per block for the
backward pass (both batch-norm inputs, both activation inputs, both
activations). `preact_block` keeps only `x` and `r1`, or only `x` with
`recompute=True` (r1 is then recomputed: one more convolution per block).
Batch norm runs TF's fused kernel as the original's Keras 2 layer did
(`bn_act.batch_norm_train`: the original's outputs to the last bit); the
backward pass runs it once more to recompute the activations exactly (the
activation's derivative is read from their sign), takes the batch-norm
gradients with the fused kernel's own gradient op (in closed form, through
the all-reduced sums, for statistics synchronised over several replicas:
`bn_act.normalize_act_grad`) and calls the convolution gradient kernels
directly, so the numbers are those of autodiff
through the plain ops (tested), and no convolution runs twice unless
`recompute`.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from networks import bn_act
from networks import common

SHORTCUTS = ('identity', 'activation', 'input', 'activation_identity')


def kernel_initializer() -> keras.initializers.Initializer:
  """A fresh initialiser for one kernel: the original's
  VarianceScaling(2.0, 'fan_out') with Keras' default truncated normal
  (stddev sqrt(2 / (k * k * filters)) / 0.8796, cut at 2 stddev)."""
  return keras.initializers.VarianceScaling(
      scale=2.0, mode='fan_out', distribution='truncated_normal')


def padding(kernel_size: int, stride: int):
  """The conv-op padding equal to the original's k // 2 zeros on each
  side followed by a 'VALID' convolution: 'SAME' where that is the same
  (stride 1, odd kernel), 'VALID' for 1x1, explicit otherwise."""
  pad = int(kernel_size) // 2
  if not pad:
    return 'VALID'
  if int(stride) == 1 and int(kernel_size) % 2:
    return 'SAME'
  return [[0, 0], [pad, pad], [pad, pad], [0, 0]]


def _conv(x, kernel, stride: int):
  """conv(x, kernel) with `padding`: an explicit padding is applied with
  `tf.pad` and the convolution runs 'VALID' (oneDNN has no kernels for
  explicit padding: TF falls back to Eigen's, 2x slower in float32 and
  about 20x in bfloat16 on an AVX-512 EPYC)."""
  pad = padding(kernel.shape[0], stride)
  if isinstance(pad, list):
    x, pad = tf.pad(x, pad), 'VALID'
  return tf.nn.conv2d(x, kernel, stride, pad)


def _conv_grads(inputs, kernel, grad_out, stride: int) -> tuple:
  """(grad wrt inputs, grad wrt kernel) of _conv(inputs, kernel, stride):
  the convolution's own gradient ops; for an explicit padding those of the
  'VALID' convolution of the padded map, the border cropped from the input
  gradient."""
  pad = padding(kernel.shape[0], stride)
  crop = None
  if isinstance(pad, list):
    inputs, crop, pad = tf.pad(inputs, pad), pad, 'VALID'
  grad_in = tf.nn.conv2d_transpose(grad_out, kernel, tf.shape(inputs), stride,
                                   pad)
  grad_kernel = tf.compat.v1.nn.conv2d_backprop_filter(
      inputs, tf.shape(kernel), grad_out, [1, stride, stride, 1], pad)
  if crop is not None:
    (_, _), (top, bottom), (left, right), (_, _) = crop
    size = tf.shape(grad_in)
    grad_in = grad_in[:, top:size[1] - bottom, left:size[2] - right, :]
  return grad_in, grad_kernel


def preact_block(x: tf.Tensor, bn1: tuple, bn2: tuple, kernel1: tf.Tensor,
                 kernel2: tf.Tensor, shortcut_kernel: tf.Tensor | None, *,
                 stride: int, shortcut: str, epsilon: float, slope: float,
                 training: bool, synchronized: bool = False,
                 recompute: bool = False) -> tuple:
  """One pre-activation block (see the module docstring).

  Args:
    x: features [B, H, W, C] in the kernels' dtype.
    bn1, bn2: (gamma, beta, moving_mean, moving_variance), float32 [C] and
      [F]; in training (gamma, beta) suffice (batch statistics are used).
    kernel1: [3, 3, C, F]; kernel2: [3, 3, F, F]; shortcut_kernel:
      [1, 1, C, F], or None for 'identity' and 'activation_identity'.
    stride: of kernel1 and the shortcut conv ('identity' and
      'activation_identity' need stride 1).
    shortcut: one of SHORTCUTS.
    epsilon: batch-norm epsilon.
    slope: leaky-ReLU slope (0 for ReLU).
    training: batch statistics and the memory-lean gradient; otherwise
      the moving statistics and plain ops.
    synchronized: batch statistics over all replicas.
    recompute: keep only `x` for the backward pass, recomputing r1.

  Returns:
    (out [B, H / stride, W / stride, F], stats): stats are the batch
    (mean1, var1, mean2, var2), float32, in training, the variances
    Bessel-corrected (what the moving variances move towards, as in the
    original); () otherwise.
  """
  if shortcut not in SHORTCUTS:
    raise ValueError(f'Unknown shortcut {shortcut!r}; valid choices: '
                     f'{", ".join(SHORTCUTS)}.')
  stride = int(stride)
  if stride != 1 and shortcut in ('identity', 'activation_identity'):
    raise ValueError(f'A {shortcut!r} shortcut cannot have stride {stride}.')
  norm = dict(epsilon=float(epsilon), slope=float(slope))
  dtype = kernel1.dtype
  projected = shortcut in ('activation', 'input')
  extra = [shortcut_kernel] if projected else []

  def shortcut_of(x, a1, kernels):
    if shortcut == 'identity':
      return x
    if shortcut == 'activation_identity':
      return a1
    return _conv(a1 if shortcut == 'activation' else x, kernels[0], stride)

  if not training:
    (g1, b1, m1, v1), (g2, b2, m2, v2) = bn1, bn2
    a1 = bn_act.normalize_act(x, m1, v1, g1, b1, dtype=dtype, **norm)
    r1 = _conv(a1, kernel1, stride)
    a2 = bn_act.normalize_act(r1, m2, v2, g2, b2, dtype=dtype, **norm)
    return shortcut_of(x, a1, extra) + _conv(a2, kernel2, 1), ()

  sync = dict(synchronized=bool(synchronized))
  # The recomputation must normalise as the forward pass did (bit for bit:
  # the activation's derivative is read from the sign of its output).
  fused = bn_act.fused_applies(bool(synchronized))

  def bn_act_again(t, gamma, beta, mean, var):
    y, saved = bn_act.renormalize(t, gamma, beta, mean, var,
                                  epsilon=norm['epsilon'], fused=fused)
    return tf.cast(bn_act.activation(y, norm['slope']), dtype), saved

  def bn_act_train(t, gamma, beta):
    y, mean, var, var_unbiased = bn_act.batch_norm_train(
        t, gamma, beta, epsilon=norm['epsilon'], **sync)
    return tf.cast(bn_act.activation(y, norm['slope']), dtype), (
        mean, var, var_unbiased)

  @tf.custom_gradient
  def block(x, g1, b1, g2, b2, kernel1, kernel2, *kernels):
    a1, (m1, v1, u1) = bn_act_train(x, g1, b1)
    r1 = _conv(a1, kernel1, stride)
    a2, (m2, v2, u2) = bn_act_train(r1, g2, b2)
    out = shortcut_of(x, a1, kernels) + _conv(a2, kernel2, 1)

    def grad(grad_out, *unused_stat_grads):
      # Recomputation waits for the upstream gradient: otherwise graph
      # optimisation merges it with the forward's identical ops and keeps
      # the forward maps alive until the backward pass after all.
      with tf.control_dependencies([grad_out]):
        x_again = tf.identity(x)
        r1_again = None if recompute else tf.identity(r1)
      a1, saved1 = bn_act_again(x_again, g1, b1, m1, v1)
      if recompute:
        r1_again = _conv(a1, kernel1, stride)
      a2, saved2 = bn_act_again(r1_again, g2, b2, m2, v2)
      grad_a2, grad_k2 = _conv_grads(a2, kernel2, grad_out, 1)
      grad_r1, grad_g2, grad_b2 = bn_act.normalize_act_grad(
          r1_again, a2, grad_a2, m2, v2, g2, **norm, **sync, saved=saved2)
      grad_a1, grad_k1 = _conv_grads(a1, kernel1, grad_r1, stride)
      grad_kernels = []
      if shortcut == 'activation':
        grad_short, grad_ks = _conv_grads(a1, kernels[0], grad_out, stride)
        grad_a1 += grad_short
        grad_kernels.append(grad_ks)
      elif shortcut == 'activation_identity':
        grad_a1 += grad_out
      grad_x, grad_g1, grad_b1 = bn_act.normalize_act_grad(
          x_again, a1, grad_a1, m1, v1, g1, **norm, **sync, saved=saved1)
      if shortcut == 'input':
        grad_short, grad_ks = _conv_grads(x_again, kernels[0], grad_out,
                                          stride)
        grad_x += grad_short
        grad_kernels.append(grad_ks)
      elif shortcut == 'identity':
        grad_x += grad_out
      return [grad_x, grad_g1, grad_b1, grad_g2, grad_b2, grad_k1,
              grad_k2] + grad_kernels

    return (out, m1, u1, m2, u2), grad

  out, m1, u1, m2, u2 = block(x, bn1[0], bn1[1], bn2[0], bn2[1], kernel1,
                              kernel2, *extra)
  return out, (m1, u1, m2, u2)


def shortcut_kind(channels: int, filters: int, stride: int,
                  activate_before_residual: bool) -> str:
  """The SHORTCUTS entry of a block (the original's `block3` rule).

  Raises:
    ValueError: stride != 1 without a channel change (nothing to project).
  """
  if int(channels) != int(filters):
    return 'activation' if activate_before_residual else 'input'
  if int(stride) != 1:
    raise ValueError(f'A block with stride {stride} must change the '
                     f'channel count (identity shortcut), got {channels} -> '
                     f'{filters}.')
  return 'activation_identity' if activate_before_residual else 'identity'


@keras.saving.register_keras_serializable(package='crest')
class PreActBlock(keras.layers.Layer):
  """A pre-activation residual block, memory-lean in training.

  Call: features [B, H, W, C] -> [B, H / stride, W / stride, filters].
  Variables: gamma1, beta1, kernel1, [shortcut_kernel], gamma2, beta2,
  kernel2 (trainable; gamma/beta carry no weight decay) and moving_mean1,
  moving_variance1, moving_mean2, moving_variance2 (non-trainable,
  MEAN-aggregated, updated through `common.update_moving_average`).
  Batch norm uses the original WRN's constants (0.999, 1e-3) by default;
  kernels start from `kernel_initializer()` (one instance each).

  The shortcut, as the original's `block3`: its source is act(bn1(x)) when
  `activate_before_residual` (the first block of every group) and x
  otherwise; it goes through a 1x1 convolution with the block's stride
  exactly when the channel count changes.
  """

  def __init__(self, filters: int, stride: int = 1,
               activate_before_residual: bool = False,
               activation: str = 'leaky_relu',
               momentum: float = common.BN_MOMENTUM,
               epsilon: float = common.BN_EPSILON,
               synchronized: bool = False, recompute: bool = False,
               **kwargs):
    """Args:
      filters: output channels F.
      stride: of the first conv and of the shortcut conv.
      activate_before_residual: the shortcut takes act(bn1(x)) instead of
        x (projected or not).
      activation: 'leaky_relu' (slope 0.1) or 'relu'.
      momentum, epsilon: batch-norm constants.
      synchronized: batch statistics over all replicas.
      recompute: keep only the input for the backward pass (one more
        convolution per training step, half the stored maps).
      **kwargs: keras Layer arguments (name, dtype).
    """
    # No autocasting: batch norm reads its variables in float32; kernels
    # are cast to the compute dtype explicitly.
    kwargs.setdefault('autocast', False)
    super().__init__(**kwargs)
    common.activation(activation)  # Validates the name.
    self.filters = int(filters)
    self.stride = int(stride)
    self.activate_before_residual = bool(activate_before_residual)
    self.activation = activation
    self.momentum = float(momentum)
    self.epsilon = float(epsilon)
    self.synchronized = bool(synchronized)
    self.recompute = bool(recompute)
    self.shortcut = None

  def _batch_norm_weights(self, channels: int, suffix: str) -> tuple:
    return (
        self.add_weight(shape=(channels,), initializer='ones',
                        name=f'gamma{suffix}'),
        self.add_weight(shape=(channels,), initializer='zeros',
                        name=f'beta{suffix}'),
        self.add_weight(shape=(channels,), initializer='zeros',
                        trainable=False, aggregation='mean',
                        name=f'moving_mean{suffix}'),
        self.add_weight(shape=(channels,), initializer='ones',
                        trainable=False, aggregation='mean',
                        name=f'moving_variance{suffix}'))

  def _kernel(self, size: int, channels: int, name: str):
    return self.add_weight(shape=(size, size, channels, self.filters),
                           initializer=kernel_initializer(), name=name)

  def build(self, input_shape):
    c = int(input_shape[-1])
    self.shortcut = shortcut_kind(c, self.filters, self.stride,
                                  self.activate_before_residual)
    self.bn1 = self._batch_norm_weights(c, '1')
    self.kernel1 = self._kernel(3, c, 'kernel1')
    self.shortcut_kernel = (
        self._kernel(1, c, 'shortcut_kernel')
        if self.shortcut in ('activation', 'input') else None)
    self.bn2 = self._batch_norm_weights(self.filters, '2')
    self.kernel2 = self._kernel(3, self.filters, 'kernel2')

  @property
  def batch_norm_variables(self) -> list:
    """gamma1, beta1, gamma2, beta2 (excluded from weight decay)."""
    return [*self.bn1[:2], *self.bn2[:2]]

  @property
  def kernels(self) -> list:
    """The conv kernels: kernel1, kernel2 and the shortcut's if any."""
    return [self.kernel1, self.kernel2] + (
        [self.shortcut_kernel] if self.shortcut_kernel is not None else [])

  def call(self, x, training=None):
    training = bool(training) and self.trainable
    f32 = lambda v: tf.cast(tf.convert_to_tensor(v), tf.float32)
    dtype = self.compute_dtype
    cast = lambda k: None if k is None else tf.cast(k, dtype)
    # Training normalises with batch statistics: no moving ones to read.
    bn = lambda weights: tuple(f32(v) for v in weights[:2 if training else 4])
    out, stats = preact_block(
        tf.cast(x, dtype), bn(self.bn1), bn(self.bn2), cast(self.kernel1),
        cast(self.kernel2), cast(self.shortcut_kernel), stride=self.stride,
        shortcut=self.shortcut, epsilon=self.epsilon,
        slope=common.LEAKY_SLOPE if self.activation == 'leaky_relu' else 0.0,
        training=training, synchronized=self.synchronized,
        recompute=self.recompute)
    if training:
      moving = [self.bn1[2], self.bn1[3], self.bn2[2], self.bn2[3]]
      for variable, value in zip(moving, stats):
        common.update_moving_average(variable, value, self.momentum)
    return out

  def compute_output_shape(self, input_shape):
    b, h, w, _ = input_shape
    size = lambda n: None if n is None else -(-n // self.stride)
    return (b, size(h), size(w), self.filters)

  def get_config(self):
    config = super().get_config()
    config.update(
        filters=self.filters, stride=self.stride,
        activate_before_residual=self.activate_before_residual,
        activation=self.activation, momentum=self.momentum,
        epsilon=self.epsilon, synchronized=self.synchronized,
        recompute=self.recompute)
    return config
