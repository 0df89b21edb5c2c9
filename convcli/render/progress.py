"""Progress bars (rich, on stderr) for work that may take more than about a second.

Drawn only when stderr is a terminal and only once the work has run ``PROGRESS_DELAY``
seconds: never escape codes in a log or a pipe.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any

#: a bar appears only once work has run this long (short runs stay silent)
PROGRESS_DELAY = 1.0


class Ticker:
    """Advance a progress bar: ``tick(n)`` adds n units of work done; ``tick(description=...)``
    relabels it. The bar is drawn on stderr only when stderr is a terminal, and only once the
    work has run ``delay`` seconds (counted from ``since``, default now): a timer shows it then
    even if nothing ticks, so one long step still gets a bar with its elapsed time. Without a
    terminal, ticking just counts.

    >>> tick = Ticker(10, "blocks", enabled=False)
    >>> tick(3); tick(2); tick.done
    5.0
    """

    def __init__(self, total: float | None, description: str, *, enabled: bool = True,
                 delay: float = PROGRESS_DELAY, console: Any = None,
                 since: float | None = None) -> None:
        import threading

        self.total, self.description = total, description
        self.done = 0.0
        self._console = console
        self._bar: Any = None
        self._task: Any = None
        self._closed = False
        self._lock = threading.Lock()
        self._timer: Any = None
        if enabled and _stderr_is_terminal(console):
            wait = delay - (0.0 if since is None else time.monotonic() - since)
            if wait <= 0:
                self._start()
            else:
                self._timer = threading.Timer(wait, self._start)
                self._timer.daemon = True
                self._timer.start()

    def __call__(self, advance: float = 1, *, description: str | None = None,
                 total: float | None = None) -> None:
        self.done += advance
        if description is not None:
            self.description = description
        if total is not None:
            self.total = total
        if self._bar is not None:
            with self._lock:
                if self._bar is not None:
                    self._bar.update(self._task, completed=self.done, total=self.total,
                                     description=self.description)

    def _start(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        with self._lock:
            if self._closed:
                return
            console = self._console or Console(stderr=True)
            bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                           transient=True)
            self._task = bar.add_task(self.description, total=self.total, completed=self.done)
            bar.start()
            self._bar = bar

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
            if self._bar is not None:
                self._bar.stop()
                self._bar = None


@contextlib.contextmanager
def progress(total: float | None, description: str, *, enabled: bool = True,
             delay: float = PROGRESS_DELAY, console: Any = None,
             since: float | None = None) -> Iterator[Ticker]:
    """A progress bar for work that may take more than about a second.

    Yields a ``Ticker``: call it with the units done since the last call (files, blocks,
    samples). Nothing is drawn when stderr is not a terminal (no escape codes in logs or
    pipes), when ``enabled`` is False, or before ``delay`` seconds have passed; the bar is
    removed when the block ends. Usable by any command and by the streaming engine, which can
    take the ticker as its per-block callback::

        with report.progress(n_blocks, "filtering") as tick:
            for block in blocks:
                ...
                tick()
    """
    ticker = Ticker(total, description, enabled=enabled, delay=delay, console=console,
                    since=since)
    try:
        yield ticker
    finally:
        ticker.close()


def _stderr_is_terminal(console: Any = None) -> bool:
    if console is not None:
        return bool(console.is_terminal)
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
