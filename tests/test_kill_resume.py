"""A deterministic run killed at several points resumes to the same result.

One uninterrupted run is compared with a run that is stopped four times:
SIGTERM mid-epoch (a clean stop with a checkpoint), SIGKILL right after the
end-of-training checkpoint appears, SIGKILL between generations, SIGKILL in
the second generation's second epoch, and finally run to completion.

A deterministic run that ignored its checkpoints would write the same
records, so each attempt is also checked for what it did: each kill really
interrupted (its exit status, and the state on disk short of the end), and
each resumed attempt started from the step of the checkpoint the previous
one left (its log line), not from zero, and wrote none of the checkpoints up
to that step again.
"""
import glob
import os
import re
import signal
import subprocess
import sys
import time

from conftest import generation_records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 12  # Steps per generation: 2 epochs of 6.
FLAGS = ['--dataset=synthetic_tiny', '--net_arch=small', '--num_epoch=2',
         '--num_batch=6', '--num_generation=2', '--batch_size=8',
         '--unlab_ratio=1', '--percent_labeled=0.3', '--progress=false',
         '--eval_batch_size=64', '--deterministic=true', '--seed=4',
         '--do_distalign=true', '--how_dalign=adaptive', '--threshold=0.5']


def _cmd(model_dir):
  return [sys.executable, '-m', 'train_and_eval_loop',
          f'--model_dir={model_dir}'] + FLAGS


def _find(model_dir, pattern):
  return sorted(glob.glob(os.path.join(str(model_dir), '**', pattern),
                          recursive=True))


def _run_until(model_dir, pattern, sig, delay=0.0, timeout=300):
  """Starts a run; once `pattern` exists (+delay s) sends `sig`.

  Returns: (exit status, combined output).
  """
  proc = subprocess.Popen(_cmd(model_dir), cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  start = time.time()
  while proc.poll() is None and time.time() - start < timeout:
    if _find(model_dir, pattern):
      time.sleep(delay)
      proc.send_signal(sig)
      break
    time.sleep(0.02)
  out, _ = proc.communicate(timeout=timeout)
  return proc.returncode, out


def _checkpoint_steps(model_dir, gen):
  """Steps of generation `gen`'s checkpoint files on disk, ascending."""
  return sorted(int(re.search(r'ckpt-(\d+)\.index$', p).group(1))
                for p in _find(model_dir, f'gen_{gen:02d}*/ckpt/ckpt-*.index'))


def _written(model_dir, gen):
  """{step: modification time} of generation `gen`'s checkpoint files; an
  attempt that resumed at step s writes none of the steps <= s again."""
  return {int(re.search(r'ckpt-(\d+)\.index$', p).group(1)):
          os.stat(p).st_mtime_ns
          for p in _find(model_dir, f'gen_{gen:02d}*/ckpt/ckpt-*.index')}


def _latest(model_dir, gen):
  """The step of the checkpoint generation `gen`'s state file names as the
  latest (what a resumed attempt restores; a kill can fall between a
  checkpoint's files and the state file's update)."""
  (path,) = _find(model_dir, f'gen_{gen:02d}*/ckpt/checkpoint')
  with open(path) as f:
    return int(re.search(r'^model_checkpoint_path: "ckpt-(\d+)"', f.read(),
                         re.M)[1])


def _restored(out):
  """(generation directory, step) of every 'Restored ...' log line."""
  return [(re.search(r'(gen_\d\d)', path).group(1), int(step))
          for path, step in re.findall(r'Restored (\S+) \(step (\d+),', out)]


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
    stopped = int(re.search(r'Stopped by signal 15 at step (\d+)', out)[1])
    assert 0 < stopped < STEPS
    assert _checkpoint_steps(run_dir, 0)[-1] == _latest(run_dir, 0) == stopped
    assert not _find(run_dir, 'gen_00*/generation.json')

    # 2. SIGKILL the moment the end-of-training checkpoint appears, before
    # the generation's records are written.
    code, out = _run_until(run_dir, f'gen_00*/ckpt/ckpt-{STEPS}.index',
                           signal.SIGKILL)
    assert code == -signal.SIGKILL, out[-3000:]
    assert _restored(out) == [('gen_00', stopped)]  # Not from step 0.
    assert not _find(run_dir, 'gen_00*/generation.json')
    # It trained on: the state names ckpt-12, or ckpt-6 when the kill fell
    # before the state file's update.
    latest = _latest(run_dir, 0)
    assert latest in (STEPS // 2, STEPS)

    # 3. SIGKILL between generations: generation 0 resumes at its latest
    # checkpoint and writes its records.
    before = _written(run_dir, 0)
    code, out = _run_until(run_dir, 'gen_00*/generation.json', signal.SIGKILL)
    assert code == -signal.SIGKILL, out[-3000:]
    assert _restored(out) == [('gen_00', latest)]
    after = _written(run_dir, 0)
    assert all(after[s] == t for s, t in before.items() if s <= latest)
    assert _latest(run_dir, 0) == STEPS
    assert not _find(run_dir, 'gen_01*/generation.json')

    # 4. SIGKILL in the second generation's second epoch.
    code, out = _run_until(run_dir, 'gen_01*/ckpt/ckpt-6.index',
                           signal.SIGKILL, delay=0.3)
    assert code == -signal.SIGKILL, out[-3000:]
    assert 'Generation 0 is finished' in out
    assert 'gen_00' not in dict(_restored(out))  # Skipped, not retrained.
    last = _latest(run_dir, 1)
    assert 0 < last < STEPS and _checkpoint_steps(run_dir, 1)[-1] < STEPS
    assert not _find(run_dir, 'gen_01*/generation.json')

    # 5. Finish, from generation 1's last checkpoint.
    before = _written(run_dir, 1)
    final = subprocess.run(_cmd(run_dir), cwd=ROOT, capture_output=True,
                           text=True, timeout=600)
    assert final.returncode == 0, final.stderr[-3000:]
    assert _restored(final.stdout + final.stderr) == [('gen_01', last)]
    after = _written(run_dir, 1)
    assert all(after[s] == t for s, t in before.items() if s <= last)
    assert STEPS in after
    ref.wait(timeout=600)
    assert ref.returncode == 0, ref_log.read_text()[-3000:]
    assert not _restored(ref_log.read_text())
    expected = generation_records(ref_dir)
    assert set(expected) == {'gen_00_t1.00', 'gen_01_t0.50',
                             'gen_00_t1.00/labeled_set.npz',
                             'gen_00_t1.00/picks.npz',
                             'gen_01_t0.50/labeled_set.npz',
                             'gen_01_t0.50/picks.npz'}
    assert generation_records(run_dir) == expected
  finally:
    if ref.poll() is None:
      ref.kill()
