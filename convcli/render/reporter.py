"""Where words go: messages, warnings and summaries to stderr (rich), JSON to its stream. No math."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from convcli.render.progress import PROGRESS_DELAY, progress


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

    def progress(self, total: float | None = None, description: str = "", *,
                 delay: float = PROGRESS_DELAY, unit: str | None = None):
        """A progress bar on stderr for this command (none with --quiet or --json); it shows
        once the command has run ``delay`` seconds, counted from the Reporter's creation."""
        return progress(total, description, enabled=not (self.quiet or self.json_mode),
                        delay=delay, console=self._console, since=self._started, unit=unit)

    def finish(self, stream: TextIO | None = None) -> None:
        if not self.json_mode:
            return
        out = stream or (sys.stderr if self.data_on_stdout else sys.stdout)
        out.write(json.dumps(self.summary, indent=2, default=_jsonable) + "\n")
        out.flush()


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


def mode_words(spec: dict[str, Any]) -> str:
    """How messages name the pads: the mode (``same``), or ``pad L:R`` where ``--pad`` gave them
    (``spec`` is ``ConvSpec.summary``'s dict).

    >>> mode_words({"mode": "explicit", "pads": [1, 2]}), mode_words({"mode": "causal"})
    ('pad 1:2', 'causal')
    """
    if spec["mode"] == "explicit":
        left, right = spec["pads"]
        return f"pad {left}:{right}"
    return spec["mode"]
