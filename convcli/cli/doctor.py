"""``convcli doctor``: versions, engines, CUDA devices, memory and the calibration in use."""

from __future__ import annotations

from convcli.cli.options import JsonOpt, QuietOpt, write_text

EXAMPLES = [
    ("convcli doctor", "what this install and machine give convcli"),
    ("convcli doctor --json", "the same as JSON, for a bug report"),
]


def command(json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Report versions, engines, CUDA devices, memory and the calibration in use.

    torch is imported only where an NVIDIA driver is present (to ask which CUDA devices it
    sees); the report says so either way.
    """
    from convcli.engines.system import facts
    from convcli.render.reporter import Reporter

    report = Reporter(quiet=quiet, json_mode=json_)
    found = facts()
    if not json_:
        from convcli.render.tables import render_system

        write_text(render_system(found))
    report.summary = {"command": "doctor", **found}
    report.finish()
