"""The CReST generation loop and its records.

Generation g trains from scratch on the original labeled set plus the picks of
generation g-1 (picks never accumulate), evaluates its EMA model on the test
set, pseudo-labels the unlabeled pool, and picks per predicted class the most
confident `int(n_c * (gt_p_data[K-1-c] / gt_p_data[0]) ** (1/alpha))`.

A generation is finished when its `generation.json` exists; it is written
last, atomically, after `labeled_set.npz` and `picks.npz` (the directory's
layout: `crest.run_dir`; `labeled_set.npz` is also written when the
generation starts). Re-running the same command skips finished generations
whose records check out (`crest.record_checks`; damaged ones are redone)
and resumes the unfinished one from its latest checkpoint; a directory made
with another configuration (`prepare_run_dir`), from other data, or in use
by another process (`crest.run_guard`) is refused.
"""
from __future__ import annotations

import hashlib
import os
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from absl import logging

from crest import config as config_lib
from crest import metrics as metrics_lib
from crest import record_checks
from crest import records
from crest import reported
from crest import run_dir as run_dir_lib
from crest import run_guard
from crest import selection
from crest.config import Config
from crest.errors import UserError
from data.base import SSLData

TIMING_METRICS = frozenset({'monitor.steps_per_sec'})


def generation_seed(seed: int, generation: int) -> int:
  """A distinct, reproducible seed per generation."""
  return int((seed * 1_000_003 + generation * 7919) % (2**31 - 1))


def prepare_run_dir(cfg: Config, is_chief: bool = True) -> str:
  """Creates the run directory and records the config, or checks it.

  Re-running into a directory made with another configuration fails with the
  differing flags, unless --force_init (which starts over).

  Returns: the run directory.
  """
  run_dir = run_dir_lib.path(cfg)
  path = os.path.join(run_dir, run_dir_lib.CONFIG_FILE)
  if cfg.force_init and is_chief and os.path.isdir(run_dir):
    logging.warning('--force_init: deleting %s', run_dir)
    run_guard.clear(run_dir)  # All but the lock this process holds.
  if os.path.exists(path):
    try:
      previous = Config.from_dict(run_dir_lib.read_config(run_dir))
    except (ValueError, TypeError) as e:
      raise UserError(f'{path} is not a valid config ({e}); delete it or use '
                      '--force_init to start over.') from None
    diff = config_lib.semantic_diff(previous, cfg)
    if diff:
      lines = '\n'.join(f'  --{k}: {a!r} in the directory, {b!r} now'
                        for k, a, b in ((k, *v) for k, v in diff.items()))
      raise UserError(
          f'{run_dir} holds a run with another configuration:\n{lines}\n'
          'Use another --model_dir (or --file_suffix), or --force_init to '
          'delete that run and start over.')
  if is_chief:
    try:
      os.makedirs(run_dir, exist_ok=True)
      records.write_json(path, cfg.to_dict())
    except OSError as e:
      raise UserError(f'Cannot write to the run directory {run_dir}: {e}. '
                      'Choose a writable --model_dir with free space.'
                      ) from None
  return run_dir


def _log_report(name: str, report: Dict[str, Any]) -> None:
  np.set_printoptions(linewidth=200)
  logging.info('%s: EMA test accuracy %.4f', name, report['accuracy'])
  logging.info('%s: per-class recall    %s', name,
               np.array2string(np.asarray(report['recall']), precision=3))
  logging.info('%s: per-class precision %s', name,
               np.array2string(np.asarray(report['precision']), precision=3))
  logging.info('%s: confusion matrix (rows: true class)\n%s', name,
               np.array2string(np.asarray(report['confusion'])))


def _accuracy_where_known(scores: np.ndarray, labels: np.ndarray
                          ) -> Optional[float]:
  """Accuracy of `scores` [U, K] on the rows whose label [U] is known
  (>= 0); None when there is none."""
  known = labels >= 0
  if not known.any():
    return None
  return float(np.mean(np.argmax(scores[known], 1) == labels[known]))


def run_generation(cfg: Config, strategy, data: SSLData, gen_dir: str,
                   generation: int, temperature: Optional[float],
                   labeled_positions: np.ndarray, labeled_labels: np.ndarray,
                   num_pseudo: int, is_chief: bool
                   ) -> Tuple[Dict[str, Any], Tuple[np.ndarray, np.ndarray]]:
  """Trains, evaluates and pseudo-labels one generation; writes its records.

  Returns:
    The generation's record (also written as generation.json) and its picks
    (positions int64 [P], pseudo-labels int64 [P]).
  """
  from crest.trainer import GenerationTrainer  # pylint: disable=g-import-not-at-top
  if is_chief:  # What its checkpoints are trained on (checked on resume).
    records.write_npz(os.path.join(gen_dir, run_dir_lib.LABELED_SET_FILE),
                      positions=np.asarray(labeled_positions, np.int64),
                      labels=np.asarray(labeled_labels, np.int64))
  seed = generation_seed(cfg.seed, generation)
  trainer = GenerationTrainer(cfg, strategy, data, gen_dir, temperature,
                              seed=seed, is_chief=is_chief)
  trainer.train(labeled_positions, labeled_labels)

  # Final evaluation of the EMA model on the test set.
  ema_logits = trainer.ema_test_logits()
  report = metrics_lib.classification_report(data.test_labels, ema_logits)
  _log_report(os.path.basename(gen_dir), report)

  # Pseudo-label the unlabeled pool with the EMA model and select.
  pool = data.unlabeled_positions
  scores = (trainer.predict_ema(data.train_images, pool) if len(pool) else
            np.zeros([0, data.num_classes], np.float32))
  rows, labels, picked, predicted = selection.select_pseudo_labels(
      scores, np.asarray(data.gt_p_data), cfg.alpha, cfg.update_mode)
  true = data.train_labels[pool[rows]] if len(rows) else np.zeros([0], int)
  correct = np.bincount(labels[labels == true], minlength=data.num_classes)

  record = {
      'generation': generation,
      'alignment_temperature': temperature,
      'num_labeled': int(len(data.labeled_positions)),
      'num_pseudo_labeled': int(num_pseudo),
      'test_accuracy': float(report['accuracy']),
      'test_per_class_recall': report['recall'].tolist(),
      'test_per_class_precision': report['precision'].tolist(),
      'test_confusion_matrix': report['confusion'].tolist(),
      'unlabeled_predicted_per_class': predicted.tolist(),
      # Over the pool's examples with a label (STL-10's unlabeled images
      # have none: -1); None without any.
      'unlabeled_accuracy': _accuracy_where_known(scores,
                                                  data.train_labels[pool]),
      'picked_per_class': picked.tolist(),
      'picked_correct_per_class': correct.tolist(),
      'labeled_per_class': np.bincount(
          labeled_labels, minlength=data.num_classes).tolist(),
      # The last epoch's scalars; timings are left out so that records of
      # deterministic runs are identical.
      'history': {k: v[-1] for k, v in trainer.epoch_log.history.items()
                  if not isinstance(v[-1], list) and k not in TIMING_METRICS},
  }
  # The test set's kind, balanced accuracy and the statistics of the epoch
  # history (final, medians of the last 10 / 20 epochs, best).
  record.update(reported.record_fields(
      data.test_labels, report['recall'],
      data.train_labels[data.labeled_positions], trainer.epoch_log.history,
      data.num_classes))
  if is_chief:
    records.write_npz(os.path.join(gen_dir, run_dir_lib.LABELED_SET_FILE),
                      positions=np.asarray(labeled_positions, np.int64),
                      labels=np.asarray(labeled_labels, np.int64))
    records.write_npz(os.path.join(gen_dir, run_dir_lib.PICKS_FILE),
                      positions=np.asarray(pool[rows], np.int64),
                      labels=np.asarray(labels, np.int64))
    records.write_json(os.path.join(gen_dir, run_dir_lib.RECORD_FILE),
                       record)
  return record, (np.asarray(pool[rows], np.int64), labels.astype(np.int64))


def _finished(gen_dir: str, data: SSLData, positions: np.ndarray,
              labels: np.ndarray) -> Optional[record_checks.Finished]:
  """The checked records of a finished generation, or None to (re)do it.

  Damaged records (a file missing, unreadable or inconsistent) are reported
  and the generation redone: its labeled set follows from the previous
  generation, and its checkpoints, when there, make the redo cheap.

  Raises:
    UserError: the generation's stored labeled set is not `positions`,
      `labels` (the one that follows from the previous generation): its
      checkpoints were trained on another one.
  """
  k, n = data.num_classes, len(data.train_labels)
  try:
    finished = record_checks.read_generation(gen_dir, k, n)
  except record_checks.DamagedRecord as e:
    logging.warning('Damaged record: %s. Redoing generation %s from its '
                    'checkpoints.', e, os.path.basename(gen_dir))
    finished = None
  stored = finished.labeled if finished else None
  path = os.path.join(gen_dir, run_dir_lib.LABELED_SET_FILE)
  if finished is None and os.path.exists(path):
    try:
      stored = record_checks.read_index_set(path, k, n)
    except record_checks.DamagedRecord as e:
      logging.warning('%s; it will be written again.', e)
  if stored is not None and not (np.array_equal(stored[0], positions) and
                                 np.array_equal(stored[1], labels)):
    raise UserError(
        f'{path} is not the labeled set that follows from the data and the '
        'previous generation\'s picks: this generation was trained on '
        f'another one. Delete {gen_dir} to train it again, or use '
        '--force_init to start the run over.')
  return finished


def run(cfg: Config, strategy, data: SSLData,
        is_chief: bool = True) -> List[Dict[str, Any]]:
  """Runs (or resumes) every generation; returns their records.

  The chief holds the run directory's lock throughout
  (`crest.run_guard.RunLock`); the data must be those the run started with
  (`crest.run_guard.check_data`).
  """
  with run_guard.RunLock(run_dir_lib.path(cfg), is_chief):
    run_dir = prepare_run_dir(cfg, is_chief)
    run_guard.check_data(run_dir, cfg, data, is_chief)
    return _run_generations(cfg, strategy, data, run_dir, is_chief)


def _run_generations(cfg: Config, strategy, data: SSLData, run_dir: str,
                     is_chief: bool) -> List[Dict[str, Any]]:
  original_pos = np.asarray(data.labeled_positions, np.int64)
  original_lab = data.train_labels[original_pos].astype(np.int64)
  picks: Tuple[np.ndarray, np.ndarray] = (np.zeros([0], np.int64),
                                          np.zeros([0], np.int64))
  out = []
  for g in range(cfg.num_generation):
    temperature = None
    if cfg.do_distalign and cfg.how_dalign is not None:
      temperature = selection.alignment_temperature(
          g, cfg.num_generation, cfg.dalign_t, cfg.how_dalign)
    gen_dir = os.path.join(run_dir,
                           run_dir_lib.generation_dir_name(g, temperature))
    positions, labels = selection.next_labeled_set(
        np.arange(len(data.train_labels)), picks[0], picks[1], original_pos,
        original_lab)
    digest = hashlib.sha1(positions.tobytes() + labels.tobytes()).hexdigest()
    logging.info('Generation %d labeled set: %d examples, sha1 %s.', g,
                 len(positions), digest)
    finished = _finished(gen_dir, data, positions, labels)
    if finished is None:
      logging.info('Generation %d/%d in %s: %d labeled (%d pseudo-labeled).',
                   g + 1, cfg.num_generation, gen_dir, len(positions),
                   len(picks[0]))
      record, picks = run_generation(cfg, strategy, data, gen_dir, g,
                                     temperature, positions, labels,
                                     len(picks[0]), is_chief)
    else:
      logging.info('Generation %d is finished (%s); skipping.', g, gen_dir)
      record, picks = finished.record, finished.picks
    out.append(record)
  return out
