"""Exports the EMA model of a run's finished generation.

  python3 scripts/export.py RUN_DIR [--generation G] --out DIR [--overwrite]

RUN_DIR is the directory holding config.json (MODEL_DIR/<data>/<model>/<run>);
the network is rebuilt from that config and the EMA weights restored from the
generation's final checkpoint (ckpt-<num_epoch x num_batch>). Without
--generation the last finished one (with generation.json) is exported. DIR
gets saved_model/ (signature serving_default: uint8 images [B, H, W, C] ->
logits, probabilities, class_ids), model.keras (uint8 images -> logits),
labels.json (class names, or ids) and export.json (where it came from); it is
written under a temporary name and renamed when complete (crest/export.py).

Exit codes: 0 done, 2 bad input (the message says what to do).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

if __package__ in (None, ''):  # Run as `python3 scripts/export.py`.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# pylint: disable=g-import-not-at-top,wrong-import-position
from crest import errors
from crest import export
# pylint: enable=g-import-not-at-top,wrong-import-position


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('run_dir', help='the run directory (holds config.json)')
  parser.add_argument('--generation', type=int, default=None,
                      help='generation to export (default: the last '
                      'finished one)')
  parser.add_argument('--out', required=True, help='output directory')
  parser.add_argument('--overwrite', action='store_true',
                      help='replace an earlier export in --out')
  try:
    args = parser.parse_args(argv)
  except SystemExit as e:  # argparse: 2 on bad arguments, 0 on --help.
    return int(e.code or 0)
  try:
    if args.generation is not None and args.generation < 0:
      raise errors.UserError(f'--generation={args.generation} must be >= 0.')
    export.check_out(args.out, args.overwrite)  # Before any work.
    source = export.locate(args.run_dir, args.generation)
    meta = export.write(source, args.out, overwrite=args.overwrite)
  except errors.USER_ERRORS as e:
    print(f'export: {e}', file=sys.stderr)
    return 2
  print(f'exported generation {meta["generation"]} (step {meta["step"]}, '
        f'{meta["num_classes"]} classes, input {meta["input_shape"]}, test '
        f'accuracy {meta["test_accuracy"]:.4f}) of {meta["run_dir"]} to '
        f'{os.path.abspath(args.out)}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
