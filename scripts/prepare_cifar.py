r"""Writes the CIFAR tfrecord files of every CIFAR dataset from the official
python archive.

  python scripts/prepare_cifar.py --archive=cifar-10-python.tar.gz \
      --ml_data=$ML_DATA [--class_im_ratio=0.1,0.05,0.02,0.01,0.005] \
      [--darp_gamma=50,100,150] [--darp_n1=1500 --darp_m1=3000] \
      [--darp_unlabeled=consistent,uniform,reversed,middle,head_tail] \
      [--download]

Writes under --ml_data (CIFAR-100: `cifar100-...`, `cifar-100-data-im-...`):
  cifar/cifar10-train.tfrecord, cifar10-test.tfrecord: balanced, PNG records
    (the whole archive, archive order);
  cifar-lt/cifar-10-data-im-{ratio}/train.tfrecords, eval.tfrecords: Cui et
    al.'s raw format; class k keeps its FIRST int(N_max * ratio ** (k/(K-1)))
    images in archive order (N_max = 5000, CIFAR-100 500), kept in archive
    order; eval = the whole test set;
  cifar-darp/cifar10-{gamma}-train-labeled.tfrecords: class k's first
    int(N1 * mu ** k) images (mu = gamma ** (-1/(K-1))), and
    ...-train-unlabeled.tfrecords: class k's NEXT int(M1 * mu ** k) images,
    each in archive order; cifar10-test.tfrecords: the whole test set (raw).
    With N1 / M1 other than 1500 / 3000 (CIFAR-100 150 / 300) the names are
    cifar10-{gamma}-n{N1}-m{M1}-...; --darp_unlabeled=uniform,reversed,...
    writes ...-train-unlabeled-{u1,u-{gamma},...}.tfrecords (class k's next
    images by that profile: data.splits.darp_unlabeled_counts).

Cui et al. chose their images with an unseeded shuffle, so only their
published files reproduce the paper's exact data; these files are a
deterministic equivalent with the same per-class counts.
Files are written atomically (temporary file, then rename).
Exit status: 0 success, 2 bad input (message on stderr).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.request
from typing import Callable, List, Optional, Sequence

import numpy as np

if __package__ in (None, ''):  # Run as a script: make the repo importable.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))

from crest import errors  # pylint: disable=g-import-not-at-top
from data import cifar_archive  # pylint: disable=g-import-not-at-top
from data import layout  # pylint: disable=g-import-not-at-top
from data import records  # pylint: disable=g-import-not-at-top
from data import splits  # pylint: disable=g-import-not-at-top

DEFAULT_RATIOS = '0.1,0.05,0.02,0.01,0.005'
DEFAULT_GAMMAS = '50,100,150'
DARP_DEFAULTS = layout.DARP_N1_M1


def parse_numbers(text: str, flag: str) -> List[float]:
  """'0.1,0.01' -> [0.1, 0.01]; '' -> []."""
  out = []
  for part in text.split(','):
    part = part.strip()
    if not part:
      continue
    try:
      out.append(float(part))
    except ValueError:
      raise errors.ConfigError(
          f'--{flag}={text!r}: {part!r} is not a number; give a '
          f'comma-separated list like {DEFAULT_RATIOS}.') from None
  return out


def _counts_text(labels: np.ndarray, k: int) -> str:
  counts = np.bincount(labels, minlength=k)
  return f'{len(labels)} images, per class {counts.tolist()}'


def _write(path: str, encoded: Sequence[bytes], labels: np.ndarray, k: int,
           log: Callable[[str], None]) -> None:
  records.write_examples(path, encoded, labels)
  log(f'wrote {path}: {_counts_text(labels, k)}')


UNLABELED_PROFILES = ('consistent', 'uniform', 'reversed', 'middle',
                      'head_tail')


def parse_profiles(text: str) -> List[str]:
  """'consistent,reversed,50,middle:20' -> its profiles; each a name, a
  number (an unlabeled gamma, the long-tailed shape; negative: reversed) or
  SHAPE:NUMBER (longtail / middle / head_tail with that unlabeled gamma)."""
  out = []
  for part in text.split(','):
    part = part.strip()
    if not part:
      continue
    try:
      profile_settings(part, 1.0)
    except ValueError:
      raise errors.ConfigError(
          f'--darp_unlabeled={text!r}: {part!r} is not one of '
          f'{", ".join(UNLABELED_PROFILES)}, an unlabeled gamma with '
          f'|gamma_u| >= 1, or SHAPE:GAMMA_U (SHAPE one of '
          f'{", ".join(splits.UNLABELED_SHAPES)}, GAMMA_U >= 1).') from None
    out.append(part)
  return out or ['consistent']


def profile_settings(profile: str, gamma: float):
  """(darp_gamma_u, darp_unlabeled_shape) of a profile at `gamma` (the
  training flags of the same unlabeled set). ValueError if malformed."""
  if profile == 'consistent':
    return None, 'longtail'
  if profile == 'uniform':
    return 1.0, 'longtail'
  if profile == 'reversed':
    return -float(gamma), 'longtail'
  if profile in ('middle', 'head_tail'):
    return None, profile
  shape, _, number = profile.rpartition(':')
  shape = shape or 'longtail'
  gamma_u = float(number)
  if (shape not in splits.UNLABELED_SHAPES or not 1 <= abs(gamma_u) < np.inf
      or (shape != 'longtail' and gamma_u < 0)):
    raise ValueError(profile)
  return gamma_u, shape


def prepare(archive: cifar_archive.CifarArchive, ml_data: str,
            ratios: Sequence[float], gammas: Sequence[float],
            darp_n1: Optional[int] = None, darp_m1: Optional[int] = None,
            balanced: bool = True,
            log: Callable[[str], None] = print,
            unlabeled: Sequence[str] = ('consistent',)) -> List[str]:
  """Writes every requested file from an archive's content.

  Args:
    archive: the archive's images and labels.
    ml_data: the data root.
    ratios: long-tailed ratios N_min / N_max in (0, 1].
    gammas: DARP imbalance factors >= 1.
    darp_n1, darp_m1: DARP head-class labeled / unlabeled counts (None: 1500 /
      3000 for CIFAR-10, 150 / 300 for CIFAR-100).
    balanced: whether to write the balanced PNG files.
    log: where progress lines go.
    unlabeled: the DARP unlabeled profiles to write for every gamma
      (`parse_profiles`): 'consistent' (the labeled profile, the plain file
      name), 'uniform', 'reversed', 'middle', 'head_tail', or a number (an
      unlabeled gamma); each other than 'consistent' gets its own unlabeled
      file next to the same labeled file.

  Returns:
    The paths written.

  Raises:
    crest.errors.ConfigError: a bad ratio / gamma / N1 / M1.
  """
  k = archive.num_classes
  for r in ratios:
    if not 0 < r <= 1:
      raise errors.ConfigError(f'--class_im_ratio: {r} is not in (0, 1].')
  for g in gammas:
    if g < 1:
      raise errors.ConfigError(f'--darp_gamma: {g} is not >= 1.')
  n1 = DARP_DEFAULTS[k][0] if darp_n1 is None else darp_n1
  m1 = DARP_DEFAULTS[k][1] if darp_m1 is None else darp_m1
  train_counts = np.bincount(archive.train_labels, minlength=k)
  if gammas and (n1 < 1 or m1 < 1):
    raise errors.ConfigError(
        f'--darp_n1={n1} --darp_m1={m1}: both must be >= 1.')
  darp = []  # (gamma, labeled counts, [(profile, tag, unlabeled counts)]).
  for g in gammas:
    n_lab = splits.darp_counts(n1, g, k)
    profiles = []
    for profile in unlabeled:
      gamma_u, shape = profile_settings(profile, g)
      n_unl = splits.darp_unlabeled_counts(m1, g, gamma_u, k, shape)
      over = np.flatnonzero(n_lab + n_unl > train_counts)
      if over.size:
        c = int(over[0])
        raise errors.ConfigError(
            f'--darp_n1={n1} --darp_m1={m1} --darp_gamma={g}: with the '
            f'{profile} unlabeled profile, class {c} needs N1 + M1 = '
            f'{n_lab[c]} + {n_unl[c]} images and has {train_counts[c]}; '
            f'lower N1 / M1.')
      profiles.append((profile, layout.darp_unlabeled_tag(g, gamma_u, shape),
                       n_unl))
    darp.append((g, n_lab, profiles))
  written = []
  train_y, test_y = archive.train_labels, archive.test_labels
  log(f'CIFAR-{k}: train {_counts_text(train_y, k)}; test '
      f'{_counts_text(test_y, k)}')
  if balanced:
    paths = layout.balanced_paths(ml_data, k)
    _write(paths['train'], records.encode_png(archive.train_images), train_y,
           k, log)
    _write(paths['test'], records.encode_png(archive.test_images), test_y, k,
           log)
    written += [paths['train'], paths['test']]
  raw_train = records.encode_raw(archive.train_images)
  raw_test = records.encode_raw(archive.test_images) if (
      ratios or gammas) else []
  n_max = int(train_counts.min())
  for r in ratios:
    keep = splits.first_per_class(train_y, splits.long_tail_counts(n_max, r, k))
    directory = layout.lt_dir(ml_data, k, r)
    _write(os.path.join(directory, 'train.tfrecords'),
           [raw_train[i] for i in keep], train_y[keep], k, log)
    _write(os.path.join(directory, 'eval.tfrecords'), raw_test, test_y, k, log)
    log(f'  ratio {layout.number_name(r)}: {len(keep)} training images')
    written += [os.path.join(directory, n)
                for n in ('train.tfrecords', 'eval.tfrecords')]
  by_class = [np.flatnonzero(train_y == c) for c in range(k)]
  for g, n_lab, profiles in darp:
    # Class c: its first n_lab[c] images are labeled, its next n_unl[c]
    # unlabeled (archive order; each file keeps archive order).
    lab = np.sort(np.concatenate([by_class[c][:n_lab[c]] for c in range(k)]))
    paths = layout.darp_paths(ml_data, k, g, darp_n1, darp_m1)
    _write(paths['labeled'], [raw_train[i] for i in lab], train_y[lab], k, log)
    written.append(paths['labeled'])
    for profile, tag, n_unl in profiles:
      unl = np.sort(np.concatenate(
          [by_class[c][n_lab[c]:n_lab[c] + n_unl[c]] for c in range(k)]))
      path = layout.darp_paths(ml_data, k, g, darp_n1, darp_m1,
                               tag)['unlabeled']
      _write(path, [raw_train[i] for i in unl], train_y[unl], k, log)
      log(f'  gamma {layout.number_name(g)}: {len(lab)} labeled + '
          f'{len(unl)} unlabeled (N1={n1}, M1={m1}, unlabeled '
          f'{splits.unlabeled_distribution(g, *profile_settings(profile, g))}'
          f')')
      written.append(path)
  if gammas:
    test_path = layout.darp_paths(ml_data, k, gammas[0])['test']
    _write(test_path, raw_test, test_y, k, log)
    written.append(test_path)
  return written


def download(path: str, num_classes: int,
             log: Callable[[str], None] = print) -> None:
  """Fetches the official archive to `path` and checks its MD5."""
  url = cifar_archive.URLS[num_classes]
  tmp = path + '.part'
  log(f'downloading {url} -> {path}')
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  try:
    urllib.request.urlretrieve(url, tmp)  # noqa: S310 (fixed https URL)
  except OSError as e:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise errors.DataError(
        f'Cannot download {url} ({e}). Download it by hand (see '
        f'https://www.cs.toronto.edu/~kriz/cifar.html) and pass '
        f'--archive=PATH without --download.') from None
  digest = cifar_archive.md5_of(tmp)
  if digest != cifar_archive.MD5[num_classes]:
    os.remove(tmp)
    raise errors.DataError(
        f'{url}: MD5 {digest} differs from the published '
        f'{cifar_archive.MD5[num_classes]}; the download is corrupt. Retry.')
  os.replace(tmp, path)


def archive_classes(path: str) -> int:
  """10 or 100 from the official archive file name."""
  base = os.path.basename(path)
  for k, name in sorted(layout.ARCHIVES.items(), reverse=True):
    if base == name:
      return k
  raise errors.ConfigError(
      f'--download needs --archive to be named {layout.ARCHIVES[10]} or '
      f'{layout.ARCHIVES[100]} (got {base!r}), which says which to fetch.')


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--archive', required=True,
                      help='cifar-10-python.tar.gz or cifar-100-python.tar.gz')
  parser.add_argument('--ml_data', default=os.environ.get('ML_DATA', ''),
                      help='data root (default: $ML_DATA)')
  parser.add_argument('--class_im_ratio', default=DEFAULT_RATIOS,
                      help='long-tailed ratios, comma-separated ("" for none)')
  parser.add_argument('--darp_gamma', default=DEFAULT_GAMMAS,
                      help='DARP gammas, comma-separated ("" for none)')
  parser.add_argument('--darp_n1', type=int, default=None,
                      help='DARP labeled head count (1500; CIFAR-100 150)')
  parser.add_argument('--darp_m1', type=int, default=None,
                      help='DARP unlabeled head count (3000; CIFAR-100 300)')
  parser.add_argument('--darp_unlabeled', default='consistent',
                      help='DARP unlabeled profiles, comma-separated: '
                      'consistent (the labeled profile), uniform, reversed, '
                      'middle, head_tail, or a number (an unlabeled gamma)')
  parser.add_argument('--balanced', default='true', choices=['true', 'false'],
                      help='write the balanced PNG files')
  parser.add_argument('--download', action='store_true',
                      help='fetch the official archive (MD5-checked) to '
                      '--archive if it is not there')
  args = parser.parse_args(argv)
  start = time.time()
  try:
    if not args.ml_data:
      raise errors.ConfigError('Set --ml_data (or ML_DATA) to the data root.')
    ratios = parse_numbers(args.class_im_ratio, 'class_im_ratio')
    gammas = parse_numbers(args.darp_gamma, 'darp_gamma')
    if args.download:
      k = archive_classes(args.archive)
      if os.path.exists(args.archive):
        print(f'{args.archive} exists; not downloading')
      else:
        download(args.archive, k)
    archive = cifar_archive.read_archive(args.archive)
    profiles = parse_profiles(args.darp_unlabeled)
    written = prepare(archive, args.ml_data, ratios, gammas, args.darp_n1,
                      args.darp_m1, args.balanced == 'true',
                      unlabeled=profiles)
  except errors.USER_ERRORS as e:
    print(f'prepare_cifar: {e}', file=sys.stderr)
    return 2
  print(f'done: {len(written)} files in {time.time() - start:.1f} s')
  return 0


if __name__ == '__main__':
  sys.exit(main())
