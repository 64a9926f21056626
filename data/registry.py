"""Dataset registry: `load(args)`, `names()`, `validate(args)`.

Loader modules are imported only when a dataset is loaded, so importing the
registry is cheap and reads nothing.
"""
from __future__ import annotations

import dataclasses
import importlib
import math
import numbers
from typing import List, Optional, Tuple

from data import errors
from data import base
from data import layout
from data import splits

# Kinds of datasets, which decide the flags that matter:
#   'lt': long-tailed by class_im_ratio in (0, 1], split by percent_labeled.
#   'balanced': balanced CIFAR, split by num_labeled / is_balanced.
#   'darp': DARP protocol, class_im_ratio is gamma >= 1.
#   'npz': own data as is, split by percent_labeled.
#   'natural': naturally long-tailed data as is (ImageNet-127), split by
#     percent_labeled; class_im_ratio is ignored.
#   'stl': STL-10-LT, class_im_ratio is the labeled gamma >= 1, darp_n1 the
#     labeled head count; the unlabeled set is fixed (the unlabeled images).
_LT, _BALANCED, _DARP, _NPZ = 'lt', 'balanced', 'darp', 'npz'
_NATURAL = 'natural'
_STL = 'stl'


@dataclasses.dataclass(frozen=True)
class _Entry:
  module: str
  kind: str
  num_classes: Optional[int]
  needs_ml_data: bool
  needs_data_file: bool = False
  # Image sides the dataset is offered at (the first is its own), chosen
  # by `DataArgs.image_size`; () = one size, the data's.
  image_sizes: Tuple[int, ...] = ()
  # (N1, M1) of the DARP-style protocols when --darp_n1 / --darp_m1 are
  # unset (M1 None: the unlabeled set is fixed).
  default_n1_m1: Optional[Tuple[int, Optional[int]]] = None


_REGISTRY = {
    'cifar10': _Entry('data.cifar_balanced', _BALANCED, 10, True),
    'cifar100': _Entry('data.cifar_balanced', _BALANCED, 100, True),
    'cifar10lt': _Entry('data.cifar_lt', _LT, 10, True),
    'cifar100lt': _Entry('data.cifar_lt', _LT, 100, True),
    'cifar10ltdarp': _Entry('data.cifar_darp', _DARP, 10, True,
                            default_n1_m1=layout.DARP_N1_M1[10]),
    'cifar100ltdarp': _Entry('data.cifar_darp', _DARP, 100, True,
                             default_n1_m1=layout.DARP_N1_M1[100]),
    'fashionmnistlt': _Entry('data.fashion_mnist', _LT, 10, False),
    'imagenet127_32': _Entry('data.imagenet127', _NATURAL, 127, True),
    'imagenet127_64': _Entry('data.imagenet127', _NATURAL, 127, True),
    'npz': _Entry('data.own_npz', _NPZ, None, False, needs_data_file=True),
    'stl10lt': _Entry('data.stl10', _STL, 10, True, image_sizes=(96, 64, 32),
                      default_n1_m1=(450, None)),  # data.stl10.DEFAULT_N1
    'npzlt': _Entry('data.own_npz', _LT, None, False, needs_data_file=True),
    'synthetic': _Entry('data.synthetic', _LT, 10, False),
    'synthetic_tiny': _Entry('data.synthetic', _LT, 10, False),
}


def names() -> List[str]:
  """The registered dataset names, sorted."""
  return sorted(_REGISTRY)


def num_classes(name: str) -> Optional[int]:
  """K of a dataset, or None when it depends on the data (own `.npz`)."""
  return _entry(name).num_classes


def needs_ml_data(name: str) -> bool:
  """Whether the dataset needs `DataArgs.ml_data` (fashionmnistlt only
  prefers it: it falls back to /usr/share/datasets/fashion-mnist)."""
  return _entry(name).needs_ml_data


def imbalance_gamma(name: str, class_im_ratio: float) -> Optional[float]:
  """The imbalance gamma = N_max / N_min that `class_im_ratio` stands for on
  dataset `name`: None for a balanced set and for data used as is (the flag
  means nothing there: `uses_class_im_ratio`), the value itself for a DARP
  or STL-10 set (where the flag is gamma), else 1 / class_im_ratio."""
  kind = _entry(name).kind
  if kind in (_BALANCED, _NPZ, _NATURAL):
    return None
  ratio = float(class_im_ratio)
  return ratio if kind in (_DARP, _STL) else 1.0 / ratio


def uses_class_im_ratio(name: str) -> bool:
  """Whether --class_im_ratio means anything for dataset `name`: False for
  data used as is (own `npz`, naturally long-tailed ImageNet-127), whose
  imbalance is the data's own (`measured_gamma` of the training set); True
  for a name the registry does not know (it keeps the flag's meaning)."""
  entry = _REGISTRY.get(name)
  return entry is None or entry.kind not in (_NPZ, _NATURAL)


def measured_gamma(per_class) -> Optional[float]:
  """N_max / N_min of per-class counts (classes with no example left out);
  None when no class has one."""
  counts = [int(c) for c in per_class if int(c) > 0]
  return max(counts) / min(counts) if counts else None


def image_sizes(name: str) -> Tuple[int, ...]:
  """The image sides dataset `name` is offered at, its own first (STL-10:
  96, 64, 32); () for a dataset of one size or an unknown name."""
  entry = _REGISTRY.get(name)
  return entry.image_sizes if entry else ()


def counts_tag(name: str, darp_n1: Optional[int],
               darp_m1: Optional[int]) -> str:
  """How N1 / M1 other than the dataset's defaults name a run: 'n50-m400'
  ('n100' on STL-10-LT); '' for the defaults or a dataset without them."""
  entry = _REGISTRY.get(name)
  if entry is None or entry.default_n1_m1 is None:
    return ''
  n1_0, m1_0 = entry.default_n1_m1
  n1 = n1_0 if darp_n1 is None else darp_n1
  m1 = m1_0 if darp_m1 is None else darp_m1
  if (n1, m1) == (n1_0, m1_0):
    return ''
  return f'n{n1}' + ('' if m1 is None else f'-m{m1}')


def default_image_shape(name: str) -> Optional[Tuple[int, int, int]]:
  """The input shape of a dataset offered at several sizes when
  --input_shape is not given (its own size), else None (the data's)."""
  sizes = image_sizes(name)
  return (sizes[0], sizes[0], 3) if sizes else None


def labeled_fraction(name: str,
                     percent_labeled: Optional[float]) -> Optional[float]:
  """The fraction of each class the labeled split of dataset `name` keeps:
  `percent_labeled`, or `base.DEFAULT_PERCENT` (0.1) when it is unset, for
  the datasets split by a fraction (long-tailed, own and naturally
  long-tailed data); None for the others (balanced CIFAR is split by
  num_labeled, DARP by its files)."""
  if _entry(name).kind in (_BALANCED, _DARP, _STL):
    return None
  return base.DEFAULT_PERCENT if percent_labeled is None else percent_labeled


def unlabeled_distribution(name: str, class_im_ratio: float,
                           darp_gamma_u: Optional[float] = None,
                           darp_unlabeled_shape: Optional[str] = None
                           ) -> Optional[str]:
  """The name of a DARP dataset's unlabeled class profile ('consistent',
  'uniform', 'reversed', 'middle', 'head_tail', ...:
  `data.splits.unlabeled_distribution`); None for the other datasets."""
  if _entry(name).kind != _DARP:
    return None
  return splits.unlabeled_distribution(float(class_im_ratio), darp_gamma_u,
                                       darp_unlabeled_shape or 'longtail')


def _entry(name: str) -> _Entry:
  try:
    return _REGISTRY[name]
  except KeyError:
    raise errors.DataSettingError(
        f'Unknown dataset {name!r}; choose one of: {", ".join(names())}.'
    ) from None


def _check_gamma(args: base.DataArgs, meaning: str) -> None:
  """--class_im_ratio is a gamma (>= 1) for this dataset."""
  if args.class_im_ratio < 1.0:
    raise errors.DataSettingError(
        f'--class_im_ratio={args.class_im_ratio} must be >= 1 for dataset '
        f'{args.dataset!r}: {meaning}.')


def _check_count(flag: str, value, unset: str) -> None:
  """An optional positive integer setting."""
  if value is not None and (not isinstance(value, numbers.Integral)
                            or value < 1):
    raise errors.DataSettingError(
        f'--{flag}={value!r} must be a positive integer ({unset}).')


def validate(args: base.DataArgs) -> None:
  """Cheap checks of the data flags (no file access).

  Raises:
    data.errors.DataSettingError: unknown dataset (the message lists the valid
      names) or a flag value the dataset cannot use.
  """
  entry = _entry(args.dataset)
  name = args.dataset
  if (not isinstance(args.class_im_ratio, numbers.Real)
      or isinstance(args.class_im_ratio, bool)
      or not math.isfinite(args.class_im_ratio) or args.class_im_ratio <= 0):
    raise errors.DataSettingError(
        f'--class_im_ratio={args.class_im_ratio!r} must be a finite positive '
        f'number (N_min / N_max; for the DARP datasets gamma).')
  if (not isinstance(args.fold, numbers.Integral) or isinstance(args.fold, bool)
      or not 0 <= args.fold < 2 ** 32):
    raise errors.DataSettingError(
        f'--fold={args.fold!r} must be an integer in [0, 2**32).')
  if args.percent_labeled is not None and not (
      0.0 < args.percent_labeled <= 1.0):
    raise errors.DataSettingError(
        f'--percent_labeled={args.percent_labeled} must be in (0, 1] '
        f'(e.g. 0.1 for 10% labeled per class).')
  if entry.kind == _LT and not 0.0 < args.class_im_ratio <= 1.0:
    raise errors.DataSettingError(
        f'--class_im_ratio={args.class_im_ratio} must be in (0, 1] for '
        f'dataset {name!r}: it is N_min / N_max (0.01 means gamma = 100).')
  if entry.kind == _STL:
    _check_gamma(args, 'the labeled gamma = N_max / N_min (the field uses 10 '
                 'and 20)')
    _check_count('darp_n1', args.darp_n1,
                 'the labeled head-class count; unset: 450')
    if args.darp_m1 is not None:
      raise errors.DataSettingError(
          f'--darp_m1 does not apply to {name!r}: its unlabeled set is the '
          f'100,000 unlabeled images (--stl10_add_unused adds the unused '
          f'labeled ones). Drop it.')
  elif args.stl10_add_unused:
    raise errors.DataSettingError(
        f'--stl10_add_unused applies to stl10lt only, not {name!r}. Drop it.')
  if entry.image_sizes and args.image_size is not None and (
      args.image_size not in entry.image_sizes):
    raise errors.DataSettingError(
        f'--input_shape: dataset {name!r} is offered at '
        f'{", ".join(f"{s}x{s}x3" for s in entry.image_sizes)}, not at side '
        f'{args.image_size}.')
  if entry.kind == _DARP:
    _check_gamma(args, 'for the DARP protocol it is gamma = N_max / N_min '
                 '(e.g. 100 or 150)')
    gamma_u = args.darp_gamma_u
    if gamma_u is not None and (
        not isinstance(gamma_u, numbers.Real) or isinstance(gamma_u, bool)
        or not 1.0 <= abs(gamma_u) < float('inf')):
      raise errors.DataSettingError(
          f'--darp_gamma_u={gamma_u!r} must be a number with |gamma_u| >= 1: '
          f'the unlabeled N_max / N_min (1 uniform; negative: reversed, the '
          f'unlabeled head being the labeled tail), or unset for the labeled '
          f'gamma.')
    if args.darp_unlabeled_shape not in splits.UNLABELED_SHAPES:
      raise errors.DataSettingError(
          f'--darp_unlabeled_shape={args.darp_unlabeled_shape!r}: choose one '
          f'of {", ".join(splits.UNLABELED_SHAPES)}.')
    if (args.darp_unlabeled_shape != 'longtail' and gamma_u is not None
        and gamma_u < 0):
      raise errors.DataSettingError(
          f'--darp_gamma_u={gamma_u} (reversed) cannot be combined with '
          f'--darp_unlabeled_shape={args.darp_unlabeled_shape}: the shape '
          f'already orders the classes; give a positive --darp_gamma_u.')
    for flag in ('darp_n1', 'darp_m1'):
      _check_count(flag, getattr(args, flag), "unset: the dataset's default")
  elif (args.darp_gamma_u is not None
        or args.darp_unlabeled_shape != 'longtail'):
    raise errors.DataSettingError(
        f'--darp_gamma_u / --darp_unlabeled_shape set the unlabeled '
        f'distribution of the DARP datasets (cifar10ltdarp, cifar100ltdarp) '
        f'only; dataset {name!r} does not use them. Drop them.')
  if entry.kind == _BALANCED and (
      not isinstance(args.num_labeled, numbers.Integral)
      or args.num_labeled < 1):
    raise errors.DataSettingError(
        f'--num_labeled={args.num_labeled!r} must be a positive integer '
        f'(labeled examples per class) for dataset {name!r}.')
  if args.imagenet127_test not in ('imbalanced', 'balanced'):
    raise errors.DataSettingError(
        f'--imagenet127_test={args.imagenet127_test!r}: choose imbalanced '
        f'(the whole ILSVRC validation set) or balanced (the same number of '
        f'test images per class).')
  if entry.needs_data_file and not args.data_file:
    raise errors.DataSettingError(
        f'Dataset {name!r} reads your own data: set --data_file to a .npz '
        f'file with x_train, y_train, x_test, y_test.')


def load(args: base.DataArgs) -> base.SSLData:
  """Loads the dataset `args.dataset` into memory and splits it.

  Raises:
    data.errors.DataSettingError: invalid flags (see `validate`).
    data.errors.DataError: missing, unreadable or malformed data files; the
      message names the path and the command that prepares it.
  """
  validate(args)
  module = importlib.import_module(_entry(args.dataset).module)
  return module.load(args)
