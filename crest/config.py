"""The run's configuration: one frozen, typed, validated object.

`crest.flags` turns command-line flags into a `Config`; everything else reads
only the `Config`. The resolved config is written as `config.json` into the
run directory when a run starts (the directory's name and files:
`crest.run_dir`).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, Mapping, Optional, Tuple

from crest import errors
from crest.errors import ConfigError

# Fields that do not change what a run computes: a rerun into the same
# directory may change them freely.
NON_SEMANTIC_FIELDS = frozenset({
    'model_dir', 'force_init', 'num_workers', 'cpu_replicas', 'ml_data',
    'eval_batch_size', 'steps_per_loop', 'progress', 'jit_compile',
    'keep_checkpoints', 'onednn', 'net_impl',
})


@dataclasses.dataclass(frozen=True)
class Config:
  """Every setting of a run. Field names are the flag names."""
  # What to train.
  method: str = 'fixmatch'
  dataset: str = 'cifar10'
  fold: int = 1
  class_im_ratio: float = 0.1
  percent_labeled: Optional[float] = None
  num_labeled: int = 25
  is_balanced: bool = True
  ml_data: str = ''
  data_file: str = ''
  darp_n1: Optional[int] = None
  darp_m1: Optional[int] = None
  darp_gamma_u: Optional[float] = None
  darp_unlabeled_shape: str = 'longtail'
  stl10_add_unused: bool = False
  imagenet127_test: str = 'imbalanced'
  input_shape: Tuple[int, int, int] = (32, 32, 3)
  # Augmentation.
  augment: str = 'dh'
  weakaug: str = 'dh'
  strongaug: str = 'dhrac'
  num_augment: int = 1
  num_weakaug: int = 1
  num_strongaug: int = 1
  # Network.
  net_arch: str = 'WRN28'
  net_width: float = 2
  net_impl: str = 'lean'
  activation: str = 'leaky_relu'
  bn_sync: bool = False
  head_arch: str = 'linear'
  head_mlp_dims: Tuple[int, ...] = ()
  # Optimisation.
  optim_type: str = 'sgd'
  sched_type: str = 'halfcos'
  sched_freq: str = 'step'
  sched_step_size: int = 1
  sched_gamma: float = 0.995
  sched_min_rate: float = 0.0
  sched_level: int = 1
  learning_rate: float = 0.03
  weight_decay: float = 0.0005
  ema_decay: float = 0.999
  momentum: float = 0.9
  nesterov: bool = True
  clip_value: float = 0.0
  num_epoch: int = 64
  num_batch: int = 1024
  batch_size: int = 64
  unlab_ratio: int = 1
  # Semi-supervised loss.
  unsup_loss_type: str = 'xe'
  unsup_loss_divisor: str = 'full'
  weight_unsup: float = 1.0
  threshold: float = 0.95
  temperature: float = 0.0
  mixup_beta: float = 0.75
  reweight_labeled: bool = False
  # CReST.
  num_generation: int = 15
  do_distalign: bool = False
  how_dalign: Optional[str] = None
  dalign_t: float = 0.5
  alpha: float = 3.0
  update_mode: str = 'distribution'
  # Run.
  model_dir: str = ''
  ckpt_prefix: str = ''
  file_path: str = ''
  file_suffix: str = ''
  seed: int = 0
  force_init: bool = False
  do_rollback: bool = False
  num_workers: int = 16
  cpu_replicas: int = 0
  deterministic: bool = False
  jit_compile: bool = False
  onednn: bool = True
  mixed_precision: str = 'float32'
  steps_per_loop: int = 1
  eval_batch_size: int = 1024
  keep_checkpoints: int = 4
  progress: bool = True

  # Derived values.
  @property
  def unlabeled_batch_size(self) -> int:
    return self.batch_size * self.unlab_ratio

  @property
  def steps_per_generation(self) -> int:
    return self.num_epoch * self.num_batch

  def to_dict(self) -> Dict[str, Any]:
    d = dataclasses.asdict(self)
    d['input_shape'] = list(self.input_shape)
    d['head_mlp_dims'] = list(self.head_mlp_dims)
    return d

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> 'Config':
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
      raise ConfigError(f'Unknown config keys {unknown}; valid keys: '
                        f'{sorted(known)}.')
    d = dict(d)
    if 'input_shape' in d:
      d['input_shape'] = tuple(d['input_shape'])
    if 'head_mlp_dims' in d:
      d['head_mlp_dims'] = tuple(d['head_mlp_dims'])
    return cls(**d)

  def replace(self, **changes: Any) -> 'Config':
    return dataclasses.replace(self, **changes)

  def data_args(self):
    """The data layer's settings (`data.base.DataArgs`) of this config."""
    from data import registry  # pylint: disable=g-import-not-at-top
    from data.base import DataArgs  # pylint: disable=g-import-not-at-top
    return DataArgs(dataset=self.dataset, ml_data=self.ml_data,
                    class_im_ratio=self.class_im_ratio,
                    percent_labeled=self.percent_labeled,
                    num_labeled=self.num_labeled,
                    is_balanced=self.is_balanced, fold=self.fold,
                    darp_n1=self.darp_n1, darp_m1=self.darp_m1,
                    darp_gamma_u=self.darp_gamma_u,
                    darp_unlabeled_shape=self.darp_unlabeled_shape,
                    data_file=self.data_file,
                    imagenet127_test=self.imagenet127_test,
                    image_size=(int(self.input_shape[0])
                                if registry.image_sizes(self.dataset)
                                else None),
                    stl10_add_unused=self.stl10_add_unused)


def semantic_diff(a: Config, b: Config) -> Dict[str, Tuple[Any, Any]]:
  """Fields that differ between two configs and change what a run computes."""
  da, db = a.to_dict(), b.to_dict()
  return {k: (da[k], db[k]) for k in sorted(da)
          if k not in NON_SEMANTIC_FIELDS and da[k] != db.get(k)}


def apply_method_defaults(values: Dict[str, Any],
                          explicitly_set: frozenset) -> Dict[str, Any]:
  """Applies the method's defaults (its module's DEFAULTS) to every flag the
  user did not set."""
  from crest import methods  # pylint: disable=g-import-not-at-top
  method = values.get('method', 'fixmatch')
  out = dict(values)
  defaults = methods.get(method).defaults if method in methods.names() else {}
  for name, value in defaults.items():
    if name not in explicitly_set:
      out[name] = value
  return out


_choice = errors.require_choice
_check = errors.require


def validate(cfg: Config, num_replicas: Optional[int] = None) -> Config:
  """Checks every field and combination; raises ConfigError naming the flag.

  Args:
    cfg: the config to check.
    num_replicas: replicas in sync, when known (the global batches must
      divide evenly among them).

  Returns:
    `cfg`, unchanged.
  """
  # Each part's owner checks its own settings; imported lazily so that
  # importing the config (and --help) stays cheap.
  # pylint: disable=g-import-not-at-top
  from augment import registry as augment_registry
  from crest import method_api
  from crest import methods
  from crest import models
  from crest import optimization
  from crest import selection
  from crest import xla_step
  from data import registry as data_registry
  # pylint: enable=g-import-not-at-top

  _choice('method', cfg.method, methods.names())
  data_registry.validate(cfg.data_args())
  for name in ('augment', 'weakaug', 'strongaug'):
    try:
      augment_registry.validate(getattr(cfg, name))
    except ValueError as e:
      raise ConfigError(f'--{name}: {e}') from None
  models.check(cfg)
  optimization.check(cfg)
  method_api.check_loss_settings(cfg)
  selection.check_settings(cfg)
  method = methods.get(cfg.method)
  method.check(cfg)

  # The run's own settings.
  _check(cfg.batch_size >= 1, '--batch_size must be at least 1.')
  _check(cfg.unlab_ratio >= 1, '--unlab_ratio must be at least 1.')
  _check(cfg.steps_per_loop >= 1, '--steps_per_loop must be at least 1.')
  _check(cfg.eval_batch_size >= 1, '--eval_batch_size must be at least 1.')
  _check(cfg.keep_checkpoints >= 1, '--keep_checkpoints must be at least 1.')
  _check(cfg.num_augment >= 1, '--num_augment must be at least 1.')
  _check(cfg.num_weakaug >= 0 and cfg.num_strongaug >= 0,
         '--num_weakaug and --num_strongaug must be >= 0.')
  _check(cfg.cpu_replicas >= 0, '--cpu_replicas must be >= 0.')
  _check(bool(cfg.model_dir), '--model_dir is required: the directory where '
         'checkpoints, summaries and records are written.')
  # What XLA can compile depends on the replicas (known on the second call).
  xla_step.check(cfg, num_replicas, method)
  if num_replicas is not None:
    for name, size in (('batch_size', cfg.batch_size),
                       ('batch_size * unlab_ratio', cfg.unlabeled_batch_size)):
      _check(size % num_replicas == 0,
             f'--{name} = {size} is the global batch and must be divisible by '
             f'the number of replicas ({num_replicas}); choose a multiple of '
             f'{num_replicas}.')
  return cfg


def with_data_shape(cfg: Config, image_shape: Tuple[int, int, int],
                    shape_was_set: bool) -> Config:
  """The one place `input_shape` is resolved: the data's image shape when
  --input_shape was left at its default, else the flag, which must match.

  Raises:
    ConfigError: an explicit --input_shape that is not the data's.
  """
  image_shape = tuple(int(d) for d in image_shape)
  if not shape_was_set:
    return cfg.replace(input_shape=image_shape)
  if tuple(cfg.input_shape) != image_shape:
    raise ConfigError(
        f'--input_shape={",".join(map(str, cfg.input_shape))} does not match '
        f'the data ({cfg.dataset} has images of shape '
        f'{",".join(map(str, image_shape))}); drop the flag or set it to the '
        "data's shape.")
  return cfg


def resolve_ml_data(flag_value: str) -> str:
  """`--ml_data`, else the `ML_DATA` environment variable, else ''."""
  return flag_value or os.environ.get('ML_DATA', '')
