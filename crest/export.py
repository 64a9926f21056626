"""A finished generation's EMA model as files others can load
(`scripts/export.py`; `scripts/predict.py` runs them).

  OUT/
    saved_model/     SavedModel; signature `serving_default`: images uint8
                     [B, H, W, C] -> logits, probabilities float32 [B, K],
                     class_ids int64 [B]; needs TensorFlow only
    model.keras      Keras model uint8 [B, H, W, C] -> logits float32 [B, K]
                     (loading it needs this project's `networks` imported:
                     its layers are registered there)
    labels.json      {'class_names': K strings, 'named': bool, ...}
    export.json      where it came from (run, generation, step, checkpoint)

Both models scale pixels as training does ((2 / 255) p - 1, float32: a
Keras `Rescaling` layer, equal to `augment.convert.to_float`) before the
EMA network, in inference mode, under the run's dtype policy. (With
--mixed_precision the whole network, as trained and as in the SavedModel,
reads its batch-norm statistics in bfloat16 / float16 under Keras's
autocast; a reloaded model.keras reads them in float32, so its logits
differ by bfloat16 rounding, ~5e-4.) OUT is written into a temporary
sibling directory renamed at the end: an OUT that exists is complete.

Locating the run (`locate`) and the class names need no TensorFlow.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import shutil
import tempfile
from typing import Any, Dict, List, Optional, Tuple

from crest import disk
from crest import record_checks
from crest import run_dir as run_dir_lib
from crest.config import Config
from crest.errors import UserError

SAVED_MODEL_DIR = 'saved_model'
KERAS_FILE = 'model.keras'
LABELS_FILE = 'labels.json'
EXPORT_FILE = 'export.json'
PIXEL_SCALE, PIXEL_OFFSET = 2.0 / 255.0, -1.0  # augment.convert.to_float.

CIFAR10 = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog',
           'horse', 'ship', 'truck')
FASHION_MNIST = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
                 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot')
CIFAR100 = tuple("""
apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy
bridge bus butterfly camel can castle caterpillar cattle chair chimpanzee clock
cloud cockroach couch crab crocodile cup dinosaur dolphin elephant flatfish
forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion
lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange
orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine
possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper
snail snake spider squirrel streetcar sunflower sweet_pepper table tank
telephone television tiger tractor train trout tulip turtle wardrobe whale
willow_tree wolf woman worm""".split())
_NAMES = {'cifar10': CIFAR10, 'cifar10lt': CIFAR10, 'cifar10ltdarp': CIFAR10,
          'cifar100': CIFAR100, 'cifar100lt': CIFAR100,
          'cifar100ltdarp': CIFAR100, 'fashionmnistlt': FASHION_MNIST}


class ExportError(UserError):
  """The run directory, generation or output cannot be exported from/to."""


@dataclasses.dataclass(frozen=True)
class Source:
  """A finished generation to export."""
  run_dir: str
  cfg: Config
  generation: int
  gen_dir: str
  record: Dict[str, Any]
  num_classes: int
  checkpoint: str  # The final checkpoint's prefix (ckpt/ckpt-<steps>).


def _read_config(run_dir: str) -> Config:
  path = os.path.join(run_dir, run_dir_lib.CONFIG_FILE)
  if not os.path.isfile(path):
    below = sorted(os.path.dirname(p) for d in range(1, 4) for p in glob.glob(
        os.path.join(run_dir, *['*'] * d, run_dir_lib.CONFIG_FILE)))[:5]
    hint = (' Run directories below it: ' + ', '.join(below) if below else
            ' A run directory is MODEL_DIR/<data>/<model>/<run>, the one '
            'holding config.json.')
    raise ExportError(f'{run_dir} is not a run directory: it has no '
                      f'{run_dir_lib.CONFIG_FILE}.{hint}')
  try:
    return Config.from_dict(run_dir_lib.read_config(run_dir))
  except (OSError, ValueError, TypeError, AttributeError, UserError) as e:
    raise ExportError(
        f'{path} is damaged ({type(e).__name__}: {str(e)[:200]}); the run '
        'cannot be rebuilt from it. Export another run, or rerun the '
        'training into a fresh --model_dir.') from None


def _finished(run_dir: str) -> Tuple[Dict[int, str], Dict[int, str]]:
  """(generation -> directory with generation.json, generation -> every
  generation directory)."""
  finished, present = {}, {}
  for name in sorted(os.listdir(run_dir)):
    g = run_dir_lib.parse_generation_dir(name)
    if g is None or not os.path.isdir(os.path.join(run_dir, name)):
      continue
    if g in present:
      raise ExportError(f'{run_dir} holds two directories of generation {g} '
                        f'({present[g]}, {name}); move one away.')
    present[g] = name
    if os.path.exists(os.path.join(run_dir, name, run_dir_lib.RECORD_FILE)):
      finished[g] = name
  return finished, present


def locate(run_dir: str, generation: Optional[int] = None) -> Source:
  """The last finished generation of a run (or `generation`), checked.

  Raises:
    ExportError: a missing or damaged run directory, config or record, a
      generation that does not exist or has not finished, a missing final
      checkpoint.
  """
  run_dir = os.path.abspath(run_dir)
  if not os.path.exists(run_dir):
    raise ExportError(f'Run directory {run_dir} does not exist; give the '
                      'directory holding config.json (MODEL_DIR/<data>/'
                      '<model>/<run>).')
  if not os.path.isdir(run_dir):
    raise ExportError(f'{run_dir} is a file, not a run directory.')
  cfg = _read_config(run_dir)
  finished, present = _finished(run_dir)
  done = ', '.join(map(str, sorted(finished))) or 'none'
  if generation is None:
    if not finished:
      raise ExportError(f'{run_dir} has no finished generation yet (none '
                        f'has {run_dir_lib.RECORD_FILE}); wait for '
                        'generation 0 to finish.')
    generation = max(finished)
  elif generation not in finished:
    what = (f'has not finished (no {run_dir_lib.RECORD_FILE} in '
            f'{present[generation]})' if generation in present else
            'does not exist')
    raise ExportError(f'Generation {generation} of {run_dir} {what}; '
                      f'finished generations: {done}.')
  gen_dir = os.path.join(run_dir, finished[generation])
  try:
    record = record_checks.read_record(gen_dir)
    k = len(record['test_per_class_recall'])
    record_checks.read_generation(gen_dir, k)
  except record_checks.DamagedRecord as e:
    raise ExportError(f'Generation {generation} is damaged: {e}. Rerun the '
                      'training to redo it, or export another --generation '
                      f'(finished: {done}).') from None
  steps = cfg.steps_per_generation
  prefix = os.path.join(gen_dir, 'ckpt', f'ckpt-{steps}')
  if not os.path.isfile(prefix + '.index'):
    have = sorted(os.path.basename(p)[:-len('.index')] for p in
                  glob.glob(os.path.join(gen_dir, 'ckpt', 'ckpt-*.index')))
    raise ExportError(
        f'The final checkpoint of generation {generation} ({prefix}, step '
        f'{steps} = num_epoch x num_batch) is missing; found: '
        f'{", ".join(have) or "none"}. Rerun the training to redo it.')
  return Source(run_dir, cfg, generation, gen_dir, record, k, prefix)


def class_names(cfg: Config, num_classes: int) -> Tuple[List[str], bool]:
  """(K class names, whether they are names rather than '0'..'K-1')."""
  names = _NAMES.get(cfg.dataset)
  if cfg.dataset == 'stl10lt':
    from data import stl10  # pylint: disable=g-import-not-at-top
    names = stl10.CLASSES
  elif cfg.dataset.startswith('imagenet127_'):
    from data import imagenet127  # pylint: disable=g-import-not-at-top
    try:  # The prepared files' label order (by training-set size).
      names = imagenet127.read_classes(
          cfg.ml_data, int(cfg.dataset.rsplit('_', 1)[1]))['group_name']
    except (OSError, KeyError, ValueError):
      names = None
  if names is not None and len(names) == num_classes:
    return list(names), True
  return [str(i) for i in range(num_classes)], False


def restore_ema(source: Source):
  """The generation's EMA network from its final checkpoint.

  Returns:
    keras.Model: float32 images [B, H, W, C] in [-1, 1] -> logits [B, K],
    under the run's dtype policy (batch norm unsynchronised: inference
    needs no replicas).

  Raises:
    ExportError: the checkpoint is unreadable or holds another network.
  """
  # pylint: disable=g-import-not-at-top
  import keras
  import tensorflow as tf
  from crest import models
  from networks import registry as networks
  # pylint: enable=g-import-not-at-top
  cfg = source.cfg
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy(models.dtype_policy(cfg))
  try:
    ema = networks.build(
        cfg.net_arch, num_classes=source.num_classes,
        input_shape=tuple(cfg.input_shape), width=cfg.net_width,
        activation=cfg.activation, bn_sync=False, head_arch=cfg.head_arch,
        head_mlp_dims=tuple(cfg.head_mlp_dims), impl=cfg.net_impl,
        name='ema')
  finally:
    keras.config.set_dtype_policy(previous)
  try:
    status = tf.train.Checkpoint(ema=ema).restore(source.checkpoint)
    status.expect_partial()
    status.assert_existing_objects_matched()
  except (tf.errors.OpError, ValueError, AssertionError, IndexError) as e:
    raise ExportError(
        f'Checkpoint {source.checkpoint} is unreadable or does not hold the '
        f'network of {run_dir_lib.CONFIG_FILE} ({type(e).__name__}: '
        f'{str(e).splitlines()[0][:200]}).') from None
  return ema


def serving_model(ema, input_shape):
  """uint8 images [B, H, W, C] -> the EMA network's logits float32 [B, K]."""
  import keras  # pylint: disable=g-import-not-at-top
  images = keras.Input(shape=tuple(input_shape), dtype='uint8',
                       name='images')
  x = keras.layers.Rescaling(PIXEL_SCALE, offset=PIXEL_OFFSET,
                             dtype='float32', name='pixel_scaling')(images)
  logits = keras.layers.Activation('linear', dtype='float32',
                                   name='logits')(ema(x))
  return keras.Model(images, logits, name='crest_classifier')


def _write_saved_model(model, input_shape, path: str) -> None:
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  def serve(images):
    logits = tf.cast(model(images, training=False), tf.float32)
    return {'logits': logits, 'probabilities': tf.nn.softmax(logits),
            'class_ids': tf.argmax(logits, axis=-1, output_type=tf.int64)}

  archive = keras.export.ExportArchive()
  archive.track(model)
  archive.add_endpoint(
      'serving_default', serve,
      input_signature=[tf.TensorSpec([None] + list(input_shape), tf.uint8,
                                     name='images')])
  archive.write_out(path, verbose=False)


def check_out(out: str, overwrite: bool = False) -> str:
  """The absolute output directory, checked (before any work is done).

  Raises:
    ExportError: `out` exists (without `overwrite`, or is not an export:
      nothing else is ever replaced), or its parent cannot be made.
  """
  out = os.path.abspath(out)
  if os.path.exists(out):
    if not overwrite:
      raise ExportError(f'--out {out} exists; choose another directory or '
                        'pass --overwrite to replace an earlier export.')
    if not os.path.isfile(os.path.join(out, EXPORT_FILE)):
      raise ExportError(f'--out {out} exists and is not an export (no '
                        f'{EXPORT_FILE}); refusing to replace it.')
  parent = os.path.dirname(out)
  try:
    os.makedirs(parent, exist_ok=True)
  except OSError as e:
    raise ExportError(f'Cannot create {parent} for --out: '
                      f'{e.strerror or e}.') from None
  return out


def _write_json(path: str, obj: Any) -> None:
  with open(path, 'w', encoding='utf-8') as f:
    json.dump(obj, f, indent=2, sort_keys=True)
    f.write('\n')


def write(source: Source, out: str, overwrite: bool = False
          ) -> Dict[str, Any]:
  """Exports `source` to directory `out` (see the module docstring).

  Returns:
    export.json's contents.

  Raises:
    ExportError: `out` cannot be written (`check_out`, a full disk), the
      checkpoint cannot be restored.
  """
  out = check_out(out, overwrite)
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  parent = os.path.dirname(out)
  shape = [int(d) for d in source.cfg.input_shape]
  ema = restore_ema(source)
  model = serving_model(ema, shape)
  names, named = class_names(source.cfg, source.num_classes)
  cfg = source.cfg
  meta = dict(
      run_dir=source.run_dir, generation=source.generation,
      checkpoint=source.checkpoint, step=cfg.steps_per_generation,
      dataset=cfg.dataset, method=cfg.method, net_arch=cfg.net_arch,
      net_width=cfg.net_width, input_shape=shape,
      num_classes=source.num_classes, dtype_policy=ema.dtype_policy.name,
      pixel_scaling='(2 / 255) * uint8 - 1, float32',
      test_accuracy=source.record['test_accuracy'],
      tensorflow=tf.__version__, keras=keras.__version__)
  tmp = tempfile.mkdtemp(prefix=f'.{os.path.basename(out)}.partial-',
                         dir=parent)
  try:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's is 0700.
    try:
      _write_saved_model(model, shape, os.path.join(tmp, SAVED_MODEL_DIR))
      model.save(os.path.join(tmp, KERAS_FILE))
      _write_json(os.path.join(tmp, LABELS_FILE), dict(
          class_names=names, named=named, dataset=cfg.dataset,
          num_classes=source.num_classes))
      _write_json(os.path.join(tmp, EXPORT_FILE), meta)
    except Exception as e:  # pylint: disable=broad-except
      if disk.is_disk_full(e):
        free = disk.format_bytes(disk.free_bytes(parent))
        raise ExportError(f'Cannot write {out}: the disk is full ({free} '
                          'free there). Free space or choose another '
                          '--out.') from None
      raise
    if os.path.exists(out):  # --overwrite of an earlier export.
      old = tmp + '.old'
      os.rename(out, old)
      try:
        os.rename(tmp, out)
      except OSError:
        os.rename(old, out)
        raise
      shutil.rmtree(old, ignore_errors=True)
    else:
      os.rename(tmp, out)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return meta
