"""Errors of the augmentation layer (it depends on nothing above it; the
entry point maps them to exit code 2)."""


class AugmentError(ValueError):
  """An augmentation spec or image size that cannot work; the message lists
  the valid keys and ops."""
