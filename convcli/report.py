"""Rendering: messages, warnings and summaries to stderr (rich), JSON to its stream. No math."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO


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


def dbfs(peak: float) -> str:
    import math

    return "−inf dBFS" if peak <= 0 else f"{20 * math.log10(peak):+.1f} dBFS"
