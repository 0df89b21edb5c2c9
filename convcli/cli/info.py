"""``convcli info``: what signal files hold, and their levels (numpy and soundfile only)."""

from __future__ import annotations

from typing import Annotated

import typer

from convcli.cli.options import JsonOpt, LayoutOpt, QuietOpt, RateOpt, write_text
from convcli.errors import ConvcliError, InputError, UsageError

EXAMPLES = [
    ("convcli info chord.wav speech.wav", "rate, channels, length, subtype and levels of each file"),
    ("convcli info batch.npy --json", "the same as JSON"),
]


def command(
    files: Annotated[list[str], typer.Argument(metavar="FILE...",
                                               help="Signal files, or - for stdin.")],
    layout: LayoutOpt = None,
    rate: RateOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Rate, channels, frames, duration, subtype or dtype, peak, RMS and DC (per channel too).

    Reads the files with numpy and soundfile only (no torch), so it answers fast. Levels are
    on the float scale (full scale = 1.0, 0 dBFS) over the finite samples.
    """
    from convcli.io.describe import describe_file
    from convcli.render.reporter import Reporter

    if files.count("-") > 1:
        raise UsageError("standard input can be read only once")
    report = Reporter(quiet=quiet, json_mode=json_)
    described, failed = [], []
    with report.progress(len(files), "reading") as tick:
        for path in files:
            tick(0, description=f"reading {path}")
            try:
                described.append(describe_file(path, layout=layout, rate=rate))
            except ConvcliError as exc:
                if len(files) == 1:
                    raise
                failed.append(path)
                report.warn(f"skipped {path}: {exc.line()}")
            tick()
    if not json_:
        from convcli.render.tables import render_info

        write_text("".join(render_info(d) for d in described))
    report.summary = {"command": "info", "files": described, "failed": failed}
    report.finish()
    if failed:
        raise InputError(f"{len(failed)} of {len(files)} files could not be read: "
                         f"{', '.join(failed)}", "see the warnings above")
