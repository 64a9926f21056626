"""The short-key grammar of augmentation specs ('dh', 'dhrac', 'x', ...).

Also holds the help text of the original's '+'-joined grammar (parsed by
`augment.ops_spec`), so every spec error lists both.
"""
from __future__ import annotations

from typing import Dict, Tuple

from augment import stages as st
from augment.errors import AugmentError

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


# The stage of each key.
KEY_STAGES: Dict[str, st.Stage] = {
    'd': st.Shift(),
    'h': st.HFlip(),
    'ra': st.RandAugment(mode='all'),
    'rc': st.RandAugment(mode='color'),
    'rg': st.RandAugment(mode='geo'),
    'c': st.Cutout(0.5),
}

# The original's '+'-joined ops: syntax -> meaning (the order of the help).
OPS: Dict[str, str] = {
    'hflip': 'random horizontal flip',
    'cutout{scale}': 'Cutout of scale x the side (default 0.5)',
    'randaug{layers}-{prob}-{magnitude}-{levels}-{mode}':
        'RandAugment; empty fields take the defaults 2, 0.5, random, '
        'continuous, all; mode all / color / geo / cutout',
    'jitter[_b{x}][_c{x}][_s{x}][_h{x}]':
        'colour jitter: brightness, contrast, saturation, hue (defaults '
        '0.125, 0.4, 0.4, 0)',
    'blur{prob}': 'Gaussian blur with probability prob (default 0.5); a '
                  'no-op unless built with emulate_blur_noop=False, as in '
                  'the original',
    'cnr{min_scale} / crop_and_resize{min_scale}':
        'random crop of min_scale..1 x the side, resized back (default 0.4); '
        'drops the ops before it',
    'randerase': 'random erasing of a square of 30% of the area',
    'rotate90 / rotate180 / rotate270': 'rotation, counter-clockwise',
    'base': 'restart from the random shift (drops the ops before it)',
}

# The original's shortcuts (each is also a valid short-key spec).
SHORTCUTS: Dict[str, str] = {
    'd': '(the random shift alone)',
    'x': 'x',
    'dh': 'hflip',
    'dhc': 'hflip+cutout0.5',
    'dhrac': 'hflip+randaug2-0.5---all+cutout0.5',
}


def valid_message() -> str:
  """The grammar, for error messages: every short key and every op."""
  keys = '; '.join(f'{k} = {v}' for k, v in KEYS.items())
  ops = '; '.join(f'{k} = {v}' for k, v in OPS.items())
  shortcuts = ', '.join(f'{k} = {v}' for k, v in SHORTCUTS.items())
  return (f'Valid keys: {keys}. A short spec concatenates keys, applied in '
          "order, e.g. 'dh' (weak) or 'dhrac' (strong). Or the original's "
          f"form: ops joined by '+', after an implicit random shift: {ops}; "
          "'x' alone = no augmentation; e.g. "
          "'hflip+randaug2-0.5---all+cutout0.5'. Shortcuts: "
          f'{shortcuts}.')



def parse(spec: str) -> Tuple[str, ...]:
  """Splits a spec into its keys.

  Args:
    spec: e.g. 'dhrac'.

  Returns:
    The keys in order, e.g. ('d', 'h', 'ra', 'c'); ('x',) for 'x'.

  Raises:
    AugmentError: not a string, empty, an unknown key, or 'x' with others.
      (This grammar only; `augment.ops_spec.parse_stages` takes both.)
  """
  if not isinstance(spec, str) or not spec:
    raise AugmentError(f'Augmentation spec must be a non-empty string, got '
                      f"{spec!r}; use 'x' for no augmentation. "
                      + valid_message())
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
      raise AugmentError(f'Unknown augmentation key {bad!r} at position {i} '
                        f'of spec {spec!r}. ' + valid_message())
  if 'x' in keys and len(keys) > 1:
    raise AugmentError(f"Augmentation spec {spec!r} mixes 'x' (no "
                      "augmentation) with other keys; use 'x' alone or drop "
                      'it. ' + valid_message())
  return tuple(keys)


def key_stages(keys: Tuple[str, ...]) -> Tuple[st.Stage, ...]:
  """The stages of parsed keys; () for ('x',)."""
  return tuple(KEY_STAGES[k] for k in keys if k != 'x')
