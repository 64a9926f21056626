"""Errors of the data layer: what was wrong with the data or its settings,
and what to do (the message says). `data/` depends on nothing above it; the
entry point maps these to exit code 2."""


class DataError(Exception):
  """Missing, unreadable or malformed data."""


class DataSettingError(DataError, ValueError):
  """A data setting that cannot work: an unknown dataset, a ratio or split
  size out of range, a missing --data_file."""
