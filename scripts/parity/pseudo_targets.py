"""pseudo_targets.npz: `crest.pseudo_labels.pseudo_targets`, target and mask
within 1e-5 (absolute). One case per `c{i}_da{0|1}_{how}_t{t}_thr{thr}_T{T}`."""
from __future__ import annotations

import pathlib
import re

import numpy as np

from scripts.parity import common

TOL = 1e-5
CASE = re.compile(
    r'(?P<id>.+?)_da(?P<da>[01])_(?P<how>None|constant|adaptive)'
    r'_t(?P<t>[^_]+)_thr(?P<thr>[^_]+)_T(?P<temp>[^_]+)')
FIELDS = ('logits', 'gt_p_data', 'p_model', 'p_data', 'target', 'mask')


def check(path: pathlib.Path) -> common.FileResult:
  """Checks a pseudo_targets-format file."""
  from crest.pseudo_labels import pseudo_targets  # pylint: disable=g-import-not-at-top
  result = common.FileResult(path.name)
  with np.load(path) as data:
    files = data.files
    for case in common.cases(files):
      match = CASE.fullmatch(case)
      if match is None:
        result.add(case, float('nan'), False,
                   'case name does not match c{i}_da{0|1}_{None|constant|'
                   'adaptive}_t{t}_thr{thr}_T{temp}')
        continue
      missing = common.missing_fields(files, case, FIELDS)
      if missing:
        result.add(case, float('nan'), False, f'missing fields {missing}')
        continue
      how = match['how']
      target, mask, _ = pseudo_targets(
          data[f'{case}__logits'], p_model=data[f'{case}__p_model'],
          p_data=data[f'{case}__p_data'], gt_p_data=data[f'{case}__gt_p_data'],
          do_distalign=match['da'] == '1',
          how_dalign=None if how == 'None' else how,
          dalign_t=float(match['t']), threshold=float(match['thr']),
          temperature=float(match['temp']))
      err_t = common.abs_error(target.numpy(), data[f'{case}__target'])
      err_m = common.abs_error(mask.numpy(), data[f'{case}__mask'])
      err = max(err_t, err_m)
      result.add(case, err, err <= TOL,
                 f'target error {err_t:.3g}, mask error {err_m:.3g} '
                 f'(tolerance {TOL:g})')
  return result
