"""The quick start is deterministic: two runs of scripts/quickstart.sh (its
settings, a tiny budget, on small Fashion-MNIST files) give identical
records, checkpoints and tables (records that are not trivially equal:
the two generations differ, generation 0 picked images)."""
import filecmp
import json
import os
import subprocess

import numpy as np
import pytest

from conftest import ROOT
from data import idx

TINY = '--num_epoch=1 --num_batch=6 --eval_batch_size=64'


def _fashion(root, per_class=60, seed=0):
  """Small Fashion-MNIST IDX files whose classes differ in brightness (so
  the network's predictions, and so the picks, depend on the weights)."""
  rng = np.random.default_rng(seed)
  d = root / 'fashion-mnist'
  for part, n in (('train', per_class), ('t10k', 6)):
    labels = rng.permutation(np.repeat(np.arange(10), n)).astype(np.uint8)
    noise = rng.integers(0, 56, (len(labels), 28, 28))
    images = (noise + 20 * labels[:, None, None]).astype(np.uint8)
    idx.write_idx(str(d / f'{part}-images-idx3-ubyte.gz'), images)
    idx.write_idx(str(d / f'{part}-labels-idx1-ubyte.gz'), labels)


def _start(tmp_path, name, extra=''):
  env = dict(os.environ, ML_DATA=str(tmp_path / 'data'), SKIP_INSTALL='1',
             MODEL_DIR=str(tmp_path / name), METHODS='crestplus',
             EXTRA_FLAGS=f'{TINY} {extra}')
  return subprocess.Popen(['bash', os.path.join(ROOT, 'scripts',
                                                'quickstart.sh')],
                          env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def _files(root):
  """Relative paths of the files a rerun must reproduce: the records, the
  labeled sets and picks, the checkpoints' data, the summary table."""
  out = []
  for dirpath, _, names in os.walk(root):
    for n in names:
      rel = os.path.relpath(os.path.join(dirpath, n), root)
      if (n in ('generation.json', 'labeled_set.npz', 'picks.npz',
                'summary.md') or '.data-' in n or n.endswith('.index')):
        out.append(rel)
  return sorted(out)


@pytest.fixture(scope='module')
def two_runs(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('quickstart')
  _fashion(tmp / 'data')
  procs = {name: _start(tmp, name, extra)
           for name, extra in (('a', ''), ('b', ''))}
  for name, p in procs.items():
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, f'{name}:\n{out[-3000:]}'
  return tmp


def test_two_runs_of_the_quick_start_are_identical(two_runs):
  a, b = two_runs / 'a', two_runs / 'b'
  files = _files(a)
  assert files == _files(b)
  names = {os.path.basename(f) for f in files}
  assert {'generation.json', 'labeled_set.npz', 'picks.npz',
          'summary.md'} <= names
  assert sum(f.endswith('generation.json') for f in files) == 2
  for rel in files:
    if rel.endswith('summary.md'):  # Its first line names the directory.
      ta, tb = ((p / rel).read_text().split('\n', 1)[1] for p in (a, b))
      assert ta == tb and 'CReST+' in ta
    else:
      assert filecmp.cmp(a / rel, b / rel, shallow=False), rel


def test_the_compared_records_are_not_trivial(two_runs):
  a = two_runs / 'a'
  rel = [f for f in _files(a) if f.endswith('generation.json')]
  records = [json.loads((a / f).read_text()) for f in rel]
  assert [r['generation'] for r in records] == [0, 1]
  assert sum(records[0]['picked_per_class']) > 0
  assert records[0]['test_per_class_recall'] != records[1][
      'test_per_class_recall'] or records[0]['history'] != records[1][
          'history']
