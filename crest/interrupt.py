"""SIGTERM / SIGINT: finish the current steps, checkpoint, exit cleanly.

`install()` (called by the entry point, never at import) replaces the
handlers with one that only records the signal; the trainer polls
`requested()` between `tf.function` calls, saves a checkpoint and raises
`Interrupted`. A second signal exits at once, even while the main thread is
inside a long TensorFlow call: Python runs signal handlers only between
bytecodes of the main thread, so a watcher thread also reads every signal
from `signal.set_wakeup_fd` (written by the C-level handler the moment the
signal arrives; TensorFlow releases the GIL while it computes) and ends the
process on the second one with exit code 128 + the signal number.
"""
from __future__ import annotations

import os
import signal
import threading
from typing import Optional

SIGNALS = (signal.SIGTERM, signal.SIGINT)

_received: Optional[int] = None
_count = 0  # Signals seen by the watcher since `reset()`.
_watching = False


class Interrupted(Exception):
  """The run stopped on a signal after saving a checkpoint."""

  def __init__(self, signum: int, message: str):
    super().__init__(message)
    self.signum = signum


def _exit_now(signum: int) -> None:
  os.write(2, (f'\nSecond signal {signum}: exiting now, without a '
               'checkpoint; re-running the same command resumes from the '
               'last complete one.\n').encode())
  os._exit(128 + signum)  # pylint: disable=protected-access


def _handler(signum, frame):  # pylint: disable=unused-argument
  global _received
  if _received is not None:
    _exit_now(signum)
  _received = signum


def _watch(fd: int) -> None:
  global _count
  while True:
    try:
      data = os.read(fd, 64)
    except OSError:
      return
    if not data:
      return
    for signum in data:
      if signum in SIGNALS:
        _count += 1
        if _count >= 2:
          _exit_now(signum)


def _start_watcher() -> None:
  """Starts the watcher thread once per process (main thread only)."""
  global _watching
  if _watching:
    return
  read_fd, write_fd = os.pipe()
  os.set_blocking(write_fd, False)
  try:
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
  except ValueError:  # Not the main thread: handlers alone.
    os.close(read_fd)
    os.close(write_fd)
    return
  threading.Thread(target=_watch, args=(read_fd,), daemon=True,
                   name='crest-signal-watcher').start()
  _watching = True


def install() -> None:
  """Routes SIGTERM and SIGINT to a request for a clean stop (a second one
  exits at once)."""
  for sig in SIGNALS:
    signal.signal(sig, _handler)
  _start_watcher()


def requested() -> Optional[int]:
  """The signal received, if any."""
  return _received


def reset() -> None:
  global _received, _count
  _received = None
  _count = 0
