"""Test-wide setup: quiet TensorFlow and two logical CPU devices.

Splitting the CPU into two logical devices lets tests exercise
MirroredStrategy without GPUs. It must happen before TensorFlow initialises
its devices, hence here, once, at collection time.
"""
import itertools
import os
import pathlib
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# What train_and_eval_loop uses by default (--onednn); read at TF import.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FIXTURES = ROOT.parent / "shared" / "fixtures" / "crest-reference"


def pytest_configure(config):
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    except RuntimeError:
        pass  # Already initialised (e.g. a plugin imported TF first).
    _distinct_collective_keys(tf.distribute.MirroredStrategy)


def _distinct_collective_keys(cls):
    """Gives every MirroredStrategy built in this process its own collective
    group keys, as TensorFlow's own tests do (`_collective_key_base`: "only
    set this in tests"). A run builds one strategy per process; the suite
    builds dozens, and two strategies with the default keys reuse group 1's
    instance keys, so a later all-gather can meet an earlier all-reduce's
    instance ("Collective instance 100 expected type 0 ... got type 2")."""
    init, bases = cls.__init__, itertools.count(1)

    def distinct_init(self, *args, **kwargs):
        self._collective_key_base = 1000 * next(bases)
        init(self, *args, **kwargs)

    cls.__init__ = distinct_init


@pytest.fixture(scope='session')
def crest_plus_run(tmp_path_factory):
  """Four CReST+ generations of FixMatch on tests/learnable.py's data, run
  once for the session (tests/test_generations.py, tests/test_train_loop.py):
  (cfg, data, strategy, records, run directory, temperatures seen by the
  loss)."""
  # pylint: disable=g-import-not-at-top
  import fixmatch
  import learnable
  from crest import run_dir as run_dir_lib
  top = tmp_path_factory.mktemp('crest_plus')
  cfg = learnable.config(top / 'runs', learnable.write_npz(top))
  data = learnable.load(cfg)
  recs, strategy, seen = learnable.run_generations(cfg, data, fixmatch)
  return cfg, data, strategy, recs, run_dir_lib.path(cfg), seen


def generation_records(top):
  """Every finished generation's record and labeled-set / picks arrays
  under `top`: {'gen_00': record, 'gen_00/labeled_set.npz': {name: list},
  'gen_00/picks.npz': {...}, ...} (keys by generation directory name)."""
  import json  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  out = {}
  for d, _, fs in sorted(os.walk(top)):
    if 'generation.json' not in fs:
      continue
    gen = os.path.basename(d)
    with open(os.path.join(d, 'generation.json')) as f:
      out[gen] = json.load(f)
    for name in ('labeled_set.npz', 'picks.npz'):
      with np.load(os.path.join(d, name)) as f:
        out[f'{gen}/{name}'] = {k: f[k].tolist() for k in f.files}
  return out
