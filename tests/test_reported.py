"""The reported number (crest/reported.py): the statistics generation.json
records, and summarize.py --stat / test-set captions / DARP columns on
hand-written run directories (no TensorFlow needed, milliseconds each)."""
import csv
import json
import os

import numpy as np
import pytest

from crest import reported
from scripts import summarize
from test_summarize import make_run, table_rows, cell_text

K = 10


def test_series_statistics_by_hand():
  values = [0.1 * i for i in range(25)] + [0.5]  # 26 epochs, best at 25.
  s = reported.series_statistics(values)
  assert s['final'] == pytest.approx(0.5)
  assert s['median10'] == pytest.approx(np.median(values[-10:]))
  assert s['median20'] == pytest.approx(np.median(values[-20:]))
  assert s['best'] == pytest.approx(2.4) and s['best_epoch'] == 25
  # Fewer epochs than the window: the median of all of them.
  short = reported.series_statistics([0.3, 0.1, 0.2])
  assert short['median10'] == short['median20'] == pytest.approx(0.2)
  assert short['best_epoch'] == 1
  # Ties: the first best epoch.
  assert reported.series_statistics([0.2, 0.4, 0.4])['best_epoch'] == 2
  with pytest.raises(ValueError):
    reported.series_statistics([])


def test_rarest_classes_and_test_set_kind():
  assert reported.rarest_classes([2, 50, 40, 30, 3, 20, 10, 1, 60, 70],
                                 10) == [7, 0, 4]
  assert reported.rarest_classes(None, 10) == [9, 8, 7]  # The tail.
  assert reported.rarest_classes([5, 5], 2) == [1]  # At least one.
  assert reported.test_set_kind(np.repeat(np.arange(3), 4), 3) == 'balanced'
  assert reported.test_set_kind(np.array([0, 0, 1, 2]), 3) == 'imbalanced'
  # A class missing from the test set is an imbalanced test set.
  assert reported.test_set_kind(np.array([0, 1]), 3) == 'imbalanced'


def test_epoch_statistics_and_record_fields():
  rng = np.random.RandomState(0)
  per_class = rng.uniform(0, 1, (12, K))
  acc = rng.uniform(0, 1, 12)
  history = {'acc.test.ema': acc.tolist(),
             'per_class_acc.test.ema': per_class.tolist()}
  labels = np.repeat(np.arange(K), np.arange(K, 0, -1))  # Class 9 rarest.
  test_labels = np.repeat(np.arange(K), [5] * (K - 1) + [2])
  fields = reported.record_fields(test_labels, per_class[-1], labels,
                                  history, K)
  assert fields['test_set'] == 'imbalanced'
  assert fields['test_per_class_count'] == [5] * (K - 1) + [2]
  assert fields['test_balanced_accuracy'] == pytest.approx(
      per_class[-1].mean())
  st = fields['statistics']
  assert st['epochs'] == 12 and st['minority_classes'] == [9, 8, 7]
  assert st['optimistic'] == ['best']  # It selects on the test set.
  assert st['test_accuracy'] == reported.series_statistics(acc)
  minority = per_class[:, [9, 8, 7]].mean(axis=1)
  assert st['minority_recall']['median10'] == pytest.approx(
      np.median(minority[-10:]))
  assert st['minority_recall']['best'] == pytest.approx(minority.max())
  assert st['balanced_accuracy']['final'] == pytest.approx(
      per_class[-1].mean())
  json.dumps(fields)  # Plain JSON values.
  assert reported.epoch_statistics({}, [9]) == {}


def _with_statistics(run_dir, seed, imbalanced=False, history_file=False):
  """Gives every record of a fake run an epoch history: `statistics` in
  generation.json, or only a stats/history.json (an older record)."""
  rng = np.random.RandomState(seed)
  out = {}
  for name in sorted(os.listdir(run_dir)):
    path = os.path.join(run_dir, name, 'generation.json')
    if not os.path.exists(path):
      continue
    with open(path) as f:
      record = json.load(f)
    per_class = rng.uniform(0, 1, (25, K))
    history = {'acc.test.ema': rng.uniform(0, 1, 25).tolist(),
               'per_class_acc.test.ema': per_class.tolist()}
    record['test_per_class_recall'] = per_class[-1].tolist()
    record['test_accuracy'] = history['acc.test.ema'][-1]
    if history_file:
      os.makedirs(os.path.join(run_dir, name, 'stats'))
      with open(os.path.join(run_dir, name, 'stats', 'history.json'),
                'w') as f:
        json.dump(history, f)
    else:
      test_labels = np.repeat(np.arange(K), [9] * (K - 1) + [
          3 if imbalanced else 9])
      record.update(reported.record_fields(
          test_labels, per_class[-1],
          np.repeat(np.arange(K), record['labeled_per_class']), history, K))
    with open(path, 'w') as f:
      json.dump(record, f)
    out[record['generation']] = (record, history)
  return out


def _stat_of(history, metric, stat, minority=(9, 8, 7)):
  acc = np.asarray(history['acc.test.ema'])
  per_class = np.asarray(history['per_class_acc.test.ema'])
  series = {'test_accuracy': acc,
            'minority_recall': per_class[:, list(minority)].mean(axis=1),
            'balanced_accuracy': per_class.mean(axis=1)}[metric]
  return reported.series_statistics(series)[stat]


@pytest.mark.parametrize('stat', reported.STATISTICS)
def test_summarize_stat_matches_the_histories(tmp_path, capsys, stat):
  dirs = [make_run(tmp_path, f, method='CReST') for f in (1, 2, 3)]
  # Fold 3 only has the older record form: stats/history.json.
  hist = [_with_statistics(d, i, history_file=(i == 2))
          for i, d in enumerate(dirs)]
  out_prefix = str(tmp_path / 'out' / stat)
  assert summarize.main([str(tmp_path), '--stat', stat, '--out',
                         out_prefix]) == 0
  text = capsys.readouterr().out
  caption = reported.caption(stat)
  assert f'final generation, {caption}, mean (std)' in text
  if stat == 'best':
    assert 'optimistic' in caption
  for metric, title in (('test_accuracy', 'Test accuracy'),
                        ('minority_recall', 'Minority classes')):
    values = [100 * _stat_of(h[2][1], metric, stat) for h in hist]
    rows = table_rows(text, title)
    assert rows['CReST']['gamma=100'] == cell_text(values, 3), metric
  with open(out_prefix + '.csv') as f:
    assert {r['statistic'] for r in csv.DictReader(f)} == {stat}
  # The default is the final epoch: the records' test_accuracy, as before.
  summarize.main([str(tmp_path)])
  rows = table_rows(capsys.readouterr().out, 'Test accuracy')
  assert rows['CReST']['gamma=100'] == cell_text(
      [100 * h[2][0]['test_accuracy'] for h in hist], 3)


def test_runs_without_history_are_marked_not_averaged(tmp_path, capsys):
  with_history = make_run(tmp_path, 1)
  (_, history), = _with_statistics(with_history, 0).values()
  make_run(tmp_path, 2)  # No statistics, no stats/history.json.
  summarize.main([str(tmp_path), '--stat', 'median20'])
  text = capsys.readouterr().out
  rows = table_rows(text, 'Test accuracy')
  assert rows['FixMatch']['gamma=100'] == cell_text(
      [100 * _stat_of(history, 'test_accuracy', 'median20')], 2)
  assert '1 run(s) recorded no epoch history' in text


def test_test_set_caption_and_balanced_accuracy(tmp_path, capsys):
  balanced = make_run(tmp_path, 1)
  _with_statistics(balanced, 0)
  summarize.main([str(tmp_path)])
  text = capsys.readouterr().out
  assert 'Test set: balanced.' in text
  assert 'Balanced test accuracy' not in text  # Equal to accuracy there.
  imbalanced = make_run(tmp_path, 1, dataset='imagenet127_32',
                        num_epoch=3)
  (record, _), = _with_statistics(imbalanced, 1, imbalanced=True).values()
  summarize.main([str(tmp_path)])
  text = capsys.readouterr().out
  part = text[text.index('dataset=imagenet127_32'):]
  assert 'Test set: imbalanced.' in part
  rows = table_rows(part, 'Balanced test accuracy')
  assert rows['FixMatch']['as is'] == cell_text(  # No data.json: no gamma.
      [100 * np.mean(record['test_per_class_recall'])], 1)


def test_darp_unlabeled_distributions_are_columns_of_one_table(tmp_path,
                                                               capsys):
  acc = {}
  for gamma in (100, 150):
    for gamma_u, shape, name in ((None, 'longtail', 'consistent'),
                                 (1, 'longtail', 'uniform'),
                                 (-gamma, 'longtail', 'reversed'),
                                 (None, 'middle', 'middle')):
      for seed in (1, 2):
        for method in ('FixMatch', 'CReST+'):
          d = make_run(tmp_path, seed, ratio=gamma, method=method,
                       dataset='cifar10ltdarp', seed=seed,
                       darp_gamma_u=gamma_u, darp_unlabeled_shape=shape,
                       seed_acc=hash((gamma_u, shape)) % 1000)
          recs = sorted(os.listdir(d))
          with open(os.path.join(d, recs[-1], 'generation.json')) as f:
            acc.setdefault((method, gamma, name), []).append(
                100 * json.load(f)['test_accuracy'])
  summarize.main([str(tmp_path)])
  text = capsys.readouterr().out
  assert text.count('## Table') == 1
  rows = table_rows(text, 'Test accuracy')
  header = list(rows['FixMatch'])
  assert header == [f'gamma={g}, {n}' for g in (100, 150) for n in (
      'consistent', 'uniform', 'reversed', 'middle')]
  for (method, gamma, name), values in acc.items():
    base = None if method == 'FixMatch' else acc['FixMatch', gamma, name]
    assert rows[method][f'gamma={gamma}, {name}'] == cell_text(values, 2,
                                                               base=base)
