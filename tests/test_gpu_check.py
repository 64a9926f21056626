"""scripts/gpu_check.sh on this CPU: reduced sizes, a short time limit, the
table, the JSON, 'GPU found: no' and why; its plan, table and refusals."""
import json
import os
import re
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from scripts import bench_worker
from scripts import gpu_check

SCRIPT = str(ROOT / 'scripts' / 'gpu_check.sh')
LIMIT_S = 40  # Enough for TensorFlow to load, far too little for 16 cells.


def _env(**extra):
  env = dict(os.environ, CUDA_VISIBLE_DEVICES='', **extra)
  env.pop('GPU_CHECK_SIZES', None)
  return env


def test_plan_covers_every_cell_once():
  cells = gpu_check.plan('readme')
  keys = [(c['case'], c['net_impl'], c['precision'], c['jit_compile'])
          for c in cells]
  assert len(set(keys)) == len(keys) == 16
  assert keys[:2] == [('fixmatch', 'lean', 'float32', False),
                      ('fixmatch', 'keras', 'float32', False)]
  assert [c['index'] for c in cells] == list(range(16))
  first = cells[0]
  assert (first['net_arch'], first['batch_size'], first['unlab_ratio']) == (
      'WRN28', 64, 7)
  assert first['extra'] == {'mixed_precision': 'float32',
                            'jit_compile': False}
  reduced = gpu_check.plan('reduced')[-1]
  assert reduced['net_arch'] == 'small' and reduced['extra'] == {
      'net_width': 1, 'mixed_precision': 'bfloat16', 'jit_compile': True}


def test_table_cells():
  cells = gpu_check.plan('reduced')[:4]
  results = {
      0: dict(index=0, images_per_sec=123.45, eval_images_per_sec=456.7,
              peak_gpu_gb=None, time_to_first_step_s=9.87),
      1: dict(index=1, images_per_sec=10.0, eval_images_per_sec=20.0,
              peak_gpu_gb=1.234, time_to_first_step_s=3.0),
      2: dict(index=2, refused='--jit_compile does not support X'),
  }
  lines = gpu_check.table(cells, results).splitlines()
  assert lines[2] == ('| fixmatch | lean | float32 | no | 123.5 | 456.7 | '
                      'n/a (no GPU) | 9.9 |')
  assert lines[3] == '| fixmatch | keras | float32 | no | 10.0 | 20.0 | ' \
      '1.23 | 3.0 |'
  assert lines[4] == ('| fixmatch | lean | float32 | yes | refused: '
                      '--jit_compile does not support X |  |  |  |')
  assert lines[5].endswith('| not run (time limit) |  |  |  |')


def test_a_refused_config_is_a_cell_not_a_crash():
  # --jit_compile with --bn_sync on 2 replicas (conftest's 2 logical CPUs)
  # is refused by the config; the cell says so and the next one runs.
  cell = dict(gpu_check.plan('reduced')[2], cpu_replicas=2)
  assert cell['jit_compile']
  cell['extra'] = dict(cell['extra'], bn_sync=True, cpu_replicas=2)
  bad = dict(cell, index=7, extra=dict(cell['extra'], weight_decay=-1.0))
  lines = []
  bench_worker.run_cells([cell, bad],
                         emit=lambda text, flush: lines.append(text))
  assert lines[0] == f"START {cell['index']}"
  result = json.loads(lines[1][len('RESULT '):])
  assert result['index'] == cell['index']
  assert '--bn_sync' in result['refused'] and 'jit_compile' in \
      result['refused']
  assert 'images_per_sec' not in result
  assert lines[2] == 'START 7'
  assert 'weight_decay' in json.loads(lines[3][len('RESULT '):])['refused']


def test_gpu_check_on_cpu_stops_at_its_limit(tmp_path):
  out_dir = tmp_path / 'gpu'
  start = time.time()
  proc = subprocess.run([SCRIPT, str(out_dir)], capture_output=True,
                        text=True, check=False, timeout=LIMIT_S + 60,
                        env=_env(GPU_CHECK_TIME_LIMIT=str(LIMIT_S)))
  wall = time.time() - start
  out = proc.stdout
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert f'GPU check: at most {LIMIT_S} s' in out
  assert re.search(r'GPU found: no \(.{10,}\)', out), out
  assert 'Sizes: CPU, reduced sizes' in out
  assert '| method | --net_impl | precision | --jit_compile | train images/s' \
      in out
  assert f'stopped at the time limit ({LIMIT_S} s)' in out
  assert wall < LIMIT_S + 30
  saved = json.loads((out_dir / 'gpu_check.json').read_text())
  assert saved['stopped'] == 'time limit' and saved['sizes'] == 'reduced'
  assert saved['machine']['gpus'] == [] and saved['machine']['gpu_reason']
  assert saved['elapsed_s'] < LIMIT_S + 15
  cells = saved['cells']
  assert len(cells) == 16
  done = [c for c in cells if c['result'] is not None]
  assert len(done) < 16
  rows = [l for l in out.splitlines() if l.startswith('| fix') or
          l.startswith('| mix')]
  assert len(rows) == 16
  assert sum('not run (time limit)' in r for r in rows) == 16 - len(done)
  for c in done:  # What finished is printed with its numbers.
    r = c['result']
    assert r['images_per_sec'] > 0 and r['eval_images_per_sec'] > 0
    assert r['peak_gpu_gb'] is None
    assert f"| {r['images_per_sec']:.1f} | {r['eval_images_per_sec']:.1f} " \
        '| n/a (no GPU) |' in rows[c['index']]


@pytest.mark.parametrize('args,env,message', [
    ([], {}, 'usage: scripts/gpu_check.sh OUT_DIR'),
    (['OUT'], {'GPU_CHECK_TIME_LIMIT': '0'}, 'must be > 0 seconds'),
    (['OUT'], {'GPU_CHECK_SIZES': 'huge'}, "--sizes='huge'"),
    (['FILE'], {}, 'give a writable directory'),
])
def test_bad_input_exits_2(tmp_path, args, env, message):
  blocker = tmp_path / 'file'
  blocker.write_text('x')
  args = [{'OUT': str(tmp_path / 'out'), 'FILE': str(blocker / 'sub')}[a]
          for a in args]
  proc = subprocess.run([SCRIPT] + args, capture_output=True, text=True,
                        check=False, env=dict(_env(), **env), timeout=60)
  assert proc.returncode == 2, proc.stdout + proc.stderr
  assert message in proc.stderr
