"""Ctrl-C as a request that the loop honours between steps, never an exception raised inside JAX.

Python's default SIGINT handler raises ``KeyboardInterrupt`` at whatever
bytecode runs next. Inside JAX that can be the worst place: jaxlib polls for
signals while XLA compiles, so the exception leaves a compilation running in
another thread, and the process that then exits with it may crash (SIGSEGV);
inside a garbage-collection callback (JAX registers one) Python prints
"Exception ignored" and drops the exception, so the Ctrl-C is lost. While
:func:`recording` is active SIGINT only counts requests, and the code asks
:func:`raise_if_requested` at points where stopping is safe.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class _Recorder:
    """A SIGINT handler that counts Ctrl-Cs instead of raising."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, signum: int, frame: Any) -> None:
        self.count += 1


def _active() -> _Recorder | None:
    if threading.current_thread() is not threading.main_thread():
        return None
    handler = signal.getsignal(signal.SIGINT)
    return handler if isinstance(handler, _Recorder) else None


@contextlib.contextmanager
def recording() -> Iterator[None]:
    """Within the block SIGINT is recorded, not raised; an enclosing block's record is kept (re-entrant).

    Main thread only: Python delivers signals to no other, so elsewhere this does nothing.

    >>> before = signal.getsignal(signal.SIGINT)
    >>> with recording():
    ...     signal.raise_signal(signal.SIGINT)
    ...     requested()
    True
    >>> signal.getsignal(signal.SIGINT) is before
    True
    """
    if threading.current_thread() is not threading.main_thread() or _active() is not None:
        yield
        return
    previous = signal.signal(signal.SIGINT, _Recorder())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def requested() -> bool:
    """Whether Ctrl-C was pressed inside the current :func:`recording` block."""
    recorder = _active()
    return recorder is not None and recorder.count > 0


def raise_if_requested() -> None:
    """Raises ``KeyboardInterrupt`` here, at a safe point, if Ctrl-C was pressed; the request stays recorded."""
    if requested():
        raise KeyboardInterrupt
