"""lr_schedule.npz and lr_schedule_per_epoch.npz: `crest.schedules.
learning_rate` at every stored step, 1e-6 relative; one case per key
`{mode}_{json of the original's keyword arguments}`. A `step_per_epoch`
argument equal to the steps per epoch selects `sched_freq='epoch'` (1 or
absent: 'step'). Base lr 0.03, 64 epochs x 1024 steps."""
from __future__ import annotations

import json
import pathlib

import numpy as np

from scripts.parity import common

RTOL = 1e-6
BASE_LR, NUM_EPOCH, NUM_BATCH = 0.03, 64, 1024
# The original's schedule names / keyword names -> ours.
MODES = {'constant': 'const', 'const': 'const', 'cosine': 'cos', 'cos': 'cos',
         'halfcos': 'halfcos', 'halfcosine': 'halfcos', 'linear': 'linear',
         'step': 'step'}
ARGS = {'level': 'sched_level', 'min_rate': 'sched_min_rate',
        'gamma': 'sched_gamma', 'step_size': 'sched_step_size'}


def schedule_kwargs(key: str, num_batch: int = NUM_BATCH) -> dict:
  """`learning_rate` keyword arguments of a fixture key.

  Raises:
    KeyError / ValueError: an unknown mode or argument, or a `step_per_epoch`
      that is neither 1 nor `num_batch`.
  """
  mode, _, args = key.partition('_')
  original = json.loads(args or '{}')
  per_epoch = int(original.pop('step_per_epoch', 1))
  if per_epoch not in (1, num_batch):
    raise ValueError(f'step_per_epoch={per_epoch}: only 1 (per step) or the '
                     f'steps per epoch ({num_batch}) exist as --sched_freq')
  kwargs = {ARGS[a]: v for a, v in original.items()}
  kwargs.update(sched_type=MODES[mode],
                sched_freq='epoch' if per_epoch > 1 else 'step')
  return kwargs


def check(path: pathlib.Path, base_lr: float = BASE_LR,
          num_epoch: int = NUM_EPOCH,
          num_batch: int = NUM_BATCH) -> common.FileResult:
  """Checks an lr_schedule-format file (1e-6 relative at every step)."""
  from crest.schedules import learning_rate  # pylint: disable=g-import-not-at-top
  result = common.FileResult(path.name, error_kind='rel')
  with np.load(path) as data:
    if 'steps' not in data.files:
      result.failures.append('no `steps` array: not an lr_schedule file')
      return result
    steps = data['steps']
    for key in data.files:
      if key == 'steps':
        continue
      try:
        kwargs = schedule_kwargs(key, num_batch)
      except (KeyError, ValueError) as e:
        result.add(key, float('nan'), False,
                   f'cannot map key to a schedule ({type(e).__name__}: {e}); '
                   f'modes {sorted(MODES)}, arguments '
                   f'{sorted(ARGS) + ["step_per_epoch"]}')
        continue
      ref = np.asarray(data[key], np.float64)
      ours = np.array([float(learning_rate(
          int(s), base_lr=base_lr, num_epoch=num_epoch, num_batch=num_batch,
          **kwargs)) for s in steps])
      if ours.shape != ref.shape:
        result.add(key, float('inf'), False,
                   f'{ref.shape} values for {steps.shape} steps')
        continue
      diff = np.abs(ours - ref)
      rel = np.where(ref != 0, diff / np.maximum(np.abs(ref), 1e-300),
                     np.where(diff == 0, 0.0, np.inf))
      err = float(rel.max(initial=0.0))
      worst = int(np.argmax(rel)) if rel.size else 0
      result.add(key, err, err <= RTOL,
                 f'relative error {err:.3g} at step {int(steps[worst])} '
                 f'(ours {ours[worst]:.9g}, reference {ref[worst]:.9g})')
  return result
