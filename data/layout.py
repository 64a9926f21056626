"""Where each dataset's files live under the data root (`ML_DATA`).

One source of truth for the loaders and `scripts/prepare_cifar.py`:

  cifar/cifar10-train.tfrecord, cifar/cifar10-test.tfrecord   (PNG records)
  cifar-lt/cifar-10-data-im-{ratio}/train.tfrecords, eval.tfrecords   (raw)
  cifar-darp/cifar10-{gamma}-train-labeled.tfrecords,
    cifar10-{gamma}-train-unlabeled.tfrecords, cifar10-test.tfrecords   (raw)
    (other N1 / M1: cifar10-{gamma}-n{N1}-m{M1}-...; another unlabeled
    profile: ...-train-unlabeled-{tag}.tfrecords, see `darp_paths`)

(CIFAR-100: `cifar100-...`, `cifar-100-data-im-{ratio}`.)
"""
from __future__ import annotations

import os
import re
from typing import Dict, Optional

from data import errors

ARCHIVES = {10: 'cifar-10-python.tar.gz', 100: 'cifar-100-python.tar.gz'}


def number_name(value: float) -> str:
  """How a ratio or gamma appears in a file name.

  Integral values drop the fraction (`100.0 -> '100'`); others use the
  shortest repr that round-trips (`0.01 -> '0.01'`, `0.005 -> '0.005'`,
  `0.1 -> '0.1'`), which is how the flag value is usually written.
  """
  value = float(value)
  if value.is_integer():
    return str(int(value))
  return repr(value)


def prepare_command(num_classes: int, extra: str = '') -> str:
  """The command that writes the CIFAR files of this dataset.

  Args:
    num_classes: 10 or 100.
    extra: more flags, e.g. '--class_im_ratio=0.01'.
  """
  extra = f' {extra}' if extra else ''
  return (f'python scripts/prepare_cifar.py --archive={ARCHIVES[num_classes]}'
          f' --ml_data=$ML_DATA{extra} (add --download to fetch the archive)')


def require_root(ml_data: str, dataset: str, hint: str) -> str:
  """Checks the data root is set and exists. Returns it.

  Raises:
    data.errors.DataError: unset or not a directory.
  """
  if not ml_data:
    raise errors.DataError(
        f'Dataset {dataset!r} needs a data root: set --ml_data (or the '
        f'ML_DATA environment variable) to the directory that holds its '
        f'files. To prepare them: {hint}.')
  if not os.path.isdir(ml_data):
    raise errors.DataError(
        f'The data root {ml_data!r} (--ml_data / ML_DATA) is not a directory.'
        f' Create it and prepare the data: {hint}.')
  return ml_data


def balanced_paths(root: str, num_classes: int) -> Dict[str, str]:
  """FixMatch-format files: {'train': ..., 'test': ...}."""
  d = os.path.join(root, 'cifar')
  return {s: os.path.join(d, f'cifar{num_classes}-{s}.tfrecord')
          for s in ('train', 'test')}


def lt_dir_prefix(num_classes: int) -> str:
  return f'cifar-{num_classes}-data-im-'


def lt_dir(root: str, num_classes: int, ratio: float) -> str:
  """Cui et al.'s directory for one ratio (the name `prepare` writes)."""
  return os.path.join(root, 'cifar-lt',
                      lt_dir_prefix(num_classes) + number_name(ratio))


# N1 / M1 of the DARP protocol by number of classes: files made with these
# have the plain names.
DARP_N1_M1 = {10: (1500, 3000), 100: (150, 300)}


def darp_unlabeled_tag(gamma: float, gamma_u: Optional[float] = None,
                       shape: str = 'longtail') -> str:
  """How an unlabeled profile other than the labeled one is named in file
  and run directory names: '' for the labeled profile (consistent), else
  'u{gamma_u}' ('u1' uniform, 'u-100' reversed, 'u50') plus '-{shape}' for
  the middle / head_tail shapes ('u100-middle')."""
  gu = float(gamma if gamma_u is None else gamma_u)
  shape = shape or 'longtail'
  if abs(abs(gu) - 1.0) <= 1e-9:
    return 'u1'
  if shape == 'longtail' and abs(gu - gamma) <= 1e-9 * max(abs(gu), 1.0):
    return ''
  return f'u{number_name(gu)}' + ('' if shape == 'longtail' else f'-{shape}')


def darp_paths(root: str, num_classes: int, gamma: float,
               n1: Optional[int] = None, m1: Optional[int] = None,
               unlabeled_tag: str = '') -> Dict[str, str]:
  """DARP files: {'labeled': ..., 'unlabeled': ..., 'test': ...}.

  `cifar{K}-{gamma}-train-labeled.tfrecords`, `...-train-unlabeled.tfrecords`;
  with N1 / M1 other than `DARP_N1_M1`'s, `cifar{K}-{gamma}-n{N1}-m{M1}-...`;
  an unlabeled profile other than the labeled one (`darp_unlabeled_tag`)
  names its own unlabeled file `...-train-unlabeled-{tag}.tfrecords`, next
  to the same labeled file.
  """
  d = os.path.join(root, 'cifar-darp')
  stem = f'cifar{num_classes}-{number_name(gamma)}'
  n1_0, m1_0 = DARP_N1_M1.get(num_classes, (None, None))
  if (n1 is not None and n1 != n1_0) or (m1 is not None and m1 != m1_0):
    stem += (f'-n{n1 if n1 is not None else n1_0}'
             f'-m{m1 if m1 is not None else m1_0}')
  tag = f'-{unlabeled_tag}' if unlabeled_tag else ''
  return {
      'labeled': os.path.join(d, f'{stem}-train-labeled.tfrecords'),
      'unlabeled': os.path.join(d, f'{stem}-train-unlabeled{tag}.tfrecords'),
      'test': os.path.join(d, f'cifar{num_classes}-test.tfrecords'),
  }


def available_values(directory: str, pattern: str) -> Dict[float, str]:
  """Numbers found in names of `directory` matching `pattern`.

  Args:
    directory: where to look (missing: nothing found).
    pattern: a regular expression with one group capturing the number.

  Returns:
    {value: the name as written}.
  """
  found = {}
  if not os.path.isdir(directory):
    return found
  for name in sorted(os.listdir(directory)):
    m = re.fullmatch(pattern, name)
    if m:
      try:
        found[float(m.group(1))] = m.group(1)
      except ValueError:
        pass
  return found


def match_value(found: Dict[float, str], value: float) -> Optional[str]:
  """The name in `found` equal to `value` (relative tolerance 1e-9)."""
  for v, name in found.items():
    if abs(v - value) <= 1e-9 * max(abs(v), abs(value)):
      return name
  return None


def find_lt_dir(root: str, num_classes: int, ratio: float) -> str:
  """The existing Cui directory for `ratio`, matched by value.

  `0.01` finds `cifar-10-data-im-0.01` (and also `...-im-0.010`).

  Raises:
    data.errors.DataError: no directory for that ratio; lists those present.
  """
  exact = lt_dir(root, num_classes, ratio)
  if os.path.isdir(exact):
    return exact
  parent = os.path.join(root, 'cifar-lt')
  prefix = lt_dir_prefix(num_classes)
  found = available_values(parent, re.escape(prefix) + r'(.+)')
  name = match_value(found, ratio)
  if name is not None:
    return os.path.join(parent, prefix + name)
  have = (f'Ratios present in {parent}: {", ".join(found.values())}. Use one '
          f'of those, or prepare this ratio: ' if found else
          f'No ratio is present in {parent}; prepare this one: ')
  command = prepare_command(num_classes,
                            f'--class_im_ratio={number_name(ratio)}')
  raise errors.DataError(
      f'No long-tailed CIFAR-{num_classes} files for --class_im_ratio={ratio}:'
      f' expected the directory {exact}. {have}{command}.')


def find_darp_paths(root: str, num_classes: int, gamma: float,
                    n1: Optional[int] = None, m1: Optional[int] = None,
                    unlabeled_tag: str = '',
                    prepare_flags: str = '') -> Dict[str, str]:
  """The existing DARP files for `gamma` (and N1 / M1, unlabeled profile),
  matched by value. Files named for N1 / M1 are preferred; the plain names
  are used otherwise (files made before N1 / M1 were in the names: the
  loader checks their counts). `prepare_flags`: the preparation flags the
  error message gives (default `--darp_gamma={gamma}`).

  Raises:
    data.errors.DataError: no labeled file for that gamma; lists those
      present.
  """
  if n1 is not None or m1 is not None:
    named = darp_paths(root, num_classes, gamma, n1, m1, unlabeled_tag)
    if os.path.isfile(named['labeled']):
      return named
  paths = darp_paths(root, num_classes, gamma, unlabeled_tag=unlabeled_tag)
  if os.path.isfile(paths['labeled']):
    return paths
  parent = os.path.dirname(paths['labeled'])
  found = available_values(
      parent, rf'cifar{num_classes}-(.+)-train-labeled\.tfrecords')
  name = match_value(found, gamma)
  if name is not None:
    return {k: (v if k == 'test' else
                os.path.join(parent, os.path.basename(v).replace(
                    f'-{number_name(gamma)}-', f'-{name}-', 1)))
            for k, v in paths.items()}
  have = (f'Gammas present in {parent}: {", ".join(found.values())}. Use one '
          f'of those, or prepare this gamma: ' if found else
          f'No gamma is present in {parent}; prepare this one: ')
  command = prepare_command(
      num_classes, prepare_flags or f'--darp_gamma={number_name(gamma)}')
  raise errors.DataError(
      f'No DARP CIFAR-{num_classes} files for gamma --class_im_ratio={gamma}:'
      f' expected {paths["labeled"]}. {have}{command}.')
