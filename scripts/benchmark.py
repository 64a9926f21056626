"""Benchmark the training step, the input pipeline and evaluation.

Each case runs in a fresh process (so peak memory and the time to the first
finished step are its own) and reports, after warm-up, the median over the
timed steps:

  python3 scripts/benchmark.py                       # README configurations
  python3 scripts/benchmark.py --cases=fixmatch,mixmatch --steps=5 --json=out.json
  python3 scripts/benchmark.py --net_arch=small --steps=10   # quick look
  python3 scripts/benchmark.py --cases=fixmatch --net_impl=keras  # plain Keras WRN
  python3 scripts/benchmark.py --cpu_replicas=1,2 --net_arch=small
  python3 scripts/benchmark.py --repeats=3 --variants=base:,xla:jit_compile=true
  python3 scripts/benchmark.py --cases=scaling --steps=4 --eval_images=4096

Cases: `fixmatch`, `mixmatch` (training step, images/s and steps/s), `pipeline`
(input batches/s with all views), `eval` (EMA-model forward over an unlabeled
set, images/s), `scaling` (not run by default: `--steps` then twice as many
training steps, and pseudo-labelling `--eval_images` then twice as many
images; the time ratios should be 2 and the resident memory should not grow).
`--repeats=N` runs every case N times, each in a fresh process, and ends with
a Markdown table of the medians and the number of runs (the machine may be
shared: compare medians). Options varied with `--variants` (comma list of
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
  imported_at = time.time() - t_start

  case = spec['case']
  method = 'mixmatch' if case == 'mixmatch' else 'fixmatch'
  flags = dict(method=method, dataset='synthetic', net_arch=spec['net_arch'],
               batch_size=spec['batch_size'], unlab_ratio=spec['unlab_ratio'],
               num_epoch=1, num_batch=10**6, percent_labeled=0.5,
               model_dir='/tmp/crest-benchmark', progress=False,
               cpu_replicas=spec['cpu_replicas'],
               eval_batch_size=spec['eval_batch_size'])
  if spec.get('net_impl'):
    flags['net_impl'] = spec['net_impl']
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
    # Time-to-first-step breakdown: Python + imports, data + model build.
    out.update(imports_s=imported_at, built_s=time.time() - t_start)
    if case == 'scaling':
      out.update(_scaling(trainer, strategy, ds, data, spec, steps))
      out['timed'] = 2
      out['peak_rss_gb'] = resource.getrusage(
          resource.RUSAGE_SELF).ru_maxrss / 2**20
      return out
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
        loss = float(trainer.train_steps(it, n))
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


def _rss_gb() -> float:
  """Current resident memory of this process, GB."""
  with open('/proc/self/statm') as f:
    return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**30


def _scaling(trainer, strategy, ds, data, spec, steps) -> dict:
  """Cost across two sizes: `steps` then 2 x `steps` training steps, and
  pseudo-labelling `eval_images` then 2 x as many images; resident memory
  after each (bounded: no growth with steps)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  it = iter(strategy.experimental_distribute_dataset(ds))
  one = tf.constant(1)
  float(trainer.train_steps(it, one))
  out = {}
  for label, n in (('train_1x', steps), ('train_2x', 2 * steps)):
    t = time.perf_counter()
    for _ in range(n):
      float(trainer.train_steps(it, one))
    out[label + '_s'] = time.perf_counter() - t
    out[label + '_rss_gb'] = _rss_gb()
  n = spec['eval_images']
  images = np.resize(data.train_images, (2 * n,) + data.train_images.shape[1:])
  trainer.predict_ema(images[:n])  # Trace.
  for label, m in (('label_1x', n), ('label_2x', 2 * n)):
    t = time.perf_counter()
    trainer.predict_ema(images[:m])
    out[label + '_s'] = time.perf_counter() - t
    out[label + '_rss_gb'] = _rss_gb()
  out['train_ratio'] = out['train_2x_s'] / out['train_1x_s']
  out['label_ratio'] = out['label_2x_s'] / out['label_1x_s']
  out['images_per_sec'] = 2 * n / out['label_2x_s']
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
  p.add_argument('--net_impl', default='',
                 help="network implementation ('lean', 'keras'; "
                 'networks.registry.impls); default: the network\'s own '
                 'default')
  p.add_argument('--batch_size', type=int, default=64)
  p.add_argument('--unlab_ratio', type=int, default=7)
  p.add_argument('--eval_batch_size', type=int, default=1024)
  p.add_argument('--eval_images', type=int, default=4096)
  p.add_argument('--cpu_replicas', default='0',
                 help='comma list; 0 = the default devices')
  p.add_argument('--variants', default='base:')
  p.add_argument('--warmup', type=int, default=2)
  p.add_argument('--steps', type=int, default=5)
  p.add_argument('--repeats', type=int, default=1,
                 help='fresh processes per case; the summary gives medians')
  p.add_argument('--json', default='')
  p.add_argument('--_worker', default='', help=argparse.SUPPRESS)
  args = p.parse_args()
  if args._worker:  # pylint: disable=protected-access
    print('RESULT ' + json.dumps(_worker(json.loads(args._worker))))  # pylint: disable=protected-access
    return 0

  results = []
  for repeat, replicas, (vname, extra), case in (
      (r, int(c), v, k) for r in range(args.repeats)
      for c in args.cpu_replicas.split(',')
      for v in _parse_variants(args.variants)
      for k in args.cases.split(',')):
    spec = dict(case=case, net_arch=args.net_arch, net_impl=args.net_impl,
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
               net_impl=args.net_impl or 'default', repeat=repeat,
               load_avg_1min=os.getloadavg()[0])
    results.append(res)
    print(_row(res), flush=True)
  print(_summary(results))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=2)
  return 0 if results else 1


_SUMMARY_KEYS = (('sec_per_step', 's/step', '{:.2f}'),
                 ('images_per_sec', 'images/s', '{:.0f}'),
                 ('batches_per_sec', 'batches/s', '{:.1f}'),
                 ('time_to_first_step_s', 'first step (s)', '{:.1f}'),
                 ('peak_rss_gb', 'peak RSS (GB)', '{:.2f}'),
                 ('train_ratio', 'time 2x/1x steps', '{:.2f}'),
                 ('label_ratio', 'time 2x/1x images', '{:.2f}'))


def _summary(results: list) -> str:
  """Markdown table: per case and variant, the median over the runs."""
  groups = {}
  for r in results:
    groups.setdefault((r['case'], r['variant'], r['replicas']), []).append(r)
  keys = [k for k in _SUMMARY_KEYS if any(k[0] in r for r in results)]
  lines = ['| case | variant | replicas | runs | ' +
           ' | '.join(k[1] for k in keys) + ' |',
           '| --- ' * (4 + len(keys)) + '|']
  for (case, variant, replicas), rs in groups.items():
    cells = []
    for key, _, fmt in keys:
      vals = sorted(r[key] for r in rs if key in r)
      cells.append(fmt.format(vals[len(vals) // 2] if len(vals) % 2 else
                              (vals[len(vals) // 2 - 1] + vals[len(vals) // 2])
                              / 2) if vals else '')
    lines.append(f'| {case} | {variant} | {replicas} | {len(rs)} | ' +
                 ' | '.join(cells) + ' |')
  return '\nMedians over runs:\n' + '\n'.join(lines)


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
    parts.append(f"first step {r['time_to_first_step_s']:.1f} s (imports "
                 f"{r['imports_s']:.1f}, built {r['built_s']:.1f})")
  if 'train_ratio' in r:
    parts.append(f"2x steps: x{r['train_ratio']:.2f} time, RSS "
                 f"{r['train_1x_rss_gb']:.2f} -> {r['train_2x_rss_gb']:.2f} GB"
                 f" | 2x images: x{r['label_ratio']:.2f} time")
  parts += [f"peak RSS {r['peak_rss_gb']:.2f} GB",
            f"load {r['load_avg_1min']:.1f}"]
  return ' | '.join(parts)


if __name__ == '__main__':
  sys.exit(main())
