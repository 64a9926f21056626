"""The trained model and its EMA copy, built from the config."""
from __future__ import annotations

from typing import List, Tuple

import keras
import tensorflow as tf

from crest.config import Config
from networks import registry as networks


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
