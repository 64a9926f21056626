"""The run directory: its name, its files, and how to read what it holds.

  MODEL_DIR/<run_name(cfg)>/            a run (`path(cfg)`)
    config.json                         the resolved config (CONFIG_FILE)
    data.json                           the data's fingerprint (DATA_FILE)
    run.lock                            one writer at a time (LOCK_FILE)
    gen_00[_t1.00]/                     a generation (generation_dir_name)
      labeled_set.npz                   what it trained on (LABELED_SET_FILE)
      picks.npz                         its pseudo-labels (PICKS_FILE)
      generation.json                   its record (RECORD_FILE), written last

A generation is finished when its `generation.json` exists: the loop writes
it last and atomically, after `labeled_set.npz` and `picks.npz`; it is
trusted only when `read_generation` finds all three complete and consistent
(else `DamagedRecord` names the file). The resume policy (which configs may
reuse a directory) is `crest.generations`'.

Needs only the standard library and NumPy (no TensorFlow), so that results
can be read anywhere.
"""
from __future__ import annotations

import os
import re
from typing import Any, Dict, Optional

from crest import records
from crest.config import Config
from data import registry as data_registry
from data import layout as data_layout

CONFIG_FILE = 'config.json'
DATA_FILE = 'data.json'
LOCK_FILE = 'run.lock'
RECORD_FILE = 'generation.json'
LABELED_SET_FILE = 'labeled_set.npz'
PICKS_FILE = 'picks.npz'
# Matches every `generation_dir_name`; group 1 is the generation.
GENERATION_DIR_RE = re.compile(r'^gen_(\d+)(_t-?[0-9.]+)?$')


def format_ratio(x: float) -> str:
  """A float as the original writes it in paths (0.01 -> '0.01')."""
  if float(x).is_integer():
    return str(int(x))
  return f'{x:g}'


def run_name(cfg: Config) -> str:
  """The run's directory under `model_dir`: data / model / trainer.

  The labeled split reads `p{fraction}` for datasets split by a fraction
  (the fraction used: --percent_labeled, else 0.1), `n{num_labeled}` for
  the others."""
  fraction = cfg.percent_labeled
  if fraction is None and cfg.dataset in data_registry.names():
    fraction = data_registry.labeled_fraction(cfg.dataset, None)
  return _run_name(cfg, fraction)


def _run_name(cfg: Config, fraction: Optional[float]) -> str:
  if fraction is not None:
    lab = f'p{format_ratio(fraction)}'
  else:
    lab = f'n{cfg.num_labeled}' + ('' if cfg.is_balanced else 'u')
  imbalance = (f'im{format_ratio(cfg.class_im_ratio)}'
               if data_registry.uses_class_im_ratio(cfg.dataset)
               else 'asis')  # Data used as is: the flag does nothing.
  data_name = f'{cfg.dataset}_{imbalance}_{lab}_fold{cfg.fold}'

  if cfg.imagenet127_test != 'imbalanced':  # Another test set, another run.
    data_name += f'_test-{cfg.imagenet127_test}'
  if cfg.darp_gamma_u is not None or cfg.darp_unlabeled_shape != 'longtail':
    tag = data_layout.darp_unlabeled_tag(
        cfg.class_im_ratio, cfg.darp_gamma_u, cfg.darp_unlabeled_shape)
    if tag:  # Another unlabeled profile than the labeled one.
      data_name += f'_{tag}'
  counts = data_registry.counts_tag(cfg.dataset, cfg.darp_n1, cfg.darp_m1)
  if counts:  # N1 / M1 other than the protocol's defaults.
    data_name += f'_{counts}'
  sizes = data_registry.image_sizes(cfg.dataset)
  if sizes and int(cfg.input_shape[0]) != sizes[0]:  # Resized images.
    data_name += f'_{int(cfg.input_shape[0])}px'
  model_name = f'{cfg.net_arch}-{format_ratio(cfg.net_width)}'
  desc = [cfg.method, f'ep{cfg.num_epoch}x{cfg.num_batch}',
          f'bs{cfg.batch_size}x{cfg.unlab_ratio}',
          f'lr{cfg.learning_rate:g}', f'{cfg.sched_type}{cfg.sched_level}',
          f'wd{cfg.weight_decay:g}', f'th{cfg.threshold:g}',
          f'T{cfg.temperature:g}', f'wu{cfg.weight_unsup:g}',
          f'{cfg.unsup_loss_type}-{cfg.unsup_loss_divisor}']
  if cfg.do_distalign:
    desc.append('dalign' + (f'-{cfg.how_dalign}{cfg.dalign_t:g}'
                            if cfg.how_dalign else ''))
  if cfg.num_generation > 1:
    desc.append(f'crest{cfg.num_generation}-{cfg.update_mode}'
                f'-a{cfg.alpha:g}')
  if cfg.reweight_labeled:
    desc.append('rwl')
  desc.append(f'seed{cfg.seed}')
  if cfg.file_suffix:
    desc.append(cfg.file_suffix)
  return os.path.join(data_name, model_name, '_'.join(desc))


def path(cfg: Config) -> str:
  """The run directory of `cfg`: `model_dir/run_name(cfg)`, or the name an
  earlier version gave it (`_n25_` for a fraction-split dataset without
  --percent_labeled) when only that directory exists, so that it resumes."""
  new = os.path.join(cfg.model_dir, run_name(cfg))
  if cfg.percent_labeled is None:
    old = os.path.join(cfg.model_dir, _run_name(cfg, None))
    if (old != new and not os.path.exists(new)
        and os.path.exists(os.path.join(old, CONFIG_FILE))):
      return old
  return new


def generation_dir_name(generation: int, temperature: Optional[float]) -> str:
  """'gen_03', or 'gen_03_t0.50' with a per-generation alignment
  temperature."""
  name = f'gen_{generation:02d}'
  if temperature is not None:
    name += f'_t{temperature:.2f}'
  return name


def parse_generation_dir(name: str) -> Optional[int]:
  """The generation of a `generation_dir_name`, or None for other names."""
  m = GENERATION_DIR_RE.match(name)
  return int(m.group(1)) if m else None


def read_config(run_path: str) -> Dict[str, Any]:
  """The run's `config.json` as written (a dict; no validation)."""
  return records.read_json(os.path.join(run_path, CONFIG_FILE))


def load_record(gen_dir: str) -> Optional[Dict[str, Any]]:
  """The finished generation's record, or None if it is not finished."""
  record_path = os.path.join(gen_dir, RECORD_FILE)
  if not os.path.exists(record_path):
    return None
  return records.read_json(record_path)


def finished_generations(run_path: str) -> Dict[int, Dict[str, Any]]:
  """generation -> record of every finished generation of a run."""
  out = {}
  for name in sorted(os.listdir(run_path)):
    generation = parse_generation_dir(name)
    record_path = os.path.join(run_path, name, RECORD_FILE)
    if generation is not None and os.path.isfile(record_path):
      out[generation] = records.read_json(record_path)
  return out
