"""Rendering: messages, warnings and summaries to stderr (rich), JSON to its stream. No math."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

#: a bar appears only once work has run this long (short runs stay silent)
PROGRESS_DELAY = 1.0


@dataclass
class Reporter:
    """Where words go. Data never goes through here: stdout is the sink's when it is ``-``.

    ``quiet`` silences messages and warnings (errors still print). ``json_mode`` collects one
    summary that ``finish()`` prints: on stdout, or on stderr when stdout carries data.
    """

    quiet: bool = False
    json_mode: bool = False
    data_on_stdout: bool = False
    summary: dict[str, Any] = field(default_factory=dict)
    _console: Any = None
    _started: float = field(default_factory=time.monotonic)  # bars wait PROGRESS_DELAY from here

    @property
    def console(self) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False, soft_wrap=True)
        return self._console

    def info(self, message: str) -> None:
        if not self.quiet and not self.json_mode:
            self.console.print(message)

    def warn(self, message: str) -> None:
        if not self.quiet:
            self.console.print(f"[yellow]warning:[/yellow] {message}")

    def progress(self, total: float | None, description: str, *, delay: float = PROGRESS_DELAY):
        """A progress bar on stderr for this command (none with --quiet or --json); it shows
        once the command has run ``delay`` seconds, counted from the Reporter's creation."""
        return progress(total, description, enabled=not (self.quiet or self.json_mode),
                        delay=delay, console=self._console, since=self._started)

    def finish(self, stream: TextIO | None = None) -> None:
        if not self.json_mode:
            return
        out = stream or (sys.stderr if self.data_on_stdout else sys.stdout)
        out.write(json.dumps(self.summary, indent=2, default=_jsonable) + "\n")
        out.flush()


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


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "__dataclass_fields__"):
        return {k: getattr(value, k) for k in value.__dataclass_fields__}
    return str(value)


def human_shape(channels: int, frames: int, rate: float | None) -> str:
    """``2 ch × 48,000 samples (1.00 s at 48 kHz)``."""
    text = f"{channels} ch × {frames:,} samples"
    if rate:
        text += f" ({frames / rate:.2f} s at {rate / 1000:g} kHz)"
    return text


def dbfs(peak: float) -> str:
    import math

    return "−inf dBFS" if peak <= 0 else f"{20 * math.log10(peak):+.1f} dBFS"


def render_info(d: dict[str, Any]) -> str:
    """The human text of ``convcli info`` for one file (plain text: it is stdout data)."""
    kind = d["format"].upper() + (f" {d['subtype']}" if d.get("subtype") else "")
    if d.get("dtype"):
        kind += f" {d['dtype']}"
        if d.get("layout"):
            kind += f", layout {d['layout']}" + (" (guessed)" if d.get("layout_guessed") else "")
    rate = f"{d['rate']:,.0f} Hz" if d["rate"] else "no rate"
    duration = f", {d['duration']:.3f} s" if d["duration"] is not None else ""
    batch = f"{d['batch']} × " if d["batch"] > 1 else ""
    lines = [
        f"{d['file']}: {kind}, {rate}, {batch}{d['channels']} ch × {d['frames']:,} frames{duration}",
        (f"  {'channel':8s} {'peak':>10s} {'dBFS':>7s} {'RMS':>10s} {'dBFS':>7s} {'DC':>10s} "
         f"{'|x|≥1':>7s}"),
    ]
    rows = [("all", d)] + ([(str(c["channel"]), c) for c in d["channel"]] if d["channels"] > 1 else [])
    for label, r in rows:
        lines.append(
            f"  {label:8s} {r['peak']:10.6f} {_db(r['peak_dbfs']):>7s} {r['rms']:10.6f} "
            f"{_db(r['rms_dbfs']):>7s} {r['dc']:+10.6f} {r['full_scale']:7d}")
    if d.get("nonfinite"):
        lines.append(f"  {d['nonfinite']:,} NaN/Inf samples (levels are over the finite ones)")
    return "\n".join(lines) + "\n"


def _db(value: float | None) -> str:
    return "-inf" if value is None else f"{value:.2f}"


# --- matrices in the terminal (jacobian) -------------------------------------------------------
HEAT_SHADES = "░▒▓█"


def heatmap(block: Any, row0: int = 0, col0: int = 0) -> Any:
    """A small matrix ``block [R, C]`` (numpy) as a rich ``Text`` heatmap, 2 characters a cell.

    Shade = |value| relative to the largest |value| in the block; red > 0, blue < 0; a zero is
    ``·`` so the band structure shows even without colour. Row and column numbers start at
    ``row0``/``col0`` (the corner of the Jacobian the block was cut from).
    """
    from rich.text import Text

    rows, cols = block.shape
    peak = float(abs(block).max()) if block.size else 0.0
    label = len(str(row0 + max(rows - 1, 0)))
    text = Text(" " * (label + 1) + f"j={col0}…{col0 + cols - 1}\n", style="dim")
    for r in range(rows):
        text.append(f"{row0 + r:>{label}} ", style="dim")
        for value in block[r]:
            value = float(value)
            if value == 0 or peak == 0:
                text.append("· ", style="dim")
                continue
            level = min(len(HEAT_SHADES) - 1, int(abs(value) / peak * len(HEAT_SHADES)))
            text.append(HEAT_SHADES[level] * 2, style="red" if value > 0 else "blue")
        text.append("\n")
    text.append(" " * (label + 1) + f"shade: |J| / {peak:.3g}; red > 0, blue < 0, · = 0",
                style="dim")
    return text


def plot_window(w: Any, rate: float | None, path: str, *, title: str | None = None) -> None:
    """PNG of a kernel's taps and magnitude response; see ``convcli.plot.plot_window``."""
    from convcli.render.plots import plot_window as draw

    draw(w, rate, path, title=title)


def plot_matrix(J: Any, path: str, *, title: str | None = None) -> None:
    """PNG heatmap of a matrix (``jacobian -o J.png``); see ``convcli.plot.plot_matrix``.

    matplotlib is imported only when drawing; without it the error names ``convcli[plot]``.
    """
    from convcli.render.plots import plot_matrix as draw

    draw(J, path, title=title)


# --- calibrate ---------------------------------------------------------------------------------
#: how each cost-model rate reads best: (label, unit, scale) with value = scale / rate, or
#: scale · rate where the unit is a time
RATE_UNITS = {
    "gemm_flop": ("banded GEMM", "GFLOP/s", 1e-9),
    "conv1d_mac": ("F.conv1d", "GMAC/s", 1e-9),
    "fft_flop": ("FFT", "GFLOP/s", 1e-9),
    "byte": ("memory", "GB/s", 1e-9),
    "call": ("per call", "µs", 1e6),
}


def rate_text(key: str, rate: float) -> str:
    """A rate as it reads: ``55.0 GFLOP/s`` or ``15.0 µs``.

    >>> rate_text("gemm_flop", 1 / 55e9), rate_text("call", 15e-6)
    ('55 GFLOP/s', '15 µs')
    """
    _, unit, scale = RATE_UNITS[key]
    value = rate * scale if unit == "µs" else scale / rate
    return f"{value:.3g} {unit}" if value < 100 else f"{value:,.0f} {unit}"


def render_calibration(summary: dict[str, Any]) -> list[Any]:
    """``convcli calibrate``'s tables (rich, 80 columns): per engine, each measurement with the
    built-in and the fitted model's prediction and its error; then the rates."""
    from rich.table import Table

    def error(value: float) -> str:
        text = f"{100 * value:+.0f}%"
        return f"[red]{text}[/red]" if abs(value) > 0.5 else text

    short = {"overlap-save": "fft", "memory": "copy"}
    parts: list[Any] = []
    for engine, err in summary["median_error"].items():
        table = Table(title=f"{engine} engine on {summary['device']} (ms; err = predicted / "
                      "measured − 1)", title_justify="left", box=None,
                      pad_edge=False, header_style="bold underline", caption=f"median |error|: {100 * err['builtin']:.0f}% "
                      f"built-in, {100 * err['fitted']:.0f}% fitted", caption_justify="left")
        for name in ("algorithm", "k", "nfft", "shape", "measured", "built-in", "err", "fitted",
                     "err"):
            table.add_column(name, justify="left" if name in ("algorithm", "shape") else "right",
                             no_wrap=True, min_width=len(name))
        for row in summary["measurements"]:
            if row["engine"] != engine:
                continue
            algorithm = short.get(row["algorithm"], row["algorithm"])
            if row["out_channels"] is not None:  # a kernel that mixes channels
                algorithm += f" {row['channels']}→{row['out_channels']}"
            dims = (row["batch"], row["channels"], row["length"])
            shape = "×".join(str(n) for n in (dims if row["batch"] > 1 else dims[1:]))
            table.add_row(algorithm, "" if row["algorithm"] == "memory" else str(row["k"]),
                          str(row["nfft"] or ""), shape, _ms(row["measured_s"]),
                          _ms(row["predicted_builtin_s"]), error(row["error_builtin"]),
                          _ms(row["predicted_s"]), error(row["error"]))
        parts.append(table)
    rates = Table(title="cost model rates", title_justify="left", box=None, pad_edge=False,
                  header_style="bold underline")
    for name in ("engine", "rate", "what", "built-in", "fitted"):
        rates.add_column(name, justify="right" if name in ("built-in", "fitted") else "left",
                         no_wrap=True)
    for engine, fitted in summary["rates"].items():
        for key, value in fitted.items():
            measured = key in summary["fitted"][engine]
            rates.add_row(engine, key, RATE_UNITS[key][0],
                          rate_text(key, summary["builtin_rates"][engine][key]),
                          rate_text(key, value) if measured else "[dim]not measured[/dim]")
    parts.append(rates)
    return parts


def _ms(seconds: float) -> str:
    return f"{1e3 * seconds:.3g}"
