"""Batch norm -> activation -> convolution(s), storing only the input.

In a pre-activation network, autodiff keeps three copies of each feature map
for the backward pass: the batch-norm input, the activation input and the
convolution input. `bn_act_conv` keeps only the first: its backward pass
recomputes the normalisation and the activation (elementwise, cheap) and
calls the convolution gradient kernels directly, so no convolution is run
twice. The numbers are those of autodiff through the plain ops (tested);
a WRN-28-2 FixMatch step needs about a third of the activation memory.

`BNActConv` is the Keras layer around it: batch norm with the FixMatch
constants, mean-aggregated moving statistics (as `common.BatchNorm`),
optionally synchronised batch statistics, then one or more bias-free 'same'
convolutions of the same activation (a block's first conv and its 1x1
shortcut).
"""
from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf

from networks import common


def _normalize_act(x, mean, var, gamma, beta, *, epsilon: float,
                   slope: float):
  """act(batch_norm(x)) in float32, as tf.nn.batch_normalization computes it.

  Args:
    x: float32 [B, H, W, C].
    mean, var, gamma, beta: float32 [C].
    epsilon: variance epsilon.
    slope: leaky-ReLU negative slope (0 for ReLU).

  Returns:
    float32 [B, H, W, C].
  """
  inv = tf.math.rsqrt(var + epsilon) * gamma
  y = x * inv + (beta - mean * inv)
  return tf.nn.leaky_relu(y, slope) if slope else tf.nn.relu(y)


def bn_act_conv(x: tf.Tensor, mean: tf.Tensor, var: tf.Tensor,
                gamma: tf.Tensor, beta: tf.Tensor,
                kernels: Sequence[tf.Tensor], strides: Sequence[int], *,
                epsilon: float, slope: float,
                differentiable: bool = True) -> list:
  """Convolutions of act(batch_norm(x)) that keep only `x` for backward.

  Args:
    x: features [B, H, W, C] (float32, or the compute dtype under mixed
      precision; the normalisation runs in float32).
    mean, var: float32 [C], the statistics to normalise with (batch moments
      in training; gradients flow into them, so moments computed from `x`
      outside this function get the right total gradient).
    gamma, beta: float32 [C].
    kernels: conv kernels [k, k, C, F_i] in the convolutions' dtype.
    strides: one stride per kernel.
    epsilon: batch-norm epsilon.
    slope: leaky-ReLU slope (0 for ReLU).
    differentiable: False for inference: the plain ops, no custom gradient.

  Returns:
    One output per kernel, [B, H / s_i, W / s_i, F_i] in the kernels' dtype.
  """
  strides = [int(s) for s in strides]
  norm = dict(epsilon=float(epsilon), slope=float(slope))

  def activation(x, mean, var, gamma, beta, dtype):
    a = _normalize_act(tf.cast(x, tf.float32), mean, var, gamma, beta, **norm)
    return tf.cast(a, dtype)

  def convolve(a, kernel, stride):
    return tf.nn.conv2d(a, kernel, stride, 'SAME')

  if not differentiable:
    a = activation(x, mean, var, gamma, beta, kernels[0].dtype)
    return [convolve(a, k, s) for k, s in zip(kernels, strides)]

  @tf.custom_gradient
  def fn(x, mean, var, gamma, beta, *kernels):
    a = activation(x, mean, var, gamma, beta, kernels[0].dtype)
    outputs = [convolve(a, k, s) for k, s in zip(kernels, strides)]

    def grad(*upstream):
      # The recomputation waits for the upstream gradient: otherwise graph
      # optimisation merges it with the forward's identical ops and keeps
      # the forward activation alive until the backward pass after all.
      with tf.control_dependencies(upstream):
        x_again = tf.identity(x)
      stats = [mean, var, gamma, beta]
      with tf.GradientTape() as tape:
        tape.watch([x_again] + stats)
        a = activation(x_again, mean, var, gamma, beta, kernels[0].dtype)
      grad_a = None
      grad_kernels = []
      for k, s, dy in zip(kernels, strides, upstream):
        da = tf.nn.conv2d_transpose(dy, k, tf.shape(a), s, 'SAME')
        grad_a = da if grad_a is None else grad_a + da
        grad_kernels.append(tf.compat.v1.nn.conv2d_backprop_filter(
            a, tf.shape(k), dy, [1, s, s, 1], 'SAME'))
      grads = tape.gradient(a, [x_again] + stats, output_gradients=grad_a)
      return grads + grad_kernels

    return outputs, grad

  return fn(x, mean, var, gamma, beta, *kernels)


@keras.saving.register_keras_serializable(package='crest')
class BNActConv(keras.layers.Layer):
  """Batch norm + activation + convolutions, memory-lean in training.

  Call: features [B, H, W, C] -> a list of [B, H / s_i, W / s_i, F_i], one
  per entry of `convs`. Variables: gamma, beta (trainable, no weight decay),
  moving_mean, moving_variance (non-trainable, MEAN-aggregated), kernel_i.
  """

  def __init__(self, convs: Sequence[Sequence[int]], activation: str,
               momentum: float = common.BN_MOMENTUM,
               epsilon: float = common.BN_EPSILON,
               synchronized: bool = False, **kwargs):
    """Args:
      convs: (filters, kernel size, stride) of each convolution.
      activation: 'leaky_relu' (slope 0.1) or 'relu'.
      momentum, epsilon: batch-norm constants.
      synchronized: batch statistics over all replicas.
      **kwargs: keras Layer arguments (name, dtype).
    """
    # No autocasting of variables: batch norm reads its statistics in
    # float32; the kernels are cast to the compute dtype explicitly.
    kwargs.setdefault('autocast', False)
    super().__init__(**kwargs)
    self.convs = [tuple(int(v) for v in c) for c in convs]
    common.activation(activation)  # Validates the name.
    self.activation = activation
    self.momentum = float(momentum)
    self.epsilon = float(epsilon)
    self.synchronized = bool(synchronized)

  def build(self, input_shape):
    c = int(input_shape[-1])
    self.gamma = self.add_weight(shape=(c,), initializer='ones', name='gamma')
    self.beta = self.add_weight(shape=(c,), initializer='zeros', name='beta')
    self.moving_mean = self.add_weight(
        shape=(c,), initializer='zeros', trainable=False,
        aggregation='mean', name='moving_mean')
    self.moving_variance = self.add_weight(
        shape=(c,), initializer='ones', trainable=False,
        aggregation='mean', name='moving_variance')
    self.kernels = [
        self.add_weight(shape=(k, k, c, f), initializer=common.conv_initializer(),
                        name=f'kernel{i}')
        for i, (f, k, _) in enumerate(self.convs)]

  @property
  def batch_norm_variables(self) -> list:
    """gamma and beta (excluded from weight decay)."""
    return [self.gamma, self.beta]

  def call(self, x, training=None):
    f32 = lambda v: tf.cast(tf.convert_to_tensor(v), tf.float32)
    if training and self.trainable:
      mean, var = keras.ops.moments(tf.cast(x, tf.float32), axes=[0, 1, 2],
                                    synchronized=self.synchronized)
      common.update_moving_average(self.moving_mean, mean, self.momentum)
      common.update_moving_average(self.moving_variance, var, self.momentum)
    else:
      mean, var = f32(self.moving_mean), f32(self.moving_variance)
    kernels = [tf.cast(k, self.compute_dtype) for k in self.kernels]
    return bn_act_conv(
        tf.cast(x, self.compute_dtype), mean, var, f32(self.gamma),
        f32(self.beta),
        kernels, [s for _, _, s in self.convs], epsilon=self.epsilon,
        slope=common.LEAKY_SLOPE if self.activation == 'leaky_relu' else 0.0,
        differentiable=bool(training))

  def compute_output_shape(self, input_shape):
    b, h, w, _ = input_shape
    return [(b, None if h is None else -(-h // s),
             None if w is None else -(-w // s), f) for f, _, s in self.convs]

  def get_config(self):
    config = super().get_config()
    config.update(convs=self.convs, activation=self.activation,
                  momentum=self.momentum, epsilon=self.epsilon,
                  synchronized=self.synchronized)
    return config
