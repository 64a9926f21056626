"""The machine a benchmark ran on: CPU, vector extensions, TensorFlow, GPUs,
and its measured matrix-multiply peak.

  python3 scripts/machine_info.py            # CPU, TensorFlow, GPUs
  python3 scripts/machine_info.py --peak     # + tf.linalg.matmul GFLOP/s
  python3 scripts/machine_info.py --json     # the same as JSON

The CPU part reads /proc/cpuinfo only (no TensorFlow); `tf_info` and
`matmul_peak` import TensorFlow, so the benchmarks call them in their
worker processes.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Optional, Sequence

# (name printed, /proc/cpuinfo flag).
VECTOR_FLAGS = (('AVX2', 'avx2'), ('AVX-512F', 'avx512f'),
                ('AVX512_BF16', 'avx512_bf16'), ('AMX-BF16', 'amx_bf16'),
                ('AMX-TILE', 'amx_tile'))


def parse_cpuinfo(text: str) -> dict:
  """The CPU model, vector extensions and logical CPU count of a
  /proc/cpuinfo text.

  Returns:
    {'cpu_model': str ('unknown' if absent), 'flags': {name: bool} for each
    of VECTOR_FLAGS, 'logical_cpus': int (the 'processor' entries)}.
  """
  model, flags, processors = 'unknown', set(), 0
  for line in text.splitlines():
    key, sep, value = line.partition(':')
    if not sep:
      continue
    key, value = key.strip().lower(), value.strip()
    if key == 'processor':
      processors += 1
    elif key == 'model name' and model == 'unknown':
      model = value
    elif key in ('flags', 'features') and not flags:  # x86 / ARM.
      flags = set(value.split())
  return {'cpu_model': model,
          'flags': {name: flag in flags for name, flag in VECTOR_FLAGS},
          'logical_cpus': processors}


def cpu_info(path: str = '/proc/cpuinfo') -> dict:
  """`parse_cpuinfo` of this machine plus the CPUs this process may use
  ('usable_cpus', from its affinity mask)."""
  try:
    with open(path) as f:
      info = parse_cpuinfo(f.read())
  except OSError:
    info = parse_cpuinfo('')
  try:
    info['usable_cpus'] = len(os.sched_getaffinity(0))
  except AttributeError:  # Not Linux.
    info['usable_cpus'] = os.cpu_count() or 0
  return info


def gpu_reason(built_with_cuda: bool, num_gpus: int,
               nvidia_smi: Optional[str], smi_output: str) -> str:
  """Why TensorFlow sees no GPU ('' when it sees one).

  Args:
    built_with_cuda: tf.test.is_built_with_cuda().
    num_gpus: GPUs TensorFlow lists.
    nvidia_smi: the path of nvidia-smi, None if not on PATH.
    smi_output: what `nvidia-smi -L` printed (stdout + stderr).
  """
  if num_gpus:
    return ''
  if not built_with_cuda:
    return ('this TensorFlow is not built with CUDA '
            '(tf.test.is_built_with_cuda() is False); on a GPU machine '
            "install pip install 'tensorflow[and-cuda]'")
  if nvidia_smi is None:
    return 'no NVIDIA driver: nvidia-smi is not on PATH'
  if 'GPU ' not in smi_output:
    first = smi_output.strip().splitlines()[:1]
    return ('nvidia-smi lists no device' +
            (f' ({first[0][:200]})' if first else ''))
  return ('nvidia-smi lists a GPU but TensorFlow sees none: the CUDA '
          "libraries are missing or do not match; pip install "
          "'tensorflow[and-cuda]'")


def tf_info() -> dict:
  """TensorFlow's version, oneDNN state and GPUs (imports TensorFlow).

  Returns:
    {'tensorflow': version, 'onednn': bool (oneDNN kernels on in this
    process), 'built_with_cuda': bool, 'gpus': [names], 'gpu_reason': str
    ('' if a GPU was found)}.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    from tensorflow.python.util import _pywrap_util_port  # pylint: disable=g-import-not-at-top
    onednn = bool(_pywrap_util_port.IsMklEnabled())
  except (ImportError, AttributeError):
    onednn = os.environ.get('TF_ENABLE_ONEDNN_OPTS', '') == '1'
  gpus = tf.config.list_physical_devices('GPU')
  names = []
  for device in gpus:
    try:
      details = tf.config.experimental.get_device_details(device)
    except (ValueError, RuntimeError):
      details = {}
    names.append(details.get('device_name', device.name))
  smi = shutil.which('nvidia-smi')
  smi_output = ''
  if not gpus and smi:
    try:
      proc = subprocess.run([smi, '-L'], capture_output=True, text=True,
                            timeout=30, check=False)
      smi_output = proc.stdout + proc.stderr
    except (OSError, subprocess.TimeoutExpired) as e:
      smi_output = str(e)
  built = bool(tf.test.is_built_with_cuda())
  return {'tensorflow': tf.__version__, 'onednn': onednn,
          'built_with_cuda': built, 'gpus': names,
          'gpu_reason': gpu_reason(built, len(gpus), smi, smi_output)}


def matmul_peak(n: int = 2048, dtype: str = 'float32', repeats: int = 5,
                min_seconds: float = 1.0, max_calls: int = 200) -> dict:
  """GFLOP/s of tf.linalg.matmul of two n x n matrices (2 n^3 FLOPs) on the
  default device, after one warm-up call: at least `repeats` timed calls
  and at least `min_seconds` of them (at most `max_calls`), so that a
  moment of contention on a shared machine does not set the peak.

  Returns:
    {'n', 'dtype', 'repeats' (timed calls), 'best_gflops' (the peak),
     'median_gflops'}.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  a = tf.random.stateless_normal([n, n], [1, 2], dtype=tf.float32)
  b = tf.random.stateless_normal([n, n], [3, 4], dtype=tf.float32)
  a, b = tf.cast(a, dtype), tf.cast(b, dtype)

  @tf.function(autograph=False)
  def product():
    # A scalar result: the timing is the product, not a copy to NumPy.
    return tf.reduce_sum(tf.cast(tf.linalg.matmul(a, b)[0, :8], tf.float32))

  product().numpy()
  rates, spent = [], 0.0
  while len(rates) < max(1, repeats) or (spent < min_seconds and
                                         len(rates) < max_calls):
    t = time.perf_counter()
    product().numpy()
    elapsed = time.perf_counter() - t
    spent += elapsed
    rates.append(2 * n ** 3 / elapsed / 1e9)
  rates.sort()
  return {'n': n, 'dtype': dtype, 'repeats': len(rates),
          'best_gflops': rates[-1], 'median_gflops': rates[len(rates) // 2]}


def combine_peaks(*measurements: dict) -> dict:
  """{dtype: peak} from several `machine`-style 'peaks' dicts (e.g. taken
  before and after a benchmark): per dtype the best, with every
  measurement's best under 'measurements' (in order)."""
  out = {}
  for peaks in measurements:
    for dtype, p in (peaks or {}).items():
      best = out.get(dtype)
      seen = (best or {}).get('measurements', []) + [p['best_gflops']]
      if best is None or p['best_gflops'] > best['best_gflops']:
        best = dict(p)
      out[dtype] = dict(best, measurements=seen)
  return out


def _yes(flag: bool) -> str:
  return 'yes' if flag else 'no'


def _peak_text(p: dict) -> str:
  text = (f"{p['dtype']} {p['best_gflops']:.0f} GFLOP/s ({p['n']}x{p['n']}, "
          f"{p['repeats']} runs")
  seen = p.get('measurements', [])
  if len(seen) > 1:
    text += ('; best of the measurements at the start and the end: ' +
             ', '.join(f'{v:.0f}' for v in seen))
  return text + ')'


def format_machine(info: dict) -> str:
  """The machine as a few Markdown-friendly lines (`cpu_info` fields, plus
  `tf_info` and 'peaks' ({dtype: matmul_peak}) where present)."""
  flags = ', '.join(f'{name} {_yes(info["flags"].get(name, False))}'
                    for name, _ in VECTOR_FLAGS)
  lines = [f"Machine: CPU {info['cpu_model']}; {info.get('usable_cpus', '?')} "
           f"usable cores ({info['logical_cpus']} in /proc/cpuinfo)",
           f'Vector extensions: {flags}']
  if 'tensorflow' in info:
    gpus = (f"yes ({', '.join(info['gpus'])})" if info['gpus'] else
            f"no ({info['gpu_reason']})")
    lines.append(f"TensorFlow {info['tensorflow']}; oneDNN "
                 f"{'on' if info['onednn'] else 'off'}; GPU found: {gpus}")
  peaks = info.get('peaks') or {}
  if peaks:
    lines.append('Measured matmul peak (tf.linalg.matmul, best of runs): ' +
                 '; '.join(_peak_text(p) for p in peaks.values()))
  return '\n'.join(lines)


def machine(peak_dtypes: Sequence[str] = (), n: int = 2048,
            repeats: int = 5) -> dict:
  """`cpu_info` + `tf_info` (+ `matmul_peak` per dtype under 'peaks')."""
  info = cpu_info()
  info.update(tf_info())
  info['peaks'] = {d: matmul_peak(n, d, repeats) for d in peak_dtypes}
  return info


def main(argv: Optional[Sequence[str]] = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--peak', action='store_true',
                 help='also measure the float32 and bfloat16 matmul peak')
  p.add_argument('--n', type=int, default=2048, help='matrix size')
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--json', action='store_true')
  args = p.parse_args(argv)
  if args.n < 1 or args.repeats < 1:
    print('--n and --repeats must be >= 1.', file=sys.stderr)
    return 2
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  # The kernels training uses (train_and_eval_loop's --onednn default).
  os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')
  info = machine(('float32', 'bfloat16') if args.peak else (), args.n,
                 args.repeats)
  print(json.dumps(info, indent=2) if args.json else format_machine(info))
  return 0


if __name__ == '__main__':
  sys.exit(main())
