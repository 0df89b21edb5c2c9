"""convcli's command line: parse -> call the core -> render. The only place that exits.

torch is imported inside the commands that compute, so ``--help`` and ``info`` start fast.
Every error ends as one ``error: ...`` line on stderr (``--debug`` shows the traceback).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from convcli import __version__
from convcli.errors import ConvcliError, InputError, Interrupted, OutputError, UsageError
from convcli.report import Reporter, human_shape

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
    window: str | None, size: int, periodic: bool, normalize: str | None, kernel: str | None
):
    """The coefficients as applied, from ``--window``/``--size`` or ``--kernel PATH|-``."""
    from convcli.kernels import make_kernel
    from convcli.signals import read_bytes

    data = None
    if kernel is not None:
        data = read_bytes(kernel, what="kernel")
    return make_kernel(window_spec=window, size=size, periodic=periodic, normalization=normalize,
                       kernel_bytes=data, kernel_name="stdin" if kernel == "-" else kernel or "")


def kernel_label(window: str | None, size: int, kernel: str | None, coefficients) -> str:
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
            out_rate = output_rate(signal.rate, stride, out_format, report)
            writer, wrote = encode(data, out_format=out_format, rate=out_rate, subtype=chosen,
                                   layout=signal.layout)
            wrote.path = out
            warning = clip_verdict(wrote, clip)  # --clip error raises here, before any write
            writers.append((writer, wrote, warning, signal, data, chosen, out_rate))
            tick()
        with atomic_outputs(outputs) as handles:
            for out, handle, (writer, *_rest) in zip(outputs, handles, writers):
                tick(0, description=f"writing {'stdout' if out == '-' else out}")
                writer(handle)
                tick()
    write_seconds = time.perf_counter() - clock
    for out, (_writer, wrote, warning, signal, data, chosen, out_rate) in zip(outputs, writers):
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
                      "safe_gain_db": wrote.safe_gain_db})
    left, right = spec.pads(coefficients.shape[-1])
    report.info(f"{kernel_label(window, size, kernel, coefficients)}, "
                f"{'correlate' if correlate else 'convolve'} {mode}, {run['method']} on "
                f"{run['device']} {run['dtype']}, {elapsed:.3f} s")
    report.summary = {
        "command": "filter",
        "kernel": {"source": kernel or (window or "hann"), "taps": coefficients.shape[-1],
                   "shape": list(coefficients.shape)},
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
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Print window coefficients, exactly as [b]filter --window[/b] applies them.

    [b]convcli window kaiser:6 --size 21 | convcli filter in.wav --kernel - -o out.wav[/b]
    gives the same output as [b]--window kaiser:6 --size 21[/b]: every coefficient is printed
    with full float64 precision (shortest repr that reads back to the same number).
    """
    from convcli.kernels import make_kernel
    from convcli.signals import atomic_output, format_from_path
    from convcli.windows import parse_window

    window_name, param = parse_window(name)
    coefficients = make_kernel(window_spec=name, size=size, periodic=periodic,
                               normalization=normalize)
    as_npy = output != "-" and format_from_path(output) == "npy"
    report = Reporter(quiet=quiet, json_mode=json_, data_on_stdout=output == "-")
    with atomic_output(output) as handle:
        if as_npy:
            import numpy as np

            np.save(handle, coefficients, allow_pickle=False)
        else:
            handle.write("".join(f"{float(v)!r}\n" for v in coefficients).encode())
    if output != "-":
        report.info(f"wrote [bold]{output}[/bold]: {size} coefficients of "
                    f"{window_name}{'' if param is None else f':{param:g}'}"
                    f"{' (periodic)' if periodic else ''}, normalized {normalize}, "
                    f"{'NPY float64' if as_npy else 'text'}")
    report.summary = {
        "command": "window", "window": window_name, "param": param, "size": size,
        "periodic": periodic, "normalize": normalize, "output": output,
        "format": "npy" if as_npy else "text",
        "sum": float(coefficients.sum()), "peak": float(abs(coefficients).max()),
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
