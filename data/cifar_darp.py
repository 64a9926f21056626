"""Long-tailed CIFAR under the DARP protocol: `cifar10ltdarp`, `cifar100ltdarp`.

`class_im_ratio` is gamma (e.g. 100, 150). Labeled per class
`int(N1 * mu ** k)` and unlabeled per class `int(M1 * mu ** k)` with
`mu = gamma ** (-1/(K-1))`; N1/M1 default to 1500/3000 (CIFAR-100: 150/300)
and are overridden by `darp_n1` / `darp_m1`.

Files (raw channel-major records, like Cui's):
`$ML_DATA/cifar-darp/cifar{10,100}-{gamma}-train-labeled.tfrecords`,
`...-{gamma}-train-unlabeled.tfrecords`, `cifar{10,100}-test.tfrecords`.
`train_images` is the labeled file followed by the unlabeled file; the
labeled set is the labeled file's records, the pool the unlabeled file's, and
the unlabeled stream all of them. The split is fixed by the files, so `fold`
does not change the data. The loader checks that the per-class counts are the
protocol's for the N1/M1 in use.

The unlabeled set may follow another class profile than the labeled one
(`darp_gamma_u`: 1 uniform, negative reversed; `darp_unlabeled_shape`:
middle, head_tail; `data.splits.darp_unlabeled_counts`), read from its own
unlabeled file (`data.layout.darp_paths`) next to the same labeled file.
`gt_p_data` stays the LABELED prior `mu ** k` whatever the unlabeled profile
(the unlabeled distribution is unknown to a method, as in the papers that
use these protocols).
"""
from __future__ import annotations

import numpy as np
from absl import logging

from data import errors
from data import base
from data import cifar_lt
from data import layout
from data import splits

NUM_CLASSES = {'cifar10ltdarp': 10, 'cifar100ltdarp': 100}
DEFAULT_N1_M1 = layout.DARP_N1_M1


def n1_m1(args: base.DataArgs, num_classes: int):
  """(N1, M1) for these args: the flags or the dataset's defaults."""
  n1, m1 = DEFAULT_N1_M1[num_classes]
  return (args.darp_n1 if args.darp_n1 is not None else n1,
          args.darp_m1 if args.darp_m1 is not None else m1)


def unlabeled_flags(gamma_u, shape: str) -> str:
  """The `scripts/prepare_cifar.py` flag of an unlabeled profile (with a
  leading space): `--darp_unlabeled=GAMMA_U` or `=SHAPE[:GAMMA_U]`."""
  if shape == 'longtail':
    return f' --darp_unlabeled={layout.number_name(gamma_u)}'
  if gamma_u is None:
    return f' --darp_unlabeled={shape}'
  return f' --darp_unlabeled={shape}:{layout.number_name(gamma_u)}'


def load(args: base.DataArgs) -> base.SSLData:
  """Loads the DARP files for gamma = `args.class_im_ratio`."""
  k = NUM_CLASSES[args.dataset]
  gamma = args.class_im_ratio
  n1, m1 = n1_m1(args, k)
  gamma_u, shape = args.darp_gamma_u, args.darp_unlabeled_shape
  tag = layout.darp_unlabeled_tag(gamma, gamma_u, shape)
  flags = (f'--darp_gamma={layout.number_name(gamma)} --darp_n1={n1} '
           f'--darp_m1={m1}' + (unlabeled_flags(gamma_u, shape) if tag
                                else ''))
  hint = layout.prepare_command(k, flags)
  root = layout.require_root(args.ml_data, args.dataset, hint)
  paths = layout.find_darp_paths(root, k, gamma, n1, m1, tag, flags)
  lab_images, lab_labels = cifar_lt.read_raw_file(paths['labeled'], k, hint)
  unl_images, unl_labels = cifar_lt.read_raw_file(paths['unlabeled'], k, hint)
  test_images, test_labels = cifar_lt.read_raw_file(paths['test'], k, hint)
  profile = splits.unlabeled_distribution(gamma, gamma_u, shape)
  for what, labels, expected, flag, sym in (
      ('labeled', lab_labels, splits.darp_counts(n1, gamma, k), 'darp_n1',
       f'N1={n1}'),
      ('unlabeled', unl_labels,
       splits.darp_unlabeled_counts(m1, gamma, gamma_u, k, shape), 'darp_m1',
       f'M1={m1}, unlabeled {profile}')):
    got = np.bincount(labels, minlength=k)
    if not np.array_equal(got, expected):
      raise errors.DataError(
          f'{paths[what]}: per-class counts {got.tolist()} are not the DARP '
          f'protocol\'s for gamma={layout.number_name(gamma)} and '
          f'{sym}: expected {expected.tolist()}. Set '
          f'--{flag} to the value the files were made with, or re-create '
          f'them: {hint}.')
  n_lab = len(lab_labels)
  n_all = n_lab + len(unl_labels)
  logging.info('%s gamma %s: %d labeled, %d unlabeled (%s), %d test',
               args.dataset, gamma, n_lab, len(unl_labels), profile,
               len(test_labels))
  return base.SSLData(
      name=args.dataset, num_classes=k,
      train_images=np.concatenate([lab_images, unl_images]),
      train_labels=np.concatenate([lab_labels, unl_labels]),
      test_images=test_images, test_labels=test_labels,
      labeled_positions=np.arange(n_lab, dtype=np.int64),
      unlabeled_positions=np.arange(n_lab, n_all, dtype=np.int64),
      unlabeled_stream_positions=np.arange(n_all, dtype=np.int64),
      gt_p_data=splits.darp_prior(gamma, k))
