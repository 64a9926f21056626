"""Measures augmentation throughput (images per second) on CPU.

Runs `augment.registry.build(spec, 32)` on batches of uint8 32x32x3 images,
after warm-up, and reports the median over repeats, for TensorFlow's default
threading and for one intra-op / one inter-op thread (a per-core figure). Each
threading setting runs in its own subprocess (TF fixes threading at start).
It then compares with what one FixMatch step consumes: 64 labeled (dh) +
448 weak (dh) + 448 strong (dhrac) images.

  python3 scripts/bench_augment.py                  # table, both settings
  python3 scripts/bench_augment.py --json out.json  # also write JSON
  python3 scripts/bench_augment.py --threads 1      # one setting, in-process
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _measure(specs, batch, repeats, warmup, threads, size=32):
  """Returns {spec: {'median_s', 'images_per_s', 'times_s'}} in-process."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  import numpy as np
  import tensorflow as tf
  if threads:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
  sys.path.insert(0, str(ROOT))
  from augment import registry
  rng = np.random.RandomState(0)
  images = tf.constant(rng.randint(0, 256, (batch, size, size, 3)),
                       tf.uint8)
  results = {}
  for spec in specs:
    fn = registry.build(spec, size)
    for i in range(warmup):
      fn(images, tf.constant([0, i])).numpy()
    times = []
    for i in range(repeats):
      seed = tf.constant([1, i])
      start = time.perf_counter()
      fn(images, seed).numpy()
      times.append(time.perf_counter() - start)
    median = statistics.median(times)
    results[spec] = {'median_s': median, 'images_per_s': batch / median,
                     'times_s': times}
  return results


def _fixmatch(results, labeled=64, unlabeled=448):
  """Seconds of augmentation per FixMatch step, and steps per second."""
  dh = results['dh']['images_per_s']
  dhrac = results['dhrac']['images_per_s']
  seconds = (labeled + unlabeled) / dh + unlabeled / dhrac
  return {'images_per_step': labeled + 2 * unlabeled,
          'augment_s_per_step': seconds, 'steps_per_s': 1.0 / seconds}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--specs', default='dh,dhrac',
                      help='comma-separated specs (dh and dhrac are needed '
                      'for the FixMatch line)')
  parser.add_argument('--batch', type=int, default=448)
  parser.add_argument('--repeats', type=int, default=9)
  parser.add_argument('--warmup', type=int, default=3)
  parser.add_argument('--threads', type=int, default=None,
                      help='run only this setting in-process (0 = TF '
                      'default, 1 = one intra/inter-op thread)')
  parser.add_argument('--json', default='', help='write results here')
  args = parser.parse_args(argv)
  specs = [s for s in args.specs.split(',') if s]

  if args.threads is not None:
    runs = {str(args.threads): _measure(specs, args.batch, args.repeats,
                                        args.warmup, args.threads)}
  else:
    runs = {}
    for threads in (0, 1):
      cmd = [sys.executable, __file__, '--specs', args.specs, '--batch',
             str(args.batch), '--repeats', str(args.repeats), '--warmup',
             str(args.warmup), '--threads', str(threads), '--json', '-']
      out = subprocess.run(cmd, check=True, capture_output=True, text=True)
      runs[str(threads)] = json.loads(out.stdout.strip().splitlines()[-1]
                                      )['runs'][str(threads)]

  report = {'batch': args.batch, 'image': [32, 32, 3],
            'repeats': args.repeats, 'cpu_count': os.cpu_count(),
            'runs': runs}
  if args.json == '-':
    print(json.dumps(report))
    return
  print(f'batch {args.batch} x 32x32x3 uint8, median of {args.repeats} '
        f'after {args.warmup} warm-up calls, {os.cpu_count()} CPUs')
  print(f'{"threads":>8} {"spec":>8} {"ms/batch":>9} {"images/s":>9}')
  for threads, results in runs.items():
    label = 'default' if threads == '0' else threads
    for spec, r in results.items():
      print(f'{label:>8} {spec:>8} {1e3 * r["median_s"]:9.1f} '
            f'{r["images_per_s"]:9.0f}')
    if 'dh' in results and 'dhrac' in results:
      fm = _fixmatch(results)
      report.setdefault('fixmatch', {})[threads] = fm
      print(f'{label:>8} FixMatch step ({fm["images_per_step"]} images: '
            f'64+448 dh, 448 dhrac): {1e3 * fm["augment_s_per_step"]:.0f} ms '
            f'of augmentation -> at most {fm["steps_per_s"]:.1f} steps/s')
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == '__main__':
  main()
