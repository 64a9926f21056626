r"""Measurements of ImageNet-127: memory of the loader and pipeline, and
pseudo-labelling throughput.

  # A fake downsampled-ImageNet set (random pixels, labels uniform over the
  # 1000 ILSVRC classes, so the groups keep the real imbalance profile):
  python scripts/bench_imagenet127.py make --dir=/tmp/src64 --size=64 \
      --train=100000 --test=5000 --files=10
  python scripts/prepare_imagenet127.py --source=/tmp/src64 --ml_data=/tmp/ml
  # Loader RSS, then after training batches, then after the generation loop's
  # `train_images[unlabeled_positions]` copy:
  python scripts/bench_imagenet127.py load --ml_data=/tmp/ml --size=64
  # EMA forward passes as pseudo-labelling runs them (crest.evaluation), on
  # batches sliced from the memory map:
  python scripts/bench_imagenet127.py predict --ml_data=/tmp/ml --size=64 \
      --net_arch=ResNet50 --images=1024 --batch=256

Prints one line per measurement; RSS from /proc/self/status (RssAnon: private
memory; RssFile: pages of mapped files, reclaimable page cache).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

if __package__ in (None, ''):  # Run as a script: make the repo importable.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))


def rss() -> str:
  fields = {}
  with open('/proc/self/status') as f:
    for line in f:
      key, _, value = line.partition(':')
      if key in ('VmRSS', 'VmHWM', 'RssAnon', 'RssFile'):
        fields[key] = int(value.split()[0]) / 1024
  return ', '.join(f'{k} {v:.0f} MiB' for k, v in fields.items())


def make(args) -> None:
  from data import testing  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  train = rng.integers(1, 1001, args.train)
  test = np.concatenate([np.repeat(np.arange(1, 1001), args.test // 1000),
                         rng.integers(1, 1001, args.test % 1000)])
  testing.write_downsampled_imagenet(args.dir, args.size, train, test,
                                     num_files=args.files)
  total = sum(os.path.getsize(os.path.join(args.dir, n))
              for n in os.listdir(args.dir))
  print(f'wrote {args.dir}: {args.train} train images in {args.files} '
        f'file(s), {len(test)} test, {total / 2 ** 20:.0f} MiB')


def _load(args):
  from data import base  # pylint: disable=g-import-not-at-top
  from data import registry  # pylint: disable=g-import-not-at-top
  return registry.load(base.DataArgs(dataset=f'imagenet127_{args.size}',
                                     ml_data=args.ml_data))


def load(args) -> None:
  print(f'start: {rss()}')
  t0 = time.time()
  data = _load(args)
  size = data.train_images.size / 2 ** 20
  print(f'loaded {len(data.train_labels)} train images ({size:.0f} MiB '
        f'file) in {time.time() - t0:.1f} s: {rss()}')
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from data import pipeline  # pylint: disable=g-import-not-at-top
  print(f'tensorflow imported: {rss()}')
  spec = pipeline.StreamSpec(batch_size=64, unlab_ratio=7, augment='dh',
                             weakaug='dh', strongaug='dhrac', num_weakaug=1,
                             num_strongaug=1, seed=0)
  lab = data.labeled_positions
  ds = pipeline.train_dataset(
      data.train_images, lab, data.train_labels[lab],
      data.unlabeled_stream_positions, data.train_labels, spec, 0,
      args.batches)
  t0 = time.time()
  for _ in ds:
    pass
  print(f'{args.batches} training batches of 64 + 448 in '
        f'{time.time() - t0:.1f} s: {rss()}')
  del ds, tf
  pool = data.train_images[data.unlabeled_positions]
  print(f'after train_images[unlabeled_positions] ({pool.nbytes / 2 ** 20:.0f}'
        f' MiB copy, as crest/generations.py does): {rss()}')


def predict(args) -> None:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from crest import evaluation  # pylint: disable=g-import-not-at-top
  from networks import registry as net_registry  # pylint: disable=g-import-not-at-top
  data = _load(args)
  images = data.train_images[:args.images]  # A slice of the memory map.
  strategy = tf.distribute.OneDeviceStrategy('/cpu:0')
  with strategy.scope():
    model, ema = (net_registry.build(args.net_arch, num_classes=127,
                                     input_shape=data.image_shape,
                                     width=args.net_width)
                  for _ in range(2))
  ev = evaluation.Evaluator(strategy, model, ema, args.size, args.batch)
  ev.logits(images[:args.batch], 127, raw=False)  # Trace and warm up.
  t0 = time.time()
  (logits,) = ev.logits(images, 127, raw=False)
  dt = time.time() - t0
  print(f'{args.net_arch} x{args.net_width:g} at {args.size}x{args.size}, '
        f'batch {args.batch}, {len(logits)} images: {dt:.1f} s, '
        f'{len(logits) / dt:.1f} images/s (EMA forward only; '
        f'{os.cpu_count()} CPUs); {rss()}')


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest='cmd', required=True)
  p = sub.add_parser('make')
  p.add_argument('--dir', required=True)
  p.add_argument('--size', type=int, default=64)
  p.add_argument('--train', type=int, default=100000)
  p.add_argument('--test', type=int, default=5000)
  p.add_argument('--files', type=int, default=10)
  for name in ('load', 'predict'):
    p = sub.add_parser(name)
    p.add_argument('--ml_data', required=True)
    p.add_argument('--size', type=int, default=64, choices=[32, 64])
    p.add_argument('--batches', type=int, default=20)
    p.add_argument('--net_arch', default='ResNet50')
    p.add_argument('--net_width', type=float, default=1.0)
    p.add_argument('--images', type=int, default=1024)
    p.add_argument('--batch', type=int, default=256)
  args = parser.parse_args(argv)
  {'make': make, 'load': load, 'predict': predict}[args.cmd](args)
  return 0


if __name__ == '__main__':
  sys.exit(main())
