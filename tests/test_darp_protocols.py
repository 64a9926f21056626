"""DARP protocols with an unlabeled distribution other than the labeled one
(consistent / uniform / reversed / middle / head_tail), N1 / M1 in the file
names, and the training settings that select them. A tiny generated CIFAR
archive in the official format, prepared in process (seconds)."""
import os

import numpy as np
import pytest

from crest import config as config_lib
from crest import run_dir
from crest.errors import ConfigError
from data import base
from data import cifar_archive
from data import errors
from data import layout
from data import registry
from data import splits
from data import testing
from scripts import prepare_cifar

PER_CLASS = 60
N1, M1, GAMMA = 20, 30, 10


def test_profiles_by_hand():
  # The long-tailed profile int(3000 * mu ** r), mu = 100 ** (-1/9).
  lt = [3000, 1798, 1078, 646, 387, 232, 139, 83, 50, 30]
  counts = lambda gu, shape='longtail': splits.darp_unlabeled_counts(
      3000, 100, gu, 10, shape).tolist()
  assert counts(None) == counts(100) == lt
  assert counts(1) == [3000] * 10
  assert counts(-100) == lt[::-1]
  # SimPro's "centric" / "off-centric" orders of the same counts.
  assert counts(None, 'middle') == [50, 139, 387, 1078, 3000, 1798, 646, 232,
                                    83, 30]
  assert counts(None, 'head_tail') == [1798, 646, 232, 83, 30, 50, 139, 387,
                                       1078, 3000]
  assert splits.profile_ranks(5, 'middle').tolist() == [4, 2, 0, 1, 3]
  assert splits.profile_ranks(5, 'head_tail').tolist() == [1, 3, 4, 2, 0]
  name = splits.unlabeled_distribution
  assert [name(100, None), name(100, 1), name(100, -100), name(100, None,
          'middle'), name(100, 50), name(100, -50), name(100, 50,
          'head_tail')] == ['consistent', 'uniform', 'reversed', 'middle',
                            'gamma_u=50', 'reversed, gamma_u=50',
                            'head_tail, gamma_u=50']
  tag = layout.darp_unlabeled_tag
  assert [tag(100), tag(100, 100.0), tag(100, 1), tag(100, -100),
          tag(100, None, 'middle')] == ['', '', 'u1', 'u-100', 'u100-middle']


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  d = tmp_path_factory.mktemp('darp')
  arrays = testing.random_cifar(10, PER_CLASS, 2, seed=4)
  archive = d / 'cifar-10-python.tar.gz'
  testing.write_cifar_archive(str(archive), 10, *arrays)
  lines = []
  profiles = prepare_cifar.parse_profiles('consistent,uniform,reversed,'
                                          'middle,head_tail:5')
  written = prepare_cifar.prepare(
      cifar_archive.read_archive(str(archive)), str(d / 'ml'), ratios=[],
      gammas=[GAMMA], darp_n1=N1, darp_m1=M1, balanced=False,
      log=lines.append, unlabeled=profiles)
  return dict(arrays=arrays, ml=str(d / 'ml'), lines=lines, written=written,
              archive=str(archive))


PROFILES = [(None, 'longtail', 'consistent'), (1.0, 'longtail', 'uniform'),
            (-10.0, 'longtail', 'reversed'), (None, 'middle', 'middle'),
            (5.0, 'head_tail', 'head_tail, gamma_u=5')]


def test_files_and_printed_counts(prepared):
  names = sorted(os.path.basename(p) for p in prepared['written'])
  stem = f'cifar10-{GAMMA}-n{N1}-m{M1}-train'
  assert names == sorted([
      f'{stem}-labeled.tfrecords', f'{stem}-unlabeled.tfrecords',
      f'{stem}-unlabeled-u1.tfrecords', f'{stem}-unlabeled-u-10.tfrecords',
      f'{stem}-unlabeled-u10-middle.tfrecords',
      f'{stem}-unlabeled-u5-head_tail.tfrecords', 'cifar10-test.tfrecords'])
  text = '\n'.join(prepared['lines'])
  for gamma_u, shape, name in PROFILES:
    counts = splits.darp_unlabeled_counts(M1, GAMMA, gamma_u, 10, shape)
    assert f'per class {counts.tolist()}' in text, name
    assert f'unlabeled {name})' in text


@pytest.mark.parametrize('gamma_u,shape,name', PROFILES)
def test_each_profile_loads_with_its_counts_and_images(prepared, gamma_u,
                                                       shape, name):
  tr, ty, _, _ = prepared['arrays']
  d = registry.load(base.DataArgs(
      'cifar10ltdarp', ml_data=prepared['ml'], class_im_ratio=GAMMA,
      darp_n1=N1, darp_m1=M1, darp_gamma_u=gamma_u,
      darp_unlabeled_shape=shape))
  lab = splits.darp_counts(N1, GAMMA, 10)
  unl = splits.darp_unlabeled_counts(M1, GAMMA, gamma_u, 10, shape)
  got_lab = d.train_labels[d.labeled_positions]
  got_unl = d.train_labels[d.unlabeled_positions]
  np.testing.assert_array_equal(np.bincount(got_lab, minlength=10), lab)
  np.testing.assert_array_equal(np.bincount(got_unl, minlength=10), unl)
  for c in range(10):  # The next images of each class after the labeled.
    pos = np.flatnonzero(ty == c)
    np.testing.assert_array_equal(
        d.train_images[d.labeled_positions][got_lab == c], tr[pos[:lab[c]]])
    np.testing.assert_array_equal(
        d.train_images[d.unlabeled_positions][got_unl == c],
        tr[pos[lab[c]:lab[c] + unl[c]]])
  # CReST's prior stays the labeled one, whatever the unlabeled profile.
  np.testing.assert_allclose(d.gt_p_data, splits.darp_prior(GAMMA, 10))
  assert registry.unlabeled_distribution('cifar10ltdarp', GAMMA, gamma_u,
                                         shape) == name


def test_deterministic_and_missing_profile_message(prepared, tmp_path):
  again = prepare_cifar.prepare(
      cifar_archive.read_archive(prepared['archive']), str(tmp_path),
      ratios=[], gammas=[GAMMA], darp_n1=N1, darp_m1=M1, balanced=False,
      log=lambda _: None, unlabeled=['reversed'])
  for path in again:
    twin = os.path.join(prepared['ml'], os.path.relpath(path, tmp_path))
    with open(path, 'rb') as a, open(twin, 'rb') as b:
      assert a.read() == b.read(), path
  with pytest.raises(errors.DataError, match=r'--darp_unlabeled=1\b'):
    registry.load(base.DataArgs(
        'cifar10ltdarp', ml_data=str(tmp_path), class_im_ratio=GAMMA,
        darp_n1=N1, darp_m1=M1, darp_gamma_u=1.0))


def test_settings_are_checked():
  ok = dict(dataset='cifar10ltdarp', class_im_ratio=100)
  for bad, match in ((dict(darp_gamma_u=0.5), r'\|gamma_u\| >= 1'),
                     (dict(darp_gamma_u=float('nan')), 'gamma_u'),
                     (dict(darp_unlabeled_shape='ring'), 'middle, head_tail'),
                     (dict(darp_gamma_u=-100, darp_unlabeled_shape='middle'),
                      'reversed'),
                     (dict(dataset='cifar10lt', class_im_ratio=0.01,
                           darp_gamma_u=1), 'DARP datasets')):
    with pytest.raises(errors.DataSettingError, match=match):
      registry.validate(base.DataArgs(**dict(ok, **bad)))
  with pytest.raises(ConfigError, match='darp_unlabeled'):
    prepare_cifar.parse_profiles('consistent,sideways')
  with pytest.raises(ConfigError, match='darp_unlabeled'):
    prepare_cifar.parse_profiles('middle:-5')
  assert prepare_cifar.profile_settings('reversed', 150) == (-150.0,
                                                             'longtail')
  assert prepare_cifar.profile_settings('-50', 150) == (-50.0, 'longtail')
  # 20 + 50 images of class 0 needed, 60 there.
  with pytest.raises(ConfigError, match=r'class 0 needs N1 \+ M1'):
    prepare_cifar.prepare(
        cifar_archive.CifarArchive(10, *testing.random_cifar(10, 60, 1)),
        '/nonexistent', ratios=[], gammas=[10], darp_n1=20, darp_m1=50,
        balanced=False, unlabeled=['uniform'])


def test_config_run_dir_and_legacy_names(tmp_path):
  cfg = config_lib.Config(dataset='cifar10ltdarp', class_im_ratio=150,
                          model_dir=str(tmp_path))
  names = {u: run_dir.run_name(cfg.replace(darp_gamma_u=u)).split('/')[0]
           for u in (None, 150.0, 1.0, -150.0)}
  assert names[None] == names[150.0] == 'cifar10ltdarp_im150_n25_fold1'
  assert names[1.0].endswith('_u1') and names[-150.0].endswith('_u-150')
  # N1 / M1 other than the defaults name the run too.
  c100 = cfg.replace(dataset='cifar100ltdarp', class_im_ratio=10)
  assert run_dir.run_name(c100.replace(darp_n1=150)) == run_dir.run_name(c100)
  assert run_dir.run_name(c100.replace(darp_n1=50, darp_m1=400)).split(
      '/')[0] == 'cifar100ltdarp_im10_n25_fold1_n50-m400'
  assert run_dir.run_name(cfg.replace(
      dataset='stl10lt', class_im_ratio=10, darp_n1=100, input_shape=(
          96, 96, 3))).split('/')[0] == 'stl10lt_im10_n25_fold1_n100'
  args = cfg.replace(darp_gamma_u=-150.0,
                     darp_unlabeled_shape='longtail').data_args()
  assert (args.darp_gamma_u, args.darp_unlabeled_shape) == (-150.0,
                                                             'longtail')
  # Files made before N1 / M1 were part of the names still load.
  paths = layout.darp_paths(str(tmp_path), 10, 10)
  lab = np.repeat(np.arange(10), splits.darp_counts(N1, 10, 10))
  unl = np.repeat(np.arange(10), splits.darp_counts(M1, 10, 10))
  testing.write_raw_records(paths['labeled'], np.zeros((len(lab), 32, 32, 3),
                                                       np.uint8), lab)
  testing.write_raw_records(paths['unlabeled'], np.zeros(
      (len(unl), 32, 32, 3), np.uint8), unl)
  testing.write_raw_records(paths['test'], np.zeros((10, 32, 32, 3),
                                                    np.uint8), np.arange(10))
  d = registry.load(base.DataArgs('cifar10ltdarp', ml_data=str(tmp_path),
                                  class_im_ratio=10, darp_n1=N1, darp_m1=M1))
  assert len(d.labeled_positions) == len(lab)


def _dry_run(script, tmp_path, **env):
  import re
  import subprocess
  from conftest import ROOT
  r = subprocess.run(['bash', str(ROOT / 'scripts' / script)],
                     env=dict(os.environ, DRY_RUN='1',
                              MODEL_DIR=str(tmp_path / 'runs'), **env),
                     capture_output=True, text=True, timeout=300)
  runs = {m.group(1): m.group(2).split() for m in re.finditer(
      r'^would run: (\S+): \S+ -m train_and_eval_loop (.*)$', r.stdout, re.M)}
  return r, runs


def _flag(args, name):
  values = [a.split('=', 1)[1] for a in args if a.startswith(f'--{name}=')]
  return values[-1] if values else None


def test_sweep_darp_grid(tmp_path):
  r, runs = _dry_run('sweep_darp.sh', tmp_path, FOLDS='1 2', GAMMAS='150',
                     UNLABELED='consistent uniform reversed',
                     METHODS='fixmatch crestplus')
  assert r.returncode == 0, r.stderr
  assert sorted(runs) == sorted(
      f'{m}/ratio150{u}/fold{f}' for m in ('fixmatch', 'crestplus')
      for u in ('', '_uniform', '_reversed') for f in (1, 2))
  for name, args in runs.items():
    assert _flag(args, 'dataset') == 'cifar10ltdarp'
    assert _flag(args, 'class_im_ratio') == '150'
    assert _flag(args, 'seed') == name[-1]  # DARP: the fold seeds training.
    assert _flag(args, 'darp_gamma_u') == (
        '1' if 'uniform' in name else '-150' if 'reversed' in name else None)
    assert (_flag(args, 'how_dalign') == 'adaptive') == (
        name.startswith('crestplus'))
  assert 'Sweep of 12 run(s)' in r.stdout
  assert not (tmp_path / 'runs').exists()
  r, _ = _dry_run('sweep_darp.sh', tmp_path, RATIOS='150_sideways')
  assert r.returncode == 2 and "bad entry '150_sideways'" in r.stderr


def test_sweep_mixmatch_unlabeled_distributions(tmp_path):
  r, runs = _dry_run('sweep_mixmatch.sh', tmp_path, FOLDS='1', RATIOS='100',
                     UNLABELED='consistent middle', METHODS='mixmatch')
  assert r.returncode == 0, r.stderr
  assert sorted(runs) == ['mixmatch/ratio100/fold1',
                          'mixmatch/ratio100_middle/fold1']
  args = runs['mixmatch/ratio100_middle/fold1']
  assert _flag(args, 'darp_unlabeled_shape') == 'middle'
  assert _flag(args, 'method') == 'mixmatch'
  assert _flag(runs['mixmatch/ratio100/fold1'], 'darp_unlabeled_shape') is None
