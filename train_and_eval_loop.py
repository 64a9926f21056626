"""Train FixMatch / MixMatch with CReST / CReST+ generations.

  python -m train_and_eval_loop --model_dir=/tmp/model --method=fixmatch \
    --dataset=cifar10lt --class_im_ratio=0.01 --percent_labeled=0.1 \
    --fold=1 --num_epoch=64 --num_generation=6 --sched_level=1 \
    --dalign_t=0.5 --how_dalign=adaptive --do_distalign=True

Exit codes: 0 done; 2 bad input (flags, flag parsing, data, run directory,
a full disk);
1 a non-finite loss or another error; 128 + N stopped by signal N (SIGTERM,
SIGINT) after saving a checkpoint.
"""
from __future__ import annotations

import errno
import os
import sys
from typing import List, Optional

from absl import app
from absl import flags
from absl import logging

from crest import flags as crest_flags
from crest.errors import USER_ERRORS

FLAGS = flags.FLAGS


def build_config(flag_values: flags.FlagValues = FLAGS):
  """The validated config of these flags, with the data it needs.

  Returns: (config, data, strategy).
  """
  from crest import config as config_lib  # pylint: disable=g-import-not-at-top
  from crest import strategy as strategy_lib  # pylint: disable=g-import-not-at-top
  from data import registry as data_registry  # pylint: disable=g-import-not-at-top

  values, present = crest_flags.values_from_flags(flag_values)
  cfg = crest_flags.config_from_values(values, present)
  config_lib.validate(cfg)  # Cheap checks first, before any work.
  strategy = strategy_lib.make_strategy(cfg.cpu_replicas)
  config_lib.validate(cfg, num_replicas=strategy.num_replicas_in_sync)
  data = data_registry.load(cfg.data_args())
  cfg = config_lib.with_data_shape(cfg, data.image_shape,
                                  'input_shape' in present)
  return cfg, data, strategy


def _fail(message: str, code: int) -> int:
  logging.error('%s', message)
  print(f'error: {message}', file=sys.stderr)
  return code


def parse_flags(argv: List[str]) -> List[str]:
  """absl's flag parsing, but a bad flag, value or flagfile exits with 2
  (bad input), like every other user error."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    print(f'error: {e}\nPass --helpshort or --helpfull to see the flags.',
          file=sys.stderr)
    sys.exit(2)


def main(argv: List[str]) -> Optional[int]:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}', exitcode=2)
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  # Read by TensorFlow once, when it is imported (so before the import).
  # Two settings act before the config exists: TensorFlow reads the oneDNN
  # switch once, when imported, and determinism is process-wide.
  early, _ = crest_flags.values_from_flags(FLAGS)
  os.environ['TF_ENABLE_ONEDNN_OPTS'] = '1' if early['onednn'] else '0'
  from crest import interrupt  # pylint: disable=g-import-not-at-top
  interrupt.install()
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from crest import generations  # pylint: disable=g-import-not-at-top
    from crest import strategy as strategy_lib  # pylint: disable=g-import-not-at-top
    from crest.trainer import NonFiniteLossError  # pylint: disable=g-import-not-at-top
    if early['deterministic']:
      tf.config.experimental.enable_op_determinism()
    cfg, data, strategy = build_config()
    try:
      records = generations.run(cfg, strategy, data,
                                is_chief=strategy_lib.is_chief(strategy))
    except NonFiniteLossError as e:
      return _fail(f'{e} The last good checkpoint is kept; {e.advice}', 1)
  except USER_ERRORS as e:
    return _fail(str(e), 2)
  except interrupt.Interrupted as e:
    logging.warning('%s', e)
    print(str(e), file=sys.stderr)
    return 128 + e.signum
  except OSError as e:
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
      return _fail(f'Cannot write {e.filename or ""}: {e.strerror}. Free '
                   'space or choose another --model_dir; re-running the same '
                   'command resumes from the last complete checkpoint.', 2)
    raise
  except Exception as e:  # pylint: disable=broad-except
    from crest import disk  # pylint: disable=g-import-not-at-top
    if disk.is_disk_full(e):  # A write no `disk.writing` wraps.
      return _fail(str(disk.error(str(e).splitlines()[0], None, e)), 2)
    raise
  last = records[-1]
  logging.info('Done: %d generation(s); final EMA test accuracy %.4f.',
               len(records), last['test_accuracy'])
  return 0


def run() -> None:
  crest_flags.define_flags(FLAGS, help_module=sys.argv[0])
  app.run(lambda argv: sys.exit(main(argv) or 0), flags_parser=parse_flags)


if __name__ == '__main__':
  run()
