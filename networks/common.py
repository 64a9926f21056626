"""Building blocks shared by the networks: initialisers, batch norm, heads.

Conventions (FixMatch family, which CReST follows):
  * Convolutions have no bias and a He normal initialiser computed on fan-out
    (stddev = sqrt(2 / (k * k * filters)), untruncated), as FixMatch's
    `tf.random_normal_initializer(stddev=rsqrt(0.5 * k * k * f))`.
  * Batch norm: momentum 0.999 (WideResNet; the small CNN uses 0.99), epsilon
    1e-3; moving statistics are non-trainable variables.
  * Dense layers: Glorot (Xavier) normal kernel, zero bias, as FixMatch's
    `tf.layers.dense(..., kernel_initializer=tf.glorot_normal_initializer())`.

Every layer gets its OWN initialiser instance. In Keras 3 an unseeded
initialiser draws its seed once, at construction, so sharing one instance
between layers would give every layer of one shape identical weights (the
defect of the original). Seeds come from Python's `random`, which
`keras.utils.set_random_seed` seeds, so builds are reproducible.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator, List, Sequence, Tuple

import keras
import tensorflow as tf

from networks.errors import NetworkError

BN_MOMENTUM = 0.999
BN_EPSILON = 1e-3
LEAKY_SLOPE = 0.1
ACTIVATIONS = ('leaky_relu', 'relu')
HEADS = ('linear', 'mlp')


def conv_initializer() -> keras.initializers.Initializer:
  """A fresh He normal (fan-out, untruncated) initialiser for one conv."""
  return keras.initializers.VarianceScaling(
      scale=2.0, mode='fan_out', distribution='untruncated_normal')


def dense_initializer() -> keras.initializers.Initializer:
  """A fresh Glorot normal initialiser for one dense kernel."""
  return keras.initializers.GlorotNormal()


def conv(filters: int, kernel: int, stride: int = 1,
         name: str | None = None) -> keras.layers.Conv2D:
  """A bias-free 'same' convolution with its own He fan-out initialiser."""
  return keras.layers.Conv2D(
      filters, kernel, strides=stride, padding='same', use_bias=False,
      kernel_initializer=conv_initializer(), name=name)


class _Collector(threading.local):
  updates = None


_COLLECTOR = _Collector()


@contextlib.contextmanager
def deferred_updates(initial: Sequence[Tuple[object, object]] = ()
                     ) -> Iterator[List[Tuple[object, object]]]:
  """Batch-norm layers called inside record their moving-statistic updates.

  Yields a list that fills with (variable, new value) pairs, to be assigned
  by the caller. A compiled (XLA) function cannot assign MEAN-aggregated
  variables inside `strategy.run` (a cross-replica synchronisation point),
  so the trainer returns the new values and assigns them outside. Per
  thread, as MirroredStrategy runs replicas in threads.

  Args:
    initial: (variable, value) pairs recorded by an earlier part of the same
      step (a loss compiled in two pieces): the layers continue from them.
  """
  previous, _COLLECTOR.updates = _COLLECTOR.updates, list(initial)
  try:
    yield _COLLECTOR.updates
  finally:
    _COLLECTOR.updates = previous


def read_moving(variable):
  """A moving statistic's current value, counting a recorded update (a layer
  called twice in one step, as MixMatch does, updates twice)."""
  for v, value in reversed(_COLLECTOR.updates or ()):
    if v is variable:
      return value
  return variable


def update_moving_average(variable, batch_value, momentum: float) -> None:
  """variable <- current * momentum + batch_value * (1 - momentum), through
  `update_moving`; `current` counts an update recorded earlier in the step.
  Computed in `batch_value`'s dtype."""
  current = keras.ops.cast(read_moving(variable), batch_value.dtype)
  update_moving(variable, current * momentum + batch_value * (1.0 - momentum))


def update_moving(variable, value) -> None:
  """Assigns `value` to a moving statistic, or records it (see above); a
  second update of the same variable replaces the recorded value."""
  updates = _COLLECTOR.updates
  if updates is None:
    variable.assign(value)
    return
  for i, (v, _) in enumerate(updates):
    if v is variable:
      updates[i] = (variable, value)
      return
  updates.append((variable, value))


@keras.saving.register_keras_serializable(package='crest')
class BatchNorm(keras.layers.BatchNormalization):
  """BatchNormalization whose moving statistics are MEAN-aggregated.

  Keras 3 creates the moving mean / variance with aggregation 'none'; under
  `tf.distribute.MirroredStrategy` each replica then assigns its own copy
  and the mirrored copies silently diverge (reading the variable returns
  replica 0's). Keras 2 used MEAN aggregation; so do we: in replica context
  the update is averaged across replicas, so all copies stay identical.
  Without a distribution strategy this is plain BatchNormalization.
  Moving-statistic updates go through `update_moving` (deferrable).
  """

  def add_weight(self, *args, **kwargs):
    if not kwargs.get('trainable', True):
      kwargs.setdefault('aggregation', 'mean')
    return super().add_weight(*args, **kwargs)

  def _moments(self, inputs, mask):
    """Keras' moments; synchronised ones on a single replica without the
    all-reduce (a synchronisation point even for one replica, which an
    XLA-compiled replica function cannot hold), by the same formula."""
    ctx = tf.distribute.get_replica_context()
    if (mask is not None or not self.synchronized or ctx is None or
        ctx.num_replicas_in_sync != 1):
      return super()._moments(inputs, mask)
    x = tf.cast(inputs, tf.float32)
    axes = self._reduction_axes
    count = tf.reduce_sum(tf.ones_like(x), axis=axes, keepdims=True)
    mean = tf.math.divide_no_nan(
        tf.reduce_sum(x, axis=axes, keepdims=True), count)
    squares = tf.math.divide_no_nan(
        tf.reduce_sum(tf.square(x), axis=axes, keepdims=True), count)
    variance = tf.maximum(squares - tf.square(mean), 0.0)
    return (tf.cast(tf.squeeze(mean, axes), inputs.dtype),
            tf.cast(tf.squeeze(variance, axes), inputs.dtype))

  def call(self, inputs, training=None, mask=None):
    """Keras' batch norm (no renorm, no mask), moving updates through
    `update_moving`."""
    if mask is not None or self.renorm:
      return super().call(inputs, training=training, mask=mask)
    x = keras.ops.cast(inputs, keras.backend.result_type(inputs.dtype,
                                                         'float32'))
    gamma = keras.ops.cast(self.gamma, x.dtype)
    beta = keras.ops.cast(self.beta, x.dtype)
    if training and self.trainable:
      mean, variance = self._moments(x, None)
      update_moving_average(self.moving_mean, mean, self.momentum)
      update_moving_average(self.moving_variance, variance, self.momentum)
    else:
      mean = keras.ops.cast(self.moving_mean, x.dtype)
      variance = keras.ops.cast(self.moving_variance, x.dtype)
    outputs = keras.ops.batch_normalization(
        x=x, mean=mean, variance=variance, axis=self.axis, offset=beta,
        scale=gamma, epsilon=self.epsilon)
    return keras.ops.cast(outputs, self.compute_dtype)


def batch_norm(bn_sync: bool, name: str | None = None,
               momentum: float = BN_MOMENTUM) -> BatchNorm:
  """Batch norm (FixMatch constants by default); batch statistics
  synchronised across replicas (TF backend, `tf.distribute`) when `bn_sync`."""
  return BatchNorm(
      momentum=momentum, epsilon=BN_EPSILON, synchronized=bn_sync,
      name=name)


def activation(kind: str, name: str | None = None) -> keras.layers.Layer:
  """'leaky_relu' (slope 0.1) or 'relu' as a layer."""
  if kind == 'leaky_relu':
    return keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=name)
  if kind == 'relu':
    return keras.layers.ReLU(name=name)
  raise NetworkError(
      f'Unknown activation {kind!r}; valid choices: {", ".join(ACTIVATIONS)}.')


def bn_act(x, *, kind: str, bn_sync: bool, name: str,
           momentum: float = BN_MOMENTUM):
  """Batch norm then activation.

  Args:
    x: features [B, ..., C].
    kind: activation name.
    bn_sync: synchronised batch norm.
    name: prefix of the two layer names.
    momentum: batch-norm moving-average momentum.

  Returns:
    Features of the same shape as `x`.
  """
  x = batch_norm(bn_sync, name=f'{name}_bn', momentum=momentum)(x)
  return activation(kind, name=f'{name}_act')(x)


def head(features, *, num_classes: int, head_arch: str,
         head_mlp_dims: Sequence[int], kind: str, bn_sync: bool,
         bn_momentum: float = BN_MOMENTUM,
         kernel_initializer: Callable[[], keras.initializers.Initializer] =
         dense_initializer):
  """Classifier head on pooled features.

  'linear': one Dense layer. 'mlp': for each d in `head_mlp_dims`, a bias-free
  Dense(d) (batch norm follows, so a bias would be redundant) + BN +
  activation, then the linear classifier. The classifier runs in float32 so
  logits are float32 under mixed-precision policies.

  Args:
    features: pooled features [B, C].
    num_classes: K.
    head_arch: 'linear' or 'mlp'.
    head_mlp_dims: hidden widths of the 'mlp' head.
    kind: activation name.
    bn_sync: synchronised batch norm.
    bn_momentum: batch-norm momentum of the 'mlp' layers.
    kernel_initializer: makes the classifier kernel's (fresh) initialiser.

  Returns:
    logits: float32 [B, K].
  """
  x = features
  if head_arch == 'mlp':
    for i, dim in enumerate(head_mlp_dims):
      x = keras.layers.Dense(
          int(dim), use_bias=False, kernel_initializer=dense_initializer(),
          name=f'head_mlp{i}_dense')(x)
      x = bn_act(x, kind=kind, bn_sync=bn_sync, name=f'head_mlp{i}',
                 momentum=bn_momentum)
  return keras.layers.Dense(
      num_classes, kernel_initializer=kernel_initializer(),
      bias_initializer='zeros', dtype='float32', name='logits')(x)


def check_common(*, num_classes: int, input_shape: Sequence[int],
                 activation_kind: str, head_arch: str,
                 head_mlp_dims: Sequence[int], min_size: int) -> None:
  """Raises NetworkError on arguments no network accepts."""
  if int(num_classes) < 1:
    raise NetworkError(f'num_classes must be >= 1, got {num_classes}.')
  if len(tuple(input_shape)) != 3:
    raise NetworkError(
        f'input_shape must be (H, W, C), got {tuple(input_shape)}.')
  h, w, c = (int(v) for v in input_shape)
  if h < min_size or w < min_size or c < 1:
    raise NetworkError(
        f'input_shape {tuple(input_shape)} is too small: height and width '
        f'must be >= {min_size} and channels >= 1.')
  if activation_kind not in ACTIVATIONS:
    raise NetworkError(f'Unknown activation {activation_kind!r}; valid '
                      f'choices: {", ".join(ACTIVATIONS)}.')
  if head_arch not in HEADS:
    raise NetworkError(f'Unknown head_arch {head_arch!r}; valid choices: '
                      f'{", ".join(HEADS)}.')
  if head_arch == 'mlp' and not tuple(head_mlp_dims):
    raise NetworkError("head_arch='mlp' needs head_mlp_dims, e.g. (128,).")
  if any(int(d) < 1 for d in head_mlp_dims):
    raise NetworkError(f'head_mlp_dims must be positive, got {head_mlp_dims}.')
