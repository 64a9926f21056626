"""The thin trainer of one generation: strategy, step loop, checkpoints,
summaries and evaluation. Methods own only their loss; `crest.generations`
owns the generations."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Dict, List, Optional

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from augment import registry as augment_registry
from crest import distributions
from crest import interrupt
from crest import losses
from crest import method_api
from crest import methods
from crest import metrics as metrics_lib
from crest import records
from crest import schedules
from crest import summaries
from crest.config import Config
from crest.errors import UserError
from crest.progress import Progress
from data import pipeline
from data.base import SSLData
from networks import common as network_common
from networks import registry as networks

TRAIN_METRICS = ('loss.train', 'loss.xe', 'loss.xeu', 'loss.wd', 'acc.train',
                 'acc.unlab', 'monitor.mask')


ROLLBACK_FILE = 'rollback.json'
MAX_ROLLBACKS = 3


class NonFiniteLossError(RuntimeError):
  """The training loss became NaN or infinite.

  Attributes:
    batches: the input-stream batch indices of the failing steps.
  """

  def __init__(self, message: str, batches=()):
    super().__init__(message)
    self.batches = list(batches)


class _LearningRate(keras.optimizers.schedules.LearningRateSchedule):
  """`crest.schedules.learning_rate` as a Keras schedule."""

  def __init__(self, cfg: Config):
    self.kwargs = dict(
        base_lr=cfg.learning_rate, num_epoch=cfg.num_epoch,
        num_batch=cfg.num_batch, sched_type=cfg.sched_type,
        sched_freq=cfg.sched_freq, sched_level=cfg.sched_level,
        sched_min_rate=cfg.sched_min_rate,
        sched_step_size=cfg.sched_step_size, sched_gamma=cfg.sched_gamma)

  def __call__(self, step):
    return schedules.learning_rate(step, **self.kwargs)

  def get_config(self):
    return dict(self.kwargs)


def _make_optimizer(cfg: Config) -> keras.optimizers.Optimizer:
  lr = _LearningRate(cfg)
  if cfg.optim_type == 'sgd':
    opt = keras.optimizers.SGD(learning_rate=lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov)
  else:
    opt = keras.optimizers.Adam(learning_rate=lr, amsgrad=True)
  if cfg.mixed_precision == 'float16':
    opt = keras.optimizers.LossScaleOptimizer(opt)
  return opt


def _tf_var(v):
  """The tf.Variable behind a Keras variable."""
  return getattr(v, 'value', v) if isinstance(v, keras.Variable) else v


class GenerationTrainer:
  """Trains one generation from scratch and evaluates it.

  Args:
    cfg: the run's config.
    strategy: the distribution strategy (variables are created in its scope).
    data: the dataset.
    work_dir: this generation's directory (checkpoints in `ckpt/`,
      TensorBoard events in `tb/`, statistics in `stats/`).
    dalign_t: this generation's alignment temperature (None: no CReST+).
    seed: this generation's seed (model init and input stream).
    is_chief: whether this worker writes summaries and statistics.
  """

  def __init__(self, cfg: Config, strategy: tf.distribute.Strategy,
               data: SSLData, work_dir: str, dalign_t: Optional[float],
               seed: int, is_chief: bool = True):
    self.cfg = cfg
    self.strategy = strategy
    self.data = data
    self.work_dir = work_dir
    self.seed = seed
    self.is_chief = is_chief
    self.num_classes = k = data.num_classes
    self.dalign_t = 1.0 if dalign_t is None else float(dalign_t)
    self.params = method_api.params_from_config(cfg, k)
    self.loss_fn = methods.get(cfg.method).loss
    self.gt_p_data = tf.constant(np.asarray(data.gt_p_data), tf.float32)
    self.num_replicas = strategy.num_replicas_in_sync

    # Mixed precision: layers compute in bfloat16/float16 with float32
    # variables; logits, losses and pseudo-label math stay float32.
    keras.config.set_dtype_policy(
        'float32' if cfg.mixed_precision == 'float32' else
        f'mixed_{cfg.mixed_precision}')
    with strategy.scope():
      keras.utils.set_random_seed(seed)
      build = dict(num_classes=k, input_shape=tuple(cfg.input_shape),
                   width=cfg.net_width, activation=cfg.activation,
                   bn_sync=cfg.bn_sync, head_arch=cfg.head_arch,
                   head_mlp_dims=tuple(cfg.head_mlp_dims), impl=cfg.net_impl)
      self.model = networks.build(cfg.net_arch, name='model', **build)
      self.ema = networks.build(cfg.net_arch, name='ema', **build)
      self.optimizer = _make_optimizer(cfg)
      self.optimizer.build(self.model.trainable_variables)
      self.p_model_history = tf.Variable(
          distributions.initial_p_model_history(k), trainable=False,
          name='p_model_history')
      self.p_data = tf.Variable(distributions.initial_p_data(k),
                                trainable=False, name='p_data')
      self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False,
                               name='epoch')
      self.sums = {m: tf.Variable(0.0, trainable=False, name=f'sum_{m}')
                   for m in TRAIN_METRICS}
    for e, v in zip(self.ema.variables, self.model.variables):
      e.assign(v)
    self.decay_variables = networks.decay_variables(self.model)

    self.checkpoint = tf.train.Checkpoint(
        model=self.model, ema=self.ema, optimizer=self.optimizer,
        p_model_history=self.p_model_history, p_data=self.p_data,
        epoch=self.epoch, sums=self.sums)
    # Multi-worker rules: every worker saves, only the chief into the run
    # directory (the others into a temporary directory they delete); every
    # worker restores from the chief's checkpoints.
    self.ckpt_dir = os.path.join(work_dir, 'ckpt')
    save_dir = (self.ckpt_dir if is_chief else
                tempfile.mkdtemp(prefix='crest-worker-ckpt-'))
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, save_dir,
        max_to_keep=cfg.keep_checkpoints if is_chief else 1)
    self.writer = (tf.summary.create_file_writer(os.path.join(work_dir, 'tb'))
                   if is_chief else tf.summary.create_noop_writer())
    self.history: Dict[str, List] = {}
    self._unaugmented = augment_registry.build('x', data.train_images.shape[1])
    # --jit_compile: XLA compiles each replica's forward/backward, and the
    # evaluation forward on one device (on several, TF 2.21 places the
    # compiled forward's variables on the wrong device); the cross-replica
    # reductions, optimizer and EMA updates stay outside.
    jit = (lambda fn: tf.function(fn, jit_compile=True)) if cfg.jit_compile \
        else (lambda fn: fn)
    jit_eval = jit if self.num_replicas == 1 else (lambda fn: fn)
    self._loss_and_grads = jit(self._loss_and_grads_fn)
    self._forward_both = jit_eval(self._forward_both_fn)
    self._forward_ema = jit_eval(self._forward_ema_fn)
    # No autograph: the step code has no tensor-dependent Python control
    # flow, and converting it cost seconds of every generation's first step.
    self._train_loop = tf.function(self._train_loop_fn, autograph=False)
    self._eval_both = tf.function(self._eval_both_fn, autograph=False)
    self._eval_ema = tf.function(self._eval_ema_fn, autograph=False)

  # ---------------------------------------------------------------- steps
  def _replica_step(self, batch, seed):
    cfg = self.cfg
    ctx = tf.distribute.get_replica_context()
    stats = method_api.Stats(
        p_model=distributions.p_model(self.p_model_history),
        p_data=tf.convert_to_tensor(self.p_data), gt_p_data=self.gt_p_data,
        dalign_t=tf.constant(self.dalign_t, tf.float32), seed=seed)
    variables = self.model.trainable_variables
    out, wd, total, grads, moving = self._loss_and_grads(batch, stats)
    for v, value in zip(self._moving_variables, moving):
      v.assign(value)  # Batch-norm moving statistics.
    if cfg.clip_value > 0:
      # Clip the global gradient, like one device would: reduce, clip, and
      # hand each replica 1/N of it (the optimizer sums replicas again).
      grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
      grads = [tf.clip_by_value(g, -cfg.clip_value, cfg.clip_value) /
               self.num_replicas for g in grads]
    self.optimizer.apply_gradients(zip(grads, variables))
    sums = dict(out.metrics)
    sums['loss.wd'] = wd / self.num_replicas
    sums['loss.train'] = total
    sums = ctx.all_reduce(tf.distribute.ReduceOp.SUM, sums)
    weak_mean = ctx.all_reduce(tf.distribute.ReduceOp.MEAN,
                               out.weak_probs_mean)
    labels_mean = ctx.all_reduce(
        tf.distribute.ReduceOp.MEAN,
        distributions.labels_mean(batch['y_l'], self.num_classes))
    return sums, weak_mean, labels_mean

  def _loss_and_grads_fn(self, batch, stats):
    """One replica's loss and gradients (XLA-compiled with --jit_compile).

    Returns: (LossOutput, weight-decay term, total loss, gradients, new
    values of the batch-norm moving statistics, in the order of
    `self._moving_variables`).
    """
    variables = self.model.trainable_variables
    with tf.GradientTape() as tape, network_common.deferred_updates() as moving:
      out = self.loss_fn(self.model, batch, stats, self.params)
      wd = losses.l2_weight_decay(self.decay_variables)
      total = out.loss + self.cfg.weight_decay * wd / self.num_replicas
      scaled = (self.optimizer.scale_loss(total)
                if hasattr(self.optimizer, 'scale_loss') else total)
    self._moving_variables = [v for v, _ in moving]
    return (out, wd, total, tape.gradient(scaled, variables),
            [value for _, value in moving])

  def _cross_replica_updates(self, sums, weak_mean, labels_mean):
    """EMA and running distributions, after the optimizer step."""
    first = lambda x: self.strategy.experimental_local_results(x)[0]
    decay = self.cfg.ema_decay

    # Each device's copy directly (what strategy.extended.update does, without
    # its per-variable tracing cost: seconds for a WRN-28-2).
    local = lambda v: self.strategy.experimental_local_results(_tf_var(v))

    def each_copy(emas, models, update):
      for e, v in zip(emas, models):
        for e_i, v_i in zip(local(e), local(v)):
          with tf.device(e_i.device):
            update(e_i, v_i)

    each_copy(self.ema.trainable_variables, self.model.trainable_variables,
              lambda e, v: e.assign_sub((1.0 - decay) * (e - v)))
    each_copy(self.ema.non_trainable_variables,
              self.model.non_trainable_variables, lambda e, v: e.assign(v))
    self.p_model_history.assign(distributions.update_p_model_history(
        self.p_model_history, first(weak_mean)[None]))
    self.p_data.assign(distributions.update_p_data_from_mean(
        self.p_data, first(labels_mean)))
    sums = {k: first(v) for k, v in sums.items()}
    for k, v in sums.items():
      self.sums[k].assign_add(v)
    return sums['loss.train']

  def _train_loop_fn(self, iterator, num_steps):
    """`num_steps` training steps; returns the last step's loss."""

    def body(i, loss):
      del loss
      batch = next(iterator)
      seed = tf.random.experimental.stateless_fold_in(
          tf.constant([self.seed, 7], tf.int64),
          tf.cast(self.optimizer.iterations, tf.int64))
      sums, weak_mean, labels_mean = self.strategy.run(
          self._replica_step, args=(batch, seed))
      return i + 1, self._cross_replica_updates(sums, weak_mean, labels_mean)

    _, loss = tf.while_loop(lambda i, _: i < num_steps, body,
                            (tf.constant(0, num_steps.dtype), tf.constant(0.0)))
    return loss

  def _to_float(self, x):
    """uint8 images [b, H, W, C] -> float32 in [-1, 1], as training's."""
    return self._unaugmented(x, tf.zeros([2], tf.int64))

  def _forward_both_fn(self, x):
    x = self._to_float(x)
    return (tf.cast(self.model(x, training=False), tf.float32),
            tf.cast(self.ema(x, training=False), tf.float32))

  def _forward_ema_fn(self, x):
    return tf.cast(self.ema(self._to_float(x), training=False), tf.float32)

  def _eval_both_fn(self, x):
    raw, ema = self.strategy.run(self._forward_both, args=(x,))
    return self.strategy.gather(raw, 0), self.strategy.gather(ema, 0)

  def _eval_ema_fn(self, x):
    return (self.strategy.gather(
        self.strategy.run(self._forward_ema, args=(x,)), 0),)

  # ------------------------------------------------------------ evaluation
  def logits(self, images: np.ndarray, raw: bool = True) -> tuple:
    """Logits on un-augmented images: (raw, EMA), or (EMA,) if not `raw`.

    Args:
      images: uint8 [N, H, W, C].

    Returns: float32 [N, K] arrays.
    """
    n, k = len(images), self.num_classes
    step_fn = self._eval_both if raw else self._eval_ema
    if n == 0:
      return tuple(np.zeros([0, k], np.float32) for _ in range(1 + raw))
    # Pad to whole batches so that one trace serves every batch.
    batch = self.cfg.eval_batch_size
    batch += -batch % self.num_replicas
    padded = -n % batch
    if padded:
      images = np.concatenate([images, np.zeros((padded,) + images.shape[1:],
                                                images.dtype)])
    # Global replica r (on any worker) takes rows [r b, (r + 1) b) of each
    # batch; strategy.gather puts them back in order. Slicing here instead of
    # distributing a tf.data pipeline saves seconds per call.
    per_replica = batch // self.num_replicas
    parts = []
    for start in range(0, len(images), batch):

      def replica_rows(ctx, start=start):
        first = start + ctx.replica_id_in_sync_group * per_replica
        return tf.constant(images[first:first + per_replica])

      parts.append(step_fn(
          self.strategy.experimental_distribute_values_from_function(
              replica_rows)))
    return tuple(np.concatenate([p[i].numpy() for p in parts])[:n]
                 for i in range(len(parts[0])))

  def evaluate_test(self) -> Dict[str, object]:
    """Test metrics of the raw and EMA models, with and without logit
    adjustment: one forward pass per model, the adjustment is a shift of the
    same logits by -log p_data."""
    raw, ema = self.logits(self.data.test_images)
    self.last_test_logits = (int(self.step), ema)
    labels = self.data.test_labels
    p_data = self.p_data.numpy()
    out = {}
    for name, logits in (('acc.test', raw), ('acc.test.ema', ema)):
      for suffix, lg in (('', logits),
                         ('.la', metrics_lib.logit_adjust(logits, p_data))):
        rep = metrics_lib.classification_report(labels, lg)
        key = name.replace('acc.test', 'acc.test' + suffix)
        out[key] = rep['accuracy']
        out['per_class_' + key] = rep['recall'].tolist()
    out['monitor.kl_data'] = float(distributions.kl_uniform(self.p_data))
    out['monitor.kl_model'] = float(distributions.kl_uniform(
        distributions.p_model(self.p_model_history)))
    return out

  def ema_test_logits(self) -> np.ndarray:
    """EMA logits on the test set at the current step, float32 [T, K] (reuses
    the last epoch's evaluation when it was at this step)."""
    step, logits = getattr(self, 'last_test_logits', (None, None))
    if step == self.step:
      return logits
    return self.logits(self.data.test_images, raw=False)[0]

  def predict_ema(self, images: np.ndarray) -> np.ndarray:
    """Softmax scores of the EMA model, float32 [N, K]."""
    (ema,) = self.logits(images, raw=False)
    return tf.nn.softmax(ema).numpy()

  # -------------------------------------------------------------- training
  @property
  def step(self) -> int:
    """Training steps done in this generation."""
    return int(self.optimizer.iterations.numpy())

  def restore(self) -> int:
    """Restores the latest readable checkpoint; returns the steps done.

    An unreadable checkpoint (truncated, corrupt) is reported and the previous
    one is used instead.
    """
    for path in reversed(self._checkpoints()):
      try:
        self.checkpoint.restore(path).assert_existing_objects_matched()
      except Exception as e:  # pylint: disable=broad-except
        # Truncated files raise IndexError, corrupt ones OpError/ValueError.
        logging.warning('Checkpoint %s is unreadable (%s: %s); falling back '
                        'to the previous one.', path, type(e).__name__,
                        str(e).splitlines()[0][:200])
        continue
      logging.info('Restored %s (step %d, epoch %d).', path, self.step,
                   int(self.epoch.numpy()))
      break
    else:
      if self._checkpoints():
        raise UserError(
            f'No readable checkpoint in {self.ckpt_dir}; delete that '
            'directory to retrain this generation, or use --force_init.')
    done = int(self.epoch.numpy())
    hist_path = os.path.join(self.work_dir, 'stats', 'history.json')
    self.history = {}
    if done and os.path.exists(hist_path):
      self.history = {k: v[:done]
                      for k, v in records.read_json(hist_path).items()}
    return self.step

  def _checkpoints(self) -> List[str]:
    """The chief's checkpoints, oldest first."""
    if self.is_chief:
      return list(self.manager.checkpoints)
    state = tf.train.get_checkpoint_state(self.ckpt_dir)
    return list(state.all_model_checkpoint_paths) if state else []

  def _skipped(self) -> List[int]:
    path = os.path.join(self.work_dir, ROLLBACK_FILE)
    return records.read_json(path)['skipped'] if os.path.exists(path) else []

  def train(self, labeled_positions: np.ndarray,
            labeled_labels: np.ndarray) -> None:
    """Trains (or finishes training) this generation.

    Raises:
      NonFiniteLossError: the loss became NaN or infinite (after
        MAX_ROLLBACKS consecutive rollbacks with --do_rollback).
      crest.interrupt.Interrupted: on SIGTERM / SIGINT, after a checkpoint.
    """
    cfg = self.cfg
    self.restore()
    if not self._checkpoints():
      self.manager.save(checkpoint_number=0)  # A state to roll back to.
    self.skip = self._skipped()
    rollbacks = 0
    while self.step < cfg.steps_per_generation:
      try:
        self._train_from_step(labeled_positions, labeled_labels)
      except NonFiniteLossError as e:
        if not cfg.do_rollback:
          raise
        rollbacks += 1
        if rollbacks > MAX_ROLLBACKS:
          raise NonFiniteLossError(
              f'{e} Gave up after {MAX_ROLLBACKS} consecutive rollbacks.'
          ) from None
        self.skip = sorted(set(self.skip) | set(e.batches))
        if self.is_chief:
          records.write_json(os.path.join(self.work_dir, ROLLBACK_FILE),
                             {'skipped': self.skip})
        logging.warning('%s Rolling back to the last checkpoint and skipping '
                        'input batch(es) %s (rollback %d of at most %d).', e,
                        e.batches, rollbacks, MAX_ROLLBACKS)
        self.restore()
      else:
        rollbacks = 0
    if not self.is_chief:
      shutil.rmtree(self.manager.directory, ignore_errors=True)

  def _train_from_step(self, labeled_positions, labeled_labels) -> None:
    cfg, data = self.cfg, self.data
    step = self.step
    skip = self.skip
    first_batch = step
    for k in sorted(skip):
      if k <= first_batch:
        first_batch += 1
    spec = pipeline.StreamSpec(
        batch_size=cfg.batch_size, unlab_ratio=cfg.unlab_ratio,
        augment=cfg.augment, weakaug=cfg.weakaug, strongaug=cfg.strongaug,
        num_weakaug=cfg.num_weakaug, num_strongaug=cfg.num_strongaug,
        seed=self.seed)
    stream = data.unlabeled_stream_positions
    ds = pipeline.train_dataset(
        data.train_images, labeled_positions, labeled_labels, stream,
        data.train_labels[stream], spec, start_step=first_batch,
        num_steps=cfg.steps_per_generation - step, skip=skip)
    iterator = iter(self.strategy.experimental_distribute_dataset(
        pipeline.shard_by_data(ds)))
    batch_index = [first_batch]  # The stream's batch index of the next step.

    def next_batches(n):
      out = []
      while len(out) < n:
        if batch_index[0] not in skip:
          out.append(batch_index[0])
        batch_index[0] += 1
      return out

    while self.step < cfg.steps_per_generation:
      self._train_epoch(iterator, next_batches)

  def _train_epoch(self, iterator, next_batches) -> None:
    cfg = self.cfg
    step = self.step
    epoch, offset = divmod(step, cfg.num_batch)
    if offset == 0:
      for v in self.sums.values():
        v.assign(0.0)
    start = time.time()
    desc = (f'{os.path.basename(self.work_dir)} epoch '
            f'{epoch + 1}/{cfg.num_epoch}')
    with Progress(cfg.num_batch, desc, enabled=cfg.progress) as bar:
      bar.update(offset)
      done = offset
      while done < cfg.num_batch:
        n = min(cfg.steps_per_loop, cfg.num_batch - done)
        batches = next_batches(n)
        loss = float(self._train_loop(iterator, tf.constant(n)))
        if not np.isfinite(loss):
          raise NonFiniteLossError(
              f'The training loss became {loss} at step {self.step} '
              f'(epoch {epoch + 1}).', batches)
        done += n
        bar.update(n)
        signum = interrupt.requested()
        if signum is not None and done < cfg.num_batch:
          self.manager.save(checkpoint_number=self.step)
          raise interrupt.Interrupted(
              signum, f'Stopped by signal {signum} at step {self.step}; '
              f'checkpoint saved in {self.manager.directory}. Re-run the '
              'same command to resume.')
    elapsed = time.time() - start
    values = {k: float(v.numpy()) / cfg.num_batch
              for k, v in self.sums.items()}
    values['monitor.lr'] = float(
        _LearningRate(cfg)(self.optimizer.iterations - 1))
    values['monitor.steps_per_sec'] = (cfg.num_batch - offset) / max(
        elapsed, 1e-9)
    values.update(self.evaluate_test())
    self._log_epoch(epoch, values)
    self.epoch.assign(epoch + 1)
    self.manager.save(checkpoint_number=self.step)
    signum = interrupt.requested()
    if signum is not None and self.step < cfg.steps_per_generation:
      raise interrupt.Interrupted(
          signum, f'Stopped by signal {signum} at step {self.step}; '
          f'checkpoint saved in {self.manager.directory}. Re-run the same '
          'command to resume.')

  def _log_epoch(self, epoch: int, values: Dict[str, object]) -> None:
    for k, v in values.items():
      self.history.setdefault(k, []).append(v)
    logging.info(
        '%s epoch %d/%d: loss %.4f xe %.4f xeu %.4f mask %.3f | test %.4f '
        'ema %.4f (la %.4f / %.4f) | %.2f steps/s',
        os.path.basename(self.work_dir), epoch + 1, self.cfg.num_epoch,
        values['loss.train'], values['loss.xe'], values['loss.xeu'],
        values['monitor.mask'], values['acc.test'], values['acc.test.ema'],
        values['acc.test.la'], values['acc.test.la.ema'],
        values['monitor.steps_per_sec'])
    if not self.is_chief:
      return
    step = (epoch + 1) * self.cfg.num_batch
    with self.writer.as_default():
      for k, v in values.items():
        if isinstance(v, list):
          for c, x in enumerate(v):
            summaries.scalar(f'{k}/class_{c:03d}', x, step)
        else:
          summaries.scalar(k, v, step)
    self.writer.flush()
    records.write_stats(os.path.join(self.work_dir, 'stats'), self.history)
