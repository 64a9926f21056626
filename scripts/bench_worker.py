"""The measuring side of scripts/benchmark.py and scripts/gpu_check.py.

`run_case(spec)` runs one case in this process (benchmark.py starts one
fresh process per case); `run_cells(cells)` runs several training +
evaluation cells one after the other, printing a `RESULT` line after each
(gpu_check.py's worker; it reads them as they come, so a time limit keeps
what finished).

A spec is a dict: case ('fixmatch', 'mixmatch', 'pipeline', 'eval', 'label',
'scaling', 'machine'), net_arch, net_impl, batch_size, unlab_ratio,
eval_batch_size, eval_images, cpu_replicas, extra (more Config fields, e.g.
mixed_precision, jit_compile), warmup, steps, dataset ('synthetic'), and
t_start (the driver's time.time() at launch).
"""
from __future__ import annotations

import gc
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK_DIR = '/tmp/crest-benchmark'


def prepare_env(spec: dict) -> None:
  """As train_and_eval_loop: oneDNN set from the config before TF loads."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  os.environ['TF_ENABLE_ONEDNN_OPTS'] = (
      '1' if spec.get('extra', {}).get('onednn', True) else '0')
  for path in (ROOT, os.path.join(ROOT, 'scripts')):
    if path not in sys.path:
      sys.path.insert(0, path)


def config(spec: dict) -> 'crest.config.Config':  # noqa: F821
  """The crest Config of a spec (not validated)."""
  from crest.config import Config  # pylint: disable=g-import-not-at-top
  method = 'mixmatch' if spec['case'] == 'mixmatch' else 'fixmatch'
  flags = dict(method=method, dataset=spec.get('dataset', 'synthetic'),
               net_arch=spec['net_arch'], batch_size=spec['batch_size'],
               unlab_ratio=spec['unlab_ratio'], num_epoch=1, num_batch=10**6,
               percent_labeled=0.5, model_dir=WORK_DIR, progress=False,
               cpu_replicas=spec['cpu_replicas'],
               eval_batch_size=spec['eval_batch_size'])
  if spec.get('net_impl'):
    flags['net_impl'] = spec['net_impl']
  if method == 'mixmatch':
    flags.update(num_weakaug=2, num_strongaug=0, temperature=0.5,
                 threshold=0.0, unsup_loss_type='mse', weight_unsup=75.0)
  flags.update(spec['extra'])
  return Config(**flags)


def _gpu_peak_gb(reset: bool = False):
  """Peak memory of GPU:0 since the last reset, GB (None without a GPU)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not tf.config.list_physical_devices('GPU'):
    return None
  if reset:
    tf.config.experimental.reset_memory_stats('GPU:0')
    return None
  return tf.config.experimental.get_memory_info('GPU:0')['peak'] / 2**30


def _median(values: list) -> float:
  import numpy as np  # pylint: disable=g-import-not-at-top
  return float(np.median(values))


class Setup:
  """What a case needs: the validated config, strategy, data, stream.

  Raises:
    crest.errors.ConfigError: the config is refused (e.g. --jit_compile
      with MixMatch); the message says why.
  """

  _DATA = {}

  def __init__(self, spec: dict, strategy=None):
    from crest import config as config_lib  # pylint: disable=g-import-not-at-top
    from crest import strategy as strategy_lib  # pylint: disable=g-import-not-at-top
    from data import pipeline  # pylint: disable=g-import-not-at-top
    from data import registry as data_registry  # pylint: disable=g-import-not-at-top
    self.spec = spec
    cfg = self.cfg = config(spec)
    self.strategy = strategy or strategy_lib.make_strategy(cfg.cpu_replicas)
    config_lib.validate(cfg, self.strategy.num_replicas_in_sync)
    if cfg.deterministic:
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      tf.config.experimental.enable_op_determinism()
    if cfg.dataset not in self._DATA:
      self._DATA[cfg.dataset] = data_registry.load(cfg.data_args())
    data = self.data = self._DATA[cfg.dataset]
    lab, stream = data.labeled_positions, data.unlabeled_stream_positions
    stream_spec = pipeline.StreamSpec(
        batch_size=cfg.batch_size, unlab_ratio=cfg.unlab_ratio,
        augment=cfg.augment, weakaug=cfg.weakaug, strongaug=cfg.strongaug,
        num_weakaug=cfg.num_weakaug, num_strongaug=cfg.num_strongaug, seed=0)
    # `workers` W > 1: the share worker 0 of W builds (one replica each).
    workers = spec.get('workers', 1)
    self.ds = pipeline.train_dataset(
        data.train_images, lab, data.train_labels[lab], stream,
        data.train_labels[stream], stream_spec, 0, 10**6,
        share=pipeline.ReplicaShare(0, 1, workers) if workers > 1 else None)
    self.images_per_step = (cfg.batch_size + cfg.unlabeled_batch_size * (
        cfg.num_weakaug + cfg.num_strongaug)) // workers

  def built_impl(self) -> str:
    """The implementation the network is built with ('lean' falls back
    to the network's default where it has no lean build)."""
    from networks import registry  # pylint: disable=g-import-not-at-top
    impls = registry.impls(self.cfg.net_arch)
    return self.cfg.net_impl if self.cfg.net_impl in impls else impls[0]

  def trainer(self) -> 'crest.trainer.GenerationTrainer':  # noqa: F821
    from crest.trainer import GenerationTrainer  # pylint: disable=g-import-not-at-top
    return GenerationTrainer(self.cfg, self.strategy, self.data, WORK_DIR,
                             dalign_t=None, seed=0, is_chief=False)

  def flops(self, trainer) -> dict:
    """Forward multiply-adds per image and training FLOPs per step."""
    import bench_flops  # pylint: disable=g-import-not-at-top
    cfg = self.cfg
    macs = bench_flops.forward_macs(trainer.model)
    return {'forward_macs_per_image': macs,
            'train_flops_per_step': bench_flops.train_step_flops(
                cfg.method, 2.0 * macs, cfg.batch_size,
                cfg.unlabeled_batch_size, cfg.num_weakaug, cfg.num_strongaug)}

  def eval_images(self):
    import numpy as np  # pylint: disable=g-import-not-at-top
    images = self.data.train_images
    return np.resize(images, (self.spec['eval_images'],) + images.shape[1:])


def measure_training(setup: Setup, trainer, t0: float) -> dict:
  """Median time per step over `steps` steps after `warmup` (the first
  includes tracing); time_to_first_step_s counts from `t0`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  spec, cfg = setup.spec, setup.cfg
  it = iter(setup.strategy.experimental_distribute_dataset(setup.ds))
  n = tf.constant(cfg.steps_per_loop)
  out, times = {}, []
  for i in range(max(1, spec['warmup']) + spec['steps']):
    t = time.perf_counter()
    loss = float(trainer.train_steps(it, n))
    if i == 0:
      out['time_to_first_step_s'] = time.time() - t0
    if i >= max(1, spec['warmup']):
      times.append((time.perf_counter() - t) / cfg.steps_per_loop)
  med = _median(times)
  out.update(sec_per_step=med, steps_per_sec=1 / med,
             images_per_sec=setup.images_per_step / med, last_loss=loss,
             timed=len(times))
  return out


def measure_eval(trainer, images, steps: int, positions=None) -> dict:
  """EMA forward images/s over `images` (rows `positions`), median of
  `steps` passes after one that traces."""
  n = len(images) if positions is None else len(positions)
  trainer.predict_ema(images[:trainer.cfg.eval_batch_size])  # Trace.
  times = []
  for _ in range(max(1, steps)):
    t = time.perf_counter()
    trainer.predict_ema(images, positions)
    times.append(time.perf_counter() - t)
  return {'images_per_sec': n / _median(times), 'timed': len(times)}


def measure_label(setup: Setup, trainer, steps: int) -> dict:
  """Pseudo-labelling as a generation ends: EMA scores of the pool's rows
  (gathered by position) and CReST's selection; images/s."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from crest import selection  # pylint: disable=g-import-not-at-top
  images = setup.eval_images()
  pool = np.random.default_rng(0).permutation(len(images))
  trainer.predict_ema(images, pool[:setup.cfg.eval_batch_size])  # Trace.
  times = []
  for _ in range(max(1, steps)):
    t = time.perf_counter()
    scores = trainer.predict_ema(images, pool)
    selection.select_pseudo_labels(scores, np.asarray(setup.data.gt_p_data),
                                   setup.cfg.alpha, setup.cfg.update_mode)
    times.append(time.perf_counter() - t)
  return {'images_per_sec': len(pool) / _median(times), 'timed': len(times)}


def _rss_gb() -> float:
  """Current resident memory of this process, GB."""
  with open('/proc/self/statm') as f:
    return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**30


def measure_scaling(setup: Setup, trainer) -> dict:
  """Cost across two sizes: `steps` then 2 x `steps` training steps, and
  pseudo-labelling `eval_images` then 2 x as many images; resident memory
  after each (bounded: no growth with steps)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  steps, n = setup.spec['steps'], setup.spec['eval_images']
  it = iter(setup.strategy.experimental_distribute_dataset(setup.ds))
  one = tf.constant(1)
  float(trainer.train_steps(it, one))
  out = {}
  for label, k in (('train_1x', steps), ('train_2x', 2 * steps)):
    t = time.perf_counter()
    for _ in range(k):
      float(trainer.train_steps(it, one))
    out[label + '_s'] = time.perf_counter() - t
    out[label + '_rss_gb'] = _rss_gb()
  src = setup.data.train_images
  images = np.resize(src, (2 * n,) + src.shape[1:])
  trainer.predict_ema(images[:n])  # Trace.
  for label, m in (('label_1x', n), ('label_2x', 2 * n)):
    t = time.perf_counter()
    trainer.predict_ema(images[:m])
    out[label + '_s'] = time.perf_counter() - t
    out[label + '_rss_gb'] = _rss_gb()
  out['train_ratio'] = out['train_2x_s'] / out['train_1x_s']
  out['label_ratio'] = out['label_2x_s'] / out['label_1x_s']
  out['images_per_sec'] = 2 * n / out['label_2x_s']
  out['timed'] = 2
  return out


def run_case(spec: dict) -> dict:
  """Runs one case in this (fresh) process; returns its measurements, or
  {'refused': why} for a config crest refuses."""
  t_start = spec['t_start']
  prepare_env(spec)
  import resource  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top,unused-import
  from crest.errors import ConfigError  # pylint: disable=g-import-not-at-top
  import machine_info  # pylint: disable=g-import-not-at-top
  imported_at = time.time() - t_start
  case = spec['case']
  out = {'case': case}
  if case == 'machine':
    out.update(machine_info.tf_info())
    out['peaks'] = {d: machine_info.matmul_peak(spec['peak_n'], d,
                                                spec['peak_repeats'])
                    for d in spec['peak_dtypes']}
    return out
  try:
    setup = Setup(spec)
  except ConfigError as e:
    return dict(out, refused=str(e))
  out.update(replicas=setup.strategy.num_replicas_in_sync,
             workers=spec.get('workers', 1),
             images_per_step=setup.images_per_step)
  if case == 'pipeline':
    # Throughput over many batches: the prefetch buffer must not hide the
    # cost (it holds a few batches after warm-up).
    it = iter(setup.ds)
    for _ in range(spec['warmup']):
      next(it)
    times = []
    for _ in range(spec['steps']):
      t = time.perf_counter()
      for _ in range(50):
        next(it)
      times.append((time.perf_counter() - t) / 50)
    med = _median(times)
    out.update(batches_per_sec=1 / med, timed=len(times),
               images_per_sec=setup.images_per_step / med)
  else:
    trainer = setup.trainer()
    # Time-to-first-step breakdown: Python + imports, data + model build.
    out.update(imports_s=imported_at, built_s=time.time() - t_start,
               built_impl=setup.built_impl())
    out.update(setup.flops(trainer))
    if case == 'scaling':
      out.update(measure_scaling(setup, trainer))
    elif case == 'eval':
      out.update(measure_eval(trainer, setup.eval_images(), spec['steps']))
    elif case == 'label':
      out.update(measure_label(setup, trainer, spec['steps']))
    else:
      out.update(measure_training(setup, trainer, t_start))
  out['peak_rss_gb'] = resource.getrusage(
      resource.RUSAGE_SELF).ru_maxrss / 2**20
  gpu = _gpu_peak_gb()
  if gpu is not None:
    out['peak_gpu_gb'] = gpu
  return out


def run_cells(cells: list, emit=print) -> None:
  """Training then evaluation for each cell, in this one process (GPU check;
  call `prepare_env` before TensorFlow is imported).

  Emits per cell 'START <i>' and 'RESULT <json>' with index, training
  images/s, time to first step (from the cell's start: model build,
  tracing / compiling, first step), evaluation images/s and peak GPU:0
  memory (reset per cell); a refused config gives {'refused': why}, another
  error {'failed': ...}. Cells carry their own 'index' if given.
  """
  import keras  # pylint: disable=g-import-not-at-top
  from crest import strategy as strategy_lib  # pylint: disable=g-import-not-at-top
  from crest.errors import ConfigError  # pylint: disable=g-import-not-at-top
  strategy = strategy_lib.make_strategy(cells[0]['cpu_replicas'] if cells
                                        else 0)
  for i, spec in enumerate(cells):
    index = spec.get('index', i)
    emit(f'START {index}', flush=True)
    out = {'index': index}
    t0 = time.time()
    try:
      setup = Setup(spec, strategy)
      _gpu_peak_gb(reset=True)
      trainer = setup.trainer()
      out.update(replicas=strategy.num_replicas_in_sync,
                 images_per_step=setup.images_per_step,
                 built_impl=setup.built_impl())
      out.update(measure_training(setup, trainer, t0))
      out['eval_images_per_sec'] = measure_eval(  # Median of <= 3 passes.
          trainer, setup.eval_images(), min(3, spec['steps']))[
              'images_per_sec']
      out['peak_gpu_gb'] = _gpu_peak_gb()
      del trainer
    except ConfigError as e:
      out['refused'] = str(e)
    except Exception as e:  # pylint: disable=broad-except
      out['failed'] = f'{type(e).__name__}: {str(e)[:300]}'
    keras.backend.clear_session()
    gc.collect()
    emit('RESULT ' + json.dumps(out), flush=True)
