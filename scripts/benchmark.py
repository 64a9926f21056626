"""Benchmark the training step, the input pipeline, evaluation and
pseudo-labelling, like for like: the default build against plain Keras layers.

Each run is a fresh process (so peak memory and the time to the first
finished step are its own) and reports, after warm-up, the median over the
timed steps:

  python3 scripts/benchmark.py                       # README configuration
  python3 scripts/benchmark.py --repeats=3 --steps=3 --warmup=1
  python3 scripts/benchmark.py --net_arch=small --steps=2 --warmup=1  # quick
  python3 scripts/benchmark.py --cases=fixmatch --precisions=float32
  python3 scripts/benchmark.py --no-paired --cases=fixmatch --net_impl=keras
  python3 scripts/benchmark.py --variants=base:,xla:jit_compile=true
  python3 scripts/benchmark.py --cases=scaling --steps=4 --eval_images=4096

Paired (the default): the network cases (`fixmatch`, `mixmatch`: training
step; `eval`: EMA forward over `--eval_images`; `label`: pseudo-labelling
that many pool images, EMA scores gathered by position + CReST's selection)
run the default build (`--impls`, first: `--net_impl=lean`) and the
plain-Keras build (second: `keras`) of the same architecture alternately,
A B A B, in every precision of `--precisions` (float32 and
`--mixed_precision=bfloat16`), `--repeats` rounds. Printed per comparison:
the ratio of images/s in each round and the median (lean float32 / keras
float32; lean bfloat16 / keras float32; keras bfloat16 / keras float32;
see scripts/bench_pairs.py), with each build's images/s and peak RSS.
`pipeline` (input batches/s, all views; with `--workers=1,2,4` also the
share one worker of W builds under MultiWorkerMirroredStrategy, its rows of
every global batch: batches/s should grow about W-fold, variant `wW`) and
`scaling` (not run by default:
`--steps` then twice as many training steps, pseudo-labelling
`--eval_images` then twice as many; time ratios should be 2, memory should
not grow) run once per round. `--no-paired`: every case once per round with
`--net_impl` (the network's default if empty), in float32 unless a variant
says otherwise.

First, one process records the machine (CPU model, AVX2 / AVX-512F /
AVX512_BF16 / AMX-BF16 / AMX-TILE, cores, TensorFlow, oneDNN, GPUs) and its
matrix-multiply peak (`--peak_n` square tf.linalg.matmul, float32 and
bfloat16, best of `--peak_repeats` calls and at least 1 s of them; measured
again after the runs, the better of the two counts); every table is printed
with it, and
every training / evaluation figure also as GFLOP/s and a fraction of that
peak (FLOPs counted from the model's Conv2D / Dense layers' shapes, training
= 3 x forward: scripts/bench_flops.py). `--variants` (comma list of
`name:flag=value;flag=value`) adds config options to every run of that
variant. `--json` writes the machine, every run, the pairs and the summary.
Works on CPU and GPU (it uses whatever `train_and_eval_loop` would use).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_pairs  # pylint: disable=g-import-not-at-top,wrong-import-position
import bench_worker  # pylint: disable=g-import-not-at-top,wrong-import-position
import machine_info  # pylint: disable=g-import-not-at-top,wrong-import-position

PRECISIONS = ('float32', 'bfloat16', 'float16')


class UsageError(ValueError):
  """Bad command-line input (exit code 2)."""


def _parse_variants(text: str) -> list:
  variants = []
  for item in text.split(','):
    name, _, rest = item.partition(':')
    extra = {}
    for kv in filter(None, rest.split(';')):
      k, sep, v = kv.partition('=')
      if not sep or not k:
        raise UsageError(f'--variants: {kv!r} is not flag=value; write e.g. '
                         '--variants=base:,bf16:mixed_precision=bfloat16.')
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


def _run(spec: dict) -> dict:
  """Runs one spec in a fresh worker process; None if it failed."""
  proc = subprocess.run(
      [sys.executable, __file__, '--_worker', json.dumps(spec)],
      capture_output=True, text=True, check=False)
  lines = [l for l in proc.stdout.splitlines() if l.startswith('RESULT ')]
  if proc.returncode or not lines:
    print(f"{spec['case']}: failed (exit {proc.returncode})\n"
          f'{proc.stderr[-2000:]}', file=sys.stderr)
    return None
  return json.loads(lines[-1][len('RESULT '):])


def _add_flops(res: dict, peaks: dict) -> None:
  """GFLOP/s of a network run and its fraction of each measured peak."""
  if 'train_flops_per_step' in res and 'steps_per_sec' in res:
    flops = res['train_flops_per_step'] * res['steps_per_sec']
  elif 'forward_macs_per_image' in res and res['case'] in ('eval', 'label'):
    flops = 2.0 * res['forward_macs_per_image'] * res['images_per_sec']
  else:
    return
  res['gflops'] = flops / 1e9
  for dtype, peak in peaks.items():
    res[f'fraction_of_{dtype}_peak'] = flops / (peak['best_gflops'] * 1e9)


def main() -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--cases', default='fixmatch,mixmatch,eval,label,pipeline')
  p.add_argument('--net_arch', default='WRN28')
  p.add_argument('--net_impl', default='',
                 help="--no-paired: the implementation ('lean', 'keras'); "
                 "default: the network's own default")
  p.add_argument('--paired', action=argparse.BooleanOptionalAction,
                 default=True, help='default vs plain-Keras build, alternating')
  p.add_argument('--impls', default='lean,keras',
                 help='paired: measured build, reference build')
  p.add_argument('--precisions', default='float32,bfloat16',
                 help='paired: --mixed_precision values')
  p.add_argument('--batch_size', type=int, default=64)
  p.add_argument('--unlab_ratio', type=int, default=7)
  p.add_argument('--eval_batch_size', type=int, default=1024)
  p.add_argument('--eval_images', type=int, default=4096)
  p.add_argument('--cpu_replicas', default='0',
                 help='comma list; 0 = the default devices')
  p.add_argument('--workers', default='1',
                 help='pipeline case: comma list of worker counts W; each '
                 'measures the input share of one worker of W.')
  p.add_argument('--variants', default='base:')
  p.add_argument('--warmup', type=int, default=2)
  p.add_argument('--steps', type=int, default=5)
  p.add_argument('--repeats', type=int, default=1,
                 help='rounds (pairs per comparison); fresh process per run')
  p.add_argument('--peak_n', type=int, default=2048)
  p.add_argument('--peak_repeats', type=int, default=5)
  p.add_argument('--json', default='')
  p.add_argument('--_worker', default='', help=argparse.SUPPRESS)
  args = p.parse_args()
  if args._worker:  # pylint: disable=protected-access
    result = bench_worker.run_case(json.loads(args._worker))  # pylint: disable=protected-access
    print('RESULT ' + json.dumps(result))
    return 0
  try:
    return _drive(args)
  except UsageError as e:
    print(f'benchmark.py: {e}', file=sys.stderr)
    return 2


def _check(args) -> tuple:
  cases = args.cases.split(',')
  known = bench_pairs.PAIRED_CASES + ('pipeline', 'scaling')
  bad = [c for c in cases if c not in known]
  if bad:
    raise UsageError(f'--cases: unknown {bad}; choose from {", ".join(known)}.')
  precisions = args.precisions.split(',')
  bad = [x for x in precisions if x not in PRECISIONS]
  if bad:
    raise UsageError(f'--precisions: unknown {bad}; choose from '
                     f'{", ".join(PRECISIONS)}.')
  impls = tuple(args.impls.split(','))
  if len(impls) != 2 or impls[0] == impls[1]:
    raise UsageError(f'--impls={args.impls!r}: give two different builds, '
                     'measured first, e.g. --impls=lean,keras.')
  for name in ('repeats', 'steps', 'batch_size', 'unlab_ratio', 'eval_images',
               'eval_batch_size', 'peak_n', 'peak_repeats'):
    if getattr(args, name) < 1:
      raise UsageError(f'--{name} must be >= 1.')
  try:
    replicas = [int(c) for c in args.cpu_replicas.split(',')]
  except ValueError:
    replicas = [-1]
  if any(c < 0 for c in replicas):
    raise UsageError(f'--cpu_replicas={args.cpu_replicas!r}: give a comma '
                     'list of counts >= 0 (0: the default devices).')
  try:
    workers = [int(w) for w in args.workers.split(',')]
  except ValueError:
    workers = [0]
  if any(w < 1 for w in workers):
    raise UsageError(f'--workers={args.workers!r}: give a comma list of '
                     'worker counts >= 1.')
  args.worker_counts = workers
  variants = [(f'{name} r{c}' if len(replicas) > 1 else name,
               dict(extra, cpu_replicas=c))
              for name, extra in _parse_variants(args.variants)
              for c in replicas]
  return cases, precisions, impls, variants


def _drive(args) -> int:
  cases, precisions, impls, variants = _check(args)
  base = dict(net_arch=args.net_arch, batch_size=args.batch_size,
              unlab_ratio=args.unlab_ratio,
              eval_batch_size=args.eval_batch_size,
              eval_images=args.eval_images, cpu_replicas=0,
              warmup=args.warmup, steps=args.steps)
  info = machine_info.cpu_info()
  probe = _run(dict(base, case='machine', extra={}, t_start=time.time(),
                    peak_n=args.peak_n, peak_repeats=args.peak_repeats,
                    peak_dtypes=['float32', 'bfloat16']))
  if probe:
    info.update({k: v for k, v in probe.items() if k != 'case'})
  peaks = info.get('peaks', {})
  header = machine_info.format_machine(info)
  print(header, flush=True)
  if args.paired:
    runs = bench_pairs.plan(cases, precisions, impls, args.repeats, variants)
  else:
    runs = [dict(repeat=r, variant=v, extra=dict(e), case=c,
                 impl=args.net_impl, precision=e.get('mixed_precision',
                                                     'float32'))
            for r in range(args.repeats) for v, e in variants for c in cases]
  runs = [dict(run, workers=w,
               variant=run['variant'] + (f' w{w}' if w > 1 else ''))
          for run in runs
          for w in (args.worker_counts if run['case'] == 'pipeline' else [1])]
  results, refused = [], []
  for run in runs:
    extra = dict(run['extra'], mixed_precision=run['precision'])
    res = _run(dict(base, case=run['case'], net_impl=run['impl'],
                    extra=extra, t_start=time.time(), workers=run['workers']))
    if res is None:
      continue
    res.update({k: run[k] for k in ('variant', 'impl', 'precision', 'repeat')},
               net_arch=args.net_arch, load_avg_1min=os.getloadavg()[0])
    if 'refused' in res:
      refused.append(res)
      print(f"{run['case']} {bench_pairs.label(run['impl'], run['precision'])}"
            f" {run['variant']}: refused: {res['refused']}", flush=True)
      continue
    _add_flops(res, peaks)
    results.append(res)
    print(_row(res), flush=True)
  if results and peaks:
    # The peak once more, after the runs: a shared machine's moment of
    # contention at the start must not set it (the best of the two counts).
    again = _run(dict(base, case='machine', extra={}, t_start=time.time(),
                      peak_n=args.peak_n, peak_repeats=args.peak_repeats,
                      peak_dtypes=list(peaks)))
    peaks = machine_info.combine_peaks(peaks, (again or {}).get('peaks'))
    info['peaks'] = peaks
    header = machine_info.format_machine(info)
    for res in results:
      _add_flops(res, peaks)
  pairs = bench_pairs.pair_results(results, precisions, impls)
  summary = bench_pairs.summarize_pairs(pairs)
  print(f'\n{header}\n\nMedians over runs ({args.net_arch}, batch '
        f'{args.batch_size} + {args.batch_size * args.unlab_ratio} unlabeled):'
        f'\n{_summary(results)}')
  if summary:
    print(f'\n{header}\n\nLike-for-like pairs (ratio of images/s, same round)'
          f':\n{bench_pairs.pairs_table(summary)}')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump({'machine': info, 'results': results, 'refused': refused,
                 'pairs': pairs, 'pair_summary': summary}, f, indent=2)
  return 0 if results else 1


_SUMMARY_KEYS = (('sec_per_step', 's/step', '{:.2f}'),
                 ('images_per_sec', 'images/s', '{:.0f}'),
                 ('batches_per_sec', 'batches/s', '{:.1f}'),
                 ('gflops', 'GFLOP/s', '{:.1f}'),
                 ('fraction_of_float32_peak', 'of f32 peak', '{:.0%}'),
                 ('fraction_of_bfloat16_peak', 'of bf16 peak', '{:.0%}'),
                 ('time_to_first_step_s', 'first step (s)', '{:.1f}'),
                 ('peak_rss_gb', 'peak RSS (GB)', '{:.2f}'),
                 ('peak_gpu_gb', 'peak GPU:0 (GB)', '{:.2f}'),
                 ('train_ratio', 'time 2x/1x steps', '{:.2f}'),
                 ('label_ratio', 'time 2x/1x images', '{:.2f}'))


def _median(vals: list) -> float:
  vals = sorted(vals)
  mid = len(vals) // 2
  return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2


def _build(r: dict) -> str:
  """'lean float32', or 'lean (built keras) float32' where the network has
  no such build (e.g. 'small': both sides of a pair are the same network)."""
  impl, built = r['impl'] or 'default', r.get('built_impl')
  if built and built != impl:
    impl = f'{impl} (built {built})'
  return f"{impl} {r['precision']}"


def _summary(results: list) -> str:
  """Markdown table: per case, build and variant, the median over runs."""
  groups = {}
  for r in results:
    groups.setdefault((r['case'], _build(r),
                       r['variant'], r['replicas']), []).append(r)
  keys = [k for k in _SUMMARY_KEYS if any(k[0] in r for r in results)]
  lines = ['| case | build | variant | replicas | runs | ' +
           ' | '.join(k[1] for k in keys) + ' |',
           '| --- ' * (5 + len(keys)) + '|']
  for (case, build, variant, replicas), rs in groups.items():
    cells = []
    for key, _, fmt in keys:
      vals = [r[key] for r in rs if r.get(key) is not None]
      cells.append(fmt.format(_median(vals)) if vals else '')
    lines.append(f'| {case} | {build} | {variant} | {replicas} | {len(rs)} | '
                 + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def _row(r: dict) -> str:
  parts = [f"{r['case']:<9}", _build(r), f"{r['variant']}",
           f"replicas {r['replicas']}"]
  if 'sec_per_step' in r:
    parts += [f"{r['sec_per_step']:.3f} s/step",
              f"{r['steps_per_sec']:.3f} steps/s"]
  if 'batches_per_sec' in r:
    parts.append(f"{r['batches_per_sec']:.1f} batches/s")
  parts.append(f"{r['images_per_sec']:.0f} images/s")
  if 'gflops' in r:
    parts.append(f"{r['gflops']:.1f} GFLOP/s (" + ', '.join(
        f"{r[k]:.0%} of {k.split('_')[2]} peak" for k in r
        if k.startswith('fraction_of_')) + ')')
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
