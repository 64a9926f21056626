"""The thin trainer of one generation: the strategy, the step loop and the
summaries. Methods own their loss (`crest.methods`), `crest.generations`
the generations; the optimizer (`crest.optimization`), the models
(`crest.models`), the EMA (`crest.ema`), checkpoints and rollback
(`crest.checkpoints`) and evaluation (`crest.evaluation`) are modules of
their own."""
from __future__ import annotations

import os
import time
from typing import Dict, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from crest import checkpoints as checkpoints_lib
from crest import distributions
from crest import ema as ema_lib
from crest import evaluation
from crest import input_stream
from crest import interrupt
from crest import method_api
from crest import methods
from crest import models
from crest import optimization
from crest import summaries
from crest import xla_step
from crest.checkpoints import MAX_ROLLBACKS, NonFiniteLossError
from crest.config import Config
from crest.progress import Progress
from data.base import SSLData

TRAIN_METRICS = ('loss.train', 'loss.xe', 'loss.xeu', 'loss.wd', 'acc.train',
                 'acc.unlab', 'monitor.mask')


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
    method = methods.get(cfg.method)
    xla_step.check(cfg, strategy.num_replicas_in_sync, method)
    self.gt_p_data = tf.constant(np.asarray(data.gt_p_data), tf.float32)
    self.num_replicas = strategy.num_replicas_in_sync

    self.model, self.ema, self.decay_variables = models.build_model_and_ema(
        cfg, strategy, k, seed)
    with strategy.scope():
      self.optimizer = optimization.make_optimizer(cfg)
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

    self.checkpoint = tf.train.Checkpoint(
        model=self.model, ema=self.ema, optimizer=self.optimizer,
        p_model_history=self.p_model_history, p_data=self.p_data,
        epoch=self.epoch, sums=self.sums)
    self.ckpt_dir = os.path.join(work_dir, 'ckpt')
    nbytes = sum(int(np.prod(v.shape)) * tf.as_dtype(v.dtype).size
                 for v in (self.model.variables + self.ema.variables +
                           list(self.optimizer.variables)))
    self.checkpoints = checkpoints_lib.Checkpoints(
        self.checkpoint, self.ckpt_dir, is_chief, cfg.keep_checkpoints,
        nbytes=nbytes)
    # What `self.health` checks for finiteness after each call.
    self._checked_variables = [v for v in self.model.variables
                               if tf.as_dtype(v.dtype).is_floating]
    self.epoch_log = summaries.EpochLog(work_dir, is_chief, cfg.num_epoch,
                                        cfg.num_batch)
    # --jit_compile: XLA compiles each replica's forward/backward (in the
    # pieces `crest.xla_step` describes), and the evaluation forward on one
    # device (on several, TF 2.21 places the compiled forward's variables on
    # the wrong device); the cross-replica reductions, optimizer and EMA
    # updates stay outside.
    self._loss_and_grads = xla_step.ReplicaLoss(
        cfg, method, self.params, self.model, self.optimizer,
        self.decay_variables, self.num_replicas)
    jit = (lambda fn: tf.function(fn, jit_compile=True)) if (
        cfg.jit_compile and self.num_replicas == 1) else (lambda fn: fn)
    self.evaluator = evaluation.Evaluator(
        strategy, self.model, self.ema, data.train_images.shape[1],
        cfg.eval_batch_size, compile_fn=jit)
    # No autograph: the step code has no tensor-dependent Python control
    # flow, and converting it cost seconds of every generation's first step.
    self.train_steps = tf.function(self._train_steps_fn, autograph=False)
    self.health = tf.function(self._health_fn, autograph=False)

  # ---------------------------------------------------------------- steps
  @property
  def loss_fn(self):
    """The method's loss as the single-piece step calls it (replaceable)."""
    return self._loss_and_grads.loss_fn

  @loss_fn.setter
  def loss_fn(self, fn):
    self._loss_and_grads.loss_fn = fn

  def _replica_step(self, batch, seed):
    cfg = self.cfg
    ctx = tf.distribute.get_replica_context()
    stats = method_api.Stats(
        p_model=distributions.p_model(self.p_model_history),
        p_data=tf.convert_to_tensor(self.p_data), gt_p_data=self.gt_p_data,
        dalign_t=tf.constant(self.dalign_t, tf.float32), seed=seed)
    variables = self.model.trainable_variables
    out, wd, total, grads, moving = self._loss_and_grads(batch, stats)
    for v, value in moving:
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

  def _cross_replica_updates(self, sums, weak_mean, labels_mean):
    """EMA and running distributions, after the optimizer step."""
    first = lambda x: self.strategy.experimental_local_results(x)[0]
    ema_lib.update_ema(self.strategy, self.ema, self.model,
                       self.cfg.ema_decay)
    self.p_model_history.assign(distributions.update_p_model_history(
        self.p_model_history, first(weak_mean)[None]))
    self.p_data.assign(distributions.update_p_data_from_mean(
        self.p_data, first(labels_mean)))
    sums = {k: first(v) for k, v in sums.items()}
    for k, v in sums.items():
      self.sums[k].assign_add(v)
    return sums['loss.train']

  def _train_steps_fn(self, iterator, num_steps):
    """`num_steps` training steps (`self.train_steps`, one tf.function);
    returns the last step's loss.

    Args:
      iterator: a distributed iterator over `data.pipeline.train_dataset`.
      num_steps: int32 scalar tensor.
    """

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

  def _health_fn(self):
    """(the learning rate of the last step, whether every model variable is
    finite), scalar tensors (`self.health`, one tf.function)."""
    lr = tf.cast(optimization.last_learning_rate(self.optimizer), tf.float32)
    finite = tf.reduce_all(tf.stack(
        [tf.reduce_all(tf.math.is_finite(v)) for v in
         self._checked_variables]))
    return lr, finite

  # ------------------------------------------------------------ evaluation
  def logits(self, images: np.ndarray, raw: bool = True) -> tuple:
    """Logits on un-augmented images: (raw, EMA), or (EMA,) if not `raw`.

    Args:
      images: uint8 [N, H, W, C].

    Returns: float32 [N, K] arrays.
    """
    return self.evaluator.logits(images, self.num_classes, raw=raw)

  def evaluate_test(self) -> Dict[str, object]:
    """Test metrics of the raw and EMA models (`evaluation.test_metrics`):
    one forward pass per model; logit adjustment shifts the same logits."""
    raw, ema = self.logits(self.data.test_images)
    self.last_test_logits = (int(self.step), ema)
    return evaluation.test_metrics(
        raw, ema, self.data.test_labels, self.p_data.numpy(),
        distributions.p_model(self.p_model_history).numpy())

  def ema_test_logits(self) -> np.ndarray:
    """EMA logits on the test set at the current step, float32 [T, K] (reuses
    the last epoch's evaluation when it was at this step)."""
    step, logits = getattr(self, 'last_test_logits', (None, None))
    if step == self.step:
      return logits
    return self.logits(self.data.test_images, raw=False)[0]

  def predict_ema(self, images: np.ndarray,
                  positions: np.ndarray = None) -> np.ndarray:
    """Softmax scores of the EMA model on `images[positions]` (default: all
    rows), float32 [N, K]; reads one batch of `images` at a time."""
    (ema,) = self.evaluator.logits(images, self.num_classes, raw=False,
                                   positions=positions)
    return tf.nn.softmax(ema).numpy()

  # -------------------------------------------------------------- training
  @property
  def step(self) -> int:
    """Training steps done in this generation."""
    return int(self.optimizer.iterations.numpy())

  def restore(self) -> int:
    """Restores the latest readable checkpoint (an unreadable one is
    reported and the previous one used) and the epoch history; returns the
    steps done."""
    path = self.checkpoints.restore_latest()
    if path is not None:
      logging.info('Restored %s (step %d, epoch %d).', path, self.step,
                   int(self.epoch.numpy()))
    self.epoch_log.restore(int(self.epoch.numpy()))
    return self.step

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
    if not self.checkpoints.paths():
      self.checkpoints.save(0)  # A state to roll back to.
    self.skip = checkpoints_lib.read_skipped(self.work_dir)
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
          checkpoints_lib.write_skipped(self.work_dir, self.skip)
        logging.warning('%s Rolling back to the last checkpoint and skipping '
                        'input batch(es) %s (rollback %d of at most %d).', e,
                        e.batches, rollbacks, MAX_ROLLBACKS)
        self.restore()
      else:
        rollbacks = 0
    self.checkpoints.finish()

  def _train_from_step(self, labeled_positions, labeled_labels) -> None:
    iterator, counter = input_stream.distributed_iterator(
        self.cfg, self.strategy, self.data, labeled_positions, labeled_labels,
        self.seed, self.step, self.skip)
    while self.step < self.cfg.steps_per_generation:
      self._train_epoch(iterator, counter.take)

  def _interrupted(self, signum: int) -> interrupt.Interrupted:
    return interrupt.Interrupted(
        signum, f'Stopped by signal {signum} at step {self.step}; '
        f'checkpoint saved in {self.checkpoints.directory}. Re-run the same '
        'command to resume.')

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
        loss = float(self.train_steps(iterator, tf.constant(n)))
        lr, finite = self.health()
        checkpoints_lib.check_finite(
            self.cfg, loss, float(lr), bool(finite), batches,
            where=f'at step {self.step} (epoch {epoch + 1})')
        done += n
        bar.update(n)
        signum = interrupt.requested()
        if signum is not None and done < cfg.num_batch:
          self.checkpoints.save(self.step)
          raise self._interrupted(signum)
    elapsed = time.time() - start
    values = {k: float(v.numpy()) / cfg.num_batch
              for k, v in self.sums.items()}
    values['monitor.lr'] = optimization.applied_learning_rate(self.optimizer)
    values['monitor.steps_per_sec'] = (cfg.num_batch - offset) / max(
        elapsed, 1e-9)
    values.update(self.evaluate_test())
    self.epoch_log.log(epoch, values)
    self.epoch.assign(epoch + 1)
    self.checkpoints.save(self.step)
    signum = interrupt.requested()
    if signum is not None and self.step < cfg.steps_per_generation:
      raise self._interrupted(signum)
