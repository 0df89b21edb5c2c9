"""Tables and pictures in text: ``info``'s levels, a Jacobian's corner as a heatmap,
``calibrate``'s fit, ``window --response``'s figures. No math beyond formatting."""

from __future__ import annotations

from typing import Any


def render_info(d: dict[str, Any]) -> str:
    """The human text of ``convcli info`` for one file (plain text: it is stdout data)."""
    subtype = d.get("subtype")
    kind = d["format"].upper() + (f" {subtype}" if subtype and subtype != d["format"].upper()
                                  else "")
    if d.get("dtype"):
        kind += f" {d['dtype']}"
        if d.get("layout"):
            kind += f", layout {d['layout']}" + (" (guessed)" if d.get("layout_guessed") else "")
    rate = f"{d['rate']:,.0f} Hz" if d["rate"] else "no rate"
    duration = f", {d['duration']:.3f} s" if d["duration"] is not None else ""
    batch = f"{d['batch']} × " if d["batch"] != 1 else ""
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


def render_response(measured) -> str:
    """The response figures as aligned ``label  value`` lines (what ``--response`` prints)."""
    rows = measured.rows()
    width = max(len(label) for label, _ in rows)
    lines = [f"{label:<{width}}  {value}" for label, value in rows]
    return "\n".join(lines + [f"note: {n}" for n in measured.notes]) + "\n"


def render_windows(rows: list[dict]) -> str:
    """``window --list``: one window a line, ``core.windows.catalog``'s rows."""
    width = max(len(row["usage"]) for row in rows) + 2
    lines = []
    for row in rows:
        if row["param"] is None:
            about = "no parameter"
        elif row["required"]:
            about = f"{row['param']} required"
        else:
            about = f"{row['param']}, default {row['default']:g}"
        also = f"; also {', '.join(row['aliases'])}" if row["aliases"] else ""
        lines.append(f"{row['usage']:<{width}}{about} (scipy: {row['scipy']}){also}\n")
    return "".join(lines)


def render_system(facts: dict) -> str:
    """``convcli doctor``: ``engines.system.facts()`` as labelled lines."""
    from convcli.plan.memory import human_bytes

    packages = facts["packages"]
    lines = [(f"convcli {facts['convcli']} on Python {facts['python']['version']} "
             f"({facts['python']['executable']}), {facts['platform']}"),
             f"cpu: {facts['cpu']['model']} ({facts['cpu']['cores']} cores)",
             "packages: " + ", ".join(f"{name} {version or '(not installed)'}"
                                      for name, version in packages.items()),
             f"libsndfile: {facts['libsndfile'] or 'not found'}"]
    for engine in facts["engines"]:
        blas = "".join(f"; BLAS {lib['api']} {lib['version']}, {lib['threads']} threads"
                       for lib in engine.get("blas", []))
        lines.append(f"engine {engine['name']} {engine['version'] or '(not installed)'}: runs "
                     f"{engine['runs']}{blas}")
    cuda = facts["cuda"]
    lines.append(f"cuda: {cuda['note']}")
    for device in cuda["devices"]:
        lines.append(f"  {device['device']}: {device['name']} (compute capability "
                     f"{device['capability']}), {human_bytes(device['free'])} free of "
                     f"{human_bytes(device['total'])}")
    room = facts["memory"]["available"]
    limit = facts["memory"]["limit"]
    lines.append(f"memory available: {'unknown' if room is None else human_bytes(room)}"
                 + (f" ({facts['memory']['limit_env']}={limit})" if limit else ""))
    calibration = facts["calibration"]
    lines.append(f"calibration ({calibration['env']}): {calibration['setting']}"
                 + (f", {calibration['where']}" if calibration["where"] else ""))
    for row in calibration["devices"]:
        rates = ", ".join(f"{engine} {source}" for engine, source in row["rates"].items())
        lines.append(f"  {row['device']}: {rates}")
    return "\n".join(lines) + "\n"
