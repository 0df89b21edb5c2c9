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
