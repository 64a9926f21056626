"""Network registry: `build(arch, ...)`, `names()`, `decay_variables(model)`.

Mixed precision: build under the desired global policy
(`keras.mixed_precision.set_global_policy('mixed_bfloat16')`); the hidden
layers then compute in the low-precision dtype while the variables stay
float32, and the classifier layer is float32, so logits are always float32.
"""
from __future__ import annotations

from typing import Callable

import keras

from crest.errors import ConfigError
from networks import preact_block
from networks import small
from networks import wrn

_BUILDERS: dict[str, Callable[..., keras.Model]] = {
    'WRN28': wrn.build_wrn28,
    'small': small.build_small,
}


def names() -> list[str]:
  """The registered architecture names: ['WRN28', 'small']."""
  return list(_BUILDERS)


def _lookup(arch: str) -> Callable[..., keras.Model]:
  by_lower = {k.lower(): v for k, v in _BUILDERS.items()}
  builder = by_lower.get(str(arch).lower())
  if builder is None:
    raise ConfigError(f'Unknown network architecture {arch!r}; valid choices '
                      f'(case-insensitive): {", ".join(names())}.')
  return builder


def build(arch: str, *, num_classes: int, input_shape: tuple[int, int, int],
          width: int = 2, activation: str = 'leaky_relu',
          bn_sync: bool = False, head_arch: str = 'linear',
          head_mlp_dims: tuple[int, ...] = (),
          name: str | None = None) -> keras.Model:
  """Builds a fresh, independently initialised classifier.

  Args:
    arch: 'WRN28' or 'small' (case-insensitive).
    num_classes: K.
    input_shape: (H, W, C).
    width: widening factor (WRN-28-k), or base width / 16 ('small').
    activation: 'leaky_relu' (slope 0.1) or 'relu'.
    bn_sync: synchronise batch-norm statistics across replicas
      (`tf.distribute`, TensorFlow backend).
    head_arch: 'linear' or 'mlp' (Dense + BN + act per `head_mlp_dims`, then
      the linear classifier). `head_mlp_dims` is ignored for 'linear'.
    head_mlp_dims: hidden widths of the 'mlp' head.
    name: model name.

  Returns:
    A built keras.Model; `model(images, training=...)` maps float32 images
    [B, H, W, C] in [-1, 1] to float32 logits [B, K]. Batch-norm moving
    statistics are in `model.non_trainable_variables`.

  Raises:
    ConfigError: unknown architecture or invalid argument.
  """
  builder = _lookup(arch)
  return builder(num_classes=num_classes, input_shape=tuple(input_shape),
                 width=width, activation=activation, bn_sync=bool(bn_sync),
                 head_arch=head_arch, head_mlp_dims=tuple(head_mlp_dims),
                 name=name)


def _all_layers(layer: keras.layers.Layer):
  """Yields `layer` and every layer nested inside it."""
  yield layer
  for sub in getattr(layer, 'layers', ()):
    yield from _all_layers(sub)


def decay_variables(model: keras.Model) -> list:
  """The variables L2 weight decay applies to.

  Every trainable variable except batch-norm gamma and beta: conv kernels,
  dense kernels and dense biases. Order follows `model.trainable_variables`.

  Args:
    model: a model from `build`.

  Returns:
    A list of keras Variables.
  """
  excluded = set()
  for layer in _all_layers(model):
    if isinstance(layer, keras.layers.BatchNormalization):
      excluded.update(id(v) for v in layer.trainable_variables)
    elif isinstance(layer, preact_block.PreActBlock):
      excluded.update(id(v) for v in layer.batch_norm_variables)
  return [v for v in model.trainable_variables if id(v) not in excluded]
