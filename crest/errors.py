"""Errors that mean "the user's input is wrong", with a message saying how."""


class UserError(Exception):
  """Bad input (flags, data, run directory). The message says what to do."""


class ConfigError(UserError, ValueError):
  """An invalid flag or flag combination."""


class DataError(UserError):
  """Missing, unreadable or malformed data."""
