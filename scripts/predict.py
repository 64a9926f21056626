"""Runs an exported model (scripts/export.py) on images; writes a CSV.

  python3 scripts/predict.py MODEL --images DIR|FILE.npz|IMAGE --out CSV
      [--resize H,W] [--batch_size 256]

MODEL: an export directory (holding saved_model/), a SavedModel directory,
or a model.keras file (which needs this project's networks package, found
next to this script). labels.json beside it names the classes (else ids).

--images: a directory of .png / .jpg / .jpeg files (sorted by name; not
recursive), one such file, or an .npz with an `images` array (else
`x_test`, as in a --dataset=npz file): uint8 [N, H, W, C] or [N, H, W].
Files are read with Pillow and converted to the model's channels (L or RGB).
Images must be the model's H x W, or be resized (bilinear, Pillow) with
--resize H,W, which must then be the model's input size.

The CSV has a header `image,class_id,<class names>` and one row per image:
its file name (npz: its index), the predicted class id (argmax of the
logits) and the probability of each class (9 significant digits). It is
written under a temporary name and renamed when complete.

Exit codes: 0 done, 2 bad input (the message says what to do).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import zipfile
from typing import List, Optional, Sequence, Tuple

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg')
LABELS_FILE = 'labels.json'  # crest.export.LABELS_FILE


class InputError(Exception):
  """Bad input; the message says what to do."""


# ------------------------------------------------------------------ images
def list_images(path: str) -> Tuple[str, List[str]]:
  """('files', sorted paths) or ('npz', [path]); checks only names."""
  if not os.path.exists(path):
    raise InputError(f'--images {path} does not exist; give a directory of '
                     '.png/.jpg files, one such file, or an .npz.')
  if os.path.isdir(path):
    files = sorted(f for f in os.listdir(path)
                   if f.lower().endswith(IMAGE_SUFFIXES)
                   and os.path.isfile(os.path.join(path, f)))
    if not files:
      raise InputError(f'--images {path} holds no {"/".join(IMAGE_SUFFIXES)} '
                       'files.')
    return 'files', [os.path.join(path, f) for f in files]
  if path.lower().endswith('.npz'):
    return 'npz', [path]
  if path.lower().endswith(IMAGE_SUFFIXES):
    return 'files', [path]
  raise InputError(f'--images {path}: expected a directory, a '
                   f'{"/".join(IMAGE_SUFFIXES)} file or an .npz.')


def read_npz(path: str) -> np.ndarray:
  """uint8 [N, H, W, C]: the file's `images`, else `x_test`."""
  try:
    with np.load(path, allow_pickle=False) as f:
      key = next((k for k in ('images', 'x_test') if k in f.files), None)
      if key is None:
        raise InputError(f'--images {path} has no `images` or `x_test` array '
                         f'(it has {sorted(f.files)}).')
      x = f[key]
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    raise InputError(f'--images {path} cannot be read as an .npz without '
                     f'pickles ({e}).') from None
  if x.dtype != np.uint8:
    raise InputError(f'{path}: `{key}` is {x.dtype}; expected uint8 pixels '
                     '(np.clip(x, 0, 255).astype(np.uint8)).')
  if x.ndim == 3:
    x = x[..., None]
  if x.ndim != 4 or x.shape[-1] not in (1, 3) or len(x) == 0:
    raise InputError(f'{path}: `{key}` has shape {list(x.shape)}; expected '
                     'a non-empty [N, H, W], [N, H, W, 1] or [N, H, W, 3].')
  return x


def _fit(image, shape, resize: bool, where: str) -> np.ndarray:
  """A PIL image -> uint8 [H, W, C] of the model's shape."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  h, w, c = shape
  image = image.convert('L' if c == 1 else 'RGB')
  if image.size != (w, h):
    if not resize:
      raise InputError(f'{where} is {image.size[1]}x{image.size[0]}; the '
                       f'model takes {h}x{w}: pass --resize {h},{w}.')
    image = image.resize((w, h), Image.BILINEAR)
  return np.asarray(image, np.uint8).reshape(h, w, c)


def load_files(paths: List[str], shape, resize: bool) -> np.ndarray:
  from PIL import Image, UnidentifiedImageError  # pylint: disable=g-import-not-at-top
  out = []
  for p in paths:
    try:
      with Image.open(p) as image:
        out.append(_fit(image, shape, resize, p))
    except (OSError, UnidentifiedImageError, ValueError) as e:
      raise InputError(f'{p} is not a readable image ({e}).') from None
  return np.stack(out)


def fit_array(x: np.ndarray, shape, resize: bool, where: str) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  h, w, c = shape
  if x.shape[-1] != c:
    raise InputError(f'{where} has {x.shape[-1]}-channel images; the model '
                     f'takes {c} channel(s).')
  if x.shape[1:3] == (h, w):
    return x
  return np.stack([_fit(Image.fromarray(im[..., 0] if c == 1 else im), shape,
                        resize, f'{where} (image {i})')
                   for i, im in enumerate(x)])


# ------------------------------------------------------------------- model
def resolve_model(path: str) -> Tuple[str, str, str]:
  """(kind 'keras' or 'saved_model', its path, directory of labels.json);
  checks only names (no TensorFlow)."""
  path = os.path.abspath(path)
  if path.endswith('.keras') and os.path.isfile(path):
    return 'keras', path, os.path.dirname(path)
  if os.path.isfile(os.path.join(path, 'saved_model', 'saved_model.pb')):
    return 'saved_model', os.path.join(path, 'saved_model'), path
  if os.path.isfile(os.path.join(path, 'saved_model.pb')):
    return 'saved_model', path, os.path.dirname(path)
  raise InputError(f'MODEL {path} is not an export (scripts/export.py '
                   '--out), a SavedModel directory or a .keras file.')


def load_model(kind: str, path: str):
  """(predict(uint8 [B, H, W, C]) -> (probabilities float32 [B, K], class
  ids int64 [B]), the model's input shape (H, W, C), K)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if kind == 'keras':
    if ROOT not in sys.path:
      sys.path.insert(0, ROOT)
    import keras  # pylint: disable=g-import-not-at-top
    import networks.registry  # pylint: disable=g-import-not-at-top,unused-import
    try:
      model = keras.saving.load_model(path)
    except Exception as e:  # pylint: disable=broad-except
      raise InputError(f'MODEL {path} cannot be loaded ({e}).') from None

    def predict_keras(x):
      logits = tf.cast(model(tf.constant(x), training=False), tf.float32)
      return (tf.nn.softmax(logits).numpy(),
              tf.argmax(logits, -1).numpy())
    return (predict_keras, tuple(model.input_shape[1:]),
            int(model.output_shape[-1]))
  try:
    fn = tf.saved_model.load(path).signatures['serving_default']
    spec = fn.structured_input_signature[1]['images']
    k = int(fn.structured_outputs['probabilities'].shape[-1])
  except Exception as e:  # pylint: disable=broad-except
    raise InputError(f'MODEL {path} cannot be loaded ({e}).') from None

  def predict_saved(x):
    out = fn(images=tf.constant(x))
    return out['probabilities'].numpy(), out['class_ids'].numpy()
  return predict_saved, tuple(spec.shape[1:]), k


def class_names(labels_dir: str, k: int) -> List[str]:
  path = os.path.join(labels_dir, LABELS_FILE)
  if not os.path.exists(path):
    return [str(i) for i in range(k)]
  try:
    with open(path, encoding='utf-8') as f:
      names = json.load(f)['class_names']
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise InputError(f'{path} is unreadable ({e}); fix or delete it.'
                     ) from None
  if (not isinstance(names, list) or len(names) != k
      or not all(isinstance(n, str) for n in names)
      or len(set(names) | {'image', 'class_id'}) != k + 2):
    raise InputError(f'{path}: class_names must be {k} distinct strings '
                     'other than "image" and "class_id".')
  return names


def parse_resize(text: Optional[str]) -> Optional[Tuple[int, int]]:
  if text is None:
    return None
  try:
    h, w = (int(v) for v in text.split(','))
    if h > 0 and w > 0:
      return h, w
  except ValueError:
    pass
  raise InputError(f'--resize={text!r}: give H,W, e.g. 32,32.')


def write_csv(out: str, ids: List[str], probs: np.ndarray,
              classes: np.ndarray, names: List[str]) -> None:
  parent = os.path.dirname(os.path.abspath(out))
  os.makedirs(parent, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(out)}.partial-',
                             dir=parent)
  try:
    with os.fdopen(fd, 'w', newline='', encoding='utf-8') as f:
      writer = csv.writer(f)
      writer.writerow(['image', 'class_id'] + names)
      for i, p, c in zip(ids, probs, classes):
        writer.writerow([i, int(c)] + [f'{v:.9g}' for v in p])
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('model', help='export dir, SavedModel dir or .keras')
  parser.add_argument('--images', required=True,
                      help='directory of images, an image, or an .npz')
  parser.add_argument('--out', required=True, help='the CSV to write')
  parser.add_argument('--resize', default=None, help='H,W (bilinear)')
  parser.add_argument('--batch_size', type=int, default=256)
  try:
    args = parser.parse_args(argv)
  except SystemExit as e:
    return int(e.code or 0)
  try:
    resize = parse_resize(args.resize)
    if args.batch_size < 1:
      raise InputError('--batch_size must be at least 1.')
    if os.path.isdir(args.out):
      raise InputError(f'--out {args.out} is a directory; give a file name.')
    model_kind, model_path, labels_dir = resolve_model(args.model)
    kind, paths = list_images(args.images)
    array = read_npz(paths[0]) if kind == 'npz' else None
    predict, shape, k = load_model(model_kind, model_path)
    names = class_names(labels_dir, k)
    if resize is not None and resize != tuple(shape[:2]):
      raise InputError(f'--resize {args.resize}: the model takes '
                       f'{shape[0]}x{shape[1]} images; use --resize '
                       f'{shape[0]},{shape[1]}.')
    if kind == 'npz':
      x = fit_array(array, shape, resize is not None, paths[0])
      ids = [str(i) for i in range(len(x))]
    else:
      x = load_files(paths, shape, resize is not None)
      ids = [os.path.basename(p) for p in paths]
    parts = [predict(x[i:i + args.batch_size])
             for i in range(0, len(x), args.batch_size)]
    probs = np.concatenate([p for p, _ in parts])
    classes = np.concatenate([c for _, c in parts])
    write_csv(args.out, ids, probs, classes, names)
  except InputError as e:
    print(f'predict: {e}', file=sys.stderr)
    return 2
  except OSError as e:  # Writing --out.
    print(f'predict: cannot write {args.out}: {e.strerror or e}.',
          file=sys.stderr)
    return 2
  print(f'predict: {len(ids)} images -> {args.out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
