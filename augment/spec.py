"""The short-key grammar of augmentation specs ('dh', 'dhrac', 'x', ...)."""
from __future__ import annotations

from typing import Dict, Tuple

from crest.errors import ConfigError

# key -> what it does (the order here is the order `names()` lists them).
KEYS: Dict[str, str] = {
    'd': 'random shift: reflect-pad 12.5% of the side, random crop',
    'h': 'random horizontal flip (p = 0.5)',
    'ra': 'RandAugment, 2 layers, all 16 ops',
    'rc': 'RandAugment, 2 layers, the 11 colour ops',
    'rg': 'RandAugment, 2 layers, the 5 geometric ops + Identity',
    'c': 'Cutout, a square of half the side set to 0 (mid-grey)',
    'x': 'no augmentation (only the conversion to float); alone',
}


def _valid_message() -> str:
  listing = '; '.join(f'{k} = {v}' for k, v in KEYS.items())
  return (f'Valid keys: {listing}. A spec concatenates keys, applied in '
          f"order, e.g. 'dh' (weak) or 'dhrac' (strong).")


def parse(spec: str) -> Tuple[str, ...]:
  """Splits a spec into its keys.

  Args:
    spec: e.g. 'dhrac'.

  Returns:
    The keys in order, e.g. ('d', 'h', 'ra', 'c'); ('x',) for 'x'.

  Raises:
    ConfigError: not a string, empty, an unknown key, or 'x' with others.
  """
  if not isinstance(spec, str) or not spec:
    raise ConfigError(f'Augmentation spec must be a non-empty string, got '
                      f"{spec!r}; use 'x' for no augmentation. "
                      + _valid_message())
  keys = []
  i = 0
  while i < len(spec):
    two, one = spec[i:i + 2], spec[i]
    if one == 'r' and two in KEYS:
      keys.append(two)
      i += 2
    elif one != 'r' and one in KEYS:
      keys.append(one)
      i += 1
    else:
      bad = two if one == 'r' else one
      raise ConfigError(f'Unknown augmentation key {bad!r} at position {i} '
                        f'of spec {spec!r}. ' + _valid_message())
  if 'x' in keys and len(keys) > 1:
    raise ConfigError(f"Augmentation spec {spec!r} mixes 'x' (no "
                      "augmentation) with other keys; use 'x' alone or drop "
                      'it. ' + _valid_message())
  return tuple(keys)
