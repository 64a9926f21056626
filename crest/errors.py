"""Errors that mean "the user's input is wrong", with a message saying how.

The lower layers (`data/`, `augment/`, `networks/`) raise their own error
types and import nothing from `crest/`; `USER_ERRORS` gathers them all for
the entry point, which turns any of them into a message and exit code 2.
"""
from typing import Iterable

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
