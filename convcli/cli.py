"""convcli's command line: parse -> call the core -> render. The only place that exits.

torch is imported inside the commands that compute, so ``--help`` and ``info`` start fast.
Every error ends as one ``error: ...`` line on stderr (``--debug`` shows the traceback).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from convcli import __version__
from convcli.errors import ConvcliError, InputError, Interrupted, OutputError, UsageError
from convcli.report import Reporter, dbfs, human_shape

app = typer.Typer(
    name="convcli",
    help="Filter signals with exact 1-D convolution semantics, and see what conv1d does to them, "
    "down to its derivatives.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)

# --- shared options -------------------------------------------------------------------------
# Every command that convolves takes the same kernel and conv options; they are declared once
# here and reused, so the flags mean the same thing everywhere.
KERNEL = "Kernel"
CONV = "Convolution"
IO = "Input / output"
RUN = "Run"

Mode = Literal["same", "valid", "full", "causal"]
Padding = Literal["zeros", "reflect", "replicate", "circular"]
Method = Literal["auto", "direct", "fft"]
Device = Literal["auto", "cpu", "cuda"]
Dtype = Literal["float32", "float64"]
Normalization = Literal["sum", "peak", "none"]
Format = Literal["wav", "flac", "ogg", "npy"]
Layout = Literal["ct", "tc"]

WindowOpt = Annotated[
    Optional[str],
    typer.Option(
        "--window", "-w", metavar="NAME[:PARAM]", rich_help_panel=KERNEL,
        help="Window kernel: hann, hamming, blackman, bartlett, rect, kaiser:BETA, "
        "gaussian:STD, tukey:ALPHA, triang, cosine, nuttall, blackmanharris, flattop, bohman. "
        "Default hann.",
    ),
]
SizeOpt = Annotated[
    int, typer.Option("--size", "-n", min=1, rich_help_panel=KERNEL, help="Window length in taps.")
]
PeriodicOpt = Annotated[
    bool,
    typer.Option("--periodic", rich_help_panel=KERNEL,
                 help="DFT-even window (scipy fftbins=True) instead of the symmetric one."),
]
NormalizeOpt = Annotated[
    Optional[Normalization],
    typer.Option("--normalize", rich_help_panel=KERNEL,
                 help="sum: unity DC gain (default for windows); peak: max |w| = 1; none. "
                 "Kernel files are used as written unless this is given."),
]
KernelOpt = Annotated[
    Optional[str],
    typer.Option("--kernel", "-k", metavar="PATH|-", rich_help_panel=KERNEL,
                 help="Coefficients from .npy or text: (k,), (C, k) or (O, C/G, k)."),
]
GroupsOpt = Annotated[
    int, typer.Option("--groups", min=1, rich_help_panel=KERNEL,
                      help="Groups G for an (O, C/G, k) kernel.")
]
ModeOpt = Annotated[
    Mode, typer.Option("--mode", rich_help_panel=CONV,
                       help="same (length N), valid (N−K+1), full (N+K−1), causal (N, like lfilter).")
]
PaddingOpt = Annotated[
    Padding, typer.Option("--padding", rich_help_panel=CONV, help="What fills the pad.")
]
StrideOpt = Annotated[
    int, typer.Option("--stride", min=1, rich_help_panel=CONV, help="Keep every s-th output (y[::s]).")
]
DilationOpt = Annotated[
    int, typer.Option("--dilation", min=1, rich_help_panel=CONV, help="Spacing d between taps.")
]
CorrelateOpt = Annotated[
    bool,
    typer.Option("--correlate", rich_help_panel=CONV,
                 help="Cross-correlate (exactly torch conv1d) instead of convolving."),
]
MethodOpt = Annotated[
    Method, typer.Option("--method", rich_help_panel=RUN, help="auto picks the faster.")
]
DeviceOpt = Annotated[Device, typer.Option("--device", rich_help_panel=RUN, help="Where to compute.")]
DtypeOpt = Annotated[
    Optional[Dtype],
    typer.Option("--dtype", rich_help_panel=RUN,
                 help="Compute precision. Default: float64 for float64 NPY input, else float32."),
]
RateOpt = Annotated[
    Optional[float], typer.Option("--rate", rich_help_panel=IO,
                                  help="Sample rate (Hz) of NPY input.")
]
LayoutOpt = Annotated[
    Optional[Layout], typer.Option("--layout", rich_help_panel=IO,
                                   help="2-D NPY axes: ct = (channels, time), tc = (time, channels).")
]
AllowNonfiniteOpt = Annotated[
    bool, typer.Option("--allow-nonfinite", rich_help_panel=IO,
                       help="Let NaN/Inf samples propagate instead of refusing them.")
]
# FIR design (issue 7): a reusable option set; `filter` takes it, jacobian/explain can too.
DESIGN = "FIR design (Hz)"
LowpassOpt = Annotated[
    Optional[float],
    typer.Option("--lowpass", metavar="HZ", rich_help_panel=DESIGN,
                 help="Windowed-sinc lowpass with its −6 dB cutoff at HZ (= scipy firwin); "
                 "--window/--size shape it."),
]
HighpassOpt = Annotated[
    Optional[float],
    typer.Option("--highpass", metavar="HZ", rich_help_panel=DESIGN,
                 help="Windowed-sinc highpass (odd --size)."),
]
BandpassOpt = Annotated[
    Optional[str],
    typer.Option("--bandpass", metavar="LO:HI", rich_help_panel=DESIGN,
                 help="Windowed-sinc bandpass between LO and HI Hz."),
]
BandstopOpt = Annotated[
    Optional[str],
    typer.Option("--bandstop", metavar="LO:HI", rich_help_panel=DESIGN,
                 help="Windowed-sinc bandstop (notch) between LO and HI Hz (odd --size)."),
]
TransitionOpt = Annotated[
    Optional[float],
    typer.Option("--transition", metavar="HZ", rich_help_panel=DESIGN,
                 help="Transition width: with --attenuation (default 60 dB) Kaiser's formulas "
                 "choose the window's beta and the tap count."),
]
AttenuationOpt = Annotated[
    Optional[float],
    typer.Option("--attenuation", metavar="DB", rich_help_panel=DESIGN,
                 help="Stopband attenuation in dB for the Kaiser design (≥ 8)."),
]
ResponseOpt = Annotated[
    bool,
    typer.Option("--response", rich_help_panel=DESIGN,
                 help="Measure the frequency response instead of printing coefficients: DC gain, "
                 "−3/−6 dB bandwidth, peak side lobe; passband ripple and stopband attenuation "
                 "of a design."),
]
PlotOpt = Annotated[
    Optional[str],
    typer.Option("--plot", metavar="FILE.png", rich_help_panel=DESIGN,
                 help="Draw the taps and the magnitude response in dB to a PNG "
                 "(needs matplotlib: pip install 'convcli[plot]')."),
]
DesignRateOpt = Annotated[
    Optional[float],
    typer.Option("--rate", metavar="HZ", rich_help_panel=DESIGN,
                 help="Sample rate: needed by --lowpass & co., puts --response and --plot in Hz."),
]
GainOpt = Annotated[
    Optional[float],
    typer.Option("--gain", metavar="DB", rich_help_panel=IO,
                 help="Scale the result by DB decibels before writing."),
]
NormalizeOutputOpt = Annotated[
    Optional[float],
    typer.Option("--normalize-output", metavar="[DBFS]", rich_help_panel=IO,
                 help="Scale the result so its peak is DBFS (default −1 dBFS) before writing."),
]
ClipOpt = Annotated[
    Literal["warn", "error", "clamp"],
    typer.Option("--clip", rich_help_panel=IO,
                 help="Integer PCM output that would clip: warn (clamp and report count, peak and "
                 "the gain that avoids it), error (write nothing, exit 1) or clamp (silently)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", rich_help_panel=RUN, help="Print a JSON summary.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", rich_help_panel=RUN, help="No messages.")]


def _version(value: bool) -> None:
    if value:
        print(f"convcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Filter signals with exact 1-D convolution semantics, and see what conv1d does to them."""


# --- helpers shared by commands ----------------------------------------------------------------
def conv_spec(mode: str, padding: str, stride: int, dilation: int, correlate: bool, groups: int):
    from convcli.spec import ConvSpec

    return ConvSpec(mode=mode, padding=padding, stride=stride, dilation=dilation,
                    correlate=correlate, groups=groups)


def load_kernel(
    window: str | None, size: int | None, periodic: bool, normalize: str | None,
    kernel: str | None, design=None, rate: float | None = None,
):
    """The coefficients as applied, from ``--window``/``--size``, ``--kernel PATH|-`` or a FIR
    design (``design`` from ``fir_request``, for a signal at ``rate`` Hz; ``size`` None = not
    given on the command line, so Kaiser's formulas may choose it)."""
    from convcli.kernels import make_kernel
    from convcli.signals import read_bytes

    data = None
    if kernel is not None:
        data = read_bytes(kernel, what="kernel")
    return make_kernel(window_spec=window, size=size, periodic=periodic, normalization=normalize,
                       kernel_bytes=data, kernel_name="stdin" if kernel == "-" else kernel or "",
                       design=design, rate=rate)


def fir_request(lowpass=None, highpass=None, bandpass=None, bandstop=None, transition=None,
                attenuation=None):
    """The FIR design flags as one ``fir.FirRequest`` (None when no band flag is given)."""
    from convcli.fir import request_from_options

    return request_from_options(lowpass, highpass, bandpass, bandstop, transition, attenuation)


def design_rate(request, signals) -> float:
    """The one sample rate a design is made for; refuses NPY without --rate and mixed rates."""
    from convcli.fir import format_cutoffs

    flag = f"--{request.band} {format_cutoffs(request.cutoffs)}"
    missing = [s.name for s in signals if s.rate is None]
    if missing:
        raise UsageError(f"{flag} is in Hz, and {missing[0]} is NPY with no sample rate",
                         "pass --rate HZ")
    rates = sorted({s.rate for s in signals})
    if len(rates) > 1:
        by_rate = {s.rate: s.name for s in signals}
        listed = ", ".join(f"{by_rate[r]} at {r:g} Hz" for r in rates)
        raise UsageError(f"{flag} designs a different filter for each sample rate, and the inputs "
                         f"have {len(rates)} ({listed})", "filter each rate in its own run")
    request.check_rate(rates[0], signals[0].name)
    return rates[0]


def given(ctx: typer.Context, name: str) -> bool:
    """Whether the option ``name`` was given on the command line (not just defaulted)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name != "DEFAULT"


def load_design(request, signals, window: str | None, size: int | None, periodic: bool,
                normalize: str | None, kernel: str | None):
    """A designed filter for ``signals`` (their one rate): ``(coefficients [k], fir.Design)``."""
    from convcli.kernels import designed_kernel

    return designed_kernel(request, design_rate(request, signals), window_spec=window, size=size,
                           periodic=periodic, normalization=normalize, has_file=kernel is not None)


def window_design(ctx: typer.Context, request, name: str | None, size: int, periodic: bool,
                  normalize: str | None, rate: float | None):
    """``(coefficients [k], fir.Design)`` for ``window NAME --lowpass ... --rate HZ``: NAME is
    the design's window; ``--size``/``--normalize`` count only when given on the command line."""
    from convcli.kernels import designed_kernel

    if rate is None:
        raise UsageError(f"--{request.band} is in Hz and needs the sample rate", "pass --rate HZ")
    if rate <= 0 or not math.isfinite(rate):
        raise UsageError(f"--rate must be a positive number of Hz, got {rate:g}")
    request.check_rate(rate)
    if name.strip().lower() == "kaiser" and (request.transition or request.attenuation):
        name = None  # `window kaiser --transition ...`: Kaiser's formulas choose beta
    return designed_kernel(request, rate, window_spec=name,
                           size=size if given(ctx, "size") else None, periodic=periodic,
                           normalization=normalize if given(ctx, "normalize") else None)


def window_response(coefficients, *, rate: float | None, design=None, response: bool = False,
                    plot: str | None = None, title: str = ""):
    """``--response`` and ``--plot`` of the window command: the measured ``Response`` (None
    without ``--response``); the PNG is drawn when ``plot`` names one."""
    measured = None
    if response:
        from convcli.response import measure

        if design is not None:
            measured = measure(coefficients, rate, band=design.request.band,
                               cutoffs=list(design.request.cutoffs),
                               transition=design.request.transition)
        else:
            measured = measure(coefficients, rate)
    if plot is not None:
        from convcli.plot import plot_window

        plot_window(coefficients, rate, plot, title=title)
    return measured


def render_response(measured) -> str:
    """The response figures as aligned ``label  value`` lines (what ``--response`` prints)."""
    rows = measured.rows()
    width = max(len(label) for label, _ in rows)
    lines = [f"{label:<{width}}  {value}" for label, value in rows]
    return "\n".join(lines + [f"note: {n}" for n in measured.notes]) + "\n"


def full_scale(subtype: str | None) -> float:
    """The largest sample an output holds: (2^(b−1) − 1)/2^(b−1) for b-bit PCM, else 1.0, so
    ``--normalize-output 0`` reaches full scale without clipping a sample."""
    from convcli.signals import PCM

    if subtype in PCM:
        scale = PCM[subtype][0]
        return (scale - 1) / scale
    return 1.0


def kernel_label(window: str | None, size: int, kernel: str | None, coefficients,
                 design=None) -> str:
    if design is not None:
        return design.describe()
    if kernel is not None:
        return f"kernel {('stdin' if kernel == '-' else kernel)} {tuple(coefficients.shape)}"
    return f"{window or 'hann'}({size})"


def same_file(a: str, b: str) -> bool:
    if a == "-" or b == "-":
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def default_output(path: str, out_format: str | None) -> str:
    """``in.wav`` -> ``in.filtered.wav`` beside it (``--format`` picks the extension)."""
    p = Path(path)
    suffix = f".{out_format}" if out_format else p.suffix
    return str(p.with_name(f"{p.stem}.filtered{suffix}"))


def output_format(out: str, requested: str | None, input_format: str) -> str:
    from convcli.signals import format_from_path

    if requested:
        return requested
    if out == "-":
        return input_format
    found = format_from_path(out)
    if found is None:
        raise UsageError(f"cannot tell the output format from {out!r}",
                         "use a .wav/.flac/.ogg/.npy name or pass --format")
    return found


def output_rate(rate: float | None, stride: int, out_format: str, report: Reporter) -> float | None:
    """Keeping every s-th sample divides the sample rate by s (audio needs whole Hz)."""
    if rate is None or stride == 1:
        return rate
    decimated = rate / stride
    if out_format != "npy" and decimated != int(decimated):
        report.warn(f"--stride {stride} makes the rate {decimated:g} Hz; "
                    f"{out_format.upper()} stores whole Hz, so it is written as {round(decimated)} Hz")
        return float(round(decimated))
    return decimated


# --- filter -----------------------------------------------------------------------------------
@app.command("filter")
def filter_command(
    ctx: typer.Context,
    inputs: Annotated[list[str], typer.Argument(metavar="INPUT...", help="Signal files, or - for stdin.")],
    output: Annotated[Optional[str], typer.Option("--output", "-o", rich_help_panel=IO,
                      help="Output path, or - for stdout. Default: INPUT_STEM.filtered.EXT.")] = None,
    out_dir: Annotated[Optional[str], typer.Option("--out-dir", rich_help_panel=IO,
                       help="Directory for the outputs of several inputs.")] = None,
    fmt: Annotated[Optional[Format], typer.Option("--format", "-f", rich_help_panel=IO,
                   help="Output format (default: from the output name, else the input's).")] = None,
    subtype: Annotated[Optional[str], typer.Option("--subtype", rich_help_panel=IO,
                       help="Audio subtype: PCM_16, PCM_24, PCM_32, FLOAT, ... (default: the input's).")] = None,
    layout: LayoutOpt = None,
    rate: RateOpt = None,
    window: WindowOpt = None,
    size: SizeOpt = 31,
    periodic: PeriodicOpt = False,
    normalize: NormalizeOpt = None,
    kernel: KernelOpt = None,
    groups: GroupsOpt = 1,
    lowpass: LowpassOpt = None,
    highpass: HighpassOpt = None,
    bandpass: BandpassOpt = None,
    bandstop: BandstopOpt = None,
    transition: TransitionOpt = None,
    attenuation: AttenuationOpt = None,
    gain: GainOpt = None,
    normalize_output: NormalizeOutputOpt = None,
    mode: ModeOpt = "same",
    padding: PaddingOpt = "zeros",
    stride: StrideOpt = 1,
    dilation: DilationOpt = 1,
    correlate: CorrelateOpt = False,
    method: MethodOpt = "auto",
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = None,
    allow_nonfinite: AllowNonfiniteOpt = False,
    clip: ClipOpt = "warn",
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Convolve signals with a window or kernel: [b]convcli filter in.wav --window hann --size 31[/b]."""
    from convcli.gain import apply_level, check_level_options
    from convcli.signals import check_finite, read_signal

    # 1. where each result goes, decided (and refused) before any work
    if len(inputs) > 1 and output is not None:
        raise UsageError("-o takes one input; several inputs need --out-dir DIR")
    if out_dir is not None and output is not None:
        raise UsageError("use either -o or --out-dir, not both")
    if inputs.count("-") > 1 or (kernel == "-" and "-" in inputs):
        raise UsageError("standard input can be read only once", "give files for the others")
    if out_dir is not None:
        if "-" in inputs:
            raise UsageError("--out-dir names outputs after input files; stdin has no name",
                             "use -o for a single stdin input")
        if not Path(out_dir).is_dir():
            raise OutputError(f"output directory {out_dir} does not exist", f"mkdir -p {out_dir}")
        outputs = [str(Path(out_dir) / (Path(p).stem + (f".{fmt}" if fmt else Path(p).suffix)))
                   for p in inputs]
    elif len(inputs) > 1:
        raise UsageError("several inputs need --out-dir DIR")
    else:
        outputs = [output or ("-" if inputs[0] == "-" else default_output(inputs[0], fmt))]
    for out in outputs:
        for src in inputs:
            if same_file(out, src):
                raise UsageError(f"output {out} is also an input; convcli never overwrites its input",
                                 "choose another -o")
    if len(set(map(os.path.abspath, outputs))) != len(outputs):
        raise UsageError("two inputs would write the same output name", "rename one input")
    from convcli.signals import check_output_path

    for out in outputs:
        check_output_path(out)

    spec = conv_spec(mode, padding, stride, dilation, correlate, groups)
    report = Reporter(quiet=quiet, json_mode=json_, data_on_stdout="-" in outputs)
    request = fir_request(lowpass, highpass, bandpass, bandstop, transition, attenuation)
    check_level_options(gain, normalize_output)
    design = None
    if request is None:
        coefficients = load_kernel(window, size, periodic, normalize, kernel)

    # 2. read every input whole and check it before computing anything
    signals = []
    clock = time.perf_counter()
    with report.progress(len(inputs), "reading") as tick:
        for path in inputs:
            tick(0, description=f"reading {path}")
            signal = read_signal(path, layout=layout, rate=rate, dtype=dtype or "auto")
            if not allow_nonfinite:
                check_finite(signal)
            signals.append(signal)
            tick()
    read_seconds = time.perf_counter() - clock
    for signal, out in zip(signals, outputs):  # refuse impossible outputs before computing
        out_format = output_format(out, fmt, signal.format)
        if out_format != "npy" and signal.rate is None:
            raise UsageError(f"{out_format.upper()} output needs a sample rate and {signal.name} "
                             "is NPY", "pass --rate HZ")
    if request is not None:  # a design depends on the inputs' sample rate
        coefficients, design = load_design(request, signals, window, size if given(ctx, "size")
                                           else None, periodic, normalize, kernel)

    # 3. compute, batching equal-shaped inputs into one tensor (refused if it cannot fit)
    from convcli.engine import filter_batches
    from convcli.resources import check_filter_memory

    check_filter_memory([s.data for s in signals], coefficients, spec, method,
                        "filter it in pieces with --block (streaming), or use fewer inputs at once",
                        device=device)

    started = time.perf_counter()
    with report.progress(None, f"filtering {len(signals)} signal{'s' * (len(signals) > 1)}"):
        results, run = filter_batches([s.data for s in signals], coefficients, spec,
                                      method=method, device=device)
    elapsed = time.perf_counter() - started

    # 4. encode all, apply the --clip policy, then write all outputs atomically together
    from convcli.signals import atomic_outputs, choose_subtype, clip_verdict, encode

    files, writers = [], []
    clock = time.perf_counter()
    with report.progress(2 * len(outputs), "encoding") as tick:
        for signal, out, data in zip(signals, outputs, results):
            tick(0, description=f"encoding {'stdout' if out == '-' else out}")
            out_format = output_format(out, fmt, signal.format)
            chosen = choose_subtype(out_format, signal, subtype)
            data, level = apply_level(data, gain_db=gain, peak_dbfs=normalize_output,
                                      full_scale=full_scale(chosen))
            if level.silent:
                report.warn(f"{out}: the result is silent; --normalize-output left it as it is")
            elif level.gain_db or normalize_output is not None:
                report.info(f"{out}: gain {level.gain_db:+.2f} dB, peak {dbfs(level.peak_after)}")
            out_rate = output_rate(signal.rate, stride, out_format, report)
            writer, wrote = encode(data, out_format=out_format, rate=out_rate, subtype=chosen,
                                   layout=signal.layout)
            wrote.path = out
            warning = clip_verdict(wrote, clip)  # --clip error raises here, before any write
            if warning and gain and wrote.safe_gain_db is not None:
                warning += (f" (on top of --gain {gain:g}: use --gain "
                            f"{gain + wrote.safe_gain_db:.1f})")
            writers.append((writer, wrote, warning, signal, data, chosen, out_rate, level))
            tick()
        with atomic_outputs(outputs) as handles:
            for out, handle, (writer, *_rest) in zip(outputs, handles, writers):
                tick(0, description=f"writing {'stdout' if out == '-' else out}")
                writer(handle)
                tick()
    write_seconds = time.perf_counter() - clock
    for out, (_writer, wrote, warning, signal, data, chosen, out_rate, level) in zip(outputs,
                                                                                 writers):
        out_format = wrote.format
        if warning:
            report.warn(warning)
        batch, channels, frames = data.shape
        report.info(f"wrote [bold]{'stdout' if out == '-' else out}[/bold]: "
                    f"{human_shape(channels, frames, out_rate)}"
                    f"{f', batch {batch}' if batch > 1 else ''}, {out_format.upper()}"
                    f"{f' {chosen}' if chosen else ''}")
        files.append({"input": signal.name, "output": out, "format": out_format, "subtype": chosen,
                      "shape_in": list(signal.shape), "shape_out": list(data.shape),
                      "rate": out_rate, "clipped": wrote.clipped, "peak": wrote.peak,
                      "gain_db": level.gain_db, "safe_gain_db": wrote.safe_gain_db})
    left, right = spec.pads(coefficients.shape[-1])
    report.info(f"{kernel_label(window, size, kernel, coefficients, design)}, "
                f"{'correlate' if correlate else 'convolve'} {mode}, {run['method']} on "
                f"{run['device']} {run['dtype']}, {elapsed:.3f} s")
    report.summary = {
        "command": "filter",
        "kernel": {"source": kernel or (design.describe() if design else window or "hann"),
                   "taps": coefficients.shape[-1], "shape": list(coefficients.shape)},
        "spec": {"mode": mode, "padding": padding, "stride": stride, "dilation": dilation,
                 "correlate": correlate, "groups": groups, "pads": [left, right]},
        **run,
        "seconds": elapsed,
        "timings": {"read": read_seconds, "compute": elapsed, "write": write_seconds},
        "clipped": sum(f["clipped"] for f in files),
        "clip": clip,
        "files": files,
    }
    report.finish()


# --- window -----------------------------------------------------------------------------------
@app.command("window")
def window_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(
        metavar="NAME[:PARAM]",
        help="hann, hamming, blackman, bartlett, rect, kaiser:BETA, gaussian:STD, tukey:ALPHA, "
        "triang, cosine, nuttall, blackmanharris, flattop, bohman.")],
    size: SizeOpt = 31,
    periodic: PeriodicOpt = False,
    normalize: Annotated[Normalization, typer.Option(
        "--normalize", rich_help_panel=KERNEL,
        help="sum: unity DC gain (as filter does); peak: max |w| = 1; none: raw window.")] = "sum",
    output: Annotated[str, typer.Option(
        "--output", "-o", rich_help_panel=IO, metavar="FILE|-",
        help="- (default): one coefficient per line on stdout; FILE.npy: float64 NPY; "
        "any other name: the same text.")] = "-",
    rate: DesignRateOpt = None,
    lowpass: LowpassOpt = None,
    highpass: HighpassOpt = None,
    bandpass: BandpassOpt = None,
    bandstop: BandstopOpt = None,
    transition: TransitionOpt = None,
    attenuation: AttenuationOpt = None,
    response: ResponseOpt = False,
    plot: PlotOpt = None,
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
    from convcli.kernels import make_kernel
    from convcli.signals import atomic_output, format_from_path
    from convcli.windows import parse_window

    request = fir_request(lowpass, highpass, bandpass, bandstop, transition, attenuation)
    if rate is not None and not (rate > 0 and math.isfinite(rate)):
        raise UsageError(f"--rate must be a positive number of Hz, got {rate:g}")
    coefficients_to_stdout = output == "-" and not response
    if plot == "-" and (coefficients_to_stdout or response):
        raise UsageError("--plot - and the text output would share stdout",
                         "name a file for one of them: --plot FILE.png or -o FILE")
    design = None
    if request is not None:
        coefficients, design = window_design(ctx, request, name, size, periodic, normalize, rate)
        window_name, param = design.window
        label = design.describe()
    else:
        window_name, param = parse_window(name)
        coefficients = make_kernel(window_spec=name, size=size, periodic=periodic,
                                   normalization=normalize)
        label = (f"{window_name}{'' if param is None else f':{param:g}'}({size}"
                 f"{', periodic' if periodic else ''})")
    measured = window_response(coefficients, rate=rate, design=design, response=response,
                               plot=plot, title=label)
    as_npy = output != "-" and format_from_path(output) == "npy"
    report = Reporter(quiet=quiet, json_mode=json_,
                      data_on_stdout=coefficients_to_stdout or plot == "-")
    if output != "-" or coefficients_to_stdout:
        with atomic_output(output) as handle:
            if as_npy:
                import numpy as np

                np.save(handle, coefficients, allow_pickle=False)
            else:
                handle.write("".join(f"{float(v)!r}\n" for v in coefficients).encode())
    if output != "-":
        scaled = normalize if design is None or given(ctx, "normalize") else "as firwin"
        report.info(f"wrote [bold]{output}[/bold]: {coefficients.size} coefficients of "
                    f"{label}, normalized {scaled}, {'NPY float64' if as_npy else 'text'}")
    if plot is not None and plot != "-":
        report.info(f"wrote [bold]{plot}[/bold]: taps and magnitude response of {label}")
    if measured is not None and not json_:
        write_text(render_response(measured))
    report.summary = {
        "command": "window", "window": window_name, "param": param,
        "size": int(coefficients.size), "periodic": periodic, "normalize": normalize,
        "output": output, "format": "npy" if as_npy else "text",
        "sum": float(coefficients.sum()), "peak": float(abs(coefficients).max()),
        "design": None if design is None else {
            "band": design.request.band, "cutoffs": list(design.request.cutoffs),
            "rate": design.rate, "window": design.window_text(), "taps": design.size,
            "transition": design.request.transition, "attenuation": design.request.attenuation},
        "response": None if measured is None else measured.to_dict(),
        "plot": plot,
        "coefficients": [float(v) for v in coefficients],
    }
    report.finish()


# --- info -------------------------------------------------------------------------------------
@app.command("info")
def info_command(
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
    from convcli.describe import describe
    from convcli.signals import read_bytes

    if files.count("-") > 1:
        raise UsageError("standard input can be read only once")
    report = Reporter(quiet=quiet, json_mode=json_)
    described, failed = [], []
    with report.progress(len(files), "reading") as tick:
        for path in files:
            tick(0, description=f"reading {path}")
            try:
                described.append(describe(read_bytes(path), "stdin" if path == "-" else path,
                                          layout=layout, rate=rate))
            except ConvcliError as exc:
                if len(files) == 1:
                    raise
                failed.append(path)
                report.warn(f"skipped {path}: {exc.line()}")
            tick()
    if not json_:
        from convcli.report import render_info

        write_text("".join(render_info(d) for d in described))
    report.summary = {"command": "info", "files": described, "failed": failed}
    report.finish()
    if failed:
        raise InputError(f"{len(failed)} of {len(files)} files could not be read: "
                         f"{', '.join(failed)}", "see the warnings above")


# --- explain ----------------------------------------------------------------------------------
@app.command("explain")
def explain_command(
    length: Annotated[int, typer.Option("--length", "-N", min=1, metavar="N",
                                        help="Input length N in samples.")],
    size: SizeOpt = 31,
    window: WindowOpt = None,
    periodic: PeriodicOpt = False,
    normalize: NormalizeOpt = None,
    kernel: KernelOpt = None,
    groups: GroupsOpt = 1,
    mode: ModeOpt = "same",
    padding: PaddingOpt = "zeros",
    stride: StrideOpt = 1,
    dilation: DilationOpt = 1,
    correlate: CorrelateOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    r"""Output length, pads, the formula of y\[i], the Jacobian and a worked example for any options.

    [b]convcli explain --length 8 --size 3[/b];
    [b]convcli explain --length 64 --size 3 --correlate --mode valid[/b] (= torch Conv1d).
    The kernel length is --size, or the length of --kernel; the worked example uses the given
    kernel's numbers when it is small, else w = 1, 2, …, k so the flip is visible.
    """
    from convcli.explain import explain, render

    spec = conv_spec(mode, padding, stride, dilation, correlate, groups)
    coefficients = None
    if kernel is not None or window is not None:
        coefficients = load_kernel(window, size, periodic, normalize, kernel)
    k = size if coefficients is None else coefficients.shape[-1]
    result = explain(spec, length, k, coefficients)
    report = Reporter(quiet=quiet, json_mode=json_)
    if not json_:
        write_text(render(result) + "\n")
    report.summary = result
    report.finish()


def write_text(text: str) -> None:
    """Text that is the command's output, to stdout (a closed pipe ends quietly in main())."""
    from convcli.signals import write_stdout

    write_stdout(text.encode())


# --- entry point ------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    """Run the CLI; map every failure to one ``error:`` line and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:
        args = [a for a in args if a != "--debug"]
    args = _optional_values(args)
    command = typer.main.get_command(app)
    try:
        with _signals_raise():
            try:
                code = command.main(args=args, prog_name="convcli", standalone_mode=False)
            except SystemExit as exc:
                # Typer catches EPIPE itself, wraps stdout in PacifyFlushWrapper and exits 1;
                # a reader that stops reading (| head) is not our failure: exit 0, quietly.
                if exc.code == 1 and type(sys.stdout).__name__ == "PacifyFlushWrapper":
                    raise BrokenPipeError from None
                raise
    except Interrupted as exc:  # SIGTERM/SIGINT/SIGHUP: cleanups (temporary files) have run
        if debug:
            raise
        _fail(f"interrupted by {exc.name}; unfinished outputs were removed", exc.exit_code,
              "existing outputs were left as they were; rerun to produce them")
    except ConvcliError as exc:
        if debug:
            raise
        _fail(exc.line(), exc.exit_code)
    except typer.TyperException as exc:  # typer's parsing errors: bad flags and values
        if type(exc).__name__ == "NoArgsIsHelpError":
            sys.exit(0)
        if debug:
            raise
        _fail(f"{exc.format_message()} (hint: see 'convcli {_command_name(args)}--help')",
              getattr(exc, "exit_code", 2))
    except BrokenPipeError:
        _quiet_pipe()
        sys.exit(0)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except MemoryError:
        if debug:
            raise
        _fail("out of memory", 1, "use a smaller input, --block, or --format banded")
    except Exception as exc:  # a bug: still one line, with the way to learn more
        if debug:
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc}", 1,
              "rerun with --debug for the traceback, and please report it")
    sys.exit(code or 0)


#: options whose value may be left out (click cannot express it): option -> value when omitted
OPTIONAL_VALUES = {"--normalize-output": "-1"}


def _optional_values(args: list[str]) -> list[str]:
    """``--normalize-output`` with no number after it gets its default value (−1 dBFS)."""
    out: list[str] = []
    for i, arg in enumerate(args):
        out.append(arg)
        if arg == "--":
            return out + args[i + 1 :]
        if arg in OPTIONAL_VALUES:
            following = args[i + 1] if i + 1 < len(args) else None
            try:
                float(following)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                out.append(OPTIONAL_VALUES[arg])
    return out


#: signals that end a run; each is turned into an ``Interrupted`` exception while main() runs
_STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP")


@contextlib.contextmanager
def _signals_raise():
    """While a command runs, SIGTERM/SIGINT/SIGHUP raise ``Interrupted`` in the main thread, so
    every ``with`` block on the way up runs (``atomic_output`` removes its temporary file);
    the previous handlers come back afterwards. Python runs handlers between bytecodes: a
    signal that arrives inside one long torch call takes effect when that call returns, and
    no output file exists before the write phase. Outside the main thread nothing is changed.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Interrupted(signum, signal.Signals(signum).name)

    previous = {}
    for name in _STOP_SIGNALS:
        number = getattr(signal, name, None)
        if number is not None:
            previous[number] = signal.signal(number, handler)
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def _command_name(args: list[str]) -> str:
    names = {c.name for c in app.registered_commands} | {"filter"}
    for a in args:
        if a in names:
            return f"{a} "
    return ""


def _fail(message: str, code: int, hint: str | None = None) -> None:
    line = f"error: {message}" + (f" (hint: {hint})" if hint else "")
    try:
        sys.stderr.write(line.replace("\n", " ") + "\n")
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    sys.exit(code)


def _quiet_pipe() -> None:
    """After EPIPE, point stdout at /dev/null so the interpreter's final flush stays silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
