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
                 since: float | None = None, unit: str | None = None) -> None:
        import threading

        self.total, self.description, self.unit = total, description, unit
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
        from rich.progress import BarColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

        with self._lock:
            if self._closed:
                return
            console = self._console or Console(stderr=True)
            bar = Progress(*_columns(self.unit), BarColumn(bar_width=None), TimeElapsedColumn(),
                           TimeRemainingColumn(), console=console, transient=True)
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
             since: float | None = None, unit: str | None = None) -> Iterator[Ticker]:
    """A progress bar for work that may take more than about a second.

    Yields a ``Ticker``: call it with the units done since the last call (files, blocks,
    samples). Nothing is drawn when stderr is not a terminal (no escape codes in logs or
    pipes), when ``enabled`` is False, or before ``delay`` seconds have passed; the bar is
    removed when the block ends. The bar shows the description, the percentage done, what is
    done of the total (``unit``: e.g. ``frames``, counted in k/M/G) and its rate, the elapsed
    time and the time left; with ``total`` None (a pipe of unknown length) what is done and
    the rate. Usable by any command and by the streaming engine, which can
    take the ticker as its per-block callback::

        with report.progress(n_blocks, "filtering") as tick:
            for block in blocks:
                ...
                tick()
    """
    ticker = Ticker(total, description, enabled=enabled, delay=delay, console=console,
                    since=since, unit=unit)
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


def human(count: float) -> str:
    """``1234567`` -> ``1.23M``: three significant digits and k, M, G (a bar has few columns).

    >>> human(999), human(12345), human(1234567), human(5.2e9)
    ('999', '12.3k', '1.23M', '5.20G')
    """
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(count) >= scale:
            value = count / scale
            digits = 2 if abs(value) < 10 else 1 if abs(value) < 100 else 0
            return f"{value:.{digits}f}{prefix}"
    return f"{count:.0f}"


def _columns(unit: str | None) -> list:
    """The bar's text columns: description, percentage (a known total), done[/total], rate.

    Each keeps one line and a width set at the start (rich sizes a column by its first text,
    and the rate shows only from the second update)."""
    from rich.progress import ProgressColumn, TextColumn
    from rich.table import Column
    from rich.text import Text

    def fixed(width: int) -> Column:
        return Column(no_wrap=True, min_width=width, justify="right")

    class Percent(ProgressColumn):
        def render(self, task) -> Text:
            return Text("" if task.total is None else f"{task.percentage:.0f}%")

    class Count(ProgressColumn):
        """``213M/2.15G frames`` (``unit`` given) or ``2/5``."""

        def render(self, task) -> Text:
            if unit is None:
                done = f"{task.completed:.0f}"
                return Text(done if task.total is None else f"{done}/{task.total:.0f}")
            total = "" if task.total is None else f"/{human(task.total)}"
            return Text(f"{human(task.completed)}{total} {unit}")

    class Rate(ProgressColumn):
        """``40.1M/s`` (``unit`` given)."""

        def render(self, task) -> Text:
            speed = task.speed
            return Text("" if speed is None or unit is None else f"{human(speed)}/s")

    count_width = 0 if unit is None else 12 + len(unit)  # 999.9k/999.9k frames
    return [TextColumn("{task.description}", table_column=Column(no_wrap=True)),
            Percent(table_column=fixed(4)), Count(table_column=fixed(count_width)),
            Rate(table_column=fixed(7 if unit else 0))]
