"""splits_and_selection.npz: `data.splits.labeled_split` (labeled and
unlabeled positions) and `crest.selection.select_pseudo_labels` +
`next_labeled_set` (picked_per_class, new_train_positions / labels), all
exact. One case per `K{classes}_g{gamma}_n{N1}_p{percent}_a{alpha}_fold{f}`;
gt_p_data is `data.splits.long_tail_prior(1/gamma, K)`, update mode
'distribution'."""
from __future__ import annotations

import pathlib
import re

import numpy as np

from scripts.parity import common

CASE = re.compile(
    r'K(?P<k>\d+)_g(?P<gamma>[^_]+)_n(?P<n>\d+)_p(?P<p>[^_]+)'
    r'_a(?P<alpha>[^_]+)_fold(?P<fold>\d+)')
FIELDS = ('y_train', 'labeled_positions', 'unlabeled_positions',
          'unlabeled_scores', 'picked_per_class', 'new_train_positions',
          'new_train_labels')


def check(path: pathlib.Path,
          update_mode: str = 'distribution') -> common.FileResult:
  """Checks a splits_and_selection-format file (everything exact)."""
  from crest.selection import next_labeled_set, select_pseudo_labels  # pylint: disable=g-import-not-at-top
  from data.splits import labeled_split, long_tail_prior  # pylint: disable=g-import-not-at-top
  result = common.FileResult(path.name)
  with np.load(path) as data:
    files = data.files
    for case in common.cases(files):
      match = CASE.fullmatch(case)
      if match is None:
        result.add(case, float('nan'), False, 'case name does not match '
                   'K{classes}_g{gamma}_n{N1}_p{percent}_a{alpha}_fold{fold}')
        continue
      missing = common.missing_fields(files, case, FIELDS)
      if missing:
        result.add(case, float('nan'), False, f'missing fields {missing}')
        continue
      k = int(match['k'])
      y = data[f'{case}__y_train']
      lab, unl = labeled_split(y, int(match['fold']), float(match['p']), k)
      gt = long_tail_prior(1.0 / float(match['gamma']), k)
      ref_lab = data[f'{case}__labeled_positions']
      ref_unl = data[f'{case}__unlabeled_positions']
      # Selection runs on the reference's unlabeled order (the scores' rows),
      # so a split mismatch does not hide a selection mismatch.
      rows, labels, picked, _ = select_pseudo_labels(
          data[f'{case}__unlabeled_scores'], gt, float(match['alpha']),
          update_mode)
      pos, lbl = next_labeled_set(ref_unl, rows, labels, ref_lab, y[ref_lab])
      errors = {
          'labeled_positions': common.abs_error(lab, ref_lab),
          'unlabeled_positions': common.abs_error(unl, ref_unl),
          'picked_per_class': common.abs_error(
              picked, data[f'{case}__picked_per_class']),
          'new_train_positions': common.abs_error(
              pos, data[f'{case}__new_train_positions']),
          'new_train_labels': common.abs_error(
              lbl, data[f'{case}__new_train_labels']),
      }
      bad = {f: e for f, e in errors.items() if e != 0}
      result.add(case, max(errors.values()), not bad,
                 'differs in ' + ', '.join(f'{f} (max abs diff {e:g})'
                                           for f, e in bad.items()))
  return result
