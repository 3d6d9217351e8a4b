"""One convention for Ctrl-C and SIGTERM across every command.

Inside `signals_as_interrupts()`, SIGINT and SIGTERM (what `docker stop` and systemd send)
raise `Interrupted`, a `KeyboardInterrupt` subclass, so every `try/finally` and
`except BaseException` cleanup path unwinds the same way for both. The CLI then prints one
line (`interrupted (SIGTERM): <what was kept or removed>`) and exits 128 + signal number:
130 for SIGINT, 143 for SIGTERM.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Raised by the handlers of `signals_as_interrupts`; `signum` is the signal received."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def as_interrupted(exc: BaseException) -> Interrupted:
    """A plain `KeyboardInterrupt` (raised by Python's own SIGINT handler) as SIGINT."""
    return exc if isinstance(exc, Interrupted) else Interrupted(signal.SIGINT)


@contextlib.contextmanager
def _handlers(handler) -> Iterator[bool]:
    """Install `handler` for SIGINT and SIGTERM for the duration and restore the previous ones;
    yields False (and installs nothing) off the main thread, where handlers cannot be set."""
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = {s: signal.signal(s, handler) for s in HANDLED}
    try:
        yield True
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _raise(signum, frame):
    raise Interrupted(signum)


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """Make SIGINT and SIGTERM raise `Interrupted` for the duration; restores the previous
    handlers on exit. Does nothing off the main thread, where handlers cannot be set."""
    with _handlers(_raise):
        yield


class _Held:
    """SIGINT/SIGTERM handler for `interrupts_deferred` and `latched_interrupts`: remembers the
    first signal, raises on the second (someone pressing Ctrl-C twice does not want to wait).
    `check()` raises the remembered one."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum, frame) -> None:
        if self.signum is not None:
            raise Interrupted(signum)
        self.signum = signum

    def check(self) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum)


@contextlib.contextmanager
def latched_interrupts() -> Iterator[_Held]:
    """Remember SIGINT and SIGTERM instead of raising wherever the signal lands; the block
    calls `latch.check()` at points where stopping is safe. A handler that raises can land
    inside code that swallows exceptions (a fork hook of a DataLoader worker start, a
    `__del__`), losing the signal; this one cannot. A second signal raises at once. Restores
    the previous handlers; off the main thread the latch never fires."""
    held = _Held()
    with _handlers(held):
        yield held


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the block runs, then raise `Interrupted` for the first
    one when it ends, so a unit of work that must not be cut in half (an optimizer step)
    finishes first. A second signal raises at once, inside the block. Restores the previous
    handlers; does nothing off the main thread."""
    held = _Held()
    with _handlers(held):
        yield
    held.check()
