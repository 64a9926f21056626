r"""Writes the STL-10-LT files (`--dataset=stl10lt`) from the official binary
archive.

  python scripts/prepare_stl10.py --archive=stl10_binary.tar.gz \
      --ml_data=$ML_DATA [--sizes=96,64,32] [--download]

Reads `stl10_binary/{train,test}_{X,y}.bin` and `unlabeled_X.bin` from the
archive (streamed from the tar file in memory; nothing is extracted, and no
other member is read) and writes, for each size S of --sizes, under
`$ML_DATA/stl10/S/` (see data/stl10.py):
  train_images.npy  uint8 [5000 + 100000, S, S, 3]: train_X then unlabeled_X
  train_labels.npy  int64: 0..9 (train_y - 1), then -1 for the unlabeled
  test_images.npy, test_labels.npy
96 keeps the images as they are; 64 and 32 resize them with bilinear
filtering (Pillow, as torchvision's Resize). The binary images are 3 x 96 x 96
column-major (red, green, blue planes, each stored column by column).

Every file is written to a temporary name and renamed once all of a size are
complete; the per-class counts and every path are printed. The free space
is checked first (96 px: 2.9 GB; 64: 1.3 GB; 32: 0.33 GB). --download fetches
the archive (2.6 GB) and checks its published MD5.
Exit status: 0 success, 2 bad input (message on stderr).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tarfile
import time
import urllib.request
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

if __package__ in (None, ''):  # Run as a script: make the repo importable.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))

from crest import errors  # pylint: disable=g-import-not-at-top
from data import cifar_archive  # pylint: disable=g-import-not-at-top
from data import stl10  # pylint: disable=g-import-not-at-top

TOP = 'stl10_binary'


def parse_sizes(text: str) -> List[int]:
  """'96,32' -> [96, 32], each one of stl10.SIZES."""
  out = []
  for part in text.split(','):
    part = part.strip()
    if not part:
      continue
    if not part.isdigit() or int(part) not in stl10.SIZES:
      raise errors.ConfigError(
          f'--sizes={text!r}: {part!r} is not one of '
          f'{", ".join(map(str, stl10.SIZES))}.')
    out.append(int(part))
  if not out:
    raise errors.ConfigError('--sizes is empty; give e.g. 96,64,32.')
  return sorted(set(out), key=out.index)


def _members(tar: tarfile.TarFile, path: str) -> Dict[str, tarfile.TarInfo]:
  """The archive's regular-file members the conversion reads, by name."""
  needed = {n for pair in stl10.MEMBERS.values() for n in pair if n}
  found = {}
  try:
    for info in tar.getmembers():
      name = info.name[2:] if info.name.startswith('./') else info.name
      top, _, base = name.partition('/')
      if top == TOP and base in needed:
        if not info.isfile():
          raise errors.DataError(
              f'{path}: {info.name} is not a regular file (a link or '
              f'device); this is not the official STL-10 archive.')
        found[base] = info
  except (OSError, tarfile.TarError, EOFError) as e:
    raise errors.DataError(f'{path}: truncated or corrupt archive ({e}).'
                           ) from None
  missing = sorted(needed - set(found))
  if missing:
    raise errors.DataError(
        f'{path}: the archive has no {", ".join(f"{TOP}/{m}" for m in missing)}'
        f'; expected the official {stl10.ARCHIVE} ({stl10.URL}).')
  return found


class _Reader:
  """Sequential reads of one member, failing on a short read."""

  def __init__(self, tar: tarfile.TarFile, info: tarfile.TarInfo,
               path: str):
    self.where = f'{path}:{info.name}'
    try:
      self.f = tar.extractfile(info)
    except (OSError, tarfile.TarError, EOFError) as e:
      raise errors.DataError(f'{self.where}: cannot read ({e}).') from None

  def read(self, n: int) -> bytes:
    try:
      data = self.f.read(n)
    except (OSError, tarfile.TarError, EOFError) as e:
      raise errors.DataError(f'{self.where}: truncated or corrupt ({e}).'
                             ) from None
    if len(data) != n:
      raise errors.DataError(f'{self.where}: ends after {len(data)} of {n} '
                             f'bytes (truncated archive).')
    return data


def _labels(tar, info, path) -> np.ndarray:
  raw = np.frombuffer(_Reader(tar, info, path).read(info.size), np.uint8)
  if raw.size and (raw.min() < 1 or raw.max() > stl10.NUM_CLASSES):
    raise errors.DataError(
        f'{path}:{info.name}: labels outside 1..{stl10.NUM_CLASSES} (found '
        f'{int(raw.min())}..{int(raw.max())}).')
  return raw.astype(np.int64) - 1


def _count(info: tarfile.TarInfo, path: str) -> int:
  if info.size % stl10.IMAGE_BYTES or not info.size:
    raise errors.DataError(
        f'{path}:{info.name}: {info.size} bytes is not a whole, non-zero '
        f'number of {stl10.IMAGE_BYTES}-byte 96x96x3 images.')
  return info.size // stl10.IMAGE_BYTES


class _NpyRows:
  """An .npy file of uint8 images written row block by row block with
  plain writes (no memory map: the process's memory stays one chunk)."""

  def __init__(self, path: str, shape):
    header = np.lib.format.open_memmap(path, mode='w+', dtype=np.uint8,
                                       shape=tuple(shape))
    self.offset, self.row_bytes = header.offset, int(np.prod(shape[1:]))
    del header  # The file now has its header and full (sparse) length.
    self.f = open(path, 'r+b')

  def write(self, first: int, rows: np.ndarray) -> None:
    self.f.seek(self.offset + first * self.row_bytes)
    self.f.write(np.ascontiguousarray(rows, np.uint8).tobytes())

  def close(self) -> None:
    self.f.flush()
    os.fsync(self.f.fileno())
    self.f.close()


def _counts_text(labels: np.ndarray) -> str:
  counts = np.bincount(labels[labels >= 0], minlength=stl10.NUM_CLASSES)
  return f'{len(labels)} images, per class {counts.tolist()}'


def prepare(archive: str, ml_data: str, sizes: Sequence[int],
            chunk: int = 2048,
            log: Callable[[str], None] = print) -> List[str]:
  """Converts the official archive into `stl10/{size}/` files.

  Returns:
    The paths written.

  Raises:
    crest.errors.DataError: missing / corrupt archive, unexpected content,
      not enough free space.
  """
  try:
    tar = tarfile.open(archive, 'r:*')
  except FileNotFoundError:
    raise errors.DataError(
        f'No archive at {archive}. Download {stl10.ARCHIVE} from {stl10.URL} '
        f'(or pass --download).') from None
  except (OSError, tarfile.TarError) as e:
    raise errors.DataError(f'{archive}: not a readable tar archive ({e}).'
                           ) from None
  with tar:
    members = _members(tar, archive)
    n = {part: _count(members[x], archive)
         for part, (x, _) in stl10.MEMBERS.items()}
    labels = {part: _labels(tar, members[y], archive)
              for part, (_, y) in stl10.MEMBERS.items() if y}
    for part, y in labels.items():
      if len(y) != n[part]:
        raise errors.DataError(
            f'{archive}: {len(y)} labels in {stl10.MEMBERS[part][1]} for '
            f'{n[part]} images in {stl10.MEMBERS[part][0]}.')
    train_y = np.concatenate([labels['train'],
                              np.full(n['unlabeled'], stl10.UNLABELED)])
    log(f'STL-10: train {_counts_text(labels["train"])}; test '
        f'{_counts_text(labels["test"])}; unlabeled {n["unlabeled"]} images')
    need = sum((n['train'] + n['unlabeled'] + n['test']) * s * s * 3
               for s in sizes)
    os.makedirs(ml_data, exist_ok=True)
    free = shutil.disk_usage(ml_data).free
    if free < need * 1.02:
      raise errors.DataError(
          f'{ml_data}: {free / 1e9:.2f} GB free, {need / 1e9:.2f} GB needed '
          f'for --sizes={",".join(map(str, sizes))}. Free space or prepare '
          f'fewer sizes.')
    tmp: Dict[str, str] = {}  # Final path -> temporary path.
    try:
      outputs = {}
      for s in sizes:
        paths = stl10.files(ml_data, s)
        os.makedirs(os.path.dirname(paths['train_images']), exist_ok=True)
        for name, shape in (('train_images', n['train'] + n['unlabeled']),
                            ('test_images', n['test'])):
          tmp[paths[name]] = _tmp_name(paths[name])
          outputs[s, name] = _NpyRows(tmp[paths[name]], (shape, s, s, 3))
        for name, y in (('train_labels', train_y),
                        ('test_labels', labels['test'])):
          tmp[paths[name]] = _tmp_name(paths[name])
          with open(tmp[paths[name]], 'wb') as f:
            np.save(f, y.astype(np.int64))
      # Image members in archive order: one pass over the compressed data.
      where = {'train': ('train_images', 0), 'test': ('test_images', 0),
               'unlabeled': ('train_images', n['train'])}
      for part in sorted(where, key=lambda p: members[stl10.MEMBERS[p][0]]
                         .offset_data):
        reader = _Reader(tar, members[stl10.MEMBERS[part][0]], archive)
        name, start = where[part]
        for first in range(0, n[part], chunk):
          count = min(chunk, n[part] - first)
          images = stl10.decode(reader.read(count * stl10.IMAGE_BYTES))
          for s in sizes:
            outputs[s, name].write(start + first, stl10.resize(images, s))
        log(f'  read {n[part]} {part} images')
      for out in outputs.values():
        out.close()
      outputs.clear()
      for final, temporary in tmp.items():
        os.chmod(temporary, 0o644)
        os.replace(temporary, final)
    except BaseException:
      for temporary in tmp.values():
        if os.path.exists(temporary):
          os.remove(temporary)
      raise
  written = list(tmp)
  for s in sizes:
    paths = stl10.files(ml_data, s)
    log(f'wrote {os.path.dirname(paths["train_images"])}: train_images '
        f'[{n["train"] + n["unlabeled"]}, {s}, {s}, 3] (train '
        f'{_counts_text(labels["train"])}, then {n["unlabeled"]} unlabeled), '
        f'test_images [{n["test"]}, {s}, {s}, 3] (test '
        f'{_counts_text(labels["test"])})')
  return written


def _tmp_name(path: str) -> str:
  return os.path.join(os.path.dirname(path),
                      '.' + os.path.basename(path) + '.tmp')


def download(path: str, log: Callable[[str], None] = print) -> None:
  """Fetches the official archive to `path` and checks its MD5."""
  tmp = path + '.part'
  log(f'downloading {stl10.URL} -> {path} (2.6 GB)')
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  try:
    urllib.request.urlretrieve(stl10.URL, tmp)  # noqa: S310 (fixed URL)
  except OSError as e:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise errors.DataError(
        f'Cannot download {stl10.URL} ({e}). Download it by hand and pass '
        f'--archive=PATH without --download.') from None
  digest = cifar_archive.md5_of(tmp)
  if digest != stl10.MD5:
    os.remove(tmp)
    raise errors.DataError(f'{stl10.URL}: MD5 {digest} differs from the '
                           f'published {stl10.MD5}; the download is corrupt. '
                           f'Retry.')
  os.replace(tmp, path)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--archive', required=True, help=stl10.ARCHIVE)
  parser.add_argument('--ml_data', default=os.environ.get('ML_DATA', ''),
                      help='data root (default: $ML_DATA)')
  parser.add_argument('--sizes', default='96,64,32',
                      help='image sizes to write, comma-separated (96, 64, '
                      '32)')
  parser.add_argument('--chunk', type=int, default=2048,
                      help='images converted at a time')
  parser.add_argument('--download', action='store_true',
                      help='fetch the official archive (MD5-checked) to '
                      '--archive if it is not there')
  args = parser.parse_args(argv)
  start = time.time()
  try:
    if not args.ml_data:
      raise errors.ConfigError('Set --ml_data (or ML_DATA) to the data root.')
    if args.chunk < 1:
      raise errors.ConfigError('--chunk must be at least 1.')
    sizes = parse_sizes(args.sizes)
    if args.download:
      if os.path.exists(args.archive):
        print(f'{args.archive} exists; not downloading')
      else:
        download(args.archive)
    written = prepare(args.archive, args.ml_data, sizes, args.chunk)
  except errors.USER_ERRORS as e:
    print(f'prepare_stl10: {e}', file=sys.stderr)
    return 2
  print(f'done: {len(written)} files in {time.time() - start:.1f} s')
  return 0


if __name__ == '__main__':
  sys.exit(main())
