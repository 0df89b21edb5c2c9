"""``convcli calibrate``: time this machine, fit the cost model's rates, keep them per device."""

from __future__ import annotations

from typing import Annotated

from convcli.cli.options import RUN, DeviceOpt, JsonOpt, QuietOpt, flag_option
from convcli.errors import OutputError

EXAMPLES = [
    ("convcli calibrate --quick --no-save", "time this machine and show the fit, keep nothing"),
    ("convcli calibrate", "fit and keep the rates for --method auto"),
]


def command(
    device: DeviceOpt = "auto",
    quick: Annotated[bool, flag_option("--quick", rich_help_panel=RUN,
                     help="Fewer, smaller problems: a few seconds instead of about 20.")] = False,
    no_save: Annotated[bool, flag_option("--no-save", "--dry-run", rich_help_panel=RUN,
                       help="Only print the fit; keep the cache as it is.")] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Fit the cost model of --method auto to this machine.

    Times the algorithms [b]filter[/b] would run on the device (on the CPU: the numpy engine's
    banded GEMM, overlap-save and a memory pass, and the torch engine's F.conv1d and FFT for
    kernels that mix channels; on CUDA: the torch engine), fits the cost model's rates to the
    timings and saves them per device under $XDG_CACHE_HOME/convcli/ (~/.cache/convcli/),
    where [b]--method auto[/b] finds them. [b]filter --json[/b] says which rates priced it
    ("rates"). CONVCLI_CALIBRATION=off ignores the cache; =PATH keeps it elsewhere.
    """
    from convcli.engines.devices import resolve_device
    from convcli.engines.timing import runner
    from convcli.plan import calibrate, ratecache
    from convcli.render.reporter import Reporter
    from convcli.render.tables import render_calibration

    report = Reporter(quiet=quiet, json_mode=json_)
    target = resolve_device(device)  # cuda without CUDA: one clear error, before any work
    with report.progress(None, "calibrating", delay=0.0) as tick:
        result = calibrate.run(target, runner, quick=quick, on_problem=lambda i, n, problem: tick(
            1, total=n, description=f"timing {problem.engine} {problem.algorithm}"))
    summary = result.summary()
    saved = None
    if not no_save:
        path = ratecache.save_path(result.key)
        try:
            ratecache.save(path, result.cache_content())
        except OSError as exc:
            raise OutputError(f"cannot write the calibration to {path}: {exc.strerror or exc}",
                              "set XDG_CACHE_HOME or CONVCLI_CALIBRATION=PATH to a writable "
                              "place, or use --no-save") from None
        saved = str(path)
    if not json_:
        from rich.console import Console

        console = Console(highlight=False, soft_wrap=True)
        for i, part in enumerate(render_calibration(summary)):
            console.print(*([""] if i else []), part, sep="\n")
    if saved is not None:
        report.info(f"wrote [bold]{saved}[/bold]: filter --method auto prices with these rates "
                    f"on {ratecache.describe_key(result.key)}")
        if ratecache.setting()[0] == "off":
            report.warn(f"{ratecache.ENV}=off: filter ignores the calibration until it is unset")
    else:
        from convcli.plan.ratecache import rates_source

        report.info("not saved (--no-save): filter keeps pricing with the "
                    + ", ".join(sorted({rates_source(target, e) for e in result.engines}))
                    + " rates")
    for engine, keys in result.bounded.items():
        if keys:
            report.warn(f"the {engine} engine's {', '.join(keys)} stopped at "
                        f"{calibrate.MAX_FACTOR:g}× the built-in rate: some timings look "
                        "disturbed (calibrate again when the machine is quiet)")
    for engine in result.noisy():
        report.warn(f"the {engine} engine's timings varied by more than "
                    f"{calibrate.NOISY_SPREAD:g}× between runs: another process is busy here, "
                    "so its rates are uncertain (calibrate again when the machine is quiet)")
    report.info(f"{len(result.measurements)} problems timed in {result.seconds:.1f} s")
    report.summary = {"command": "calibrate", **summary, "saved": saved}
    report.finish()
