"""Errors of the network layer (it depends on nothing above it; the entry
point maps them to exit code 2)."""


class NetworkError(ValueError):
  """An architecture, width, input size or option the networks cannot
  build; the message lists the valid choices."""
