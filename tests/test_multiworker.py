"""Scale-out on CPU: logical replicas and two local worker processes."""
import json
import os
import re
import socket
import subprocess
import sys

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


def test_two_replicas_write_the_same_files(tmp_path):
  """In-process (the test session already has two logical CPU devices): a
  two-generation run on two replicas writes what a one-device run writes."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from crest import generations  # pylint: disable=g-import-not-at-top
  from crest.config import Config  # pylint: disable=g-import-not-at-top
  from data import registry  # pylint: disable=g-import-not-at-top
  from data.base import DataArgs  # pylint: disable=g-import-not-at-top
  data = registry.load(DataArgs(dataset='synthetic_tiny', class_im_ratio=0.1,
                                percent_labeled=0.3))
  found = []
  for name, devices in (('one', ['/cpu:0']), ('two', ['/cpu:0', '/cpu:1'])):
    cfg = Config(dataset='synthetic_tiny', net_arch='small', num_epoch=1,
                 num_batch=3, num_generation=2, batch_size=8, unlab_ratio=1,
                 percent_labeled=0.3, progress=False, eval_batch_size=64,
                 bn_sync=True, seed=2, threshold=0.5,
                 model_dir=str(tmp_path / name))
    strategy = tf.distribute.MirroredStrategy(
        devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
    records = generations.run(cfg, strategy, data)
    assert len(records) == 2
    found.append(_files(tmp_path / name))
  assert any(f.endswith('gen_01/generation.json') for f in found[0])
  assert found[0] == found[1]


def test_odd_batch_fails_on_two_replicas(tmp_path):
  proc = subprocess.run(_cmd(tmp_path, '--cpu_replicas=2', '--batch_size=7'),
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2
  assert 'divisible by the number of replicas (2)' in proc.stderr
  assert not os.listdir(tmp_path)


def test_two_local_workers(tmp_path):
  ports = [_free_port(), _free_port()]
  cluster = {'worker': [f'localhost:{p}' for p in ports]}
  procs = []
  for i in range(2):
    env = dict(os.environ, TF_CONFIG=json.dumps(
        {'cluster': cluster, 'task': {'type': 'worker', 'index': i}}))
    procs.append(subprocess.Popen(
        _cmd(tmp_path / f'worker{i}'), cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
  outs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
  assert 'MultiWorkerMirroredStrategy with 2 replica(s)' in outs[0]
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
