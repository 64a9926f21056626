"""Atomic writes of JSON / NPZ records, and the per-metric statistics files."""
from __future__ import annotations

import io
import json
import os
import tempfile
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np

from crest import disk

MEDIAN_WINDOWS = (1, 10, 20, 50)


def _atomic_write_bytes(path: str, data: bytes) -> None:
  """Writes `data` to `path` so that readers see all of it or nothing."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp-',
                             suffix=os.path.basename(path))
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def _write(path: str, data: bytes) -> None:
  """`_atomic_write_bytes`; a full disk raises crest.disk.DiskFullError."""
  with disk.writing(path, len(data)):
    _atomic_write_bytes(path, data)


def _jsonable(x: Any) -> Any:
  if isinstance(x, dict):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, np.ndarray):
    return _jsonable(x.tolist())
  if isinstance(x, np.integer):
    return int(x)
  if isinstance(x, np.floating):
    return float(x)
  if isinstance(x, np.bool_):
    return bool(x)
  return x


def write_json(path: str, obj: Any) -> None:
  """Atomically writes `obj` (NumPy values allowed) as indented JSON."""
  text = json.dumps(_jsonable(obj), indent=2, sort_keys=True) + '\n'
  _write(path, text.encode('utf-8'))


def read_json(path: str) -> Any:
  with open(path, encoding='utf-8') as f:
    return json.load(f)


def write_npz(path: str, **arrays: np.ndarray) -> None:
  """Atomically writes arrays to an uncompressed `.npz`."""
  buf = io.BytesIO()
  np.savez(buf, **arrays)
  _write(path, buf.getvalue())


def medians(history: Sequence[Any],
            windows: Sequence[int] = MEDIAN_WINDOWS) -> Dict[str, Any]:
  """Medians of the last n values for each window n (per element if lists).

  Args:
    history: one value per epoch (a number, or a list such as per-class
      recall).

  Returns:
    {'last1': ..., 'last10': ..., ...}.
  """
  out = {}
  for n in windows:
    tail = np.asarray(history[-n:], np.float64)
    out[f'last{n}'] = (np.median(tail, axis=0).tolist() if len(tail) else None)
  return out


def write_stats(stats_dir: str, history: Mapping[str, List[Any]],
                metric_of_interest: str = 'acc.test.ema') -> None:
  """One JSON per metric with medians of its last 1/10/20/50 epochs, the
  full history, and `summary.json` for the metric of interest."""
  for name, values in history.items():
    write_json(os.path.join(stats_dir, f'{name}.json'), medians(values))
  write_json(os.path.join(stats_dir, 'history.json'), history)
  if metric_of_interest in history:
    write_json(os.path.join(stats_dir, 'summary.json'),
               {metric_of_interest: medians(history[metric_of_interest])})
