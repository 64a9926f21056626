"""Writes a PNG grid of images under several random draws of a spec.

Row i shows image i: first the original, then one column per draw
(seed [seed, draw]). Images come from an .npz with `x_train` (uint8
[N, H, W, C]) or, without --npz, are synthetic (coloured shapes).

  python3 scripts/show_augment.py --spec dhrac --out /tmp/dhrac.png
  python3 scripts/show_augment.py --npz data.npz --spec dh --draws 6
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def synthetic_images(n: int, size: int = 32, channels: int = 3,
                     seed: int = 0) -> np.ndarray:
  """uint8 [n, size, size, channels]: a gradient background and a shape."""
  rng = np.random.RandomState(seed)
  yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
  images = []
  for i in range(n):
    bg = rng.randint(40, 200, 3)
    fg = rng.randint(0, 256, 3)
    img = (bg[None, None] * (0.6 + 0.4 * xx[..., None])).astype(np.float32)
    cy, cx = rng.uniform(0.3, 0.7, 2)
    r = rng.uniform(0.15, 0.3)
    if i % 2:
      shape = (np.abs(yy - cy) < r) & (np.abs(xx - cx) < r / 2)
    else:
      shape = (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2
    img[shape] = fg
    img[: size // 8, : size // 8] = 255  # a white corner marks orientation
    images.append(img)
  images = np.clip(np.stack(images), 0, 255).astype(np.uint8)
  if channels == 1:
    images = images.mean(axis=-1, keepdims=True).astype(np.uint8)
  return images


def grid(images: np.ndarray, columns: list, scale: int, gap: int = 2
        ) -> np.ndarray:
  """uint8 [rows * (H + gap), cols * (W + gap), 3] grid of float outputs."""
  n, h, w, c = images.shape
  cols = [images.astype(np.float32) / 127.5 - 1.0] + columns
  out = np.full((n * (h + gap), len(cols) * (w + gap), 3), 255, np.uint8)
  for j, col in enumerate(cols):
    pix = np.clip(np.round((np.asarray(col) + 1.0) * 127.5), 0, 255)
    pix = pix.astype(np.uint8)
    if c == 1:
      pix = np.repeat(pix, 3, axis=-1)
    for i in range(n):
      out[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = (
          pix[i])
  return np.kron(out, np.ones((scale, scale, 1), np.uint8))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--spec', default='dhrac')
  parser.add_argument('--npz', default='', help='.npz with x_train')
  parser.add_argument('--images', type=int, default=6)
  parser.add_argument('--draws', type=int, default=8)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--scale', type=int, default=4, help='pixel zoom')
  parser.add_argument('--out', default='augment_{spec}.png')
  args = parser.parse_args(argv)

  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  sys.path.insert(0, str(ROOT))
  import tensorflow as tf
  from PIL import Image
  from augment import registry

  registry.validate(args.spec)
  if args.npz:
    with np.load(args.npz) as data:
      images = data['x_train'][:args.images]
    if images.ndim == 3:
      images = images[..., None]
  else:
    images = synthetic_images(args.images)
  images = np.asarray(images, np.uint8)
  fn = registry.build(args.spec, int(images.shape[1]))
  columns = [fn(images, tf.constant([args.seed, d])).numpy()
             for d in range(args.draws)]
  out = args.out.format(spec=args.spec)
  Image.fromarray(grid(images, columns, args.scale)).save(out)
  print(f'wrote {out}: {len(images)} images x (original + {args.draws} '
        f'draws of {args.spec!r})')


if __name__ == '__main__':
  main()
