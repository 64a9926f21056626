"""The sweep scripts: the grid (dry run), GPU slots and failures (a fake
trainer), and one real tiny sweep whose table is checked against its runs'
generation.json records; re-running skips finished runs."""
import json
import os
import pathlib
import re
import subprocess

import numpy as np
import pytest

from conftest import ROOT
from scripts import summarize

TINY = ('--dataset=synthetic_tiny --net_arch=small --num_epoch=1 '
        '--num_batch=2 --batch_size=8 --unlab_ratio=1 --percent_labeled=0.3 '
        '--progress=false --eval_batch_size=64')


def sweep(script, tmp_path, **env):
  full = dict(os.environ, MODEL_DIR=str(tmp_path / 'runs'), **env)
  return subprocess.run(['bash', str(ROOT / 'scripts' / script)], env=full,
                        capture_output=True, text=True, timeout=600)


def commands(stdout):
  """{run name: [flags]} of a dry run's 'would run' lines."""
  out = {}
  for m in re.finditer(r'^would run: (\S+): \S+ -m train_and_eval_loop (.*)$',
                       stdout, re.M):
    out[m.group(1)] = m.group(2).split()
  return out


def last_flag(args, name):
  """The value absl uses: the last occurrence of --name=."""
  values = [a.split('=', 1)[1] for a in args if a.startswith(f'--{name}=')]
  return values[-1] if values else None


def test_dry_run_grid_cifar10lt(tmp_path):
  # The default grid minus folds 2-4 (each run costs a flag-parsing Python).
  r = sweep('sweep_cifar10lt.sh', tmp_path, DRY_RUN='1', FOLDS='1 5')
  assert r.returncode == 0, r.stderr
  runs = commands(r.stdout)
  assert len(runs) == 18
  for method in ('fixmatch', 'crest', 'crestplus'):
    for ratio in ('0.02', '0.01', '0.005'):
      for fold in (1, 5):
        args = runs[f'{method}/ratio{ratio}/fold{fold}']
        assert last_flag(args, 'class_im_ratio') == ratio
        assert last_flag(args, 'fold') == str(fold)
        assert last_flag(args, 'dataset') == 'cifar10lt'
        assert last_flag(args, 'unlab_ratio') == '7'
        assert last_flag(args, 'temperature') == '0'
        assert last_flag(args, 'percent_labeled') == '0.1'
        assert last_flag(args, 'num_generation') == (
            '1' if method == 'fixmatch' else '6')
        assert (last_flag(args, 'how_dalign') == 'adaptive') == (
            method == 'crestplus')
        assert last_flag(args, 'model_dir') == str(
            tmp_path / 'runs' / method / f'ratio{ratio}' / f'fold{fold}')
  assert 'Sweep of 18 run(s)' in r.stdout
  script = (ROOT / 'scripts' / 'sweep_cifar10lt.sh').read_text()
  assert ': "${FOLDS:=1 2 3 4 5}"' in script
  assert not (tmp_path / 'runs').exists()  # Nothing was run or written.


def test_dry_run_mixmatch_and_cifar100(tmp_path):
  r = sweep('sweep_mixmatch.sh', tmp_path, DRY_RUN='1', FOLDS='1 2',
            RATIOS='150', EXTRA_FLAGS='--num_epoch=3',
            EXTRA_FLAGS_crestplus='--alpha=1.5')
  runs = commands(r.stdout)
  assert sorted(runs) == sorted(f'{m}/ratio150/fold{f}' for f in (1, 2)
                                for m in ('mixmatch', 'crest', 'crestplus'))
  args = runs['crestplus/ratio150/fold2']
  assert last_flag(args, 'method') == 'mixmatch'
  assert last_flag(args, 'dataset') == 'cifar10ltdarp'
  assert last_flag(args, 'seed') == '2'  # DARP: the fold seeds training.
  assert last_flag(args, 'dalign_t') == '0.8'
  assert last_flag(args, 'num_epoch') == '3'  # EXTRA_FLAGS override.
  assert last_flag(args, 'alpha') == '1.5'
  assert last_flag(runs['crest/ratio150/fold2'], 'alpha') == '2.0'
  r = sweep('sweep_cifar100lt.sh', tmp_path, DRY_RUN='1', FOLDS='3',
            RATIOS='0.01', METHODS='crest')
  (name, args), = commands(r.stdout).items()
  assert name == 'crest/ratio0.01/fold3'
  assert last_flag(args, 'dataset') == 'cifar100lt'


def test_quickstart_dry_run(tmp_path):
  r = subprocess.run(['bash', str(ROOT / 'scripts' / 'quickstart.sh')],
                     env=dict(os.environ, DRY_RUN='1', SKIP_INSTALL='1',
                              MODEL_DIR=str(tmp_path / 'qs')),
                     capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stdout + r.stderr
  runs = commands(r.stdout)
  assert sorted(runs) == ['crestplus/ratio0.02/fold1',
                          'fixmatch/ratio0.02/fold1']
  fix, crest = runs['fixmatch/ratio0.02/fold1'], runs[
      'crestplus/ratio0.02/fold1']
  assert last_flag(fix, 'dataset') == last_flag(crest, 'dataset') == (
      'fashionmnistlt')
  assert last_flag(fix, 'num_generation') == '1'
  assert last_flag(crest, 'num_generation') == '2'
  assert last_flag(crest, 'how_dalign') == 'adaptive'


def test_unknown_method_is_refused(tmp_path):
  r = sweep('sweep_cifar10lt.sh', tmp_path, METHODS='fixmatch crest++',
            DRY_RUN='1')
  assert r.returncode == 2
  assert "unknown method 'crest++'" in r.stderr


FAKE_PYTHON = """#!/usr/bin/env bash
# Fake trainer: records its GPU and flags; refuses two runs on one GPU.
if [[ "$1" != "-m" ]]; then exec python3 "$@"; fi
mkdir "$FAKE_DIR/busy$CUDA_VISIBLE_DEVICES" || exit 9
echo "gpu=$CUDA_VISIBLE_DEVICES $*" >>"$FAKE_DIR/calls"
sleep 0.5
rmdir "$FAKE_DIR/busy$CUDA_VISIBLE_DEVICES"
for a in "$@"; do [[ "$a" == --fail* ]] && exit 3; done
echo trained
exit 0
"""


def test_gpus_in_parallel_and_failures_reported(tmp_path):
  fake = tmp_path / 'python'
  fake.write_text(FAKE_PYTHON)
  fake.chmod(0o755)
  r = sweep('sweep_cifar10lt.sh', tmp_path, PYTHON=str(fake), GPUS='4 7',
            FOLDS='1 2 3', RATIOS='0.01', METHODS='fixmatch crest',
            EXTRA_FLAGS_crest='--fail_here', FAKE_DIR=str(tmp_path))
  assert r.returncode == 1, r.stdout + r.stderr
  calls = (tmp_path / 'calls').read_text().splitlines()
  assert len(calls) == 6
  gpus = [c.split()[0] for c in calls]
  assert set(gpus) == {'gpu=4', 'gpu=7'}  # Both GPUs, never one twice.
  assert 'Sweep of 6 run(s)' in r.stdout
  assert '3 finished (3 now, 0 before), 3 failed.' in r.stdout
  for fold in (1, 2, 3):
    log = tmp_path / 'runs' / 'crest' / 'ratio0.01' / f'fold{fold}' / (
        'train.log')
    assert (f'FAILED (exit 3): crest/ratio0.01/fold{fold}, log: {log}'
            in r.stdout)
    ok = log.parent.parent.parent.parent / 'fixmatch' / 'ratio0.01' / (
        f'fold{fold}') / 'train.log'
    text = ok.read_text()
    assert 'train_and_eval_loop' in text and 'trained' in text


@pytest.fixture(scope='module')
def real_sweep(tmp_path_factory):
  """Two real tiny FixMatch runs (folds 1, 2), two at a time; the CReST+
  runs get a bad flag and fail."""
  tmp = tmp_path_factory.mktemp('sweep')
  r = sweep('sweep_cifar10lt.sh', tmp, FOLDS='1 2', RATIOS='0.1',
            METHODS='fixmatch crestplus', EXTRA_FLAGS=TINY,
            EXTRA_FLAGS_crestplus='--no_such_flag=1', GPUS='0 1')
  return tmp, r


def test_real_sweep_reports_failures_and_finishes_others(real_sweep):
  tmp, r = real_sweep
  assert r.returncode == 1
  assert '2 finished (2 now, 0 before), 2 failed.' in r.stdout
  for fold in (1, 2):
    log = tmp / 'runs' / 'crestplus' / 'ratio0.1' / f'fold{fold}' / (
        'train.log')
    assert f'FAILED (exit 2): crestplus/ratio0.1/fold{fold}, log: {log}' in (
        r.stdout)
    assert 'no_such_flag' in log.read_text()


def test_real_sweep_table_matches_records(real_sweep, capsys):
  tmp, _ = real_sweep
  records = sorted(pathlib.Path(tmp / 'runs' / 'fixmatch').glob(
      'ratio0.1/fold*/*/*/*/gen_00/generation.json'))
  assert len(records) == 2
  acc = [100 * json.loads(p.read_text())['test_accuracy'] for p in records]
  assert summarize.main([str(tmp / 'runs')]) == 0
  out = capsys.readouterr().out
  assert '2 finished run(s) of 2' in out
  row = re.search(r'^\| FixMatch \| (.*?) +\|$', out, re.M).group(1)
  assert row == f'{np.mean(acc):.1f} ({np.std(acc):.2f})'


def test_rerun_skips_finished_runs(real_sweep):
  tmp, _ = real_sweep
  logs = sorted((tmp / 'runs' / 'fixmatch').glob('*/*/train.log'))
  before = [p.read_text() for p in logs]
  r = sweep('sweep_cifar10lt.sh', tmp, FOLDS='1 2', RATIOS='0.1',
            METHODS='fixmatch', EXTRA_FLAGS=TINY)
  assert r.returncode == 0, r.stdout + r.stderr
  assert 'finished, skipped: fixmatch/ratio0.1/fold1' in r.stdout
  assert '2 finished (0 now, 2 before), 0 failed.' in r.stdout
  assert [p.read_text() for p in logs] == before  # Nothing was launched.
