"""A deterministic run killed at several points resumes to the same result.

One uninterrupted run is compared with a run that is stopped five times:
SIGTERM mid-epoch (a clean stop with a checkpoint), SIGKILL right after a
checkpoint file appears, SIGKILL between generations, SIGKILL mid-epoch of the
second generation, and finally run to completion.
"""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = ['--dataset=synthetic_tiny', '--net_arch=small', '--num_epoch=2',
         '--num_batch=6', '--num_generation=2', '--batch_size=8',
         '--unlab_ratio=1', '--percent_labeled=0.3', '--progress=false',
         '--eval_batch_size=64', '--deterministic=true', '--seed=4',
         '--do_distalign=true', '--how_dalign=adaptive', '--threshold=0.5']


def _cmd(model_dir):
  return [sys.executable, '-m', 'train_and_eval_loop',
          f'--model_dir={model_dir}'] + FLAGS


def _exists(model_dir, pattern):
  return bool(glob.glob(os.path.join(str(model_dir), '**', pattern),
                        recursive=True))


def _run_until(model_dir, pattern, sig, delay=0.0, timeout=300):
  """Starts a run; once `pattern` exists (+delay s) sends `sig`."""
  proc = subprocess.Popen(_cmd(model_dir), cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  start = time.time()
  while proc.poll() is None and time.time() - start < timeout:
    if _exists(model_dir, pattern):
      time.sleep(delay)
      proc.send_signal(sig)
      break
    time.sleep(0.02)
  out, _ = proc.communicate(timeout=timeout)
  return proc.returncode, out


def _results(model_dir):
  out = {}
  for gen in sorted(glob.glob(os.path.join(str(model_dir), '**', 'gen_*'),
                              recursive=True)):
    name = os.path.basename(gen)
    with open(os.path.join(gen, 'generation.json')) as f:
      out[name] = json.load(f)
    for npz in ('labeled_set.npz', 'picks.npz'):
      with np.load(os.path.join(gen, npz)) as f:
        out[f'{name}/{npz}'] = {k: f[k].tolist() for k in f.files}
  return out


def test_killed_run_resumes_to_the_same_records(tmp_path):
  ref_dir, run_dir = tmp_path / 'ref', tmp_path / 'killed'
  # The uninterrupted reference runs alongside the interrupted attempts.
  ref_log = tmp_path / 'ref.log'
  with open(ref_log, 'w') as log:
    ref = subprocess.Popen(_cmd(ref_dir), cwd=ROOT, stdout=log,
                           stderr=subprocess.STDOUT)

  try:
    # 1. SIGTERM soon after training starts: checkpoint, clean exit 143.
    code, out = _run_until(run_dir, 'gen_00*/ckpt/ckpt-0.index',
                           signal.SIGTERM, delay=0.3)
    assert code == 128 + signal.SIGTERM, out[-3000:]
    assert 'Re-run the same command to resume' in out
    assert 'Traceback' not in out
    # 2. SIGKILL the moment the end-of-generation checkpoint appears.
    code, _ = _run_until(run_dir, 'gen_00*/ckpt/ckpt-12.index', signal.SIGKILL)
    assert code in (-signal.SIGKILL, 0)
    # 3. SIGKILL between generations.
    code, _ = _run_until(run_dir, 'gen_00*/generation.json', signal.SIGKILL)
    assert code in (-signal.SIGKILL, 0)
    assert not _exists(run_dir, 'gen_01*/generation.json')
    # 4. SIGKILL during the second generation's first epoch.
    code, _ = _run_until(run_dir, 'gen_01*/ckpt/ckpt-0.index', signal.SIGKILL,
                         delay=0.3)
    assert code in (-signal.SIGKILL, 0)
    # 5. Finish.
    final = subprocess.run(_cmd(run_dir), cwd=ROOT, capture_output=True,
                           text=True, timeout=600)
    assert final.returncode == 0, final.stderr[-3000:]
    ref.wait(timeout=600)
    assert ref.returncode == 0, ref_log.read_text()[-3000:]
    expected = _results(ref_dir)
    assert set(expected) == {'gen_00_t1.00', 'gen_01_t0.50',
                             'gen_00_t1.00/labeled_set.npz',
                             'gen_00_t1.00/picks.npz',
                             'gen_01_t0.50/labeled_set.npz',
                             'gen_01_t0.50/picks.npz'}
    assert _results(run_dir) == expected
  finally:
    if ref.poll() is None:
      ref.kill()
