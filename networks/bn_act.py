"""Batch norm as the original's (Keras 2, fused) + activation, with a
closed-form backward pass.

Functions over tensors, used by `preact_block` so that its backward pass
needs only the block's input (and no taped copies of intermediate maps), and
`FusedBatchNorm`, the Keras layer over the same forward, used by the
WideResNets' plain-Keras build and their final batch norm.

Forward. The original's Keras 2 `BatchNormalization` runs TensorFlow's fused
kernel (`FusedBatchNormV3`): in training it normalises with the batch mean
and (biased) variance over [batch, height, width] and moves the moving
variance towards the Bessel-corrected batch variance (n / (n - 1)); in
inference it normalises with the moving statistics. We call the same kernel
(`batch_norm_train`, `batch_norm_infer`), so the normalised maps are those of
the original to the last bit (the activation's derivative at values within
rounding of 0 depends on it: a single such element of WRN-28-2's last block
moved one gradient by 6%). With `synchronized` statistics over several
replicas (no fused kernel can all-reduce) the statistics come from
`moments` over all replicas and
  inv = gamma / sqrt(var + eps);  y = x * inv + (beta - mean * inv)
as Keras' `moments` and `tf.nn.batch_normalization` compute them, in float32.
Then a = act(y). Mixed precision: the fused kernels take bfloat16 / float16
maps as they are, as Keras 2's fused layer passed them (statistics, scale
and arithmetic in float32 inside, the normalised map and the input gradient
rounded to the map's dtype; the activation runs in that dtype), which on an
AVX-512 CPU halves batch norm's cost against casting every map to float32
and back; the formula path computes in float32.

Backward, with xhat = (x - mean) / sqrt(var + eps), dy = da * act'(y)
(act'(y) read from the sign of a, which is that of y) and n the number of
positions the statistics were taken over:
  dbeta = sum(dy);  dgamma = sum(dy * xhat)
  dx = gamma / sqrt(var + eps) * (dy - sum(dy) / n - xhat * sum(dy xhat) / n)
where the sums inside dx run over all replicas when the statistics did
(the gradient through the all-reduced moments), and dbeta / dgamma are this
replica's own sums (the optimizer all-reduces parameter gradients).
"""
from __future__ import annotations

import keras
import tensorflow as tf

from networks import common

_AXES = [0, 1, 2]


def _replicas() -> int:
  ctx = tf.distribute.get_replica_context()
  return 1 if ctx is None else int(ctx.num_replicas_in_sync)


def fused_applies(synchronized: bool) -> bool:
  """Whether training batch norm runs the fused kernel here: always, except
  for synchronised statistics over more than one replica."""
  return not (synchronized and _replicas() > 1)


# Map dtypes the fused kernels take as they are; others are cast to float32.
_FUSED_DTYPES = (tf.float32, tf.bfloat16, tf.float16)


def _fused_input(x: tf.Tensor) -> tf.Tensor:
  return x if x.dtype in _FUSED_DTYPES else tf.cast(x, tf.float32)


def _count(x: tf.Tensor) -> tf.Tensor:
  """Positions per channel, float32 (all replicas' under `strategy.run`:
  equal per-replica batches assumed, as MirroredStrategy gives)."""
  return tf.cast(tf.reduce_prod(tf.shape(x)[:3]), tf.float32)


def activation(y: tf.Tensor, slope: float) -> tf.Tensor:
  """Leaky ReLU with `slope` (ReLU for 0), as Keras' layers compute it."""
  return tf.nn.leaky_relu(y, slope) if slope else tf.nn.relu(y)


def _formula(x, mean, var, gamma, beta, epsilon):
  inv = tf.math.rsqrt(var + epsilon) * gamma
  return tf.cast(x, tf.float32) * inv + (beta - mean * inv)


def batch_norm_train(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, *,
                     epsilon: float, synchronized: bool = False) -> tuple:
  """Training-mode batch norm with batch statistics.

  Args:
    x: features [B, H, W, C], any float dtype (normalised in float32).
    gamma, beta: float32 [C].
    epsilon: variance epsilon.
    synchronized: statistics over all replicas (inside `strategy.run`).

  Returns:
    (y [B, H, W, C], mean, var, var_unbiased float32 [C]); y is in x's
    dtype from the fused kernel for float32 / bfloat16 / float16 maps,
    float32 otherwise;
    `var` is the biased variance y was normalised with, `var_unbiased`
    = var * n / (n - 1), what the moving variance moves towards.
    Differentiable (the fused kernel's gradient, or autodiff through the
    synchronised moments).
  """
  if fused_applies(synchronized):
    y, mean, var_unbiased = tf.raw_ops.FusedBatchNormV3(
        x=_fused_input(x), scale=gamma, offset=beta,
        mean=tf.constant([], tf.float32),
        variance=tf.constant([], tf.float32), epsilon=float(epsilon),
        exponential_avg_factor=1.0, data_format='NHWC',
        is_training=True)[:3]
    n = _count(x)
    var = var_unbiased * ((n - 1.0) / tf.maximum(n, 1.0))
    return y, mean, var, var_unbiased
  mean, var = moments(x, synchronized=True)
  y = _formula(x, mean, var, gamma, beta, epsilon)
  n = _count(x) * float(_replicas())
  return y, mean, var, var * (n / tf.maximum(n - 1.0, 1.0))


def renormalize(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor,
                mean: tf.Tensor, var: tf.Tensor, *, epsilon: float,
                fused: bool) -> tuple:
  """`batch_norm_train(x, ...)`'s y once more, bit for bit, for a backward
  pass that did not keep it.

  Fused: the fused kernel in training mode again (its inference mode given
  the batch statistics can differ in the last bit, which flips the
  activation's derivative at values within rounding of 0; the extra
  reduction costs about 20% of one inference-mode pass), which also gives
  what its gradient kernel needs. Otherwise the formula with the
  synchronised statistics `mean`, `var`.

  Returns:
    (y [B, H, W, C], dtype as `batch_norm_train`'s, saved): `saved` is the
    fused kernel's reserve
    spaces for `normalize_act_grad`, or None.
  """
  if fused:
    y, _, _, *saved = tf.raw_ops.FusedBatchNormV3(
        x=_fused_input(x), scale=gamma, offset=beta,
        mean=tf.constant([], tf.float32),
        variance=tf.constant([], tf.float32), epsilon=float(epsilon),
        exponential_avg_factor=1.0, data_format='NHWC', is_training=True)
    return y, tuple(saved)
  return _formula(x, mean, var, gamma, beta, epsilon), None


def batch_norm_infer(x: tf.Tensor, mean: tf.Tensor, var: tf.Tensor,
                     gamma: tf.Tensor, beta: tf.Tensor, *, epsilon: float,
                     fused: bool = True) -> tf.Tensor:
  """Batch norm with given (moving) statistics.

  Args:
    x: features [B, H, W, C].
    mean, var, gamma, beta: float32 [C].
    epsilon: variance epsilon.
    fused: the fused kernel in inference mode (the original's inference);
      else the formula.

  Returns:
    y [B, H, W, C] (fused: in x's dtype as `batch_norm_train`'s; the
    formula: float32). Not differentiable w.r.t. mean and var when fused.
  """
  if fused:
    return tf.raw_ops.FusedBatchNormV3(
        x=_fused_input(x), scale=gamma, offset=beta, mean=mean,
        variance=var, epsilon=float(epsilon), data_format='NHWC',
        is_training=False)[0]
  return _formula(x, mean, var, gamma, beta, epsilon)


def moments(x: tf.Tensor, synchronized: bool = False) -> tuple:
  """Batch mean and variance per channel, as `keras.ops.moments`.

  Args:
    x: features [B, H, W, C], any float dtype.
    synchronized: over all replicas (inside `strategy.run`).

  Returns:
    (mean, var), float32 [C] each.
  """
  return keras.ops.moments(tf.cast(x, tf.float32), axes=_AXES,
                           synchronized=synchronized)


def normalize_act(x: tf.Tensor, mean: tf.Tensor, var: tf.Tensor,
                  gamma: tf.Tensor, beta: tf.Tensor, *, epsilon: float,
                  slope: float, dtype=None) -> tf.Tensor:
  """act(batch_norm_infer(x, ...)) with the fused kernel (inference).

  Args:
    x: features [B, H, W, C].
    mean, var, gamma, beta: float32 [C].
    epsilon: variance epsilon.
    slope: leaky-ReLU negative slope (0 for ReLU).
    dtype: output dtype (default: x's).

  Returns:
    [B, H, W, C] in `dtype`.
  """
  y = batch_norm_infer(x, mean, var, gamma, beta, epsilon=epsilon)
  return tf.cast(activation(y, slope), dtype or x.dtype)


def _sum_over_replicas(values: tf.Tensor) -> tf.Tensor:
  ctx = tf.distribute.get_replica_context()
  if ctx is None or ctx.num_replicas_in_sync == 1:
    return values
  return ctx.all_reduce(tf.distribute.ReduceOp.SUM, values)


def normalize_act_grad(x: tf.Tensor, a: tf.Tensor, grad_a: tf.Tensor,
                       mean: tf.Tensor, var: tf.Tensor, gamma: tf.Tensor, *,
                       epsilon: float, slope: float,
                       synchronized: bool = False, saved=None) -> tuple:
  """Gradients of act(batch_norm(x)) with batch statistics.

  Equals autodiff through `batch_norm_train` + `activation` (including the
  paths through the batch mean and variance). With `saved` (from
  `renormalize`'s fused kernel): the fused kernel's own gradient
  (FusedBatchNormGradV3, what autodiff of the forward runs; about 2.3x
  faster on this CPU than the closed form). Otherwise in closed form, in 9
  elementwise passes over the map where autodiff through the formula takes
  about 15 (with the sums over all replicas when `synchronized`).

  Args:
    x: the forward input [B, H, W, C].
    a: the forward output act(batch_norm(x)) (its sign is the activation's
      derivative: a > 0 exactly where the normalised value is).
    grad_a: gradient of the loss w.r.t. `a`, same shape.
    mean, var: float32 [C], the batch statistics the forward pass used.
    gamma: float32 [C].
    epsilon, slope: as in the forward pass.
    synchronized: the statistics were taken over all replicas.
    saved: `renormalize`'s reserve spaces (fused kernel), or None.

  Returns:
    (grad_x [B, H, W, C] in x's dtype, grad_gamma float32 [C],
     grad_beta float32 [C]).
  """
  if slope:
    dy = tf.raw_ops.LeakyReluGrad(gradients=grad_a, features=a, alpha=slope)
  else:
    dy = tf.raw_ops.ReluGrad(gradients=grad_a, features=a)
  if saved is not None:
    x_in = _fused_input(x)
    grad_x, grad_gamma, grad_beta = tf.raw_ops.FusedBatchNormGradV3(
        y_backprop=tf.cast(dy, x_in.dtype), x=x_in, scale=gamma,
        reserve_space_1=saved[0], reserve_space_2=saved[1],
        reserve_space_3=saved[2], epsilon=float(epsilon),
        data_format='NHWC', is_training=True)[:3]
    return tf.cast(grad_x, x.dtype), grad_gamma, grad_beta
  dy = tf.cast(dy, tf.float32)
  centred = tf.cast(x, tf.float32) - mean
  rstd = tf.math.rsqrt(var + epsilon)
  grad_beta = tf.reduce_sum(dy, _AXES)
  grad_gamma = tf.reduce_sum(dy * centred, _AXES) * rstd
  count = tf.cast(tf.reduce_prod(tf.shape(dy)[:3]), tf.float32)
  sums = tf.concat([grad_beta, grad_gamma, count[None]], 0)
  if synchronized:
    sums = _sum_over_replicas(sums)
  channels = tf.shape(grad_beta)[0]
  mean_dy = sums[:channels] / sums[-1]
  mean_dy_xhat = sums[channels:2 * channels] / sums[-1]
  # dx = inv (dy - mean(dy) - xhat mean(dy xhat)), xhat = centred * rstd.
  inv = rstd * gamma
  grad_x = dy * inv - centred * (inv * rstd * mean_dy_xhat) - inv * mean_dy
  return tf.cast(grad_x, x.dtype), grad_gamma, grad_beta


@keras.saving.register_keras_serializable(package='crest.bn_act')
class FusedBatchNorm(common.BatchNorm):
  """`common.BatchNorm` computed as the original's Keras 2 layer.

  Training: `batch_norm_train` (the fused kernel, or synchronised moments
  over several replicas); the moving variance moves towards the
  Bessel-corrected batch variance, as Keras 2's fused layer does. Inference:
  the fused kernel with the moving statistics. Moving statistics stay
  MEAN-aggregated and go through `common.update_moving_average`
  (deferrable).
  """

  def call(self, inputs, training=None, mask=None):
    if (mask is not None or self.renorm or len(inputs.shape) != 4 or
        self.axis not in (-1, 3)):
      return super().call(inputs, training=training, mask=mask)
    x = inputs
    gamma = tf.cast(tf.convert_to_tensor(self.gamma), tf.float32)
    beta = tf.cast(tf.convert_to_tensor(self.beta), tf.float32)
    if training and self.trainable:
      y, mean, _, var_unbiased = batch_norm_train(
          x, gamma, beta, epsilon=self.epsilon,
          synchronized=self.synchronized)
      common.update_moving_average(self.moving_mean, mean, self.momentum)
      common.update_moving_average(self.moving_variance, var_unbiased,
                                   self.momentum)
    else:
      f32 = lambda v: tf.cast(tf.convert_to_tensor(v), tf.float32)
      y = batch_norm_infer(x, f32(self.moving_mean),
                           f32(self.moving_variance), gamma, beta,
                           epsilon=self.epsilon)
    return tf.cast(y, self.compute_dtype)
