"""Nothing silently wrong: float flags, checked records, data fingerprints,
the run-directory lock, full disks, flag parsing and a second signal.

Unit tests, most without TensorFlow; the end-to-end ones (damaged records
redone, changed data, a directory in use) are in tests/test_train_loop.py,
on copies of its finished run.
"""
import dataclasses
import errno
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT
from crest import config as config_lib
from crest import disk
from crest import flags as crest_flags
from crest import record_checks
from crest import records
from crest import run_dir as run_dir_lib
from crest import run_guard
from crest.config import Config
from crest.errors import USER_ERRORS, UserError
from data import fingerprint as fingerprint_lib

# ------------------------------------------------------------ float flags
# The valid range of each float flag: (low, high, low_open, high_open); None
# is unbounded. A float flag not listed here still must refuse NaN and +-inf.
RANGES = {
    'class_im_ratio': (0, 1, True, False),  # With a long-tailed dataset.
    'percent_labeled': (0, 1, True, False),
    'net_width': (0, None, True, False),
    'sched_gamma': (0, 1, True, False),
    'sched_min_rate': (0, 1, False, False),
    'learning_rate': (0, None, True, False),
    'weight_decay': (0, None, False, False),
    'ema_decay': (0, 1, False, True),
    'momentum': (0, 1, False, True),
    'clip_value': (0, None, False, False),
    'weight_unsup': (0, None, False, False),
    'threshold': (0, 1, False, False),
    'temperature': (0, None, False, False),
    'mixup_beta': (None, None, False, False),
    'dalign_t': (0, None, False, False),  # > 1 is valid (the original's).
    'alpha': (0, None, True, False),
}
# Settings a flag needs to be read at all.
CONTEXT = {
    'darp_gamma_u': dict(dataset='cifar10ltdarp', class_im_ratio=100.0),
}
FLOAT_FLAGS = [name for name, kind, _, _ in
               crest_flags._FLAGS  # pylint: disable=protected-access
               if kind in ('float', 'optfloat')]


def _base(**kw):
  return Config(model_dir='/tmp/x', dataset='synthetic_tiny',
                net_arch='small').replace(**kw)


def _bad_values(name, rng, n=12):
  """NaN, +-inf, and (for a known range) values just and far outside it."""
  out = [math.nan, math.inf, -math.inf]
  low, high, low_open, high_open = RANGES.get(name, (None,) * 4)
  for _ in range(n):
    gap = 10.0 ** rng.uniform(-6, 6)
    if low is not None:
      out.append(low - gap)
    if high is not None:
      out.append(high + gap)
  if low is not None and low_open:
    out.append(float(low))
  if high is not None and high_open:
    out.append(float(high))
  return out


def test_every_float_flag_refuses_impossible_values():
  """Property-style: many generated bad values per float flag; each gives a
  user error (exit 2) that names the flag."""
  rng = np.random.default_rng(18)
  assert len(FLOAT_FLAGS) >= len(RANGES)
  tried = 0
  for name in FLOAT_FLAGS:
    context = CONTEXT.get(name, {})
    config_lib.validate(_base(**context))  # The context itself is valid.
    for value in _bad_values(name, rng):
      cfg = _base(**context).replace(**{name: value})
      with pytest.raises(USER_ERRORS) as e:
        config_lib.validate(cfg)
      assert f'--{name}' in str(e.value), (name, value, str(e.value))
      tried += 1
  assert tried > 300


def test_float_flags_accept_their_boundaries():
  for name, (low, high, low_open, high_open) in RANGES.items():
    for value, excluded in ((low, low_open), (high, high_open)):
      if value is not None and not excluded:
        config_lib.validate(_base(**{name: float(value)}))


def test_nan_from_the_command_line_is_refused_before_any_work():
  fv = crest_flags.flags.FlagValues()
  crest_flags.define_flags(fv)
  fv(['prog', '--model_dir=/tmp/x', '--sched_type=step', '--sched_gamma=nan'])
  cfg = crest_flags.config_from_values(*crest_flags.values_from_flags(fv))
  with pytest.raises(USER_ERRORS, match='--sched_gamma=nan'):
    config_lib.validate(cfg)


# ------------------------------------------------------ flag parsing: exit 2
@pytest.mark.parametrize('args, needle', [
    (['--batch_size=abc'], '--batch_size=abc'),
    (['--flagfile=/nonexistent/flags.txt'], 'Unable to open flagfile'),
    (['--flagfile={typo}'], "Unknown command line flag 'batch_sze'"),
    (['an_argument'], 'Unexpected arguments'),
])
def test_flag_parsing_errors_exit_2(tmp_path, args, needle):
  typo = tmp_path / 'flags.txt'
  typo.write_text('--dataset=synthetic_tiny\n--batch_sze=8\n')
  cmd = [sys.executable, '-m', 'train_and_eval_loop',
         f'--model_dir={tmp_path / "runs"}'] + [
             a.format(typo=typo) for a in args]
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                        timeout=120)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert needle in proc.stderr
  assert 'Traceback' not in proc.stderr
  assert not (tmp_path / 'runs').exists()


# ---------------------------------------------------------- record checks
K, N = 4, 30


def _write_generation(gen_dir, labeled, picks, **record_changes):
  """A consistent finished generation (as `crest.generations` writes it)."""
  os.makedirs(gen_dir, exist_ok=True)
  (lp, ll), (pp, pl) = labeled, picks
  records.write_npz(os.path.join(gen_dir, 'labeled_set.npz'), positions=lp,
                    labels=ll)
  records.write_npz(os.path.join(gen_dir, 'picks.npz'), positions=pp,
                    labels=pl)
  record = {
      'generation': run_dir_lib.parse_generation_dir(
          os.path.basename(gen_dir)),
      'alignment_temperature': None, 'num_labeled': len(lp) - 2,
      'num_pseudo_labeled': 2, 'test_accuracy': 0.5,
      'test_per_class_recall': [0.5] * K,
      'test_per_class_precision': [0.5] * K,
      'test_confusion_matrix': [[1] * K for _ in range(K)],
      'unlabeled_predicted_per_class': [5] * K, 'unlabeled_accuracy': 0.4,
      'picked_per_class': np.bincount(pl, minlength=K).tolist(),
      'picked_correct_per_class': [0] * K,
      'labeled_per_class': np.bincount(ll, minlength=K).tolist(),
      'history': {'loss.train': 1.0}, 'test_set': 'balanced'}
  record.update(record_changes)
  records.write_json(os.path.join(gen_dir, 'generation.json'), record)


LABELED = (np.array([3, 4, 5, 6, 7, 8]), np.array([0, 1, 2, 3, 0, 1]))
PICKS = (np.array([10, 11, 12]), np.array([0, 0, 3]))


def _npz_change(name, **arrays):
  def change(gen_dir):
    path = os.path.join(gen_dir, name)
    with np.load(path) as f:
      out = {k: f[k] for k in f.files}
    out.update(arrays)
    out = {k: v for k, v in out.items() if v is not None}
    np.savez(path, **out)
  return change


def _truncate(name, size):
  def change(gen_dir):
    with open(os.path.join(gen_dir, name), 'r+b') as f:
      f.truncate(size)
  return change


def _record_change(**changes):
  def change(gen_dir):
    path = os.path.join(gen_dir, 'generation.json')
    record = json.load(open(path))
    record.update(changes)
    for k, v in changes.items():
      if v is None:
        del record[k]
    json.dump(record, open(path, 'w'))
  return change


@pytest.mark.parametrize('damage, file, needle', [
    (_truncate('generation.json', 0), 'generation.json', 'not valid JSON'),
    (_truncate('generation.json', 40), 'generation.json', 'not valid JSON'),
    (lambda d: os.remove(os.path.join(d, 'picks.npz')), 'picks.npz',
     'is missing'),
    (lambda d: os.remove(os.path.join(d, 'labeled_set.npz')),
     'labeled_set.npz', 'is missing'),
    (_truncate('picks.npz', 30), 'picks.npz', 'cannot be read'),
    (_npz_change('picks.npz', labels=np.array([0, 0, 7])), 'picks.npz',
     'label 7 is outside [0, 4)'),
    (_npz_change('picks.npz', labels=None), 'picks.npz', 'lacks labels'),
    (_npz_change('picks.npz', positions=np.array([10, 11, 99])), 'picks.npz',
     'position 99 is outside the training set [0, 30)'),
    (_npz_change('picks.npz', labels=np.array([0, 1, 3])), 'picks.npz',
     'differ from picked_per_class'),
    (_npz_change('labeled_set.npz', positions=np.arange(5),
                 labels=np.arange(5) % K), 'labeled_set.npz',
     'holds 5 examples'),
    (_npz_change('labeled_set.npz', positions=np.array([3, 3, 5, 6, 7, 8])),
     'labeled_set.npz', 'repeats positions'),
    (_npz_change('labeled_set.npz', labels=np.array([0.5] * 6)),
     'labeled_set.npz', 'expected 1-D integers'),
    (_record_change(picked_per_class=None), 'generation.json',
     'lacks picked_per_class'),
    (_record_change(test_per_class_recall=[0.5] * 3), 'generation.json',
     'expected 4 fractions'),
    (_record_change(test_accuracy='high'), 'generation.json',
     'test_accuracy is "high", expected fraction'),
    (_record_change(generation=5), 'generation.json',
     'says generation 5, but its directory is generation 1'),
    (_record_change(picked_correct_per_class=[9, 0, 0, 0]),
     'generation.json', 'exceeds picked_per_class'),
])
def test_damaged_records_name_the_file(tmp_path, damage, file, needle):
  gen_dir = str(tmp_path / 'gen_01_t0.50')
  _write_generation(gen_dir, LABELED, PICKS)
  finished = record_checks.read_generation(gen_dir, K, N)
  np.testing.assert_array_equal(finished.picks[1], PICKS[1])
  damage(gen_dir)
  with pytest.raises(record_checks.DamagedRecord) as e:
    record_checks.read_generation(gen_dir, K, N)
  assert e.value.path == os.path.join(gen_dir, file)
  assert needle in str(e.value)
  assert isinstance(e.value, UserError)  # Exit 2 if it ever escapes.


def test_an_unfinished_generation_is_not_damaged(tmp_path):
  gen_dir = str(tmp_path / 'gen_00')
  os.makedirs(gen_dir)
  assert record_checks.read_generation(gen_dir, K, N) is None


# ----------------------------------------------------------- fingerprints
def _tiny_data():
  from data import registry  # pylint: disable=g-import-not-at-top
  from data.base import DataArgs  # pylint: disable=g-import-not-at-top
  return registry.load(DataArgs(dataset='synthetic_tiny', percent_labeled=0.3))


def test_fingerprint_sees_changed_images_and_labels():
  data = _tiny_data()
  fp = fingerprint_lib.fingerprint(data)
  assert fingerprint_lib.differences(fp, fingerprint_lib.fingerprint(
      _tiny_data())) == []
  assert all(p['sample'] == 'all' for p in fp['parts'].values())
  images = data.train_images.copy()
  images[-1, 0, 0, 0] ^= 1  # One pixel of one image.
  labels = np.roll(data.train_labels, 1)  # Same counts, other order.
  changed = dataclasses.replace(data, train_images=images,
                                train_labels=labels)
  assert fingerprint_lib.differences(
      fp, fingerprint_lib.fingerprint(changed)) == ['train_images',
                                                     'train_labels']


def test_fingerprint_of_a_large_array_hashes_evenly_spaced_blocks():
  big = np.zeros([1000, 8, 8, 3], np.uint8)  # 192 kB.
  d = fingerprint_lib.array_digest(big, full_bytes=20_000, blocks=4)
  assert d['sample'] == [4, 26] and d['shape'] == [1000, 8, 8, 3]
  hashed, skipped = big.copy(), big.copy()
  hashed[10, 1, 1, 1] = 7  # In the first block (rows 0..25).
  skipped[100, 1, 1, 1] = 7  # Between blocks: the documented blind spot.
  assert fingerprint_lib.array_digest(hashed, 20_000, 4) != d
  assert fingerprint_lib.array_digest(skipped, 20_000, 4) == d
  assert fingerprint_lib.array_digest(big)['sample'] == 'all'


# ------------------------------------------------------------------- lock
def test_a_second_writer_is_refused_and_a_worker_takes_no_lock(tmp_path):
  run = str(tmp_path / 'run')
  with run_guard.RunLock(run):
    with pytest.raises(UserError, match='Another process is writing to'):
      with run_guard.RunLock(run):
        pass
    with run_guard.RunLock(run, is_chief=False):  # Other workers: no lock.
      pass
  with run_guard.RunLock(run):  # Released.
    assert f'pid {os.getpid()}' in open(os.path.join(run, 'run.lock')).read()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
  run = str(tmp_path / 'run')
  code = ('import sys, time; from crest import run_guard; '
          f'lock = run_guard.RunLock({run!r}).__enter__(); '
          'print("locked", flush=True); time.sleep(60)')
  proc = subprocess.Popen([sys.executable, '-c', code], cwd=ROOT,
                          stdout=subprocess.PIPE, text=True)
  try:
    assert proc.stdout.readline().strip() == 'locked'
    with pytest.raises(UserError, match=f'pid {proc.pid} on'):
      with run_guard.RunLock(run):
        pass
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
  with run_guard.RunLock(run):
    pass


def test_force_init_keeps_the_lock_file(tmp_path):
  run = tmp_path / 'run'
  (run / 'gen_00' / 'ckpt').mkdir(parents=True)
  (run / 'config.json').write_text('{}')
  with run_guard.RunLock(str(run)):
    run_guard.clear(str(run))
    assert os.listdir(run) == ['run.lock']


# ------------------------------------- an unfinished generation's files
def test_damaged_files_of_an_unfinished_generation(tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from crest import checkpoints  # pylint: disable=g-import-not-at-top
  from crest import summaries  # pylint: disable=g-import-not-at-top
  gen = tmp_path / 'gen_00'
  # A lost or garbled checkpoint state file is rebuilt from the files
  # (TensorFlow alone would see no checkpoint and retrain from scratch).
  v = tf.Variable(1.0)
  ckpt = checkpoints.Checkpoints(tf.train.Checkpoint(v=v), str(gen / 'ckpt'),
                                 is_chief=True, keep=4)
  ckpt.save(0)
  v.assign(3.0)
  ckpt.save(3)
  for garble in ('garbage\n', None):
    state = gen / 'ckpt' / 'checkpoint'
    state.unlink()
    if garble:
      state.write_text(garble)
    v.assign(0.0)
    again = checkpoints.Checkpoints(tf.train.Checkpoint(v=v),
                                    str(gen / 'ckpt'), is_chief=True, keep=4)
    assert again.restore_latest().endswith('ckpt-3') and float(v) == 3.0
    assert len(again.paths()) == 2
  # The rollback record and the epoch history: exit 2 and what to do.
  (gen / 'rollback.json').write_text('{')
  with pytest.raises(UserError, match='rollback.json .* is unreadable.*'
                     'Delete it'):
    checkpoints.read_skipped(str(gen))
  (gen / 'stats').mkdir()
  (gen / 'stats' / 'history.json').write_text('{"loss.train": [1.0]}')
  log = summaries.EpochLog(str(gen), True, 4, 2)
  log.restore(1)
  assert log.history == {'loss.train': [1.0]}
  with pytest.raises(UserError, match='shorter than the 2 epoch'):
    log.restore(2)
  (gen / 'stats' / 'history.json').write_text('{"loss.tr')
  with pytest.raises(UserError, match=f'Delete {gen} to train'):
    log.restore(1)


# -------------------------------------------------------------- full disk
def _no_space(*args, **kwargs):
  raise OSError(errno.ENOSPC, 'No space left on device', 'somewhere')


def test_full_disk_on_records_names_the_path_and_the_space(tmp_path,
                                                          monkeypatch):
  monkeypatch.setattr(records, '_atomic_write_bytes', _no_space)
  path = str(tmp_path / 'gen_00' / 'generation.json')
  with pytest.raises(disk.DiskFullError) as e:
    records.write_json(path, {'a': 1})
  msg = str(e.value)
  assert path in msg and 'No space left on device' in msg
  assert 'needs about 13 bytes' in msg and 'free there' in msg
  assert isinstance(e.value, UserError)


def test_full_disk_on_checkpoints_and_tensorboard(tmp_path, monkeypatch):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from crest import checkpoints  # pylint: disable=g-import-not-at-top
  from crest import summaries  # pylint: disable=g-import-not-at-top

  def full(*args, **kwargs):
    raise tf.errors.ResourceExhaustedError(
        None, None, '/x/ckpt-3_temp/part-0.data; No space left on device')
  ckpt = checkpoints.Checkpoints(
      tf.train.Checkpoint(v=tf.Variable(tf.zeros([1000]))),
      str(tmp_path / 'ckpt'), is_chief=True, keep=2, nbytes=4000)
  monkeypatch.setattr(ckpt.manager, 'save', full)
  with pytest.raises(disk.DiskFullError,
                     match=r'ckpt: No space left on device \(the write needs '
                     r'about 4.0 kB'):
    ckpt.save(3)
  monkeypatch.setattr(tf.summary, 'create_file_writer', full)
  with pytest.raises(disk.DiskFullError, match='/tb: No space left'):
    summaries.EpochLog(str(tmp_path / 'gen'), True, 1, 1)
  # Another resource error (memory) is not a full disk.
  assert not disk.is_disk_full(tf.errors.ResourceExhaustedError(
      None, None, 'OOM when allocating tensor'))


# ------------------------------------------------------- a second signal
def test_second_sigterm_exits_at_once_inside_a_long_call(tmp_path):
  """The main thread is inside one long call that releases the GIL (as
  TensorFlow's do); the second SIGTERM must not wait for it to return."""
  code = ('import numpy as np; from crest import interrupt; '
          'interrupt.install(); a = np.ones([6000, 6000], np.float32); '
          'print("ready", flush=True); '
          '[a @ a for _ in range(100)]; print("returned", flush=True)')
  proc = subprocess.Popen([sys.executable, '-c', code], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=dict(os.environ,
                                              OPENBLAS_NUM_THREADS='1'))
  try:
    assert proc.stdout.readline().strip() == 'ready'
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    start = time.time()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    elapsed = time.time() - start
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 128 + signal.SIGTERM
  assert elapsed < 3, elapsed
  assert 'returned' not in out and 'Second signal 15' in err


# ------------------------------------------------------------ run naming
def test_a_long_tailed_run_without_percent_labeled_says_p0_1(tmp_path):
  cfg = Config(model_dir=str(tmp_path), dataset='cifar10lt')
  assert '_p0.1_fold1' in run_dir_lib.run_name(cfg)
  assert '_n25_' in run_dir_lib.run_name(cfg.replace(dataset='cifar10'))
  assert '_p0.2_' in run_dir_lib.run_name(cfg.replace(percent_labeled=0.2))
  # A directory named by an earlier version ('_n25_') still resumes.
  assert run_dir_lib.path(cfg).endswith(run_dir_lib.run_name(cfg))
  legacy = run_dir_lib.run_name(cfg).replace('_p0.1_', '_n25_')
  os.makedirs(tmp_path / legacy)
  (tmp_path / legacy / 'config.json').write_text('{}')
  assert run_dir_lib.path(cfg) == os.path.join(str(tmp_path), legacy)


# ------------------------------------------------------- result scripts
def test_scripts_report_damaged_runs_by_name_and_go_on(tmp_path, capsys):
  from scripts import plots  # pylint: disable=g-import-not-at-top
  from scripts import summarize  # pylint: disable=g-import-not-at-top
  from test_summarize import make_run  # pylint: disable=g-import-not-at-top
  good = make_run(tmp_path, 1, method='CReST')
  damaged = make_run(tmp_path, 2, method='CReST')
  with open(os.path.join(damaged, 'gen_02', 'generation.json'), 'w') as f:
    f.write('{"generation": 2, "test_acc')  # Truncated.
  with open(os.path.join(damaged, 'gen_01', 'generation.json'), 'w') as f:
    json.dump({'generation': 1, 'test_accuracy': 0.5}, f)  # Keys missing.
  unreadable = make_run(tmp_path, 3)
  with open(os.path.join(unreadable, 'config.json'), 'w') as f:
    f.write('{')
  assert summarize.main([str(tmp_path)]) == 0
  out = capsys.readouterr().out
  assert '1 finished run(s) of 2' in out
  assert 'Unreadable runs' in out and unreadable in out
  assert 'Damaged records' in out
  assert 'generation 2: ' in out and 'not valid JSON' in out
  assert 'generation 1: ' in out and 'lacks' in out
  assert plots.main([str(tmp_path)]) == 0
  captured = capsys.readouterr()
  assert os.path.exists(os.path.join(good, 'recall.png'))
  assert os.path.exists(os.path.join(damaged, 'recall.png'))  # Gen 0.
  assert 'generation 2 left out, damaged record' in captured.err
  # Only unreadable runs: said so, not hidden behind "No runs".
  only = tmp_path / 'only'
  shutil.copytree(unreadable, only / 'run')
  assert summarize.main([str(only)]) == 1
  assert 'No readable runs' in capsys.readouterr().out
