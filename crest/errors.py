"""Errors that mean "the user's input is wrong", with a message saying how.

The lower layers (`data/`, `augment/`, `networks/`) raise their own error
types and import nothing from `crest/`; `USER_ERRORS` gathers them all for
the entry point, which turns any of them into a message and exit code 2.
"""
import math
import numbers
from typing import Iterable, Optional

from augment.errors import AugmentError
from data.errors import DataError, DataSettingError  # pylint: disable=unused-import
from networks.errors import NetworkError


class UserError(Exception):
  """Bad input (flags, run directory). The message says what to do."""


class ConfigError(UserError, ValueError):
  """An invalid flag or flag combination."""


USER_ERRORS = (UserError, DataError, AugmentError, NetworkError)


def choices(values: Iterable) -> str:
  """The valid values for a message: "'a', 'b', 'c'"."""
  return ', '.join(repr(v) for v in values)


def require(condition: bool, message: str) -> None:
  """Raises ConfigError(message) unless `condition`."""
  if not condition:
    raise ConfigError(message)


def require_choice(flag: str, value, valid: Iterable) -> None:
  """Raises ConfigError naming --flag and the valid values unless `value`
  is one of them."""
  valid = tuple(valid)
  if value not in valid:
    shown = ', '.join(repr(c) if c is None else str(c) for c in valid)
    raise ConfigError(f'--{flag}={value!r} is not valid; choose one of: '
                      f'{shown}.')


def _range_text(low: Optional[float], high: Optional[float],
                low_open: bool, high_open: bool) -> str:
  if low is not None and high is not None:
    return (f'{"(" if low_open else "["}{low:g}, {high:g}'
            f'{")" if high_open else "]"}')
  if low is not None:
    return f'{">" if low_open else ">="} {low:g}'
  if high is not None:
    return f'{"<" if high_open else "<="} {high:g}'
  return ''


def require_range(flag: str, value, low: Optional[float] = None,
                  high: Optional[float] = None, *, low_open: bool = False,
                  high_open: bool = False, meaning: str = '') -> None:
  """Raises ConfigError naming --flag unless `value` is a finite number in
  the range (`low` / `high` None: unbounded; `*_open`: bound excluded).

  NaN and infinities are always refused, whatever the range.
  """
  ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
        and math.isfinite(value)
        and (low is None or (value > low if low_open else value >= low))
        and (high is None or (value < high if high_open else value <= high)))
  if not ok:
    where = _range_text(low, high, low_open, high_open)
    raise ConfigError(
        f'--{flag}={value!r} is not valid: it must be a finite number'
        + (f' {"in " if where[0] in "([" else ""}{where}' if where else '')
        + (f' ({meaning})' if meaning else '') + '.')
