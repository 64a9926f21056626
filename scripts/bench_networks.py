"""Benchmark the networks on this machine: parameters, train step, inference.

Usage:
  python3 scripts/bench_networks.py [--arch WRN28 small] [--train_batch 960]
      [--infer_batch 1024] [--repeats 5] [--jit]

For each architecture (32x32x3 input, 10 classes): parameter count; the
median wall time of one training step (forward + backward + SGD update in a
tf.function with GradientTape, batch `--train_batch`, training=True) over
`--repeats` runs after one warm-up; inference images/s (batch
`--infer_batch`, training=False, median of `--repeats`). Prints the load
average before and after, since the CPU may be shared.

`--learn_steps N` (N > 0) instead trains 'small' supervised for N steps
(batch 64, SGD 0.03 Nesterov, weight decay 5e-4) on 1,236 long-tailed
synthetic images (data.synthetic, gamma 100) and prints the balanced test
accuracy (1,000 images) in inference mode every 100 steps.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import time


def _timed(fn, repeats: int) -> list[float]:
  fn()  # Warm-up: tracing and first-run allocations.
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return times


def bench(arch: str, train_batch: int, infer_batch: int, repeats: int,
          jit: bool) -> dict:
  """Measures one architecture; returns a dict of results."""
  import keras
  import numpy as np
  import tensorflow as tf

  from networks import registry

  keras.utils.set_random_seed(0)
  model = registry.build(arch, num_classes=10, input_shape=(32, 32, 3))
  variables = model.trainable_variables
  opt = keras.optimizers.SGD(0.03, momentum=0.9, nesterov=True)
  opt.build(variables)
  x = tf.random.uniform([train_batch, 32, 32, 3], -1, 1)
  y = tf.random.uniform([train_batch], 0, 10, dtype=tf.int32)
  xi = tf.random.uniform([infer_batch, 32, 32, 3], -1, 1)

  @tf.function(jit_compile=jit)
  def train_step(images, labels):
    with tf.GradientTape() as tape:
      logits = model(images, training=True)
      loss = tf.reduce_mean(
          tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss

  @tf.function(jit_compile=jit)
  def infer(images):
    return model(images, training=False)

  train = _timed(lambda: float(train_step(x, y)), repeats)
  inference = _timed(lambda: infer(xi).numpy(), repeats)
  return dict(
      arch=arch,
      params=model.count_params(),
      trainable=int(sum(np.prod(v.shape) for v in variables)),
      train_step_s=statistics.median(train),
      train_steps_s_all=[round(t, 3) for t in train],
      train_images_per_s=train_batch / statistics.median(train),
      infer_images_per_s=infer_batch / statistics.median(inference))


def learn(steps: int) -> None:
  """Supervised sanity run of 'small' on long-tailed synthetic data."""
  import keras
  import numpy as np
  import tensorflow as tf

  from data import synthetic
  from networks import registry

  counts = [int(500 * 0.01 ** (k / 9)) for k in range(10)]
  y_train = np.concatenate([np.full(n, k) for k, n in enumerate(counts)])
  x_train = synthetic.make_images(y_train, 1).astype(np.float32) / 127.5 - 1
  y_test = np.repeat(np.arange(10), 100)
  x_test = synthetic.make_images(y_test, 2).astype(np.float32) / 127.5 - 1
  keras.utils.set_random_seed(0)
  model = registry.build('small', num_classes=10, input_shape=(32, 32, 3))
  opt = keras.optimizers.SGD(0.03, momentum=0.9, nesterov=True)
  decay = registry.decay_variables(model)

  @tf.function
  def step(x, y):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
          y, model(x, training=True)))
      loss += 5e-4 * 0.5 * tf.add_n([tf.reduce_sum(tf.square(v))
                                     for v in decay])
    opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                            model.trainable_variables))
    return loss

  rng = np.random.default_rng(0)
  start = time.perf_counter()
  for s in range(1, steps + 1):
    idx = rng.integers(0, len(y_train), 64)
    loss = step(x_train[idx], y_train[idx])
    if s % 100 == 0 or s == steps:
      pred = np.argmax(model(x_test, training=False), -1)
      per_class = [(pred[y_test == k] == k).mean() for k in range(10)]
      print(f'step {s}: loss {float(loss):.3f} test accuracy '
            f'{(pred == y_test).mean():.3f} per class '
            f'{np.round(per_class, 2).tolist()} '
            f'({time.perf_counter() - start:.0f} s)')


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--arch', nargs='+', default=['WRN28', 'small'])
  parser.add_argument('--train_batch', type=int, default=960)
  parser.add_argument('--infer_batch', type=int, default=1024)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--jit', action='store_true', help='XLA-compile steps')
  parser.add_argument('--learn_steps', type=int, default=0,
                      help='run the synthetic learning check instead')
  args = parser.parse_args()
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  # oneDNN CPU kernels, as train_and_eval_loop --onednn (the default).
  os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
  if args.learn_steps > 0:
    learn(args.learn_steps)
    return

  print(f'load average before: {os.getloadavg()}  cpus: {os.cpu_count()}')
  cpu0, wall0 = time.process_time(), time.perf_counter()
  for arch in args.arch:
    r = bench(arch, args.train_batch, args.infer_batch, args.repeats,
              args.jit)
    print(f"{r['arch']}: params {r['params']:,} (trainable "
          f"{r['trainable']:,}); train step batch {args.train_batch}: "
          f"median {r['train_step_s']:.3f} s {r['train_steps_s_all']} = "
          f"{r['train_images_per_s']:.0f} img/s; inference batch "
          f"{args.infer_batch}: {r['infer_images_per_s']:.0f} img/s")
  cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
  print(f'load average after: {os.getloadavg()}; this process used '
        f'{cpu / wall:.2f} CPU cores on average over {wall:.0f} s')


if __name__ == '__main__':
  main()
