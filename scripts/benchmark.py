"""Benchmark the training step, the input pipeline and evaluation.

Each case runs in a fresh process (so peak memory and the time to the first
finished step are its own) and reports, after warm-up, the median over the
timed steps:

  python3 scripts/benchmark.py                       # README configurations
  python3 scripts/benchmark.py --cases=fixmatch,mixmatch --steps=5 --json=out.json
  python3 scripts/benchmark.py --net_arch=small --steps=10   # quick look
  python3 scripts/benchmark.py --cpu_replicas=1,2 --net_arch=small

Cases: `fixmatch`, `mixmatch` (training step, images/s and steps/s), `pipeline`
(input batches/s with all views), `eval` (EMA-model forward over an unlabeled
set, images/s). Options varied with `--variants` (comma list of
`name:flag=value;flag=value`), e.g.
`--variants=base:,bf16:mixed_precision=bfloat16`.

Works on CPU and GPU (it uses whatever `train_and_eval_loop` would use).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------- worker
def _worker(spec: dict) -> dict:
  """Runs one case in this process; returns its measurements."""
  t_start = spec['t_start']
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  # As train_and_eval_loop: set from the config before TensorFlow loads.
  os.environ['TF_ENABLE_ONEDNN_OPTS'] = (
      '1' if spec['extra'].get('onednn', True) else '0')
  sys.path.insert(0, ROOT)
  import resource  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from crest import strategy as strategy_lib  # pylint: disable=g-import-not-at-top
  from crest.config import Config  # pylint: disable=g-import-not-at-top
  from crest.trainer import GenerationTrainer  # pylint: disable=g-import-not-at-top
  from data import pipeline  # pylint: disable=g-import-not-at-top
  from data import registry as data_registry  # pylint: disable=g-import-not-at-top
  from data.base import DataArgs  # pylint: disable=g-import-not-at-top

  case = spec['case']
  method = 'mixmatch' if case == 'mixmatch' else 'fixmatch'
  flags = dict(method=method, dataset='synthetic', net_arch=spec['net_arch'],
               batch_size=spec['batch_size'], unlab_ratio=spec['unlab_ratio'],
               num_epoch=1, num_batch=10**6, percent_labeled=0.5,
               model_dir='/tmp/crest-benchmark', progress=False,
               cpu_replicas=spec['cpu_replicas'],
               eval_batch_size=spec['eval_batch_size'])
  if method == 'mixmatch':
    flags.update(num_weakaug=2, num_strongaug=0, temperature=0.5,
                 threshold=0.0, unsup_loss_type='mse', weight_unsup=75.0)
  flags.update(spec['extra'])
  cfg = Config(**flags)
  if cfg.deterministic:
    tf.config.experimental.enable_op_determinism()
  strategy = strategy_lib.make_strategy(cfg.cpu_replicas)
  data = data_registry.load(DataArgs(dataset='synthetic', class_im_ratio=0.1,
                                     percent_labeled=0.5))
  lab = data.labeled_positions
  stream = data.unlabeled_stream_positions
  stream_spec = pipeline.StreamSpec(
      batch_size=cfg.batch_size, unlab_ratio=cfg.unlab_ratio,
      augment=cfg.augment, weakaug=cfg.weakaug, strongaug=cfg.strongaug,
      num_weakaug=cfg.num_weakaug, num_strongaug=cfg.num_strongaug, seed=0)
  ds = pipeline.train_dataset(data.train_images, lab, data.train_labels[lab],
                              stream, data.train_labels[stream], stream_spec,
                              0, 10**6)
  images_per_step = cfg.batch_size + cfg.unlabeled_batch_size * (
      cfg.num_weakaug + cfg.num_strongaug)
  out = {'case': case, 'replicas': strategy.num_replicas_in_sync,
         'images_per_step': images_per_step}
  warmup, steps = spec['warmup'], spec['steps']
  times = []
  if case == 'pipeline':
    # Throughput over many batches: the prefetch buffer must not hide the
    # cost (it holds a few batches after warm-up).
    it = iter(ds)
    for _ in range(warmup):
      next(it)
    for _ in range(steps):
      t = time.perf_counter()
      for _ in range(50):
        next(it)
      times.append((time.perf_counter() - t) / 50)
    med = float(np.median(times))
    out.update(batches_per_sec=1 / med,
               images_per_sec=images_per_step / med)
  else:
    trainer = GenerationTrainer(cfg, strategy, data, '/tmp/crest-benchmark',
                                dalign_t=None, seed=0, is_chief=False)
    if case == 'eval':
      images = np.resize(data.train_images, (spec['eval_images'],) +
                         data.train_images.shape[1:])
      trainer.predict_ema(images[:cfg.eval_batch_size])  # Trace.
      out['time_to_first_step_s'] = time.time() - t_start
      for _ in range(steps):
        t = time.perf_counter()
        trainer.predict_ema(images)
        times.append(time.perf_counter() - t)
      med = float(np.median(times))
      out.update(images_per_sec=len(images) / med)
    else:
      it = iter(strategy.experimental_distribute_dataset(ds))
      n = tf.constant(cfg.steps_per_loop)
      for i in range(warmup + steps):
        t = time.perf_counter()
        loss = float(trainer._train_loop(it, n))  # pylint: disable=protected-access
        if i == 0:
          out['time_to_first_step_s'] = time.time() - t_start
        if i >= warmup:
          times.append((time.perf_counter() - t) / cfg.steps_per_loop)
      med = float(np.median(times))
      out.update(sec_per_step=med, steps_per_sec=1 / med,
                 images_per_sec=images_per_step / med, last_loss=loss)
  out['timed'] = len(times)
  out['peak_rss_gb'] = resource.getrusage(
      resource.RUSAGE_SELF).ru_maxrss / 2**20
  return out


# ----------------------------------------------------------------- driver
def _parse_variants(text: str) -> list:
  variants = []
  for item in text.split(','):
    name, _, rest = item.partition(':')
    extra = {}
    for kv in filter(None, rest.split(';')):
      k, _, v = kv.partition('=')
      for cast in (int, float):
        try:
          v = cast(v)
          break
        except ValueError:
          pass
      if v in ('True', 'true'):
        v = True
      elif v in ('False', 'false'):
        v = False
      extra[k] = v
    variants.append((name or 'base', extra))
  return variants


def main() -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--cases', default='fixmatch,mixmatch,pipeline,eval')
  p.add_argument('--net_arch', default='WRN28')
  p.add_argument('--batch_size', type=int, default=64)
  p.add_argument('--unlab_ratio', type=int, default=7)
  p.add_argument('--eval_batch_size', type=int, default=1024)
  p.add_argument('--eval_images', type=int, default=4096)
  p.add_argument('--cpu_replicas', default='0',
                 help='comma list; 0 = the default devices')
  p.add_argument('--variants', default='base:')
  p.add_argument('--warmup', type=int, default=2)
  p.add_argument('--steps', type=int, default=5)
  p.add_argument('--json', default='')
  p.add_argument('--_worker', default='', help=argparse.SUPPRESS)
  args = p.parse_args()
  if args._worker:  # pylint: disable=protected-access
    print('RESULT ' + json.dumps(_worker(json.loads(args._worker))))  # pylint: disable=protected-access
    return 0

  results = []
  for replicas in [int(r) for r in args.cpu_replicas.split(',')]:
    for vname, extra in _parse_variants(args.variants):
      for case in args.cases.split(','):
        spec = dict(case=case, net_arch=args.net_arch,
                    batch_size=args.batch_size, unlab_ratio=args.unlab_ratio,
                    eval_batch_size=args.eval_batch_size,
                    eval_images=args.eval_images, cpu_replicas=replicas,
                    extra=extra, warmup=args.warmup, steps=args.steps,
                    t_start=time.time())
        proc = subprocess.run(
            [sys.executable, __file__, '--_worker', json.dumps(spec)],
            capture_output=True, text=True, check=False)
        lines = [l for l in proc.stdout.splitlines()
                 if l.startswith('RESULT ')]
        if proc.returncode or not lines:
          print(f'{case} {vname}: failed (exit {proc.returncode})\n'
                f'{proc.stderr[-2000:]}', file=sys.stderr)
          continue
        res = json.loads(lines[-1][len('RESULT '):])
        res.update(variant=vname, net_arch=args.net_arch,
                   load_avg_1min=os.getloadavg()[0])
        results.append(res)
        print(_row(res), flush=True)
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=2)
  return 0 if results else 1


def _row(r: dict) -> str:
  parts = [f"{r['case']:<9}", f"{r['variant']:<10}",
           f"replicas {r['replicas']}"]
  if 'sec_per_step' in r:
    parts += [f"{r['sec_per_step']:.3f} s/step",
              f"{r['steps_per_sec']:.3f} steps/s"]
  if 'batches_per_sec' in r:
    parts.append(f"{r['batches_per_sec']:.1f} batches/s")
  parts.append(f"{r['images_per_sec']:.0f} images/s")
  if 'time_to_first_step_s' in r:
    parts.append(f"first step {r['time_to_first_step_s']:.1f} s")
  parts += [f"peak RSS {r['peak_rss_gb']:.2f} GB",
            f"load {r['load_avg_1min']:.1f}"]
  return ' | '.join(parts)


if __name__ == '__main__':
  sys.exit(main())
