"""Which tf.distribute strategy a run uses."""
from __future__ import annotations

import json
import os

import tensorflow as tf
from absl import logging

from crest.errors import ConfigError


def _num_workers_in_tf_config() -> int:
  raw = os.environ.get('TF_CONFIG', '')
  if not raw:
    return 0
  try:
    cluster = json.loads(raw).get('cluster', {})
  except ValueError as e:
    raise ConfigError(f'TF_CONFIG is not valid JSON ({e}); unset it or fix '
                      'it.') from None
  return len(cluster.get('worker', [])) + len(cluster.get('chief', []))


def split_cpu(num: int) -> None:
  """Splits the first CPU into `num` logical devices (before TF starts)."""
  cpus = tf.config.list_physical_devices('CPU')
  current = tf.config.get_logical_device_configuration(cpus[0])
  if current is not None and len(current) == num:
    return
  try:
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * num)
  except RuntimeError:
    have = len(tf.config.list_logical_devices('CPU'))
    if have < num:
      raise ConfigError(
          f'--cpu_replicas={num}: TensorFlow already started with {have} CPU '
          'device(s); set --cpu_replicas before anything uses TensorFlow.'
      ) from None


def _multi_worker_on_cpus(num: int) -> tf.distribute.Strategy:
  """MultiWorkerMirroredStrategy with `num` logical CPU replicas per worker.

  TensorFlow's strategy takes every GPU of a worker but only one CPU device;
  to test multi-device workers without GPUs (--cpu_replicas with TF_CONFIG)
  its local-device choice is widened to the worker's logical CPUs while the
  strategy is built.
  """
  # pylint: disable=g-import-not-at-top,protected-access
  from tensorflow.python.distribute import collective_all_reduce_strategy
  extended = getattr(collective_all_reduce_strategy,
                     'CollectiveAllReduceExtended', None)
  original = getattr(extended, '_initialize_local_devices', None)
  if original is None:
    raise ConfigError(
        f'--cpu_replicas={num} with TF_CONFIG needs TensorFlow\'s '
        'CollectiveAllReduceExtended._initialize_local_devices, which this '
        f'TensorFlow ({tf.__version__}) lacks; drop --cpu_replicas (one CPU '
        'replica per worker).')

  def local_cpus(self, resolver, worker_device):
    devices, kind = original(self, resolver, worker_device)
    if kind == 'CPU':
      devices = tuple(f'{worker_device}/device:CPU:{i}' for i in range(num))
    return devices, kind

  extended._initialize_local_devices = local_cpus
  try:
    return tf.distribute.MultiWorkerMirroredStrategy()
  finally:
    extended._initialize_local_devices = original


def make_strategy(cpu_replicas: int = 0) -> tf.distribute.Strategy:
  """MultiWorkerMirroredStrategy when TF_CONFIG names several workers;
  otherwise MirroredStrategy over all GPUs (or `cpu_replicas` logical CPUs,
  or the CPU)."""
  if _num_workers_in_tf_config() > 1:
    name = 'MultiWorkerMirroredStrategy'
    if cpu_replicas:
      split_cpu(cpu_replicas)
      strategy = _multi_worker_on_cpus(cpu_replicas)
    else:
      strategy = tf.distribute.MultiWorkerMirroredStrategy()
  else:
    name = 'MirroredStrategy'
    if cpu_replicas:
      split_cpu(cpu_replicas)
      devices = [f'/cpu:{i}' for i in range(cpu_replicas)]
      strategy = tf.distribute.MirroredStrategy(devices)
    elif tf.config.list_physical_devices('GPU'):
      strategy = tf.distribute.MirroredStrategy()
    else:
      strategy = tf.distribute.MirroredStrategy(['/cpu:0'])
  logging.info('Strategy %s with %d replica(s).', name,
               strategy.num_replicas_in_sync)
  return strategy


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """True on the worker that writes records and summaries."""
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  return task_type == 'chief' or (
      task_type == 'worker' and task_id == 0 and
      'chief' not in resolver.cluster_spec().as_dict())
