"""scripts/summarize.py and scripts/plots.py on hand-written run directories.

Each fake run has a config.json and gen_XX/generation.json written like the
training entry point writes them; the tables' numbers are checked against
the values read back from those records.
"""
import ast
import csv
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT
from crest import methods
from crest import run_dir
from scripts import plots
from scripts import runs
from scripts import summarize

K = 10

METHODS = {
    'FixMatch': dict(num_generation=1),
    'CReST': dict(num_generation=3),
    'CReST+': dict(num_generation=3, do_distalign=True, how_dalign='adaptive'),
}


def make_run(root, fold, ratio=0.01, method='FixMatch', generations=None,
             labeled=None, seed_acc=0, **overrides):
  """Writes a fake run; returns its directory. `generations`: how many
  generation records to write (default all: a finished run)."""
  cfg = dict(method='fixmatch', dataset='cifar10lt', class_im_ratio=ratio,
             fold=fold, seed=0, percent_labeled=0.1, net_arch='WRN28',
             num_epoch=64, num_batch=1024, batch_size=64, unlab_ratio=7,
             do_distalign=False, how_dalign=None, dalign_t=0.5, alpha=3.0,
             update_mode='distribution', model_dir=str(root))
  cfg.update(METHODS.get(method, {}))
  cfg.update(overrides)
  num_gen = cfg['num_generation']
  name = f'{method}_{cfg["dataset"]}_{ratio}_{fold}_{cfg["seed"]}_{seed_acc}'
  run_dir = os.path.join(root, name.replace('+', 'plus'), 'WRN28-2', 'desc')
  os.makedirs(run_dir)
  with open(os.path.join(run_dir, 'config.json'), 'w') as f:
    json.dump(cfg, f)
  rng = np.random.RandomState(hash((method, ratio, fold, seed_acc)) % 2**31)
  if labeled is None:
    labeled = [int(500 * ratio ** (k / (K - 1))) for k in range(K)]
  for g in range(num_gen if generations is None else generations):
    d = os.path.join(run_dir, f'gen_{g:02d}' + ('_t1.00' if cfg['how_dalign']
                                                 else ''))
    os.makedirs(d)
    recall = rng.uniform(0, 1, K)
    record = {'generation': g, 'test_accuracy': float(rng.uniform(.4, .9)),
              'test_per_class_recall': recall.tolist(),
              'labeled_per_class': labeled if g == 0 else
                                   [c + 100 for c in labeled],
              'picked_per_class': [10] * K,
              'picked_correct_per_class': [7] * K}
    with open(os.path.join(d, 'generation.json'), 'w') as f:
      json.dump(record, f)
  return run_dir


def records_of(run_dir):
  out = {}
  for name in sorted(os.listdir(run_dir)):
    path = os.path.join(run_dir, name, 'generation.json')
    if os.path.exists(path):
      with open(path) as f:
        out[int(name[4:6])] = json.load(f)
  return out


def final_acc(run_dir):
  recs = records_of(run_dir)
  return 100 * recs[max(recs)]['test_accuracy']


def cell_text(values, expected, ddof=0, base=None):
  """A cell's text; `base`: the baseline row's values (the noise mark when
  the means differ by at most the pooled std of two cells of 2+ runs)."""
  std = f'{np.std(values, ddof=ddof):.2f}' if len(values) > 1 else '-'
  text = f'{np.mean(values):.1f} ({std})'
  text += f' [n={len(values)}]' if len(values) < expected else ''
  if base is not None and len(values) > 1 and len(base) > 1:
    pooled = np.sqrt((np.var(values, ddof=ddof) + np.var(base, ddof=ddof))
                     / 2)
    if abs(np.mean(values) - np.mean(base)) <= pooled:
      text += ' ≈'
  return text


def table_rows(text, title_start):
  """{row label: [cells]} of the first Markdown table after a title."""
  lines = text[text.index(title_start):].split('\n')
  start = next(i for i, l in enumerate(lines) if l.startswith('|'))
  header = [c.strip() for c in lines[start].strip('|').split('|')]
  rows = {}
  for line in lines[start + 2:]:
    if not line.startswith('|'):
      break
    cells = [c.strip() for c in line.strip('|').split('|')]
    rows[cells[0]] = dict(zip(header[1:], cells[1:]))
  return rows


@pytest.fixture
def grid(tmp_path):
  """FixMatch, CReST (3 folds) and CReST+ (2 folds) at gamma 50 and 100."""
  runs = {}
  for method in METHODS:
    for ratio in (0.02, 0.01):
      folds = (1, 2) if method == 'CReST+' else (1, 2, 3)
      runs[method, ratio] = [make_run(tmp_path, f, ratio, method)
                             for f in folds]
  return tmp_path, runs


def test_paper_table_matches_records(grid, capsys):
  root, runs = grid
  out_prefix = str(root / 'out' / 'table')
  assert summarize.main([str(root), '--out', out_prefix]) == 0
  text = capsys.readouterr().out
  rows = table_rows(text, 'Test accuracy')
  assert list(rows) == ['FixMatch', 'CReST', 'CReST+']
  for (method, ratio), dirs in runs.items():
    values = [final_acc(d) for d in dirs]
    column = f'gamma={int(round(1 / ratio))}'
    base = (None if method == 'FixMatch' else
            [final_acc(d) for d in runs['FixMatch', ratio]])
    assert rows[method][column] == cell_text(values, expected=3, base=base)
  # The CReST+ cells have 2 of 3 folds and say so.
  assert '[n=2]' in rows['CReST+']['gamma=100']
  # The same tables in Markdown, and the CSV's numbers.
  with open(out_prefix + '.md') as f:
    assert table_rows(f.read(), 'Test accuracy') == rows
  with open(out_prefix + '.csv') as f:
    csv_rows = [r for r in csv.DictReader(f)
                if r['metric'] == 'test_accuracy']
  assert len(csv_rows) == 6
  for r in csv_rows:
    dirs = runs[r['method'], 1 / float(r['gamma'])]
    values = [final_acc(d) for d in dirs]
    assert float(r['mean']) == pytest.approx(np.mean(values), abs=1e-4)
    assert float(r['std']) == pytest.approx(np.std(values), abs=1e-4)
    assert int(r['n']) == len(dirs)
    assert r['folds'] == ';'.join(str(i + 1) for i in range(len(dirs)))


def test_sample_std_and_expected_folds(grid, capsys):
  root, runs = grid
  summarize.main([str(root), '--ddof', '1', '--folds', '5'])
  rows = table_rows(capsys.readouterr().out, 'Test accuracy')
  values = [final_acc(d) for d in runs['CReST', 0.02]]
  base = [final_acc(d) for d in runs['FixMatch', 0.02]]
  assert rows['CReST']['gamma=50'] == cell_text(values, 5, ddof=1, base=base)
  assert '[n=3]' in rows['CReST']['gamma=50']


def test_minority_recall_uses_rarest_labeled_classes(tmp_path, capsys):
  # Labeled counts not in index order: the rarest third are classes 0, 4, 7.
  labeled = [2, 50, 40, 30, 3, 20, 10, 1, 60, 70]
  dirs = [make_run(tmp_path, f, labeled=labeled) for f in (1, 2)]
  summarize.main([str(tmp_path)])
  rows = table_rows(capsys.readouterr().out, 'Minority classes')
  values = []
  for d in dirs:
    recall = records_of(d)[0]['test_per_class_recall']
    values.append(100 * np.mean([recall[c] for c in (7, 0, 4)]))
  assert rows['FixMatch']['gamma=100'] == cell_text(values, 2)


def test_per_generation_tables(grid, capsys):
  root, runs = grid
  summarize.main([str(root), '--per_generation'])
  text = capsys.readouterr().out
  rows = table_rows(text, 'Test accuracy (%) of the EMA model, gamma=100, '
                    'per generation')
  for g in range(3):
    values = [100 * records_of(d)[g]['test_accuracy']
              for d in runs['CReST+', 0.01]]
    base = [final_acc(d) for d in runs['FixMatch', 0.01]]
    assert rows['CReST+'][f'gen {g}'] == cell_text(values, 3, base=base)
  assert rows['FixMatch']['gen 1'] == ''  # One generation only.


def test_unfinished_runs_listed_not_averaged(tmp_path, capsys):
  done = [make_run(tmp_path, f, method='CReST') for f in (1, 2)]
  make_run(tmp_path, 3, method='CReST', generations=2)
  summarize.main([str(tmp_path)])
  text = capsys.readouterr().out
  rows = table_rows(text, 'Test accuracy')
  assert rows['CReST']['gamma=100'] == cell_text([final_acc(d) for d in done],
                                                 2)
  assert 'Unfinished runs (not averaged)' in text
  assert '2 of 3 generations finished' in text
  assert '2 finished run(s) of 3' in text


def test_other_settings_make_separate_tables(tmp_path, capsys):
  a = [make_run(tmp_path, f) for f in (1, 2)]
  b = [make_run(tmp_path, f, unlab_ratio=1, seed_acc=1) for f in (1, 2)]
  # Runs differing only in seed (and model_dir) share a cell.
  c = make_run(tmp_path, 1, seed=5, model_dir='/elsewhere')
  summarize.main([str(tmp_path)])
  text = capsys.readouterr().out
  assert text.count('## Table') == 2
  assert 'Differs from the other tables: unlab_ratio=1.' in text
  assert 'Differs from the other tables: unlab_ratio=7.' in text
  first = text.index('unlab_ratio=1.')
  second = text.index('unlab_ratio=7.')
  rows_b = table_rows(text[first:], 'Test accuracy')
  rows_a = table_rows(text[second:], 'Test accuracy')
  assert rows_b['FixMatch']['gamma=100'] == cell_text(
      [final_acc(d) for d in b], 2)
  assert rows_a['FixMatch']['gamma=100'] == cell_text(
      [final_acc(d) for d in a + [c]], 3)


def test_labels_and_gamma():
  label = lambda **c: methods.table_label(c)[1]
  assert label(method='fixmatch', num_generation=1) == 'FixMatch'
  assert label(method='fixmatch', num_generation=6) == 'CReST'
  assert label(method='fixmatch', num_generation=6, do_distalign=True,
               how_dalign='adaptive') == 'CReST+'
  assert label(method='mixmatch', num_generation=1) == 'MixMatch'
  assert label(method='mixmatch', num_generation=6,
               do_distalign=True, how_dalign='adaptive') == (
                   'MixMatch + CReST+')
  assert label(method='fixmatch', num_generation=1, do_distalign=True,
               how_dalign='constant') == 'FixMatch + DA (constant)'
  assert runs.gamma(dict(dataset='cifar10lt', class_im_ratio=0.005)) == (
      pytest.approx(200))
  assert runs.gamma(dict(dataset='cifar10ltdarp', class_im_ratio=150)) == 150
  assert runs.gamma(dict(dataset='cifar100', class_im_ratio=0.1)) is None
  # A dataset this checkout does not register reads as long-tailed.
  assert runs.gamma(dict(dataset='gone', class_im_ratio=0.02)) == (
      pytest.approx(50))
  assert runs.format_gamma(200.00000001) == 'gamma=200'
  assert runs.format_gamma(None) == 'balanced'


def test_same_label_different_generations_get_separate_rows(tmp_path,
                                                            capsys):
  make_run(tmp_path, 1, method='CReST')
  make_run(tmp_path, 1, method='CReST', num_generation=2, seed_acc=1)
  summarize.main([str(tmp_path)])
  rows = table_rows(capsys.readouterr().out, 'Test accuracy')
  assert set(rows) == {'CReST (num_generation=2)', 'CReST (num_generation=3)'}


def test_no_runs(tmp_path, capsys):
  assert summarize.main([str(tmp_path)]) == 1
  assert 'No runs' in capsys.readouterr().out


def test_plots_write_readable_pngs(tmp_path, capsys):
  run_dir = make_run(tmp_path, 1, method='CReST+')
  assert plots.main([str(tmp_path)]) == 0
  out = capsys.readouterr().out
  for name, height in (('recall.png', 420), ('pseudo_labels.png', 840),
                       ('labeled_set.png', 420)):
    path = os.path.join(run_dir, name)
    assert f'Wrote {path}' in out
    image = np.asarray(Image.open(path))
    assert image.shape == (height, 900, 3)
    # Three generations: bars in the first three series colours.
    for colour in plots.charts.COLORS[:3]:
      assert np.all(image == colour, axis=-1).sum() > 500, (name, colour)
    assert not np.all(image == plots.charts.COLORS[3], axis=-1).any()


def test_merge_puts_different_step_budgets_in_one_table(tmp_path, capsys):
  fix = make_run(tmp_path, 1, num_batch=300)
  crest = make_run(tmp_path, 1, method='CReST+', num_batch=150)
  summarize.main([str(tmp_path)])
  assert capsys.readouterr().out.count('## Table') == 2
  summarize.main([str(tmp_path), '--merge', 'num_batch'])
  text = capsys.readouterr().out
  assert text.count('## Table') == 1
  assert 'Per method: CReST+: num_batch=150; FixMatch: num_batch=300.' in text
  rows = table_rows(text, 'Test accuracy')
  assert rows['FixMatch']['gamma=100'] == cell_text([final_acc(fix)], 1)
  assert rows['CReST+']['gamma=100'] == cell_text([final_acc(crest)], 1)
  # One method with two budgets: two rows, never one averaged cell.
  make_run(tmp_path, 2, num_batch=100)
  summarize.main([str(tmp_path), '--merge', 'num_batch'])
  rows = table_rows(capsys.readouterr().out, 'Test accuracy')
  assert set(rows) == {'CReST+', 'FixMatch (num_batch=100)',
                       'FixMatch (num_batch=300)'}


def test_generation_dirs_parse_back():
  for g in (0, 7, 123):
    for t in (None, 1.0, 0.5, 0.0):
      name = run_dir.generation_dir_name(g, t)
      assert run_dir.parse_generation_dir(name) == g, name
  for name in ('gen_x', 'gen_01_tx', 'stats', 'gen_01.tmp', 'config.json'):
    assert run_dir.parse_generation_dir(name) is None, name


def test_scripts_run_as_scripts_without_tensorflow(tmp_path, capsys):
  make_run(tmp_path, 1, method='CReST+')
  make_run(tmp_path, 2, method='CReST+')
  for module in ('scripts.summarize', 'scripts.plots', 'crest.run_dir'):
    code = f"import sys; import {module}; assert 'tensorflow' not in sys.modules"
    proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (module, proc.stderr)
  # As `python3 scripts/X.py` from another directory: the same output as
  # main(); summarize --plots draws through scripts/plots.py.
  assert summarize.main([str(tmp_path), '--plots']) == 0
  expected = capsys.readouterr().out
  for script, args in (('summarize.py', ['--plots']), ('plots.py', [])):
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'scripts' / script), str(tmp_path)] + args,
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    if script == 'summarize.py':
      assert proc.stdout == expected
    assert proc.stdout.count('.png') == 6


def _script_imports(path):
  """Names of the sibling scripts/ modules one file imports (anywhere)."""
  siblings = {p.stem for p in path.parent.glob('*.py')} | {
      p.name for p in path.parent.iterdir() if (p / '__init__.py').exists()}
  out = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module == 'scripts':
      out |= {a.name for a in node.names}
    elif isinstance(node, ast.ImportFrom) and node.module:
      parts = node.module.split('.')
      if parts[0] == 'scripts' and len(parts) > 1:
        out.add(parts[1])
      elif node.level == 0 and parts[0] in siblings:
        out.add(parts[0])
    elif isinstance(node, ast.Import):
      for a in node.names:
        parts = a.name.split('.')
        if parts[0] == 'scripts' and len(parts) > 1:
          out.add(parts[1])
        elif parts[0] in siblings:
          out.add(parts[0])
  return out & siblings


def test_scripts_import_no_circle():
  scripts = pathlib.Path(ROOT) / 'scripts'
  graph = {p.stem: _script_imports(p) for p in scripts.glob('*.py')}
  assert graph['plots'] == {'charts', 'runs'}
  assert graph['tables'] == {'noise', 'runs'} and not graph['runs']
  assert not graph['noise']
  done, path = set(), []

  def visit(name):
    assert name not in path, ' -> '.join(path + [name])
    if name in done or name not in graph:
      return
    path.append(name)
    for other in sorted(graph[name]):
      visit(other)
    path.pop()
    done.add(name)

  for name in sorted(graph):
    visit(name)


def _set_final_acc(run_dir, acc):
  recs = records_of(run_dir)
  last = max(recs)
  name = next(n for n in sorted(os.listdir(run_dir))
              if n.startswith(f'gen_{last:02d}'))
  recs[last]['test_accuracy'] = acc
  with open(os.path.join(run_dir, name, 'generation.json'), 'w') as f:
    json.dump(recs[last], f)


def test_cells_within_one_pooled_std_of_fixmatch_are_marked(tmp_path,
                                                            capsys):
  # FixMatch 60, 62, 64: mean 62, std 1.633 (ddof 0). CReST 63, 65, 67:
  # +3 > pooled 1.633: a difference. CReST+ 62, 63, 64: +1 <= pooled
  # sqrt((2.667 + 0.667) / 2) = 1.29: noise.
  accs = {'FixMatch': (.60, .62, .64), 'CReST': (.63, .65, .67),
          'CReST+': (.62, .63, .64)}
  for method, values in accs.items():
    for fold, acc in enumerate(values, 1):
      _set_final_acc(make_run(tmp_path, fold, 0.01, method), acc)
  summarize.main([str(tmp_path)])
  text = capsys.readouterr().out
  rows = table_rows(text, 'Test accuracy')
  assert rows['FixMatch']['gamma=100'] == '62.0 (1.63)'
  assert rows['CReST']['gamma=100'] == '65.0 (1.63)'
  assert rows['CReST+']['gamma=100'] == '63.0 (0.82) ≈'
  assert 'the difference to the FixMatch row' in text
  # With sample std (ddof 1) CReST is still outside: 3 > 2.0.
  summarize.main([str(tmp_path), '--ddof', '1'])
  rows = table_rows(capsys.readouterr().out, 'Test accuracy')
  assert rows['CReST']['gamma=100'] == '65.0 (2.00)'
  assert rows['CReST+']['gamma=100'] == '63.0 (1.00) ≈'


def test_logit_adjusted_accuracy_is_shown_when_recorded(tmp_path, capsys):
  dirs = [make_run(tmp_path, f) for f in (1, 2)]
  summarize.main([str(tmp_path)])
  assert 'Logit-adjusted' not in capsys.readouterr().out  # Not recorded.
  for d, la in zip(dirs, (0.70, 0.74)):
    recs = records_of(d)
    name = next(n for n in sorted(os.listdir(d)) if n.startswith('gen_00'))
    recs[0]['history'] = {'acc.test.la.ema': la, 'acc.test.ema': 0.6}
    with open(os.path.join(d, name, 'generation.json'), 'w') as f:
      json.dump(recs[0], f)
  summarize.main([str(tmp_path)])
  rows = table_rows(capsys.readouterr().out, 'Logit-adjusted test accuracy')
  assert rows['FixMatch']['gamma=100'] == '72.0 (2.00)'


def test_picks_table_gives_picks_and_precision_per_class(tmp_path, capsys):
  dirs = [make_run(tmp_path, f, method='CReST') for f in (1, 2)]
  # Fold 2's generation 0 picked 30 of class 0 (21 correct) instead of 10
  # (7): mean 20 picked, precision (70 + 70) / 2 = 70.0.
  name = next(n for n in sorted(os.listdir(dirs[1])) if n.startswith('gen_00'))
  recs = records_of(dirs[1])
  recs[0]['picked_per_class'][0] = 30
  recs[0]['picked_correct_per_class'][0] = 21
  recs[0]['picked_correct_per_class'][1] = 10  # 100%: mean (70 + 100) / 2.
  with open(os.path.join(dirs[1], name, 'generation.json'), 'w') as f:
    json.dump(recs[0], f)
  make_run(tmp_path, 1, method='FixMatch')  # Picks nothing used: no table.
  summarize.main([str(tmp_path), '--picks'])
  text = capsys.readouterr().out
  assert text.count('Pseudo-labels picked per class') == 1
  rows = table_rows(text, 'Pseudo-labels picked per class, CReST')
  labeled = records_of(dirs[0])[0]['labeled_per_class']
  assert rows['0'] == {'labeled': str(labeled[0]), 'gen 0 picked': '20',
                       'gen 0 precision %': '70.0', 'gen 1 picked': '10',
                       'gen 1 precision %': '70.0'}
  assert rows['1']['gen 0 precision %'] == '85.0'
  assert 'gen 2 picked' not in text  # The last generation picks no more.
