"""Bad inputs at the entry point: a clear message and exit code 2."""
import errno
import os

import pytest
from absl import flags

from crest import flags as crest_flags
from crest import generations
from crest import records
from crest.config import Config
from crest.errors import UserError
import train_and_eval_loop


@pytest.fixture
def cli_flags():
  crest_flags.define_flags(flags.FLAGS)
  yield flags.FLAGS
  flags.FLAGS.unparse_flags()


def _main(cli_flags, argv):
  cli_flags(['prog'] + argv)
  return train_and_eval_loop.main(['prog'])


def test_model_dir_that_is_not_writable(tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('not a directory')
  cfg = Config(dataset='synthetic_tiny', model_dir=str(blocker / 'runs'))
  with pytest.raises(UserError, match='Choose a writable --model_dir'):
    generations.prepare_run_dir(cfg)


def test_full_disk_exits_2_with_a_message(tmp_path, cli_flags, monkeypatch,
                                          capsys):
  def full(path, data):
    raise OSError(errno.ENOSPC, 'No space left on device', path)
  monkeypatch.setattr(records, '_atomic_write_bytes', full)
  code = _main(cli_flags, [f'--model_dir={tmp_path}',
                           '--dataset=synthetic_tiny', '--net_arch=small'])
  assert code == 2
  err = capsys.readouterr().err
  assert 'No space left on device' in err and '--model_dir' in err


def test_missing_data_root_exits_2(tmp_path, cli_flags, capsys):
  code = _main(cli_flags, [f'--model_dir={tmp_path}', '--dataset=cifar10lt',
                           f'--ml_data={tmp_path / "nowhere"}',
                           '--percent_labeled=0.1'])
  assert code == 2
  err = capsys.readouterr().err
  assert 'prepare_cifar.py' in err
  assert not os.listdir(tmp_path)
