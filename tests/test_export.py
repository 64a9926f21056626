"""scripts/export.py and scripts/predict.py on one tiny finished run: the
exported model, reloaded in a fresh process, gives the run's own EMA test
logits; predict.py's CSV; clear errors (exit 2) that leave no output."""
import csv
import errno
import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from augment import convert
from crest import export
from crest import generations
from crest import trainer as trainer_lib
from crest.config import Config
from data import registry as data_registry
from scripts import export as export_cli
from scripts import predict as predict_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPORT = os.path.join(ROOT, 'scripts', 'export.py')
PREDICT = os.path.join(ROOT, 'scripts', 'predict.py')


def _run(script, *args, cwd=None):
  return subprocess.run([sys.executable, script, *map(str, args)],
                        capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  """(run_dir, data, {generation dir name: the trainer's final EMA test
  logits float32 [T, K]})."""
  cfg = Config(method='fixmatch', dataset='synthetic_tiny', net_arch='small',
               num_epoch=2, num_batch=3, num_generation=2, batch_size=8,
               unlab_ratio=2, percent_labeled=0.3, ema_decay=0.5,
               threshold=0.5, eval_batch_size=128, progress=False, seed=3,
               model_dir=str(tmp_path_factory.mktemp('run')))
  data = data_registry.load(cfg.data_args())
  final = {}
  original = trainer_lib.GenerationTrainer.ema_test_logits

  def recorded(self):
    logits = original(self)
    final[os.path.basename(self.work_dir)] = np.array(logits)
    return logits

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(trainer_lib.GenerationTrainer, 'ema_test_logits', recorded)
    generations.run(cfg, tf.distribute.MirroredStrategy(['/cpu:0']), data)
  (config,) = glob.glob(os.path.join(cfg.model_dir, '*', '*', '*',
                                     'config.json'))
  return os.path.dirname(config), data, final


@pytest.fixture(scope='module')
def exported(run, tmp_path_factory):
  run_dir, _, _ = run
  out = tmp_path_factory.mktemp('export') / 'model'
  assert export_cli.main([run_dir, '--out', str(out)]) == 0
  return out


_CHILD = r'''
import json, sys
import numpy as np
import tensorflow as tf
x = np.load(sys.argv[2])['x']
sig = tf.saved_model.load(sys.argv[1] + '/saved_model').signatures[
    'serving_default']
out = {k: v.numpy() for k, v in sig(images=tf.constant(x)).items()}
project = sorted(m for m in ('crest', 'networks', 'augment', 'data')
                 if m in sys.modules)
sys.path.insert(0, sys.argv[4])
import keras
import networks.registry
model = keras.saving.load_model(sys.argv[1] + '/model.keras')
out['keras_logits'] = np.asarray(model(x, training=False))
np.savez(sys.argv[3], project=np.array(project, dtype=str), **out)
'''


def test_fresh_process_gives_the_runs_ema_logits(run, exported, tmp_path):
  _, data, final = run
  x = data.test_images
  np.savez(tmp_path / 'x.npz', x=x)
  r = subprocess.run([sys.executable, '-c', _CHILD, str(exported),
                      str(tmp_path / 'x.npz'), str(tmp_path / 'out.npz'),
                      ROOT], capture_output=True, text=True, cwd=tmp_path,
                     timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  out = np.load(tmp_path / 'out.npz')
  assert out['project'].size == 0  # The SavedModel needs TensorFlow only.
  ref = final['gen_01']  # The last generation, exported by default.
  assert out['logits'].shape == ref.shape == (len(x), 10)
  np.testing.assert_allclose(out['logits'], ref, rtol=0, atol=1e-5)
  np.testing.assert_allclose(out['keras_logits'], ref, rtol=0, atol=1e-5)
  np.testing.assert_allclose(out['probabilities'],
                             tf.nn.softmax(ref).numpy(), rtol=0, atol=1e-5)
  np.testing.assert_array_equal(out['class_ids'], out['logits'].argmax(1))
  # The run's own record of these predictions.
  record = json.load(open(os.path.join(run[0], 'gen_01', 'generation.json')))
  confusion = np.zeros((10, 10), int)
  np.add.at(confusion, (data.test_labels, out['class_ids']), 1)
  assert confusion.tolist() == record['test_confusion_matrix']


def test_export_files(run, exported):
  labels = json.load(open(exported / 'labels.json'))
  assert labels['class_names'] == [str(i) for i in range(10)]
  assert labels['named'] is False
  meta = json.load(open(exported / 'export.json'))
  assert (meta['generation'], meta['step'], meta['input_shape']) == (
      1, 6, [32, 32, 3])
  assert meta['checkpoint'].endswith(os.path.join('gen_01', 'ckpt', 'ckpt-6'))
  assert sorted(os.listdir(exported.parent)) == ['model']  # No temporaries.


def test_overwrite_replaces_an_earlier_export(run, exported, tmp_path):
  shutil.copytree(exported, tmp_path / 'model')
  assert export_cli.main([run[0], '--generation', '0', '--out',
                          str(tmp_path / 'model'), '--overwrite']) == 0
  meta = json.load(open(tmp_path / 'model' / 'export.json'))
  assert meta['generation'] == 0 and meta['checkpoint'].endswith(
      os.path.join('gen_00', 'ckpt', 'ckpt-6'))
  assert os.listdir(tmp_path) == ['model']


def _read_csv(path):
  with open(path, newline='') as f:
    rows = list(csv.reader(f))
  probs = np.array([[float(v) for v in row[2:]] for row in rows[1:]])
  return rows[0], [row[0] for row in rows[1:]], np.array(
      [int(row[1]) for row in rows[1:]]), probs


def _predict(*args):
  return predict_cli.main([str(a) for a in args])


def test_predict_npz_in_dataset_format(run, exported, tmp_path):
  _, data, final = run
  np.savez(tmp_path / 'own.npz', x_train=data.train_images[:4],
           y_train=np.arange(4), x_test=data.test_images,
           y_test=data.test_labels)
  assert _predict(exported, '--images', tmp_path / 'own.npz', '--out',
                  tmp_path / 'p.csv', '--batch_size', 32) == 0
  header, ids, classes, probs = _read_csv(tmp_path / 'p.csv')
  assert header == ['image', 'class_id'] + [str(i) for i in range(10)]
  assert ids == [str(i) for i in range(len(data.test_images))]
  np.testing.assert_array_equal(classes, probs.argmax(1))
  np.testing.assert_array_equal(classes, final['gen_01'].argmax(1))
  np.testing.assert_allclose(probs, tf.nn.softmax(final['gen_01']).numpy(),
                             rtol=0, atol=1e-5)


def test_predict_png_directory_with_resize(run, exported, tmp_path, capsys):
  from PIL import Image
  _, data, final = run
  images = tmp_path / 'images'
  images.mkdir()
  for i in range(4):
    Image.fromarray(data.test_images[i]).save(images / f'b{i}.png')
  small = data.test_images[4, ::2, ::2]
  Image.fromarray(small).save(images / 'a_small.png')
  (images / 'notes.txt').write_text('not an image')
  assert _predict(exported / 'model.keras', '--images', images, '--out',
                  tmp_path / 'p.csv', '--resize', '32,32') == 0
  header, ids, classes, probs = _read_csv(tmp_path / 'p.csv')
  assert header == ['image', 'class_id'] + [str(i) for i in range(10)]
  assert ids == ['a_small.png', 'b0.png', 'b1.png', 'b2.png', 'b3.png']
  np.testing.assert_array_equal(classes, probs.argmax(1))
  np.testing.assert_allclose(
      probs[1:], tf.nn.softmax(final['gen_01'][:4]).numpy(), rtol=0,
      atol=1e-5)
  resized = np.asarray(Image.fromarray(small).resize((32, 32),
                                                     Image.BILINEAR))
  sig = tf.saved_model.load(str(exported / 'saved_model')).signatures[
      'serving_default']
  expected = sig(images=tf.constant(resized[None]))['probabilities'].numpy()
  np.testing.assert_allclose(probs[:1], expected, rtol=0, atol=1e-5)
  # Without --resize the small image is an error, and no CSV is written.
  capsys.readouterr()
  assert _predict(exported, '--images', images, '--out',
                  tmp_path / 'q.csv') == 2
  assert 'a_small.png is 16x16; the model takes 32x32: pass --resize 32,32' \
      in capsys.readouterr().err
  assert not os.path.exists(tmp_path / 'q.csv')


@pytest.mark.parametrize('case,message', [
    ('missing', 'does not exist'),
    ('model_dir', 'Run directories below it'),
    ('config', 'config.json is damaged'),
    ('record', 'Generation 1 is damaged'),
    ('unfinished', 'has not finished'),
    ('no_generation', 'Generation 7 of'),
    ('no_checkpoint', 'final checkpoint of generation 1'),
    ('out_exists', 'exists; choose another directory'),
    ('out_not_export', 'refusing to replace it'),
])
def test_export_errors(run, tmp_path, case, message):
  run_dir = tmp_path / 'models' / 'a' / 'b' / 'run'
  shutil.copytree(run[0], run_dir)
  gen1 = run_dir / 'gen_01'
  out = tmp_path / 'out' / 'model'
  args = [run_dir]
  if case == 'missing':
    args = [tmp_path / 'nothing']
  elif case == 'model_dir':
    args = [tmp_path / 'models']
  elif case == 'config':
    (run_dir / 'config.json').write_text('{"seed": ')
  elif case == 'record':
    (gen1 / 'generation.json').write_text('[]')
  elif case == 'unfinished':
    (gen1 / 'generation.json').unlink()
    args += ['--generation', 1]
  elif case == 'no_generation':
    args += ['--generation', 7]
  elif case == 'no_checkpoint':
    for p in glob.glob(str(gen1 / 'ckpt' / 'ckpt-6.*')):
      os.remove(p)
  elif case in ('out_exists', 'out_not_export'):
    out.mkdir(parents=True)
    args += ['--overwrite'] if case == 'out_not_export' else []
  r = _run(EXPORT, *args, '--out', out)
  assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
  assert message in r.stderr and 'Traceback' not in r.stderr, r.stderr
  if case == 'model_dir':
    assert str(run_dir) in r.stderr
  leftovers = os.listdir(out.parent) if out.parent.exists() else []
  assert leftovers == (['model'] if case.startswith('out_') else []), leftovers


def test_export_corrupt_checkpoint(run, tmp_path, capsys):
  shutil.copytree(run[0], tmp_path / 'run')
  (data_file,) = glob.glob(str(tmp_path / 'run' / 'gen_01' / 'ckpt' /
                               'ckpt-6.data*'))
  with open(data_file, 'r+b') as f:
    f.truncate(100)
  out = tmp_path / 'out' / 'model'
  assert export_cli.main([str(tmp_path / 'run'), '--out', str(out)]) == 2
  assert 'is unreadable or does not hold the network' in (
      capsys.readouterr().err)
  assert os.listdir(out.parent) == []


def test_unfinished_last_generation_exports_the_one_before(run, tmp_path):
  shutil.copytree(run[0], tmp_path / 'run')
  os.remove(tmp_path / 'run' / 'gen_01' / 'generation.json')
  source = export.locate(str(tmp_path / 'run'))
  assert (source.generation, os.path.basename(source.gen_dir)) == (
      0, 'gen_00')
  assert source.checkpoint.endswith('ckpt-6') and source.num_classes == 10


def test_failed_write_leaves_no_output(run, tmp_path, monkeypatch):
  def full(path, obj):
    raise OSError(errno.ENOSPC, 'No space left on device', path)
  monkeypatch.setattr(export, '_write_json', full)
  with pytest.raises(export.ExportError, match='the disk is full'):
    export.write(export.locate(run[0]), str(tmp_path / 'model'))
  assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('args,message', [
    (['--images', 'nothing'], 'does not exist'),
    (['--images', 'empty'], 'holds no .png/.jpg/.jpeg files'),
    (['--images', 'keys.npz'], 'no `images` or `x_test` array'),
    (['--images', 'floats.npz'], 'expected uint8'),
    (['--images', 'keys.npz', '--resize', '32'], 'give H,W'),
])
def test_predict_bad_images(exported, tmp_path, args, message):
  (tmp_path / 'empty').mkdir()
  np.savez(tmp_path / 'keys.npz', x_train=np.zeros([2, 4, 4], np.uint8))
  np.savez(tmp_path / 'floats.npz', images=np.zeros([2, 32, 32, 3]))
  r = _run(PREDICT, exported, *args, '--out', tmp_path / 'p.csv',
           cwd=tmp_path)
  assert r.returncode == 2 and message in r.stderr, r.stderr[-2000:]
  assert not os.path.exists(tmp_path / 'p.csv')


def test_predict_bad_model(tmp_path):
  r = _run(PREDICT, tmp_path, '--images', tmp_path, '--out', 'p.csv')
  assert r.returncode == 2 and 'is not an export' in r.stderr, r.stderr


def test_pixel_scaling_is_trainings_bit_for_bit():
  pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
  import keras
  layer = keras.layers.Rescaling(export.PIXEL_SCALE, offset=export.PIXEL_OFFSET,
                                 dtype='float32')
  np.testing.assert_array_equal(np.asarray(layer(pixels)),
                                convert.to_float(pixels).numpy())


def test_class_names():
  cfg = Config(dataset='fashionmnistlt')
  assert export.class_names(cfg, 10) == (list(export.FASHION_MNIST), True)
  assert export.class_names(Config(dataset='cifar10lt'), 10)[0][:2] == [
      'airplane', 'automobile']
  names, named = export.class_names(Config(dataset='cifar100'), 100)
  assert named and names[:3] == ['apple', 'aquarium_fish', 'baby']
  assert names[-1] == 'worm' and len(set(names)) == 100
  assert export.class_names(Config(dataset='stl10lt'), 10)[0][2] == 'car'
  assert export.class_names(Config(dataset='npz'), 3) == (['0', '1', '2'],
                                                          False)
  assert export.class_names(cfg, 4) == (['0', '1', '2', '3'], False)


def test_lean_block_exports_exactly(tmp_path):
  """The lean (custom-gradient) WRN block of the README's network in a
  SavedModel gives the block network's own logits on training's scaling
  (random weights and batch-norm statistics)."""
  import keras
  from networks import preact_block
  inputs = keras.Input((8, 8, 3))
  x = preact_block.PreActBlock(8, stride=2, activate_before_residual=True)(
      inputs)
  x = preact_block.PreActBlock(8)(x)
  net = keras.Model(inputs, keras.layers.Dense(3)(
      keras.layers.GlobalAveragePooling2D()(x)))
  rng = np.random.RandomState(0)
  for v in net.non_trainable_variables:
    v.assign(rng.uniform(0.5, 1.5, v.shape).astype(np.float32))
  export._write_saved_model(export.serving_model(net, (8, 8, 3)), [8, 8, 3],
                            str(tmp_path / 'sm'))
  x = rng.randint(0, 256, (4, 8, 8, 3)).astype(np.uint8)
  sig = tf.saved_model.load(str(tmp_path / 'sm')).signatures[
      'serving_default']
  np.testing.assert_allclose(
      sig(images=tf.constant(x))['logits'].numpy(),
      net(convert.to_float(x), training=False).numpy(), rtol=0, atol=1e-5)
