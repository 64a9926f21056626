"""Parses a spec of either grammar into a tuple of stages.

Two grammars are accepted (both are listed by `augment.spec.valid_message`):

* Short keys ('dh', 'dhrac', 'cdd', 'x'): `augment.spec.parse`.
* The original's '+'-joined ops ('hflip+randaug2-0.5---all+cutout0.5'), as its
  `data/augment.py` reads them: every spec but 'x' starts with the random
  shift, then applies its ops in order. `cnr{s}` / `crop_and_resize{s}` and
  `base` discard everything before them (the original's augment functions for
  them ignore the chain they are given); `base` restarts from the shift.

The original's shortcuts ('d', 'x', 'dh', 'dhc', 'dhrac') are short-key specs
with the same stages as their long forms, so 'dhrac' and
'hflip+randaug2-0.5---all+cutout0.5' parse to the same tuple.
"""
from __future__ import annotations

import re
from typing import List, Optional, Tuple

from augment import spec as spec_lib
from augment import stages as st
from augment.errors import AugmentError

_NUMBER = re.compile(r'(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?')
_INT = re.compile(r'\d+')
# Op names that take a numeric suffix, in the order the original tests them.
_SUFFIX_OPS = ('cutout', 'randaug', 'blur', 'jitter', 'cnr', 'crop_and_resize')
_PLAIN_OPS = ('hflip', 'randerase', 'rotate90', 'rotate180', 'rotate270',
              'base')


class _BadOp(Exception):
  """A malformed op; carries the reason (turned into a AugmentError)."""


def _number(text: str, what: str, low: float, high: float,
            low_open: bool = False) -> float:
  """float(text) if it is a plain non-negative number in range."""
  if not _NUMBER.fullmatch(text):
    raise _BadOp(f'{what} must be a number, got {text!r}')
  value = float(text)
  if value > high or value < low or (low_open and value == low):
    bracket = '(' if low_open else '['
    raise _BadOp(f'{what} must be in {bracket}{low:g}, {high:g}], got {text}')
  return value


def _optional_number(text: str, default: float, what: str, low: float,
                     high: float, low_open: bool = False) -> float:
  return default if text == '' else _number(text, what, low, high, low_open)


def _randaug(args: str) -> st.RandAugment:
  """'{layers}-{prob}-{magnitude}-{levels}-{mode}', empty = default."""
  fields = args.split('-')
  if len(fields) != 5:
    raise _BadOp('randaug takes 5 fields {layers}-{prob}-{magnitude}-'
                 f'{{levels}}-{{mode}} (empty = default), got {len(fields)} '
                 f'in {args!r}; e.g. randaug2-0.5---all')
  layers, prob, magnitude, levels, mode = fields
  if layers and not _INT.fullmatch(layers):
    raise _BadOp(f'randaug layers must be an integer, got {layers!r}')
  if levels and not _INT.fullmatch(levels):
    raise _BadOp(f'randaug levels must be an integer, got {levels!r}')
  mode = mode.lower() or 'all'
  if mode not in st.RANDAUG_MODES:
    raise _BadOp(f'randaug mode must be one of {", ".join(st.RANDAUG_MODES)} '
                 f'(any case), got {fields[4]!r}')
  # The original: levels 0 (like empty) means a continuous magnitude.
  num_levels: Optional[int] = int(levels) if levels and int(levels) else None
  return st.RandAugment(
      layers=int(layers) if layers else 2,
      prob=_optional_number(prob, 0.5, 'randaug prob', 0.0, 1.0),
      magnitude=(None if magnitude == '' else
                 _number(magnitude, 'randaug magnitude', 0.0, 1.0)),
      levels=num_levels, mode=mode)


def _jitter(args: str) -> st.Jitter:
  """'[_b{x}][_c{x}][_s{x}][_h{x}]' in any order; the last of a letter wins."""
  values = {}
  for part in filter(None, args.split('_')):
    letter, text = part[0], part[1:]
    if letter not in 'bcsh':
      raise _BadOp(f'jitter parts are b{{x}}, c{{x}}, s{{x}}, h{{x}} '
                   f'(brightness, contrast, saturation, hue), got {part!r}')
    if letter == 'b':
      values['brightness'] = _number(text, 'jitter brightness', 0.0,
                                     float('inf'))
    elif letter == 'c':
      # The original's contrast range [1 - c, 1 + c] needs c <= 1.
      values['contrast'] = _number(text, 'jitter contrast', 0.0, 1.0)
    elif letter == 's':
      values['saturation'] = _number(text, 'jitter saturation', 0.0, 1.0)
    else:
      # As the original: hue strengths above 0.5 turn are clamped to 0.5.
      values['hue'] = min(0.5, _number(text, 'jitter hue', 0.0,
                                       float('inf')))
  return st.Jitter(**values)


def _op(token: str) -> Optional[st.Stage]:
  """The stage of one op; None for 'base' (the restart marker)."""
  if token in _PLAIN_OPS:
    if token == 'hflip':
      return st.HFlip()
    if token == 'randerase':
      return st.RandErase()
    if token == 'base':
      return None
    return st.Rotate90(int(token[len('rotate'):]) // 90)
  if token == 'x':
    raise _BadOp("'x' (no augmentation) must be the whole spec")
  for name in _SUFFIX_OPS:
    if token.startswith(name):
      args = token[len(name):]
      break
  else:
    try:
      spec_lib.parse(token)
    except AugmentError:
      raise _BadOp('unknown op') from None
    raise _BadOp(f"short keys ({token!r}) cannot be joined with '+' ops; "
                 'use one grammar or the other')
  if name == 'cutout':
    return st.Cutout(_optional_number(args, 0.5, 'cutout scale', 0.0, 1.0))
  if name == 'randaug':
    return _randaug(args)
  if name == 'blur':
    return st.Blur(_optional_number(args, 0.5, 'blur prob', 0.0, 1.0))
  if name == 'jitter':
    return _jitter(args)
  return st.CropResize(_optional_number(args, 0.4, f'{name} min_scale', 0.0,
                                        1.0, low_open=True))


# No short-key spec starts with one of these.
_LONG_HEADS = _SUFFIX_OPS + ('hflip', 'randerase', 'rotate', 'base')


def _looks_long(spec: str) -> bool:
  return '+' in spec or spec.startswith(_LONG_HEADS)


def parse_ops(spec: str) -> Tuple[st.Stage, ...]:
  """Parses the original's '+'-joined form (no shortcuts, not 'x').

  Raises:
    AugmentError: an empty op ('a++b', a leading or trailing '+'), an unknown
      op, or a malformed or out-of-range argument.
  """
  stages: List[st.Stage] = [st.Shift()]
  for position, token in enumerate(spec.split('+')):
    try:
      if not token:
        raise _BadOp("empty op (a doubled, leading or trailing '+')")
      stage = _op(token)
    except _BadOp as e:
      raise AugmentError(f'Bad augmentation op {token!r} (op {position + 1}) '
                        f'in spec {spec!r}: {e}. '
                        + spec_lib.valid_message()) from None
    if stage is None:  # base
      stages = [st.Shift()]
    elif isinstance(stage, st.CropResize):
      stages = [stage]
    else:
      stages.append(stage)
  return tuple(stages)


def parse_stages(spec: str) -> Tuple[st.Stage, ...]:
  """Parses a spec of either grammar.

  Args:
    spec: short keys ('dhrac'), the original's form
      ('hflip+randaug2-0.5---all+cutout0.5') or 'x'.

  Returns:
    The stages in order; () for 'x'.

  Raises:
    AugmentError: not a valid spec of either grammar; the message lists both.
  """
  if isinstance(spec, str) and ',' in spec:
    raise AugmentError(
        f"Augmentation spec {spec!r} has a ','. The original splits its "
        "flags on ',' into one spec per view (e.g. --strongaug=dhrac,hflip "
        'with --num_strongaug=2); here a flag holds one spec, used for every '
        'view. ' + spec_lib.valid_message())
  if isinstance(spec, str) and spec and _looks_long(spec):
    return parse_ops(spec)
  return spec_lib.key_stages(spec_lib.parse(spec))
