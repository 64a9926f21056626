"""GPU check: training and evaluation speed of every build in at most 8 minutes.

  python3 scripts/gpu_check.py OUT_DIR [--time_limit=480] [--sizes=auto]

Runs FixMatch and MixMatch training steps for --net_impl=lean and keras,
with and without --jit_compile, in float32 and --mixed_precision=bfloat16
(16 cells), each followed by an EMA evaluation pass, in one worker process
(restarted for the remaining cells if it dies). Per cell: training images/s,
evaluation images/s, peak GPU:0 memory
(tf.config.experimental.get_memory_info('GPU:0')['peak'], reset per cell),
time to the first step (model build + tracing / compiling + first step).
A config crest refuses (a --jit_compile combination XLA cannot compile,
e.g. MixMatch before its compiled stages, --bn_sync on several replicas) is
"refused: <why>" in its row, not a crash.
Stops cleanly at --time_limit seconds (env GPU_CHECK_TIME_LIMIT; default
480 = 8 minutes, counted from the start of this script): the worker is
stopped, cells that did not finish are "not run (time limit)", and the
table and OUT_DIR/gpu_check.json hold what finished.

--sizes (env GPU_CHECK_SIZES): 'readme' (WRN-28-2, 64 + 448 x 2 images per
step, 10,000 evaluation images), 'reduced' ("CPU, reduced sizes": the small
network, 2 + 2 x 2 images, 16 evaluation images: the test suite's seconds),
'auto' (the default: readme when a GPU is found, reduced otherwise).
Exit codes: 0 the check ran (all cells, or up to the limit), 1 the worker
produced nothing, 2 bad input.
"""
from __future__ import annotations

import argparse
import json
import os
import select
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import machine_info  # pylint: disable=g-import-not-at-top,wrong-import-position

DEFAULT_LIMIT_S = 480
SIZES = {
    'readme': dict(net_arch='WRN28', batch_size=64, unlab_ratio=7,
                   eval_images=10000, eval_batch_size=1024, warmup=2,
                   steps=10, dataset='synthetic', extra={},
                   label='README configuration (WRN-28-2, 64 + 448 x 2 '
                   'images per step; evaluation: 10,000 images)'),
    'reduced': dict(net_arch='small', batch_size=2, unlab_ratio=1,
                    eval_images=16, eval_batch_size=8, warmup=1, steps=1,
                    dataset='synthetic_tiny', extra={'net_width': 1},
                    label='CPU, reduced sizes (small network, width 1, '
                    '2 + 2 x 2 images per step; evaluation: 16 images; it '
                    'has no lean build: lean and keras rows are the same '
                    'network) - NOT the README configuration'),
}
METHODS, IMPLS = ('fixmatch', 'mixmatch'), ('lean', 'keras')
PRECISIONS, JITS = ('float32', 'bfloat16'), (False, True)


def plan(sizes: str) -> list:
  """The cells in run order: method, precision, build, XLA (so the first
  minutes give float32 FixMatch for both builds)."""
  size = dict(SIZES[sizes])
  extra = size.pop('extra')
  size.pop('label')
  cells = []
  for method in METHODS:
    for precision in PRECISIONS:
      for jit in JITS:
        for impl in IMPLS:
          cells.append(dict(
              size, index=len(cells), case=method, net_impl=impl,
              cpu_replicas=0, precision=precision, jit_compile=jit,
              extra=dict(extra, mixed_precision=precision, jit_compile=jit)))
  return cells


def _cell_text(r: dict) -> list:
  """The table cells of one result: train, eval, GPU memory, first step."""
  if r is None:
    return ['not run (time limit)'] + [''] * 3
  for key in ('refused', 'failed'):
    if key in r:
      return [f'{key}: {r[key]}'] + [''] * 3
  gpu = r.get('peak_gpu_gb')
  return [f"{r['images_per_sec']:.1f}", f"{r['eval_images_per_sec']:.1f}",
          'n/a (no GPU)' if gpu is None else f'{gpu:.2f}',
          f"{r['time_to_first_step_s']:.1f}"]


def table(cells: list, results: dict) -> str:
  """Markdown: one row per cell, in plan order."""
  lines = ['| method | --net_impl | precision | --jit_compile | train images/s '
           '| eval images/s | peak GPU:0 memory (GB) | time to first step (s) |',
           '| --- ' * 8 + '|']
  for c in cells:
    lines.append(f"| {c['case']} | {c['net_impl']} | {c['precision']} | "
                 f"{'yes' if c['jit_compile'] else 'no'} | " +
                 ' | '.join(_cell_text(results.get(c['index']))) + ' |')
  return '\n'.join(lines)


def header(info: dict, sizes: str, limit: float) -> str:
  return '\n'.join([
      f'GPU check: at most {limit:.0f} s (stops cleanly at the limit and '
      'prints what finished)',
      machine_info.format_machine(info),
      f"TensorFlow import in the worker: {info.get('imports_s', 0):.1f} s "
      '(not in the time to first step)',
      f'Sizes: {SIZES[sizes]["label"]}'])


def _worker(arg: dict) -> int:
  """The worker process: INFO, PLAN, then bench_worker.run_cells."""
  t = time.time()
  import bench_worker  # pylint: disable=g-import-not-at-top
  bench_worker.prepare_env({})
  info = machine_info.cpu_info()
  info.update(machine_info.tf_info())
  info['imports_s'] = time.time() - t
  print('INFO ' + json.dumps(info), flush=True)
  cells = arg.get('cells')
  if cells is None:
    sizes = arg['sizes']
    if sizes == 'auto':
      sizes = 'readme' if info['gpus'] else 'reduced'
    cells = plan(sizes)
    print('PLAN ' + json.dumps({'sizes': sizes, 'cells': cells}), flush=True)
  bench_worker.run_cells(cells)
  return 0


class _Stop(Exception):
  pass


def _stop(proc) -> None:
  """Stops our worker: SIGTERM, then SIGKILL after 10 s."""
  if proc.poll() is None:
    proc.terminate()
    try:
      proc.wait(10)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()


def _drive(out_dir: str, limit: float, sizes: str, t_start: float) -> int:
  deadline = t_start + limit
  state = dict(info={}, sizes=sizes, cells=None, results={}, stopped=False,
               limit=limit)
  log_path = os.path.join(out_dir, 'gpu_check_worker.log')
  pending, started = None, None

  def on_signal(signum, frame):  # pylint: disable=unused-argument
    raise _Stop()
  signal.signal(signal.SIGTERM, on_signal)
  with open(log_path, 'w') as log:
    while time.time() < deadline:
      arg = ({'sizes': sizes} if state['cells'] is None else
             {'cells': pending})
      proc = subprocess.Popen(
          [sys.executable, os.path.abspath(__file__), '--_worker',
           json.dumps(arg)], stdout=subprocess.PIPE, stderr=log)
      try:
        started = _read(proc, deadline, state)
      except (_Stop, KeyboardInterrupt):
        state['stopped'] = 'signal'
      finally:
        _stop(proc)
      if state['cells'] is None or state['stopped']:
        break
      pending = [c for c in state['cells']
                 if c['index'] not in state['results']]
      if started is not None and started not in state['results']:
        if time.time() < deadline:  # It died, not stopped at the limit.
          state['results'][started] = {
              'index': started, 'failed': f'worker exited '
              f'{proc.returncode} (see {log_path})'}
        pending = [c for c in pending if c['index'] != started]
      if not pending:
        break
  if not state['stopped'] and time.time() >= deadline and len(
      state['results']) < len(state['cells'] or [None]):
    state['stopped'] = 'time limit'
  return _report(out_dir, state, limit, t_start)


def _read(proc, deadline: float, state: dict):
  """Reads the worker's lines until it ends or the deadline; returns the
  index of the cell started last."""
  started, buffered, fd = None, b'', proc.stdout.fileno()
  while True:
    if b'\n' not in buffered:
      wait = deadline - time.time()
      if wait <= 0:
        return started
      ready, _, _ = select.select([fd], [], [], min(wait, 1.0))
      if ready:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
          return started
        buffered += chunk
      continue
    line, buffered = buffered.split(b'\n', 1)
    kind, _, body = line.decode(errors='replace').partition(' ')
    if kind == 'INFO' and not state['info']:
      state['info'] = json.loads(body)
    elif kind == 'PLAN':
      plan_ = json.loads(body)
      state['sizes'], state['cells'] = plan_['sizes'], plan_['cells']
      print(header(state['info'], state['sizes'], state['limit']), flush=True)
    elif kind == 'START':
      started = int(body)
    elif kind == 'RESULT':
      r = json.loads(body)
      state['results'][r['index']] = r
      c = state['cells'][r['index']]
      print(f"  done: {c['case']} {c['net_impl']} {c['precision']} jit="
            f"{c['jit_compile']}: {_cell_text(r)[0]}", flush=True)


def _report(out_dir: str, state: dict, limit: float, t_start: float) -> int:
  elapsed = time.time() - t_start
  cells, results = state['cells'] or [], state['results']
  log = os.path.join(out_dir, 'gpu_check_worker.log')
  if state['cells'] is None:
    if time.time() - t_start < limit and not state['stopped']:
      print(f'GPU check: the worker stopped before measuring anything (see '
            f'{log}).', file=sys.stderr)
      return 1
    print(f'GPU check: at most {limit:.0f} s; stopped before TensorFlow had '
          'loaded in the worker: nothing measured, GPU found: not '
          f'determined.\n{machine_info.format_machine(machine_info.cpu_info())}')
  note = {False: 'all cells ran' if cells else 'nothing ran', 'time limit':
          f'stopped at the time limit ({limit:.0f} s); '
          f'{len(results)} of {len(cells)} cells finished',
          'signal': f'stopped by a signal; {len(results)} of {len(cells)} '
          'cells finished'}[state['stopped']]
  print(f'\n{table(cells, results)}\n\nElapsed {elapsed:.0f} s: {note}.')
  path = os.path.join(out_dir, 'gpu_check.json')
  with open(path, 'w') as f:
    json.dump({'limit_s': limit, 'elapsed_s': elapsed, 'status': note,
               'stopped': state['stopped'], 'sizes': state['sizes'],
               'sizes_label': SIZES.get(state['sizes'], {}).get('label'),
               'machine': state['info'],
               'cells': [dict(c, result=results.get(c['index']))
                         for c in cells]}, f, indent=2)
  print(f'Wrote {path}')
  return 0


def main(argv=None) -> int:
  t_start = time.time()
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('out_dir', nargs='?', default='')
  p.add_argument('--time_limit', type=float, default=float(
      os.environ.get('GPU_CHECK_TIME_LIMIT') or DEFAULT_LIMIT_S))
  p.add_argument('--sizes', default=os.environ.get('GPU_CHECK_SIZES') or
                 'auto', help='auto, readme or reduced')
  p.add_argument('--_worker', default='', help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args._worker:  # pylint: disable=protected-access
    return _worker(json.loads(args._worker))  # pylint: disable=protected-access
  problem = None
  if not args.out_dir:
    problem = 'give the output directory: gpu_check.sh OUT_DIR.'
  elif args.sizes not in ('auto',) + tuple(SIZES):
    problem = (f'--sizes={args.sizes!r} (or GPU_CHECK_SIZES): choose auto, '
               'readme or reduced.')
  elif not args.time_limit > 0:
    problem = (f'--time_limit={args.time_limit} (or GPU_CHECK_TIME_LIMIT) '
               'must be > 0 seconds.')
  else:
    try:
      os.makedirs(args.out_dir, exist_ok=True)
      probe = os.path.join(args.out_dir, '.gpu_check_write_test')
      open(probe, 'w').close()
      os.remove(probe)
    except OSError as e:
      problem = (f'cannot write to {args.out_dir!r} ({e.strerror}); give a '
                 'writable directory.')
  if problem:
    print(f'gpu_check: {problem}', file=sys.stderr)
    return 2
  return _drive(args.out_dir, args.time_limit, args.sizes, t_start)


if __name__ == '__main__':
  sys.exit(main())
