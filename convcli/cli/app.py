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
from typing import Annotated, Literal

import typer

from convcli import __version__
from convcli.errors import ConvcliError, InputError, Interrupted, OutputError, UsageError
from convcli.render.reporter import Reporter, dbfs, human_shape

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
    str | None,
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
    Normalization | None,
    typer.Option("--normalize", rich_help_panel=KERNEL,
                 help="sum: unity DC gain (default for windows); peak: max |w| = 1; none. "
                 "Kernel files are used as written unless this is given."),
]
KernelOpt = Annotated[
    str | None,
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
    Dtype | None,
    typer.Option("--dtype", rich_help_panel=RUN,
                 help="Compute precision. Default: float64 for float64 NPY input, else float32."),
]
RateOpt = Annotated[
    float | None, typer.Option("--rate", rich_help_panel=IO,
                                  help="Sample rate (Hz) of NPY input.")
]
LayoutOpt = Annotated[
    Layout | None, typer.Option("--layout", rich_help_panel=IO,
                                   help="2-D NPY axes: ct = (channels, time), tc = (time, channels).")
]
AllowNonfiniteOpt = Annotated[
    bool, typer.Option("--allow-nonfinite", rich_help_panel=IO,
                       help="Let NaN/Inf samples propagate instead of refusing them.")
]
# FIR design (issue 7): a reusable option set; `filter` takes it, jacobian/explain can too.
DESIGN = "FIR design (Hz)"
LowpassOpt = Annotated[
    float | None,
    typer.Option("--lowpass", metavar="HZ", rich_help_panel=DESIGN,
                 help="Windowed-sinc lowpass with its −6 dB cutoff at HZ (= scipy firwin); "
                 "--window/--size shape it."),
]
HighpassOpt = Annotated[
    float | None,
    typer.Option("--highpass", metavar="HZ", rich_help_panel=DESIGN,
                 help="Windowed-sinc highpass (odd --size)."),
]
BandpassOpt = Annotated[
    str | None,
    typer.Option("--bandpass", metavar="LO:HI", rich_help_panel=DESIGN,
                 help="Windowed-sinc bandpass between LO and HI Hz."),
]
BandstopOpt = Annotated[
    str | None,
    typer.Option("--bandstop", metavar="LO:HI", rich_help_panel=DESIGN,
                 help="Windowed-sinc bandstop (notch) between LO and HI Hz (odd --size)."),
]
TransitionOpt = Annotated[
    float | None,
    typer.Option("--transition", metavar="HZ", rich_help_panel=DESIGN,
                 help="Transition width: with --attenuation (default 60 dB) Kaiser's formulas "
                 "choose the window's beta and the tap count."),
]
AttenuationOpt = Annotated[
    float | None,
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
    str | None,
    typer.Option("--plot", metavar="FILE.png", rich_help_panel=DESIGN,
                 help="Draw the taps and the magnitude response in dB to a PNG "
                 "(needs matplotlib: pip install 'convcli[plot]')."),
]
DesignRateOpt = Annotated[
    float | None,
    typer.Option("--rate", metavar="HZ", rich_help_panel=DESIGN,
                 help="Sample rate: needed by --lowpass & co., puts --response and --plot in Hz."),
]
GainOpt = Annotated[
    float | None,
    typer.Option("--gain", metavar="DB", rich_help_panel=IO,
                 help="Scale the result by DB decibels before writing."),
]
NormalizeOutputOpt = Annotated[
    float | None,
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
    from convcli.core.spec import ConvSpec

    return ConvSpec(mode=mode, padding=padding, stride=stride, dilation=dilation,
                    correlate=correlate, groups=groups)


def load_kernel(
    window: str | None, size: int | None, periodic: bool, normalize: str | None,
    kernel: str | None, design=None, rate: float | None = None,
):
    """The coefficients as applied, from ``--window``/``--size``, ``--kernel PATH|-`` or a FIR
    design (``design`` from ``fir_request``, for a signal at ``rate`` Hz; ``size`` None = not
    given on the command line, so Kaiser's formulas may choose it)."""
    from convcli.core.kernels import make_kernel
    from convcli.io.signals import read_bytes

    data = None
    if kernel is not None:
        data = read_bytes(kernel, what="kernel")
    return make_kernel(window_spec=window, size=size, periodic=periodic, normalization=normalize,
                       kernel_bytes=data, kernel_name="stdin" if kernel == "-" else kernel or "",
                       design=design, rate=rate)


def fir_request(lowpass=None, highpass=None, bandpass=None, bandstop=None, transition=None,
                attenuation=None):
    """The FIR design flags as one ``fir.FirRequest`` (None when no band flag is given)."""
    from convcli.core.fir import request_from_options

    return request_from_options(lowpass, highpass, bandpass, bandstop, transition, attenuation)


def design_rate(request, signals) -> float:
    """The one sample rate a design is made for; refuses NPY without --rate and mixed rates."""
    from convcli.core.fir import format_cutoffs

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
    from convcli.core.kernels import designed_kernel

    return designed_kernel(request, design_rate(request, signals), window_spec=window, size=size,
                           periodic=periodic, normalization=normalize, has_file=kernel is not None)


def window_design(ctx: typer.Context, request, name: str | None, size: int, periodic: bool,
                  normalize: str | None, rate: float | None):
    """``(coefficients [k], fir.Design)`` for ``window NAME --lowpass ... --rate HZ``: NAME is
    the design's window; ``--size``/``--normalize`` count only when given on the command line."""
    from convcli.core.kernels import designed_kernel

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
        from convcli.core.response import measure

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


def render_response(measured) -> str:
    """The response figures as aligned ``label  value`` lines (what ``--response`` prints)."""
    rows = measured.rows()
    width = max(len(label) for label, _ in rows)
    lines = [f"{label:<{width}}  {value}" for label, value in rows]
    return "\n".join(lines + [f"note: {n}" for n in measured.notes]) + "\n"


def full_scale(subtype: str | None) -> float:
    """The largest sample an output holds: (2^(b−1) − 1)/2^(b−1) for b-bit PCM, else 1.0, so
    ``--normalize-output 0`` reaches full scale without clipping a sample."""
    from convcli.io.signals import PCM

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
    from convcli.io.signals import format_from_path

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
    output: Annotated[str | None, typer.Option("--output", "-o", rich_help_panel=IO,
                      help="Output path, or - for stdout. Default: INPUT_STEM.filtered.EXT.")] = None,
    out_dir: Annotated[str | None, typer.Option("--out-dir", rich_help_panel=IO,
                       help="Directory for the outputs of several inputs.")] = None,
    fmt: Annotated[Format | None, typer.Option("--format", "-f", rich_help_panel=IO,
                   help="Output format (default: from the output name, else the input's).")] = None,
    subtype: Annotated[str | None, typer.Option("--subtype", rich_help_panel=IO,
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
    block: Annotated[int | None, typer.Option("--block", min=1, rich_help_panel=RUN,
                     help="Stream the input in blocks of this many frames (bounded memory). "
                     "Default: long WAV/FLAC/OGG inputs stream in blocks of 524288.")] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Convolve signals with a window or kernel: [b]convcli filter in.wav --window hann --size 31[/b]."""
    from convcli.core.levels import apply_level, check_level_options
    from convcli.io.signals import check_finite, read_signal

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
    from convcli.io.signals import check_output_path

    for out in outputs:
        check_output_path(out)

    spec = conv_spec(mode, padding, stride, dilation, correlate, groups)
    report = Reporter(quiet=quiet, json_mode=json_, data_on_stdout="-" in outputs)
    from convcli.plan.memory import reuse_freed_memory

    # the engines' temporaries (a few MB per chunk) come back from the heap, not page-faulted in
    # afresh each time: 64 × 1 s clips filter in 4 ms instead of 6
    reuse_freed_memory()
    request = fir_request(lowpass, highpass, bandpass, bandstop, transition, attenuation)
    check_level_options(gain, normalize_output)
    design = None
    if request is None:
        coefficients = load_kernel(window, size, periodic, normalize, kernel)

    from convcli.pipeline import stream_block

    if block is not None and (request is not None or normalize_output is not None):
        raise UsageError("--block streams a fixed kernel; FIR design and --normalize-output "
                         "need the whole signal first", "drop --block (or use --gain)")
    streamed = (stream_block(inputs, block, outputs[0], fmt)
                if request is None and normalize_output is None else None)
    if streamed is not None:  # long audio (or --block): block by block, bounded memory
        return _filter_streamed(inputs[0], outputs[0], fmt, subtype, coefficients, spec, streamed,
                                method, device, dtype, allow_nonfinite, clip, gain, report,
                                kernel_label(window, size, kernel, coefficients))

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
    from convcli.engines.numpy_backend import filter_batches  # numpy on the CPU, torch otherwise
    from convcli.plan.memory import check_filter_memory

    check_filter_memory([s.data for s in signals], coefficients, spec, method,
                        "filter it in pieces with --block (streaming), or use fewer inputs at once",
                        device=device)

    started = time.perf_counter()
    with report.progress(None, f"filtering {len(signals)} signal{'s' * (len(signals) > 1)}"):
        results, run = filter_batches([s.data for s in signals], coefficients, spec,
                                      method=method, device=device)
    elapsed = time.perf_counter() - started

    # 4. encode all, apply the --clip policy, then write all outputs atomically together
    from convcli.io.signals import atomic_outputs, choose_subtype, clip_verdict, encode

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
                f"{'correlate' if correlate else 'convolve'} {mode}, {run['method']} "
                f"({run.get('engine', 'torch')} engine) on {run['device']} {run['dtype']}, "
                f"{elapsed:.3f} s")
    report.summary = {
        "command": "filter",
        "kernel": {"source": kernel or (design.describe() if design else window or "hann"),
                   "taps": coefficients.shape[-1], "shape": list(coefficients.shape)},
        "spec": {"mode": mode, "padding": padding, "stride": stride, "dilation": dilation,
                 "correlate": correlate, "groups": groups, "pads": [left, right]},
        **run,
        "rates": _rates_source(run),
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
    from convcli.core.kernels import make_kernel
    from convcli.io.signals import atomic_output, format_from_path
    from convcli.core.windows import parse_window

    request = fir_request(lowpass, highpass, bandpass, bandstop, transition, attenuation)
    if rate is not None and not (rate > 0 and math.isfinite(rate)):
        raise UsageError(f"--rate must be a positive number of Hz, got {rate:g}")
    # coefficients go to stdout when asked (-o -), or by default when nothing else is asked
    coefficients_to_stdout = output == "-" or (output is None and not response and plot is None)
    to_file = output not in (None, "-")
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
    as_npy = to_file and format_from_path(output) == "npy"
    report = Reporter(quiet=quiet, json_mode=json_,
                      data_on_stdout=coefficients_to_stdout or plot == "-")
    if to_file or coefficients_to_stdout:
        with atomic_output(output if to_file else "-") as handle:
            if as_npy:
                import numpy as np

                np.save(handle, coefficients, allow_pickle=False)
            else:
                handle.write("".join(f"{float(v)!r}\n" for v in coefficients).encode())
    if to_file:
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
    from convcli.io.describe import describe
    from convcli.io.signals import read_bytes

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
        from convcli.render.reporter import render_info

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
    from convcli.core.explain import explain, render

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
    from convcli.io.signals import write_stdout

    write_stdout(text.encode())


# --- jacobian and grad ------------------------------------------------------------------------
# The math lives in convcli/autodiff.py; these two commands parse, pick the channel pair,
# call the core and render (heatmap and words in the terminal, or a file).
WrtJac = Literal["input", "kernel"]
WrtGrad = Literal["input", "kernel", "both"]
Loss = Literal["sum", "mean", "energy", "mse"]
JacFormat = Literal["dense", "banded"]
Via = Literal["auto", "closed", "autograd"]
JAC_OUTPUTS = (".npy", ".csv", ".npz", ".png")
DEFAULT_LENGTH = 64
CORNER = (12, 24)  # rows, columns of the heatmap


def parse_channel(text: str | None) -> tuple[int, int]:
    """``C`` -> (C, C) (depthwise: the channel itself); ``O:C`` -> output O, input C."""
    if text is None:
        return 0, 0
    parts = text.split(":")
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in (1, 2) or min(numbers, default=-1) < 0:
        raise UsageError(f"--channel takes C or O:C (whole numbers ≥ 0), got {text!r}",
                         "e.g. --channel 1, or --channel 3:0 for output 3, input 0 of a mixing kernel")
    return (numbers[0], numbers[0]) if len(numbers) == 1 else (numbers[0], numbers[1])


def parse_range(text: str | None, flag: str) -> slice | None:
    """``A:B`` (either end may be left out, negatives count from the end) or ``A`` (one index)."""
    if text is None:
        return None
    try:
        if ":" not in text:
            start = int(text)
            return slice(start, start + 1 if start != -1 else None)
        start, stop = (int(p) if p.strip() else None for p in text.split(":", 1))
        return slice(start, stop)
    except ValueError:
        raise UsageError(f"{flag} takes A:B like Python slices, got {text!r}",
                         f"e.g. {flag} 0:100") from None


def jacobian_input(input_path, length, seed, layout, dtype, allow_nonfinite, coefficients, groups):
    """``[C, N]`` numpy: batch item 0 of INPUT, or a seeded random signal of ``--length``."""
    import numpy as np

    from convcli.io.signals import check_finite, read_signal

    if input_path is not None:
        if length is not None:
            raise UsageError("--length makes a random input; it cannot go with INPUT",
                             "drop one of them")
        signal = read_signal(input_path, layout=layout, dtype=dtype or "auto")
        if not allow_nonfinite:
            check_finite(signal)
        return signal.data[0], signal.name
    if coefficients.ndim == 1:
        channels = 1
    elif coefficients.ndim == 2:
        channels = coefficients.shape[0]
    else:
        channels = coefficients.shape[1] * groups
    n = length or DEFAULT_LENGTH
    data = np.random.default_rng(seed).standard_normal((channels, n)).astype(dtype or "float32")
    return data, f"random normal ({channels} ch × {n:,}, seed {seed})"


def save_matrix(result, output: str) -> str:
    """Write the Jacobian as .npy/.csv/.npz/.png or text on stdout; returns what was written."""
    import io

    import numpy as np

    from convcli.autodiff.jacobian import Banded
    from convcli.io.signals import atomic_output, write_stdout

    matrix = result.matrix
    if isinstance(matrix, Banded):
        with atomic_output(output) as handle:
            np.savez(handle, **matrix.arrays())
        return f"banded .npz, {len(matrix.offsets)} diagonals + {len(matrix.edge_vals)} edge entries"
    array = matrix.cpu().numpy()
    suffix = Path(output).suffix.lower()
    if output == "-":
        buffer = io.StringIO()
        np.savetxt(buffer, array, fmt="%.9g")
        write_stdout(buffer.getvalue().encode())
        return "text"
    if suffix == ".png":
        from convcli.render import reporter as report

        plot = getattr(report, "plot_matrix", None)
        if plot is None:
            raise OutputError("PNG output needs convcli's plotting, which is not installed here",
                              "pip install 'convcli[plot]', or write J.npy / J.csv")
        plot(array, output)
        return "PNG"
    with atomic_output(output) as handle:
        if suffix == ".csv":
            buffer = io.StringIO()
            np.savetxt(buffer, array, fmt="%.9g", delimiter=",")
            handle.write(buffer.getvalue().encode())
        else:
            np.save(handle, array, allow_pickle=False)
    return suffix.lstrip(".").upper()


@app.command("jacobian")
def jacobian_command(
    input_path: Annotated[str | None, typer.Argument(
        metavar="[INPUT]", help="Signal file (batch item 0 is used). Default: random, --length.")] = None,
    wrt: Annotated[WrtJac, typer.Option("--wrt", help="input: J[i, j] = ∂y[i]/∂x[j]; "
                   "kernel: J[i, j] = ∂y[i]/∂w[j].")] = "input",
    length: Annotated[int | None, typer.Option("--length", min=1, rich_help_panel=IO,
                      help=f"Samples of the random input used without INPUT (default {DEFAULT_LENGTH}).")] = None,
    seed: Annotated[int, typer.Option("--seed", rich_help_panel=IO,
                    help="Seed of the random input.")] = 0,
    channel: Annotated[str | None, typer.Option("--channel", metavar="C|O:C",
                       help="Which channel pair: C (depthwise: channel C), or O:C (output O, "
                       "input C) for an (O, C/G, k) kernel. Default 0.")] = None,
    rows: Annotated[str | None, typer.Option("--rows", metavar="A:B",
                    help="Only these rows (output samples).")] = None,
    cols: Annotated[str | None, typer.Option("--cols", metavar="A:B",
                    help="Only these columns (input samples or taps).")] = None,
    check: Annotated[bool, typer.Option("--check", help="Compute J by autograd and by the closed "
                     "form, report the largest difference; exit 1 on mismatch.")] = False,
    fmt: Annotated[JacFormat | None, typer.Option("--format", "-f", help="dense [L_out, N], "
                   "or banded .npz (diagonals + offsets, scales to N = 10⁶). Default: banded for "
                   "-o *.npz, else dense.")] = None,
    via: Annotated[Via, typer.Option("--via", rich_help_panel=RUN, help="auto = closed form "
                   "(exists for every option, cheapest); autograd = torch.func.")] = "auto",
    output: Annotated[str | None, typer.Option("--output", "-o", rich_help_panel=IO,
                      help="J.npy, J.csv, J.npz (banded), J.png, or - for text on stdout. "
                      "Default: a summary with a heatmap.")] = None,
    layout: LayoutOpt = None,
    window: WindowOpt = None,
    size: SizeOpt = 31,
    periodic: PeriodicOpt = False,
    normalize: NormalizeOpt = None,
    kernel: KernelOpt = None,
    groups: GroupsOpt = 1,
    mode: ModeOpt = "same",
    padding: PaddingOpt = "zeros",
    stride: StrideOpt = 1,
    dilation: DilationOpt = 1,
    correlate: CorrelateOpt = False,
    method: MethodOpt = "auto",
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = None,
    allow_nonfinite: AllowNonfiniteOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Jacobian of conv1d, closed form or autograd: [b]convcli jacobian --length 10 --mode valid[/b]."""
    # 1. refuse contradictions before reading or computing anything
    suffix = Path(output).suffix.lower() if output and output != "-" else None
    if suffix is not None and suffix not in JAC_OUTPUTS:
        raise UsageError(f"cannot tell the Jacobian's format from {output!r}",
                         "use J.npy, J.csv, J.npz (banded), J.png or - (text)")
    banded = (fmt or ("banded" if suffix == ".npz" else "dense")) == "banded"
    if banded and output is not None and suffix != ".npz":
        raise UsageError("--format banded writes a .npz (offsets, bands, edge entries)",
                         "use -o J.npz")
    if not banded and suffix == ".npz":
        raise UsageError(".npz is the banded format", "drop --format dense, or write J.npy")
    if "-" in (input_path, kernel) and input_path == kernel:
        raise UsageError("standard input can be read only once", "give a file for one of them")

    spec = conv_spec(mode, padding, stride, dilation, correlate, groups)
    coefficients = load_kernel(window, size, periodic, normalize, kernel)
    data, source = jacobian_input(input_path, length, seed, layout, dtype, allow_nonfinite,
                                  coefficients, groups)
    pair_index = parse_channel(channel)
    row_slice, col_slice = parse_range(rows, "--rows"), parse_range(cols, "--cols")
    if not banded:  # refuse what cannot fit before torch is even imported
        from convcli.plan.memory import refuse_dense

        k, n = coefficients.shape[-1], data.shape[-1]
        spec.check(n, k)
        length_out = spec.output_length(n, k)
        r_start, r_stop, _ = (row_slice or slice(None)).indices(length_out)
        c_start, c_stop, _ = (col_slice or slice(None)).indices(n if wrt == "input" else k)
        itemsize = 8 if (dtype or data.dtype.name) == "float64" else 4
        refuse_dense(max(0, r_stop - r_start), max(0, c_stop - c_start), itemsize,
                     2 if check or via == "autograd" else 1)

    import torch

    from convcli.autodiff import jacobian as autodiff
    from convcli.engines.torch_backend import choose_method, resolve_device, resolve_dtype
    from convcli.core.kernels import to_weight

    target = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, data.dtype)
    weight_np, run_groups = to_weight(coefficients, data.shape[0], spec.groups)
    spec = conv_spec(mode, padding, stride, dilation, correlate, run_groups)
    x = torch.from_numpy(data).to(device=target, dtype=torch_dtype)
    weight = torch.from_numpy(weight_np).to(device=target, dtype=torch_dtype)
    if coefficients.ndim < 3 and pair_index[0] != pair_index[1]:
        raise UsageError(f"--channel {channel}: a (k,) or (C, k) kernel filters each channel "
                         "on its own, so only pairs C:C exist", "use --channel C")
    pair = autodiff.channel_pair(x, weight, spec, *pair_index)
    k, n = weight.shape[-1], x.shape[-1]
    pair.spec.check(n, k)
    engine = choose_method(n, k, pair.spec, method)

    # 2. compute
    started = time.perf_counter()
    result = autodiff.jacobian(pair, wrt, rows=row_slice, cols=col_slice, banded=banded,
                               via=via, check=check, method=method)
    elapsed = time.perf_counter() - started

    # 3. write or show, then report
    from rich.markup import escape

    from convcli.render.reporter import heatmap

    report = Reporter(quiet=quiet, json_mode=json_, data_on_stdout=output == "-")
    wrote = save_matrix(result, output) if output is not None else None
    length_out, width = result.full_shape
    (r0, r1), (c0, c1) = result.rows, result.cols
    block = f"[{r0}:{r1}, {c0}:{c1}] of " if (r1 - r0, c1 - c0) != (length_out, width) else ""
    of = "∂y/∂x" if wrt == "input" else "∂y/∂w"
    pair_text = (f"output {pair.output} ← input {pair.input}" if coefficients.ndim == 3
                 else f"channel {pair.input}")
    head = (f"J = {of}: {block}{length_out:,} × {width:,} "
            f"({'banded' if banded else 'dense'}), {pair_text}, "
            f"{kernel_label(window, size, kernel, coefficients)}, "
            f"{'correlate' if correlate else 'convolve'} {mode}, input {source}")
    formula = autodiff.jacobian_formula(pair.spec, k, wrt)
    details = result.details
    how = (f"autograd ({details['autograd']}) in {details['autograd_seconds']:.3f} s"
           if result.method == "autograd" else f"closed form in {details['closed_seconds']:.3f} s")
    lines = [escape(head), *map(escape, formula),
             f"computed by {escape(how)} on {target} {str(torch_dtype)[6:]}"]
    if result.check is not None:
        c = result.check
        other = ("closed form" if result.method == "autograd" else
                 f"autograd ({escape(c.autograd)}) in {details['autograd_seconds']:.3f} s")
        lines.append(f"check: {other}, max |autograd − closed form| "
                     f"{c.max_abs_diff:.3g} {'≤' if c.ok else '>'} tolerance {c.tolerance:.3g}: "
                     f"{'[green]ok[/green]' if c.ok else '[red]MISMATCH[/red]'}")
    if output is None and not json_:
        from rich.console import Console

        console = Console(highlight=False, soft_wrap=True)
        for line in lines:
            console.print(line)
        rows_shown = min(CORNER[0], r1 - r0)
        cols_shown = min(CORNER[1], c1 - c0)
        if isinstance(result.matrix, autodiff.Banded):
            corner = result.matrix.block((0, rows_shown), (0, cols_shown))
        else:
            corner = result.matrix[:rows_shown, :cols_shown]
        console.print(f"top-left corner (rows {r0}…{r0 + rows_shown - 1}):")
        console.print(heatmap(corner.cpu().numpy(), r0, c0))
    else:
        for line in lines:
            report.info(line)
        if wrote is not None:
            report.info(f"wrote [bold]{'stdout' if output == '-' else output}[/bold]: {wrote}")
    matrix = result.matrix
    report.summary = {
        "command": "jacobian",
        "wrt": wrt,
        "shape": [length_out, width],
        "rows": [r0, r1],
        "cols": [c0, c1],
        "channel": {"output": pair.output, "input": pair.input},
        "format": "banded" if banded else "dense",
        "method": "closed form" if result.method == "closed form" else "autograd",
        "autograd": result.details.get("autograd"),
        "engine": {"method": engine.method, "reason": engine.reason},
        "formula": formula,
        "check": None if result.check is None else {
            "ok": result.check.ok, "max_abs_diff": result.check.max_abs_diff,
            "tolerance": result.check.tolerance, "autograd": result.check.autograd},
        "spec": {"mode": mode, "padding": padding, "stride": stride, "dilation": dilation,
                 "correlate": correlate, "groups": run_groups, "pads": list(pair.spec.pads(k))},
        "kernel": {"source": kernel or (window or "hann"), "taps": k,
                   "shape": list(coefficients.shape)},
        "input": source,
        "device": str(target),
        "dtype": str(torch_dtype)[6:],
        "seconds": elapsed,
        "seconds_closed_form": details.get("closed_seconds"),
        "seconds_autograd": details.get("autograd_seconds"),
        "output": output,
        "bytes": matrix.nbytes if isinstance(matrix, autodiff.Banded)
        else matrix.numel() * matrix.element_size(),
    }
    report.finish()
    if result.check is not None and not result.check.ok:
        raise ConvcliError(
            f"--check: autograd and the closed form differ by {result.check.max_abs_diff:.3g} "
            f"(tolerance {result.check.tolerance:.3g})",
            "rerun with --dtype float64; if it persists, please report it with the command")


def gradient_format(output: str, wrt_names: tuple[str, ...], rate: float | None) -> str:
    """npy | wav | npz for ``-o``, refused before computing when it cannot hold the result."""
    suffix = Path(output).suffix.lower() if output != "-" else ".npy"
    if len(wrt_names) == 2:
        if suffix != ".npz":
            raise UsageError("--wrt both writes two arrays into one .npz (input, kernel)",
                             "use -o grads.npz")
        return "npz"
    if wrt_names == ("kernel",) and suffix != ".npy":
        raise UsageError("the kernel gradient is written as .npy", "use -o dw.npy")
    if suffix not in (".npy", ".wav"):
        raise UsageError(f"the input gradient is written as .npy or .wav, not {output!r}",
                         "use -o dx.npy or -o dx.wav")
    if suffix == ".wav" and rate is None:
        raise UsageError("WAV output needs a sample rate and the input is NPY", "pass --rate HZ")
    return suffix[1:]


def save_gradient(grads: dict, output: str, out_format: str, signal, coefficients_shape) -> str:
    """Write the gradient(s): input as .npy or 32-bit float WAV, kernel as .npy, both as .npz."""
    import numpy as np

    from convcli.io.signals import atomic_output, encode, to_file_layout

    if out_format == "npz":
        arrays = {"input": to_file_layout(grads["input"], signal.layout), "kernel": grads["kernel"]}
        with atomic_output(output) as handle:
            np.savez(handle, **arrays)
        return "NPZ (input, kernel)"
    (name, array), = grads.items()
    if name == "kernel":
        with atomic_output(output) as handle:
            np.save(handle, array.reshape(coefficients_shape), allow_pickle=False)
        return f"NPY {tuple(coefficients_shape)}"
    writer, _ = encode(array, out_format=out_format, rate=signal.rate,
                       subtype=None if out_format == "npy" else "FLOAT", layout=signal.layout)
    with atomic_output(output) as handle:
        writer(handle)
    return f"{out_format.upper()}{'' if out_format == 'npy' else ' FLOAT'}"


@app.command("grad")
def grad_command(
    input_path: Annotated[str, typer.Argument(metavar="INPUT", help="Signal file, or - for stdin.")],
    loss: Annotated[Loss, typer.Option("--loss", help="sum | mean of the output; energy = Σ y²; "
                    "mse = mean (y − target)² over every output element.")],
    target: Annotated[str | None, typer.Option("--target", metavar="FILE", rich_help_panel=IO,
                      help="The target output for --loss mse, shaped like the output.")] = None,
    wrt: Annotated[WrtGrad, typer.Option("--wrt", help="Gradient with respect to the input, "
                   "the kernel (as written), or both.")] = "input",
    output: Annotated[str | None, typer.Option("--output", "-o", rich_help_panel=IO,
                      help="dx.npy or dx.wav (input), dw.npy (kernel), g.npz (both), - = NPY "
                      "on stdout. Default: print the loss and norms only.")] = None,
    layout: LayoutOpt = None,
    rate: RateOpt = None,
    window: WindowOpt = None,
    size: SizeOpt = 31,
    periodic: PeriodicOpt = False,
    normalize: NormalizeOpt = None,
    kernel: KernelOpt = None,
    groups: GroupsOpt = 1,
    mode: ModeOpt = "same",
    padding: PaddingOpt = "zeros",
    stride: StrideOpt = 1,
    dilation: DilationOpt = 1,
    correlate: CorrelateOpt = False,
    method: MethodOpt = "auto",
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = None,
    allow_nonfinite: AllowNonfiniteOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Gradient of a scalar loss of conv1d: [b]convcli grad in.wav --loss energy --wrt input -o dx.wav[/b]."""
    from convcli.io.signals import check_finite, read_signal

    if loss == "mse" and target is None:
        raise UsageError("--loss mse needs --target FILE", "give the output you want to match")
    if target is not None and loss != "mse":
        raise UsageError("--target is used by --loss mse only")
    for source in (input_path, target, kernel):
        if output is not None and source is not None and same_file(output, source):
            raise UsageError(f"output {output} is also an input; convcli never overwrites its input",
                             "choose another -o")
    stdin_users = [p for p in (input_path, kernel, target) if p == "-"]
    if len(stdin_users) > 1:
        raise UsageError("standard input can be read only once", "give files for the others")
    wrt_names = ("input", "kernel") if wrt == "both" else (wrt,)

    spec = conv_spec(mode, padding, stride, dilation, correlate, groups)
    coefficients = load_kernel(window, size, periodic, normalize, kernel)
    signal = read_signal(input_path, layout=layout, rate=rate, dtype=dtype or "auto")
    wanted = read_signal(target, layout=layout, dtype=dtype or "auto") if target else None
    if not allow_nonfinite:
        check_finite(signal)
        if wanted is not None:
            check_finite(wanted)
    out_format = gradient_format(output, wrt_names, signal.rate) if output is not None else None

    import torch

    from convcli.autodiff import jacobian as autodiff
    from convcli.engines.torch_backend import resolve_device, resolve_dtype

    where = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, signal.data.dtype)
    x = torch.from_numpy(signal.data).to(device=where, dtype=torch_dtype)
    w = torch.from_numpy(coefficients).to(device=where, dtype=torch_dtype)
    y_target = (torch.from_numpy(wanted.data).to(device=where, dtype=torch_dtype)
                if wanted is not None else None)

    started = time.perf_counter()
    value, grads = autodiff.grad(x, w, spec, loss, wrt_names, y_target, method)
    elapsed = time.perf_counter() - started

    report = Reporter(quiet=quiet, json_mode=json_, data_on_stdout=output == "-")
    arrays = {name: g.cpu().numpy() for name, g in grads.items()}
    wrote = (save_gradient(arrays, output, out_format, signal, coefficients.shape)
             if output is not None else None)
    symbols = {"input": "∂loss/∂x", "kernel": "∂loss/∂w"}
    report.info(f"loss ({loss}) = {float(value):.9g}")
    for name, g in grads.items():
        report.info(f"‖{symbols[name]}‖₂ = {autodiff.norm(g):.6g}, max |{symbols[name]}| = "
                    f"{float(g.abs().max()):.6g}, shape {tuple(g.shape)}")
    report.info(f"{kernel_label(window, size, kernel, coefficients)}, "
                f"{'correlate' if correlate else 'convolve'} {mode}, reverse-mode autograd on "
                f"{where} {str(torch_dtype)[6:]}, {elapsed:.3f} s")
    if wrote is not None:
        report.info(f"wrote [bold]{'stdout' if output == '-' else output}[/bold]: {wrote}")
    report.summary = {
        "command": "grad",
        "loss": loss,
        "value": float(value),
        "wrt": list(wrt_names),
        "method": "autograd (reverse mode, torch.autograd.grad)",
        "norms": {name: autodiff.norm(g) for name, g in grads.items()},
        "max_abs": {name: float(g.abs().max()) for name, g in grads.items()},
        "shapes": {name: list(g.shape) for name, g in grads.items()},
        "input": signal.name,
        "target": target,
        "spec": {"mode": mode, "padding": padding, "stride": stride, "dilation": dilation,
                 "correlate": correlate, "groups": groups},
        "device": str(where),
        "dtype": str(torch_dtype)[6:],
        "seconds": elapsed,
        "output": output,
    }
    report.finish()


# --- calibrate --------------------------------------------------------------------------------
@app.command("calibrate")
def calibrate_command(
    device: DeviceOpt = "auto",
    quick: Annotated[bool, typer.Option("--quick", rich_help_panel=RUN,
                     help="Fewer, smaller problems: a few seconds instead of about 20.")] = False,
    no_save: Annotated[bool, typer.Option("--no-save", "--dry-run", rich_help_panel=RUN,
                       help="Only print the fit; keep the cache as it is.")] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Fit auto's cost model to this machine: [b]convcli calibrate --quick[/b].

    Times the algorithms [b]filter[/b] would run on the device (on the CPU: the numpy engine's
    banded GEMM, overlap-save and a memory pass, and the torch engine's F.conv1d and FFT for
    kernels that mix channels; on CUDA: the torch engine), fits the cost model's rates to the
    timings and saves them per device under $XDG_CACHE_HOME/convcli/ (~/.cache/convcli/),
    where [b]--method auto[/b] finds them. [b]filter --json[/b] says which rates priced it
    ("rates"). CONVCLI_CALIBRATION=off ignores the cache; =PATH keeps it elsewhere.
    """
    from convcli.plan import calibrate
    from convcli.plan import ratecache
    from convcli.render.reporter import render_calibration

    report = Reporter(quiet=quiet, json_mode=json_)
    target = calibrate.resolve(device)  # cuda without CUDA: one clear error, before any work
    with report.progress(None, "calibrating", delay=0.0) as tick:
        result = calibrate.run(target, quick=quick, on_problem=lambda i, n, problem: tick(
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
        from convcli.plan.costmodel import rates_source

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


def _rates_source(run: dict) -> str:
    """Which cost-model rates priced ``auto`` for ``run``: ``built-in`` or ``calibrated ...``."""
    from convcli.plan.costmodel import rates_source

    return rates_source(run["device"], run.get("engine", "torch"))


def _filter_streamed(path, out, fmt, subtype, coefficients, spec, block, method, device, dtype,
                     allow_nonfinite, clip, gain, report, label) -> None:
    """``filter`` for one audio file streamed in blocks (see ``convcli.stream``)."""
    from convcli.io.signals import atomic_output, choose_subtype, clip_verdict
    from convcli.pipeline import audio_info, stream_filter

    info = audio_info(path)
    assert info is not None
    out_format = output_format(out, fmt, info[0])
    chosen = choose_subtype(out_format, None, subtype) if subtype else None
    out_rate = output_rate(float(info[3]), spec.stride, out_format, report)
    with atomic_output(out) as handle:
        result = stream_filter(path, handle, coefficients=coefficients, spec=spec,
                               out_format=out_format, subtype=chosen, block=block, method=method,
                               device=device, dtype=dtype or "auto", out_rate=out_rate,
                               gain_db=gain, allow_nonfinite=allow_nonfinite)
        result.wrote.path = out
        warning = clip_verdict(result.wrote, clip)  # --clip error: the temporary file goes
    wrote, run = result.wrote, result.run
    if warning:
        report.warn(warning)
    _, channels, frames = result.shape_out
    report.info(f"wrote [bold]{'stdout' if out == '-' else out}[/bold]: "
                f"{human_shape(channels, frames, out_rate)}, {out_format.upper()} {wrote.subtype}")
    report.info(f"{label}, {'correlate' if spec.correlate else 'convolve'} {spec.mode}, "
                f"{run['method']} ({run.get('engine', 'torch')} engine) on {run['device']} "
                f"{run['dtype']}, streamed in "
                f"{result.blocks} blocks of {block} frames, {result.seconds:.3f} s")
    left, right = spec.pads(coefficients.shape[-1])
    report.summary = {
        "command": "filter",
        "kernel": {"taps": coefficients.shape[-1], "shape": list(coefficients.shape)},
        "spec": {"mode": spec.mode, "padding": spec.padding, "stride": spec.stride,
                 "dilation": spec.dilation, "correlate": spec.correlate, "groups": spec.groups,
                 "pads": [left, right]},
        **run,
        "rates": _rates_source(run),
        "seconds": result.seconds,
        "clipped": wrote.clipped,
        "clip": clip,
        "files": [{"input": "stdin" if path == "-" else path, "output": out, "format": out_format,
                   "subtype": wrote.subtype, "shape_in": list(result.shape_in),
                   "shape_out": list(result.shape_out), "rate": out_rate,
                   "clipped": wrote.clipped, "peak": wrote.peak, "gain_db": gain or 0.0,
                   "safe_gain_db": wrote.safe_gain_db}],
    }
    report.finish()


# --- entry point ------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    """Run the CLI; map every failure to one ``error:`` line and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:
        args = [a for a in args if a != "--debug"]
    args = _optional_values(args)
    command = typer.main.get_command(app)
    quiet = "--quiet" in args or "-q" in args
    try:
        with _signals_raise(), _warnings_one_line(quiet):
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


@contextlib.contextmanager
def _warnings_one_line(quiet: bool):
    """While a command runs, a ``ConvcliWarning`` from the core (e.g. an unusable calibration
    file) prints as one ``warning: ...`` line on stderr (none with ``--quiet``); other
    warnings are shown as Python shows them."""
    import warnings

    from convcli.errors import ConvcliWarning

    with warnings.catch_warnings():
        warnings.simplefilter("always", ConvcliWarning)
        previous = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if not issubclass(category, ConvcliWarning):
                previous(message, category, filename, lineno, file, line)
            elif not quiet:
                with contextlib.suppress(BrokenPipeError, ValueError):
                    sys.stderr.write(f"warning: {str(message).replace(chr(10), ' ')}\n")
                    sys.stderr.flush()

        warnings.showwarning = show
        yield


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
