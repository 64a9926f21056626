"""Network registry: `build(arch, ...)`, `names()`, `decay_variables(model)`.

Mixed precision: build under the desired global policy
(`keras.mixed_precision.set_global_policy('mixed_bfloat16')`); the hidden
layers then compute in the low-precision dtype while the variables stay
float32, and the classifier layer is float32, so logits are always float32.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Optional

import keras

from networks.errors import NetworkError
from networks import preact_block
from networks import resnet
from networks import small
from networks import wrn

IMPLS = ('lean', 'keras')


@dataclasses.dataclass(frozen=True)
class Entry:
  """One architecture.

  Attributes:
    build: the builder (keyword arguments of `build` below, `impl` included).
    impls: the implementations it offers ('lean': memory-lean custom-gradient
      blocks; 'keras': plain Keras layers); the first is the default.
    original_variables: model -> {the original's variable name (e.g.
      'conv2_block1_1_conv/kernel', ':0' dropped): our variable}, for
      loading the original's weights; None if it has no original.
  """
  build: Callable[..., keras.Model]
  impls: tuple = ('keras',)
  original_variables: Optional[Callable[[keras.Model], Dict]] = None


_ENTRIES: dict[str, Entry] = {
    'WRN28': Entry(wrn.build_wrn28, wrn.IMPLS, wrn.original_variables),
    'WRN37': Entry(wrn.build_wrn37, wrn.IMPLS, wrn.original_variables),
    'small': Entry(small.build_small),
    **{arch: Entry(resnet.builder(arch), ('keras',),
                   resnet.original_variables) for arch in resnet.ARCHS},
}


def names() -> list[str]:
  """The registered architecture names, e.g. ['WRN28', 'small']."""
  return list(_ENTRIES)


def _lookup(arch: str) -> Entry:
  by_lower = {k.lower(): v for k, v in _ENTRIES.items()}
  entry = by_lower.get(str(arch).lower())
  if entry is None:
    raise NetworkError(f'Unknown network architecture {arch!r}; valid choices '
                      f'(case-insensitive): {", ".join(names())}.')
  return entry


def impls(arch: str) -> tuple:
  """The implementations `arch` offers, the default first."""
  return _lookup(arch).impls


def original_variables(arch: str, model: keras.Model) -> Dict:
  """{original variable name: our variable} of a model built as `arch`.

  Raises:
    NetworkError: unknown architecture, or one with no original.
  """
  entry = _lookup(arch)
  if entry.original_variables is None:
    raise NetworkError(f'Network {arch!r} has no counterpart in the original '
                      'code, so its weights cannot be loaded by name.')
  return entry.original_variables(model)


def build(arch: str, *, num_classes: int, input_shape: tuple[int, int, int],
          width: float = 2, activation: str = 'leaky_relu',
          bn_sync: bool = False, head_arch: str = 'linear',
          head_mlp_dims: tuple[int, ...] = (), impl: str | None = None,
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
    impl: one of `impls(arch)`; None, or 'lean' for a network without a
      lean build, is its default.
    name: model name.

  Returns:
    A built keras.Model; `model(images, training=...)` maps float32 images
    [B, H, W, C] in [-1, 1] to float32 logits [B, K]. Batch-norm moving
    statistics are in `model.non_trainable_variables`.

  Raises:
    NetworkError: unknown architecture or invalid argument.
  """
  entry = _lookup(arch)
  if impl is None or (impl == 'lean' and impl not in entry.impls):
    impl = entry.impls[0]  # 'lean' where the network has it.
  if impl not in entry.impls:
    raise NetworkError(f'--net_impl={impl!r} is not offered by {arch!r}; '
                      f'valid choices: {", ".join(entry.impls)}.')
  kwargs = dict(impl=impl) if len(entry.impls) > 1 else {}
  return entry.build(num_classes=num_classes, input_shape=tuple(input_shape),
                     width=width, activation=activation, bn_sync=bool(bn_sync),
                     head_arch=head_arch, head_mlp_dims=tuple(head_mlp_dims),
                     name=name, **kwargs)


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
