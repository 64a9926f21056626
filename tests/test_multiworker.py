"""Scale-out on CPU: logical replicas and two local worker processes write
the records one device writes (compared by content)."""
import json
import os
import re
import socket
import subprocess
import sys

import pytest
from conftest import generation_records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = ['--dataset=synthetic_tiny', '--net_arch=small', '--num_epoch=1',
         '--num_batch=3', '--num_generation=2', '--batch_size=8',
         '--unlab_ratio=1', '--percent_labeled=0.3', '--progress=false',
         '--eval_batch_size=64', '--bn_sync=true', '--seed=2',
         '--threshold=0.5']


def _cmd(model_dir, *extra):
  return [sys.executable, '-m', 'train_and_eval_loop',
          f'--model_dir={model_dir}'] + FLAGS + list(extra)


def _files(top):
  out = set()
  for d, _, fs in os.walk(top):
    for f in fs:
      rel = os.path.relpath(os.path.join(d, f), top)
      out.add(re.sub(r'events\.out\.tfevents\..*', 'events', rel))
  return out


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _assert_same_records(a, b, rel):
  """Arrays and counts equal, floats within `rel` (sums in another order)."""
  assert set(a) == set(b) and len(a) == 6  # 2 generations x 3 files.
  for key in a:
    if key.endswith('.npz'):
      assert a[key] == b[key], key
      continue
    assert set(a[key]) == set(b[key]), key
    for field, value in a[key].items():
      if field in ('statistics', 'history'):
        for k, v in value.items():
          assert b[key][field][k] == pytest.approx(v, rel=rel, abs=1e-6), (
              key, field, k)
      elif isinstance(value, float) or (isinstance(value, list) and value and
                                        isinstance(value[0], float)):
        assert b[key][field] == pytest.approx(value, rel=rel, abs=1e-6), (
            key, field)
      else:
        assert b[key][field] == value, (key, field)


@pytest.fixture(scope='module')
def replica_runs(tmp_path_factory):
  """In process (the test session has two logical CPU devices): the same
  two-generation run on one device and on two replicas; their records."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from crest import generations  # pylint: disable=g-import-not-at-top
  from crest.config import Config  # pylint: disable=g-import-not-at-top
  from data import registry  # pylint: disable=g-import-not-at-top
  from data.base import DataArgs  # pylint: disable=g-import-not-at-top
  data = registry.load(DataArgs(dataset='synthetic_tiny', class_im_ratio=0.1,
                                percent_labeled=0.3))
  top = tmp_path_factory.mktemp('replicas')
  out = {}
  for name, devices in (('one', ['/cpu:0']), ('two', ['/cpu:0', '/cpu:1'])):
    cfg = Config(dataset='synthetic_tiny', net_arch='small', num_epoch=1,
                 num_batch=3, num_generation=2, batch_size=8, unlab_ratio=1,
                 percent_labeled=0.3, progress=False, eval_batch_size=64,
                 bn_sync=True, seed=2, threshold=0.5,
                 model_dir=str(top / name))
    strategy = tf.distribute.MirroredStrategy(
        devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
    assert len(generations.run(cfg, strategy, data)) == 2
    out[name] = (_files(top / name), generation_records(top / name))
  return out


def test_two_replicas_write_the_same_records(replica_runs):
  """Two replicas write what one device writes: the same files, labeled sets,
  picks and counts, and the same accuracies and losses up to float sums in
  another order."""
  (files1, rec1), (files2, rec2) = replica_runs['one'], replica_runs['two']
  assert any(f.endswith('gen_01/generation.json') for f in files1)
  assert files1 == files2
  _assert_same_records(rec1, rec2, rel=1e-3)
  assert rec1['gen_01']['num_pseudo_labeled'] > 0
  # The comparison can fail: a loss 1% off, or one pick less, is seen.
  changed = json.loads(json.dumps(rec2))
  changed['gen_00']['history']['loss.train'] *= 1.01
  with pytest.raises(AssertionError):
    _assert_same_records(rec1, changed, rel=1e-3)
  changed = json.loads(json.dumps(rec2))
  changed['gen_00/picks.npz']['positions'] = changed['gen_00/picks.npz'][
      'positions'][1:]
  with pytest.raises(AssertionError):
    _assert_same_records(rec1, changed, rel=1e-3)


def test_odd_batch_fails_on_two_replicas(tmp_path):
  proc = subprocess.run(_cmd(tmp_path, '--cpu_replicas=2', '--batch_size=7'),
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2
  assert 'divisible by the number of replicas (2)' in proc.stderr
  assert not os.listdir(tmp_path)


def test_two_local_workers(tmp_path, replica_runs):
  """Two worker processes with two logical CPU replicas each (4 replicas;
  each worker builds only its two replicas' rows of every batch) write what
  one device writes (--bn_sync: the statistics of the global batch)."""
  ports = [_free_port(), _free_port()]
  cluster = {'worker': [f'localhost:{p}' for p in ports]}
  procs = []
  for i in range(2):
    env = dict(os.environ, TF_CONFIG=json.dumps(
        {'cluster': cluster, 'task': {'type': 'worker', 'index': i}}))
    procs.append(subprocess.Popen(
        _cmd(tmp_path / f'worker{i}', '--cpu_replicas=2'), cwd=ROOT, env=env,
        text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
  outs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
  assert 'MultiWorkerMirroredStrategy with 4 replica(s)' in outs[0]
  # Only the chief writes; the other worker leaves nothing behind.
  chief_files = _files(tmp_path / 'worker0')
  assert any(f.endswith('generation.json') for f in chief_files)
  assert not os.path.exists(tmp_path / 'worker1') or not _files(
      tmp_path / 'worker1')
  # Both workers trained every generation on the same labeled set.
  digests = [re.findall(r'Generation (\d) labeled set: (\d+) examples, '
                        r'sha1 (\w+)', out) for out in outs]
  assert len(digests[0]) == 2 and digests[0] == digests[1]
  assert int(digests[0][1][1]) > int(digests[0][0][1])  # Picks were added.
  # And the chief wrote what one device in one process writes.
  _assert_same_records(replica_runs['one'][1],
                       generation_records(tmp_path / 'worker0'), rel=1e-3)
