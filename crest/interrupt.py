"""SIGTERM / SIGINT: finish the current steps, checkpoint, exit cleanly.

`install()` (called by the entry point, never at import) replaces the
handlers with one that only records the signal; the trainer polls
`requested()` between `tf.function` calls, saves a checkpoint and raises
`Interrupted`. A second signal of the same kind exits at once.
"""
from __future__ import annotations

import signal
from typing import Optional

_received: Optional[int] = None


class Interrupted(Exception):
  """The run stopped on a signal after saving a checkpoint."""

  def __init__(self, signum: int, message: str):
    super().__init__(message)
    self.signum = signum


def _handler(signum, frame):  # pylint: disable=unused-argument
  global _received
  if _received is not None:
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)
  _received = signum


def install() -> None:
  """Routes SIGTERM and SIGINT to a request for a clean stop."""
  for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, _handler)


def requested() -> Optional[int]:
  """The signal received, if any."""
  return _received


def reset() -> None:
  global _received
  _received = None
