"""The trained model and its EMA copy, built from the config."""
from __future__ import annotations

from typing import List, Tuple

import keras
import tensorflow as tf

from crest import errors
from crest.config import Config
from networks import common as network_common
from networks import registry as networks

MIXED_PRECISION = ('float32', 'bfloat16', 'float16')


def check(cfg: Config) -> None:
  """The network settings (raises crest.errors.ConfigError); the builder
  checks the rest (widths, input sizes) when the model is made."""
  archs = networks.names()
  if cfg.net_arch.lower() not in [a.lower() for a in archs]:
    raise errors.ConfigError(f'--net_arch={cfg.net_arch!r} is not valid; '
                             f'choose one of: {", ".join(archs)}.')
  errors.require_range('net_width', cfg.net_width, 0, low_open=True,
                       meaning='the network width')
  errors.require_choice('net_impl', cfg.net_impl, networks.IMPLS)
  errors.require_choice('activation', cfg.activation,
                        network_common.ACTIVATIONS)
  errors.require_choice('head_arch', cfg.head_arch, network_common.HEADS)
  errors.require_choice('mixed_precision', cfg.mixed_precision,
                        MIXED_PRECISION)
  shape = tuple(cfg.input_shape)
  errors.require(len(shape) == 3 and all(d > 0 for d in shape),
                 f'--input_shape={shape} must be three positive integers '
                 'H,W,C, e.g. 32,32,3.')
  errors.require(shape[2] in (1, 3), f'--input_shape={shape}: images must '
                 'have 1 or 3 channels.')


def dtype_policy(cfg: Config) -> str:
  """The Keras dtype policy of `--mixed_precision`: layers compute in
  bfloat16 / float16 with float32 variables; logits stay float32."""
  return ('float32' if cfg.mixed_precision == 'float32' else
          f'mixed_{cfg.mixed_precision}')


def build_model_and_ema(cfg: Config, strategy: tf.distribute.Strategy,
                        num_classes: int, seed: int
                        ) -> Tuple[keras.Model, keras.Model, List]:
  """A freshly initialised model and its EMA (equal weights), in the
  strategy's scope, under the config's dtype policy (set process-wide:
  Keras 3 has no scoped policy).

  Returns:
    (model, ema, the model's weight-decayed variables).
  """
  keras.config.set_dtype_policy(dtype_policy(cfg))
  build = dict(num_classes=num_classes, input_shape=tuple(cfg.input_shape),
               width=cfg.net_width, activation=cfg.activation,
               bn_sync=cfg.bn_sync, head_arch=cfg.head_arch,
               head_mlp_dims=tuple(cfg.head_mlp_dims), impl=cfg.net_impl)
  with strategy.scope():
    keras.utils.set_random_seed(seed)
    model = networks.build(cfg.net_arch, name='model', **build)
    ema = networks.build(cfg.net_arch, name='ema', **build)
  for e, v in zip(ema.variables, model.variables):
    e.assign(v)
  return model, ema, networks.decay_variables(model)
