"""End to end: the files and records of a finished CReST+ run, reruns and
resume checks (on the session's four-generation run, tests/conftest.py;
what it learns and the generations by numbers: tests/test_generations.py)."""
import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
from absl import flags

import train_and_eval_loop
from crest import flags as crest_flags
from crest import generations
from crest import records
from crest import run_dir as run_dir_lib
from crest import run_guard
from crest.errors import UserError

RECORD_KEYS = {
    'generation', 'alignment_temperature', 'num_labeled',
    'num_pseudo_labeled', 'test_accuracy', 'test_per_class_recall',
    'unlabeled_predicted_per_class', 'picked_per_class',
    'picked_correct_per_class'}
GEN_DIRS = ['gen_00_t1.00', 'gen_01_t0.80', 'gen_02_t0.60', 'gen_03_t0.40']


@pytest.fixture(scope='module')
def finished_run(crest_plus_run):
  """The session's four CReST+ generations (tests/conftest.py): (cfg,
  data, strategy, records, run directory)."""
  return crest_plus_run[:5]


def test_records_and_files(finished_run):
  cfg, data, _, recs, run_dir = finished_run
  k = data.num_classes
  assert json.load(open(os.path.join(run_dir, 'config.json')))['seed'] == 1
  gen_dirs = sorted(d for d in os.listdir(run_dir) if d.startswith('gen_'))
  assert gen_dirs == GEN_DIRS  # Temperatures: tests/test_generations.py.
  gt = np.asarray(data.gt_p_data)
  for g, name in enumerate(gen_dirs):
    gdir = os.path.join(run_dir, name)
    rec = json.load(open(os.path.join(gdir, 'generation.json')))
    assert RECORD_KEYS <= set(rec)
    assert rec == json.loads(json.dumps(recs[g]))
    assert rec['generation'] == g
    assert len(rec['test_per_class_recall']) == k
    # CReST's rate restated: int(n_c * (gt[K-1-c] / gt[0]) ** (1/alpha)).
    predicted = rec['unlabeled_predicted_per_class']
    assert rec['picked_per_class'] == [
        int(n * (gt[k - 1 - c] / gt[0]) ** (1 / cfg.alpha))
        for c, n in enumerate(predicted)]
    assert sum(predicted) == len(data.unlabeled_positions)
    assert all(0 <= c <= p for c, p in zip(rec['picked_correct_per_class'],
                                          rec['picked_per_class']))
    for sub in ('ckpt', 'tb', 'stats'):
      assert os.listdir(os.path.join(gdir, sub)), sub
    stats = json.load(open(os.path.join(gdir, 'stats', 'acc.test.ema.json')))
    assert set(stats) == {'last1', 'last10', 'last20', 'last50'}
    summary = json.load(open(os.path.join(gdir, 'stats', 'summary.json')))
    assert 'acc.test.ema' in summary
    per_class = json.load(open(os.path.join(
        gdir, 'stats', 'per_class_acc.test.ema.json')))
    assert len(per_class['last1']) == k  # The original wrote these empty.
    # The reported-number statistics, from the epoch history; the last
    # epoch's evaluation is the final one.
    history = json.load(open(os.path.join(gdir, 'stats', 'history.json')))
    st = rec['statistics']
    assert st['epochs'] == cfg.num_epoch
    assert st['test_accuracy']['final'] == pytest.approx(rec['test_accuracy'])
    assert st['test_accuracy']['median20'] == pytest.approx(
        np.median(history['acc.test.ema']))
    assert st['test_accuracy']['best'] == pytest.approx(
        max(history['acc.test.ema']))
    assert rec['test_set'] == 'balanced'
    assert rec['test_balanced_accuracy'] == pytest.approx(
        np.mean(rec['test_per_class_recall']))


def test_rerun_skips_finished_generations(finished_run):
  cfg, data, strategy, recs, run_dir = finished_run
  path = os.path.join(run_dir, 'gen_03_t0.40', 'generation.json')
  mtime = os.path.getmtime(path)
  again = generations.run(cfg.replace(progress=True), strategy, data)
  assert again == [json.loads(json.dumps(r)) for r in recs]
  assert os.path.getmtime(path) == mtime


def test_rerun_with_another_config_names_the_flags(finished_run):
  cfg, data, strategy, _, _ = finished_run
  changed = cfg.replace(threshold=0.7, weight_unsup=2.0)
  # Threshold and weight are part of the run's name; file_suffix is not a
  # flag that changes results, so pin the directory by editing its config.
  run_dir = run_dir_lib.path(changed)
  os.makedirs(run_dir, exist_ok=True)
  with open(os.path.join(run_dir, 'config.json'), 'w') as f:
    json.dump(cfg.replace(weight_decay=0.1).to_dict(), f)
  with pytest.raises(UserError) as e:
    generations.prepare_run_dir(changed)
  msg = str(e.value)
  assert '--threshold' in msg and '--weight_decay' in msg
  assert '--force_init' in msg


def test_command_line_bad_flag_exits_2(tmp_path, capsys):
  """In process (the exit code of the process itself: test_run_integrity's
  flag-parsing subprocesses)."""
  crest_flags.define_flags(flags.FLAGS)
  try:
    flags.FLAGS(['prog', f'--model_dir={tmp_path}', '--dataset=synthetic_tiny',
                 '--sched_type=exponential'])
    code = train_and_eval_loop.main(['prog'])
  finally:
    flags.FLAGS.unparse_flags()
  assert code == 2
  err = capsys.readouterr().err
  assert '--sched_type' in err and 'halfcos' in err
  assert not os.listdir(tmp_path)


# ------------------- damaged records, changed data, a directory in use
# (on copies of the finished run; the checks themselves: test_run_integrity)
def _copy(finished_run, tmp_path):
  cfg, data, strategy, recs, _ = finished_run
  shutil.copytree(cfg.model_dir, tmp_path / 'm')
  cfg = cfg.replace(model_dir=str(tmp_path / 'm'))
  return cfg, data, strategy, recs, run_dir_lib.path(cfg)


def _files(run):
  out = {}
  for gen in sorted(d for d in os.listdir(run) if d.startswith('gen_')):
    for name in ('generation.json', 'labeled_set.npz', 'picks.npz'):
      with open(os.path.join(run, gen, name), 'rb') as f:
        out[f'{gen}/{name}'] = f.read()
  return out


def test_damaged_records_are_redone_from_checkpoints(finished_run, tmp_path,
                                                      caplog):
  cfg, data, strategy, recs, run = _copy(finished_run, tmp_path)
  before = _files(run)
  os.remove(os.path.join(run, 'gen_00_t1.00', 'labeled_set.npz'))
  open(os.path.join(run, 'gen_01_t0.80', 'generation.json'), 'w').close()
  again = generations.run(cfg, strategy, data)
  assert again == json.loads(json.dumps(recs))
  assert _files(run) == before  # Redone from the final checkpoints.
  assert 'gen_00_t1.00/labeled_set.npz: is missing' in caplog.text
  assert 'gen_01_t0.80/generation.json: is not valid JSON' in caplog.text


def test_a_labeled_set_that_does_not_follow_is_refused(finished_run, tmp_path):
  """Gen 0's picks changed (consistently): gen 1 was trained on others."""
  cfg, data, strategy, _, run = _copy(finished_run, tmp_path)
  gen0 = os.path.join(run, 'gen_00_t1.00')
  with np.load(os.path.join(gen0, 'picks.npz')) as f:
    positions, labels = f['positions'][1:], f['labels'][1:]
  records.write_npz(os.path.join(gen0, 'picks.npz'), positions=positions,
                    labels=labels)
  record = json.load(open(os.path.join(gen0, 'generation.json')))
  record['picked_per_class'] = np.bincount(
      labels, minlength=data.num_classes).tolist()
  record['picked_correct_per_class'] = [
      min(c, p) for c, p in zip(record['picked_correct_per_class'],
                                record['picked_per_class'])]
  records.write_json(os.path.join(gen0, 'generation.json'), record)
  with pytest.raises(UserError) as e:
    generations.run(cfg, strategy, data)
  msg = str(e.value)
  assert ('gen_01_t0.80/labeled_set.npz is not the labeled set that '
          'follows') in msg
  assert f'Delete {os.path.join(run, "gen_01_t0.80")}' in msg


def test_changed_data_are_refused_on_resume(finished_run, tmp_path):
  cfg, data, strategy, _, run = _copy(finished_run, tmp_path)
  other = dataclasses.replace(data, train_images=255 - data.train_images)
  with pytest.raises(UserError) as e:
    generations.run(cfg, strategy, other)
  msg = str(e.value)
  assert 'The data changed since this run started' in msg
  assert 'train_images' in msg and 'train_labels' not in msg
  assert os.path.join(run, 'data.json') in msg and '--force_init' in msg
  recorded = json.load(open(os.path.join(run, 'data.json')))
  assert recorded['source'] == f'--data_file={cfg.data_file}'
  with open(os.path.join(run, 'data.json'), 'w') as f:
    f.write('{"parts"')
  with pytest.raises(UserError, match='data.json .*is unreadable'):
    generations.run(cfg, strategy, data)


def test_a_run_directory_in_use_is_refused(finished_run, tmp_path):
  cfg, data, strategy, _, run = _copy(finished_run, tmp_path)
  with run_guard.RunLock(run):
    with pytest.raises(UserError, match='Another process is writing'):
      generations.run(cfg, strategy, data)
