"""ImageNet-127: grouping table, prepare script, memory-mapped loader,
pipeline gathering from a memory map, and two CReST generations on a tiny
generated set."""
import csv
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from crest import generations
from crest.config import Config
from data import downsampled_imagenet
from data import errors
from data import imagenet127
from data import pipeline
from data import registry as data_registry
from data import testing
from data.base import DataArgs
from scripts import prepare_imagenet127

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), 'shared', 'data', 'imagenet127')
GROUPS = imagenet127.read_groups()


def _labels(per_group, seed):
  """1-based ILSVRC labels: per_group[g] images of group g (each from a random
  member class), shuffled."""
  rng = np.random.default_rng(seed)
  members = [np.flatnonzero(GROUPS.of_label == g) for g in range(127)]
  labels = np.concatenate([rng.choice(members[g], n)
                           for g, n in enumerate(per_group)])
  return rng.permutation(labels)


# Train: group g has 1 + (g * 7) % 9 images (1..9, uneven), test 2 + g % 2.
TRAIN_PER_GROUP = 1 + (np.arange(127) * 7) % 9
TEST_PER_GROUP = 2 + np.arange(127) % 2


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  src = str(tmp_path_factory.mktemp('src'))
  root = str(tmp_path_factory.mktemp('ml_data'))
  train, test = _labels(TRAIN_PER_GROUP, 1), _labels(TEST_PER_GROUP, 2)
  testing.write_downsampled_imagenet(src, 32, train, test, num_files=10)
  out = prepare_imagenet127.prepare(src, root, chunk=7, log=lambda _: None)
  return src, root, out, train, test


def test_groups_table_matches_the_shared_source():
  assert GROUPS.of_label[0] == -1 and len(GROUPS.of_label) == 1001
  counts = np.bincount(GROUPS.of_label[1:], minlength=127)
  assert counts.min() == 1 and counts.max() == 218
  assert GROUPS.names[int(np.argmax(counts))] == 'mammal'
  if not os.path.isdir(SHARED):
    pytest.skip('no shared/ beside the repository')
  with open(os.path.join(SHARED, 'downsampled_label_to_127.tsv')) as f:
    rows = list(csv.DictReader(f, delimiter='\t'))
  assert [int(r['group_index']) for r in rows] == GROUPS.of_label[1:].tolist()
  with open(os.path.join(SHARED, 'groups_127.tsv')) as f:
    names = [r['name'] for r in csv.DictReader(f, delimiter='\t')]
  assert tuple(names) == GROUPS.names


def test_prepare_writes_ranked_labels_and_nhwc_images(prepared):
  src, root, out, train, test = prepared
  assert out == os.path.join(root, 'imagenet127', '32')
  images = np.load(os.path.join(out, 'train_images.npy'), mmap_mode='r')
  labels = np.load(os.path.join(out, 'train_labels.npy'))
  assert images.shape == (len(train), 32, 32, 3) and images.dtype == np.uint8
  # Pixels: the batch files' rows, in order, channel-major -> NHWC.
  rows = np.concatenate([downsampled_imagenet.read_file(
      os.path.join(src, f'train_data_batch_{i}'))[0] for i in range(1, 11)])
  np.testing.assert_array_equal(
      images, rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
  # Labels: group of each ILSVRC label, numbered by size (largest first,
  # ties by group index).
  rank = imagenet127.rank_labels(TRAIN_PER_GROUP)
  np.testing.assert_array_equal(labels, rank[GROUPS.of_label[train]])
  np.testing.assert_array_equal(
      np.load(os.path.join(out, 'test_labels.npy')),
      rank[GROUPS.of_label[test]])
  counts = np.bincount(labels, minlength=127)
  assert (np.diff(counts) <= 0).all() and counts[0] == 9 and counts[-1] == 1
  classes = imagenet127.read_classes(root, 32)
  assert classes['label'] == [str(i) for i in range(127)]
  assert [int(c) for c in classes['train_count']] == counts.tolist()
  g0 = int(classes['group_index'][0])
  assert rank[g0] == 0 and classes['group_name'][0] == GROUPS.names[g0]
  assert not [n for n in os.listdir(out) if n.endswith('.tmp')]


def test_npz_sources_give_the_same_files(prepared, tmp_path):
  src, _, out, train, test = prepared
  testing.write_downsampled_imagenet(str(tmp_path / 'src'), 32, train, test,
                                     num_files=10, npz=True)
  out2 = prepare_imagenet127.prepare(str(tmp_path / 'src'),
                                     str(tmp_path / 'root'), 32,
                                     log=lambda _: None)
  for name in imagenet127.FILES:
    np.testing.assert_array_equal(np.load(os.path.join(out, name)),
                                  np.load(os.path.join(out2, name)))


def test_loader_memory_maps_and_splits(prepared):
  _, root, out, train, test = prepared
  data = data_registry.load(DataArgs(dataset='imagenet127_32', ml_data=root,
                                     percent_labeled=0.5, fold=3))
  assert isinstance(data.train_images, np.memmap)
  assert isinstance(data.test_images, np.memmap)
  assert data.num_classes == 127 and data.image_shape == (32, 32, 3)
  assert len(data.test_labels) == len(test)
  counts = np.bincount(data.train_labels, minlength=127)
  np.testing.assert_allclose(data.gt_p_data, counts / counts.sum())
  # ceil(n_c / 2) labeled per class; the stream is the whole training set.
  lab = np.bincount(data.train_labels[data.labeled_positions], minlength=127)
  np.testing.assert_array_equal(lab, (counts + 1) // 2)
  assert len(data.labeled_positions) + len(data.unlabeled_positions) == len(
      train)
  np.testing.assert_array_equal(data.unlabeled_stream_positions,
                                np.arange(len(train)))


def test_balanced_test_set_keeps_the_first_images_of_each_class(prepared):
  _, root, out, _, _ = prepared
  data = data_registry.load(DataArgs(dataset='imagenet127_32', ml_data=root,
                                     imagenet127_test='balanced'))
  assert np.bincount(data.test_labels, minlength=127).tolist() == [2] * 127
  labels = np.load(os.path.join(out, 'test_labels.npy'))
  keep = np.sort(np.concatenate([np.flatnonzero(labels == c)[:2]
                                 for c in range(127)]))
  np.testing.assert_array_equal(data.test_labels, labels[keep])
  np.testing.assert_array_equal(
      data.test_images,
      np.load(os.path.join(out, 'test_images.npy'))[keep])


def test_settings_and_config_plumbing():
  cfg = Config(dataset='imagenet127_64', imagenet127_test='balanced')
  assert cfg.data_args().imagenet127_test == 'balanced'
  assert data_registry.num_classes('imagenet127_64') == 127
  with pytest.raises(errors.DataSettingError, match='imagenet127_test'):
    data_registry.validate(DataArgs(dataset='imagenet127_32',
                                    imagenet127_test='half'))


def test_missing_or_unranked_files_say_how_to_prepare(prepared, tmp_path):
  _, root, out, _, _ = prepared
  with pytest.raises(errors.DataError, match='prepare_imagenet127.py'):
    data_registry.load(DataArgs(dataset='imagenet127_64', ml_data=root))
  bad = tmp_path / 'imagenet127' / '32'
  bad.mkdir(parents=True)
  for name in os.listdir(out):
    os.symlink(os.path.join(out, name), bad / name)
  os.remove(bad / 'train_labels.npy')
  labels = np.load(os.path.join(out, 'train_labels.npy'))
  np.save(bad / 'train_labels.npy', 126 - labels)
  with pytest.raises(errors.DataError, match='largest'):
    data_registry.load(DataArgs(dataset='imagenet127_32',
                                ml_data=str(tmp_path)))


def test_unsafe_pickles_and_bad_sources_are_refused(tmp_path):

  class Evil:
    def __reduce__(self):
      return (os.system, ('true',))

  with open(tmp_path / 'train_data_batch_1', 'wb') as f:
    pickle.dump({'data': Evil(), 'labels': [1]}, f, protocol=2)
  with pytest.raises(errors.DataError, match='refusing'):
    downsampled_imagenet.read_file(str(tmp_path / 'train_data_batch_1'))
  with pytest.raises(errors.DataError, match='val_data'):
    downsampled_imagenet.find_files(str(tmp_path))
  # A group without training images: not the whole training set.
  labels = np.arange(1, 11)
  testing.write_downsampled_imagenet(str(tmp_path / 'part'), 8, labels,
                                     labels, num_files=2)
  with pytest.raises(errors.DataError, match='no training images'):
    prepare_imagenet127.prepare(str(tmp_path / 'part'), str(tmp_path / 'r'),
                                log=lambda _: None)
  out = subprocess.run(
      [sys.executable, 'scripts/prepare_imagenet127.py',
       f'--source={tmp_path}/none', f'--ml_data={tmp_path}'], cwd=ROOT,
      capture_output=True, text=True, timeout=60)
  assert out.returncode == 2 and 'not a directory' in out.stderr


def test_npy_header_is_fixed_size_and_readable(tmp_path):
  header = prepare_imagenet127.npy_header((10 ** 12, 64, 64, 3))
  assert len(header) == prepare_imagenet127.HEADER_BYTES
  writer = prepare_imagenet127.NpyWriter(str(tmp_path / 'x.npy'))
  parts = [np.full((n, 2, 2, 3), n, np.uint8) for n in (3, 1, 5)]
  for p in parts:
    writer.append(p)
  writer.close()
  np.testing.assert_array_equal(np.load(tmp_path / 'x.npy'),
                                np.concatenate(parts))


def test_pipeline_batches_from_a_memory_map_equal_in_memory(tmp_path):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (40, 32, 32, 3), np.uint8)
  np.save(tmp_path / 'x.npy', images)
  mapped = np.load(tmp_path / 'x.npy', mmap_mode='r')
  spec = pipeline.StreamSpec(batch_size=4, unlab_ratio=2, augment='dh',
                             weakaug='dh', strongaug='dhrac', num_weakaug=1,
                             num_strongaug=1, seed=5)
  labels = np.arange(40) % 3
  args = (np.arange(0, 40, 3), labels[::3], np.arange(40), labels, spec, 2, 3)
  got = list(pipeline.train_dataset(mapped, *args))
  want = list(pipeline.train_dataset(images, *args))
  assert len(got) == len(want) == 3
  for g, w in zip(got, want):
    for key in w:
      np.testing.assert_array_equal(g[key].numpy(), w[key].numpy())
  assert got[0]['x_l'].shape == (4, 32, 32, 3)


def test_two_generations_on_the_generated_set(prepared, tmp_path):
  _, root, _, _, _ = prepared
  cfg = Config(method='fixmatch', dataset='imagenet127_32', ml_data=root,
               net_arch='small', num_epoch=1, num_batch=2, num_generation=2,
               batch_size=8, unlab_ratio=2, percent_labeled=0.5,
               model_dir=str(tmp_path), threshold=0.5, eval_batch_size=128,
               imagenet127_test='balanced', progress=False, seed=1)
  data = data_registry.load(cfg.data_args())
  recs = generations.run(cfg, tf.distribute.MirroredStrategy(['/cpu:0']),
                         data)
  assert [r['generation'] for r in recs] == [0, 1]
  assert sum(recs[0]['unlabeled_predicted_per_class']) == len(
      data.unlabeled_positions)
  assert len(recs[1]['test_per_class_recall']) == 127
  assert recs[1]['num_pseudo_labeled'] == sum(recs[0]['picked_per_class'])


def test_sweep_dry_run_passes_the_data_ratio(prepared, tmp_path):
  _, root, _, _, _ = prepared
  env = dict(os.environ, DRY_RUN='1', SIZES='32', METHODS='crestplus',
             ML_DATA=root, MODEL_DIR=str(tmp_path), PYTHON=sys.executable)
  out = subprocess.run(['bash', 'scripts/sweep_imagenet127.sh'], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr
  ratio = repr(1 / 9)  # The generated set's N_min / N_max.
  assert f'--class_im_ratio={ratio}' in out.stdout
  assert '--dataset=imagenet127_32 --imagenet127_test=imbalanced' in out.stdout
  assert '--net_arch=ResNet50' in out.stdout and '--num_generation=6' in (
      out.stdout)
