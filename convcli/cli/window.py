"""``convcli window``: the coefficients ``filter --window`` applies (or a FIR design's), their
measured response and a picture of it."""

from __future__ import annotations

from typing import Annotated

import typer

from convcli.cli.options import (
    IO,
    KERNEL,
    AttenuationOpt,
    BandpassOpt,
    BandstopOpt,
    DesignRateOpt,
    HighpassOpt,
    JsonOpt,
    LowpassOpt,
    NoClobberOpt,
    Normalization,
    PeriodicOpt,
    PlotOpt,
    QuietOpt,
    ResponseOpt,
    SizeOpt,
    TransitionOpt,
    choice_option,
    fir_request,
    flag_option,
    given,
    refuse_terminal,
    write_text,
)
from convcli.core.response import design_weakness
from convcli.errors import UsageError

EXAMPLES = [
    ("convcli window hann --size 5", "the five coefficients filter --window hann --size 5 applies"),
    ("convcli window kaiser:8 --size 63 --response",
     "its measured response: DC gain, −3/−6 dB bandwidths, peak side lobe"),
    ("convcli window hann --size 101 --lowpass 4000 --rate 44100 --response",
     "a designed lowpass: its band edges, passband ripple and stopband attenuation"),
    ("convcli window --list", "every window, its parameter and its default"),
]


def command(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(
        metavar="NAME[:PARAM]",
        help="hann, hamming, blackman, bartlett, rect, kaiser:BETA, gaussian:STD, tukey:ALPHA, "
        "triang, cosine, nuttall, blackmanharris, flattop, bohman (--list shows them all).")] = None,
    size: SizeOpt = 31,
    periodic: PeriodicOpt = False,
    normalize: Annotated[Normalization, choice_option(
        "--normalize", Normalization, rich_help_panel=KERNEL,
        help="sum: unity DC gain (as filter does); peak: max |w| = 1; none: raw window.")] = "sum",
    output: Annotated[str | None, typer.Option(
        "--output", "-o", rich_help_panel=IO, metavar="FILE|-",
        help="-: one coefficient per line on stdout (the default, unless --response or --plot "
        "is asked for); FILE.npy: float64 NPY; any other name: the same text.")] = None,
    rate: DesignRateOpt = None,
    lowpass: LowpassOpt = None,
    highpass: HighpassOpt = None,
    bandpass: BandpassOpt = None,
    bandstop: BandstopOpt = None,
    transition: TransitionOpt = None,
    attenuation: AttenuationOpt = None,
    response: ResponseOpt = False,
    plot: PlotOpt = None,
    list_: Annotated[bool, flag_option("--list", help="List the windows, their parameters and "
                                                      "defaults, and stop.")] = False,
    no_clobber: NoClobberOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Print window coefficients, exactly as [b]filter --window[/b] applies them.

    [b]convcli window kaiser:6 --size 21 | convcli filter in.wav --kernel - -o out.wav[/b]
    gives the same output as [b]--window kaiser:6 --size 21[/b]: every coefficient is printed
    with full float64 precision (shortest repr that reads back to the same number).
    With [b]--lowpass/--highpass/--bandpass/--bandstop --rate HZ[/b] NAME is the window of a
    FIR design (as [b]filter[/b] makes it); [b]--response[/b] prints the measured response
    instead of the coefficients, [b]--plot FILE.png[/b] draws it.
    """
    from convcli.io.atomic import check_output_path, keep_existing
    from convcli.render.reporter import Reporter

    report = Reporter(quiet=quiet, json_mode=json_)
    if list_:
        return list_windows(report)
    if name is None:
        raise UsageError("which window? NAME is missing", "e.g. convcli window hann --size 31, "
                         "or convcli window --list")
    request = fir_request(lowpass, highpass, bandpass, bandstop, transition, attenuation)
    # coefficients go to stdout when asked (-o -), or by default when nothing else is asked
    to_stdout = output == "-" or (output is None and not response and plot is None)
    if plot == "-" and (to_stdout or response):
        raise UsageError("--plot - and the text output would share stdout",
                         "name a file for one of them: --plot FILE.png or -o FILE")
    if plot is not None:
        refuse_terminal("a PNG picture", plot)
    with keep_existing(no_clobber):
        for path in (output, plot):
            if path not in (None, "-"):
                check_output_path(path)  # before any work
        made = window_coefficients(ctx, request, name, size, periodic, normalize, rate)
        report.data_on_stdout = to_stdout or plot == "-"
        write_window(made, report, ctx, rate=rate, normalize=normalize, periodic=periodic,
                     output=output, to_stdout=to_stdout, response=response, plot=plot)


def write_window(made, report, ctx, *, rate, normalize, periodic, output, to_stdout, response,
                 plot) -> None:
    """Measure, draw and write what ``window_coefficients`` made; then the messages and JSON."""
    from convcli.io.formats import format_from_path
    from convcli.render.tables import render_response

    coefficients, design, (window_name, param), label = made
    if design is not None and (weakness := design_weakness(design)) is not None:
        report.warn(weakness)
    measured = window_response(coefficients, rate=rate, design=design, response=response,
                               plot=plot, title=label)
    to_file = output not in (None, "-")
    as_npy = to_file and format_from_path(output) == "npy"
    if to_file or to_stdout:
        write_coefficients(coefficients, output if to_file else "-", as_npy)
    if to_file:
        scaled = normalize if design is None or given(ctx, "normalize") else "as firwin"
        report.info(f"wrote [bold]{output}[/bold]: {coefficients.size} coefficients of "
                    f"{label}, normalized {scaled}, {'NPY float64' if as_npy else 'text'}")
    if plot is not None and plot != "-":
        report.info(f"wrote [bold]{plot}[/bold]: taps and magnitude response of {label}")
    if measured is not None and not report.json_mode:
        write_text(render_response(measured))
    report.summary = {
        "command": "window", "window": window_name, "param": param,
        "size": int(coefficients.size), "periodic": periodic, "normalize": normalize,
        "output": output, "format": "npy" if as_npy else "text",
        "sum": float(coefficients.sum()), "peak": float(abs(coefficients).max()),
        "design": None if design is None else design_summary(design),
        "response": None if measured is None else measured.to_dict(),
        "plot": plot,
        "coefficients": [float(v) for v in coefficients],
    }
    report.finish()


def list_windows(report) -> None:
    """``window --list``: every window of the registry, its parameter and default."""
    from convcli.core.windows import catalog
    from convcli.render.tables import render_windows

    rows = catalog()
    if not report.json_mode:
        write_text(render_windows(rows))
    report.summary = {"command": "window", "windows": rows}
    report.finish()


def window_coefficients(ctx: typer.Context, request, name: str, size: int, periodic: bool,
                        normalize: str, rate: float | None):
    """``(coefficients, design or None, (window name, param), label)`` of a window or a design."""
    from convcli.core.kernels import make_kernel
    from convcli.core.windows import parse_window
    from convcli.io.kernelfile import WINDOW_BYTES_PER_TAP, reserve_taps

    if request is not None:
        coefficients, design = window_design(ctx, request, name, size, periodic, normalize, rate)
        return coefficients, design, design.window, design.describe()
    window_name, param = parse_window(name)
    reserve_taps(WINDOW_BYTES_PER_TAP * size, size)
    coefficients = make_kernel(window_spec=name, size=size, periodic=periodic,
                               normalization=normalize)
    label = (f"{window_name}{'' if param is None else f':{param:g}'}({size}"
             f"{', periodic' if periodic else ''})")
    return coefficients, None, (window_name, param), label


def write_coefficients(coefficients, output: str, as_npy: bool) -> None:
    """float64 NPY, or one coefficient per line as the shortest text that reads back exactly."""
    from convcli.io.atomic import atomic_output

    with atomic_output(output) as handle:
        if as_npy:
            import numpy as np

            np.save(handle, coefficients, allow_pickle=False)
        else:
            handle.write("".join(f"{float(v)!r}\n" for v in coefficients).encode())


def design_summary(design) -> dict:
    request = design.request
    return {"band": request.band, "cutoffs": list(request.cutoffs), "rate": design.rate,
            "window": design.window_text(), "taps": design.size,
            "transition": request.transition, "attenuation": request.attenuation}


def window_design(ctx: typer.Context, request, name: str | None, size: int, periodic: bool,
                  normalize: str | None, rate: float | None):
    """``(coefficients [k], fir.Design)`` for ``window NAME --lowpass ... --rate HZ``: NAME is
    the design's window; ``--size``/``--normalize`` count only when given on the command line."""
    from convcli.core.kernels import designed_kernel
    from convcli.io.kernelfile import reserve_taps

    if rate is None:
        raise UsageError(f"--{request.band} is in Hz and needs the sample rate", "pass --rate HZ")
    request.check_rate(rate)
    if name.strip().lower() == "kaiser" and (request.transition or request.attenuation):
        name = None  # `window kaiser --transition ...`: Kaiser's formulas choose beta
    return designed_kernel(request, rate, window_spec=name,
                           size=size if given(ctx, "size") else None, periodic=periodic,
                           normalization=normalize if given(ctx, "normalize") else None,
                           reserve=reserve_taps)


def window_response(coefficients, *, rate: float | None, design=None, response: bool = False,
                    plot: str | None = None, title: str = ""):
    """``--response`` and ``--plot`` of the window command: the measured ``Response`` (None
    without ``--response``); the PNG is drawn when ``plot`` names one."""
    measured = None
    if response:
        from convcli.core.response import MEASURE_BYTES_PER_POINT, dense_nfft, measure
        from convcli.plan.memory import check_allocation

        check_allocation(MEASURE_BYTES_PER_POINT * dense_nfft(coefficients.size),
                         f"measuring the response of {coefficients.size:,} taps",
                         "measure a shorter kernel")
        if design is not None:
            measured = measure(coefficients, rate, band=design.request.band,
                               cutoffs=list(design.request.cutoffs),
                               transition=design.request.transition)
        else:
            measured = measure(coefficients, rate)
    if plot is not None:
        from convcli.render.plots import plot_window

        plot_window(coefficients, rate, plot, title=title)
    return measured
