"""SIGTERM and SIGINT, handled the same way in every command.

Ponos and `docker stop` end a task with SIGTERM; in its container the tool is PID 1, where the kernel
drops a signal that has no handler, so the tool would run on until SIGKILL. Both signals are handled
explicitly (also when the parent left SIGINT ignored, as `nohup` and shells' background jobs do):

- the first signal sets a flag that every wait of the tool watches (retry backoff, the fan-out's
  scheduler) and raises :class:`Stopped` in the main thread, unless the main thread is inside a
  :func:`finish_first` block (one worker's registration): then the block ends first;
- a second signal raises at once.

Each command catches :class:`Stopped` where it can say what was done (the trigger writes its plan, the
revision task its report), and the command line exits 143 (SIGTERM) or 130 (SIGINT).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_requested = threading.Event()
_signum: int | None = None
_deferred = 0  # depth of finish_first blocks in the main thread


class Stopped(BaseException):
    """A stop asked by a signal. A BaseException, like KeyboardInterrupt, so that no `except Exception`
    swallows it on its way to the command line."""

    def __init__(self, signum: int, message: str | None = None) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        self.message = message or f"{'interrupted' if signum == signal.SIGINT else 'stopped'} by {self.name}"
        super().__init__(self.message)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # 143 for SIGTERM, 130 for SIGINT, as a shell reports them

    def with_message(self, message: str) -> Stopped:
        return Stopped(self.signum, message)


def install() -> None:
    """Handle SIGTERM and SIGINT (main thread only, as Python requires)."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _handler)


def _handler(signum: int, frame: FrameType | None) -> None:
    global _signum
    again = _requested.is_set()
    _signum = _signum or signum
    _requested.set()
    if _deferred and not again:
        return  # the current step ends first; `check()` stops at the next one
    raise Stopped(_signum)


def requested() -> bool:
    return _requested.is_set()


def check() -> None:
    """Raise :class:`Stopped` if a stop was asked: call it between two steps."""
    if _requested.is_set():
        raise Stopped(_signum or signal.SIGTERM)


def sleep(seconds: float) -> None:
    """Wait, unless a stop is asked meanwhile: then raise :class:`Stopped` at once."""
    if _requested.wait(seconds):
        check()


@contextmanager
def finish_first() -> Iterator[None]:
    """A step that a first signal lets finish (one worker's registration: its calls belong together)."""
    global _deferred
    _deferred += 1
    try:
        yield
    finally:
        _deferred -= 1
