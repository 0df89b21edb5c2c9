"""The options the commands share, declared once as ``Annotated`` aliases so a flag means the same
thing everywhere, and the few helpers that turn parsed flags into the core's objects.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Literal, get_args

import typer

from convcli.core import limits
from convcli.errors import FlagError


# --- parsers: every numeric and every choice flag is checked here, once --------------------------
def number(name: str):
    """The typer ``parser`` of the numeric flag ``--name``: its range is ``core.limits``'s, and
    a value outside it is one ``error:`` line naming the flag, the value and the range."""

    def parse(value):
        return limits.parse(name, value, FlagError)

    parse.__name__ = f"parse_{name.replace('-', '_')}"
    return parse


def choice(flag: str, literal):
    """The typer ``parser`` of a choice flag: the values of the ``Literal`` type ``literal``;
    a misspelt value gets the nearest one as a hint (``--mode vaild``: did you mean 'valid'?)."""
    values = get_args(literal)

    def parse(value):
        if value in values:
            return value
        close = difflib.get_close_matches(str(value).strip().lower(), values, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}?" if close else f"one of {', '.join(values)}"
        raise FlagError(f"{flag} {value!r} is not one of {', '.join(values)}", hint)

    parse.__name__ = f"parse_{flag.strip('-').replace('-', '_')}"
    return parse


def choice_option(flag: str, literal, *decls: str, **kwargs):
    """``typer.Option(flag, *decls, **kwargs)`` that takes one of the ``Literal`` ``literal``'s
    values (``choice``); typer still shows and completes the values from the annotation."""
    return typer.Option(flag, *decls, parser=choice(flag, literal), **kwargs)


def number_option(flag: str, *decls: str, limit: str | None = None, **kwargs):
    """``typer.Option(flag, *decls, **kwargs)`` whose value is checked by ``number(limit)``
    (default: the flag's own name)."""
    return typer.Option(flag, *decls, parser=number(limit or flag.lstrip("-")), **kwargs)


def flag_option(flag: str, *decls: str, **kwargs):
    """A boolean ``typer.Option``: shown without a type in ``--help`` (it takes no value)."""
    return typer.Option(flag, *decls, metavar="", **kwargs)


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
# every audio format convcli writes (io.formats.AUDIO_FORMATS), and NPY
Format = Literal["wav", "flac", "ogg", "opus", "mp3", "aiff", "au", "caf", "w64", "rf64", "npy"]
Layout = Literal["ct", "tc"]
Clip = Literal["warn", "error", "clamp"]

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
    int, number_option("--size", "-n", metavar="N", rich_help_panel=KERNEL,
                       help="Window length in taps (1 … 50,000,000).")
]
PeriodicOpt = Annotated[
    bool,
    flag_option("--periodic", rich_help_panel=KERNEL,
                 help="DFT-even window (scipy fftbins=True) instead of the symmetric one."),
]
NormalizeOpt = Annotated[
    Normalization | None,
    choice_option("--normalize", Normalization, rich_help_panel=KERNEL,
                 help="sum: unity DC gain (default for windows); peak: max |w| = 1; none. "
                 "Kernel files are used as written unless this is given."),
]
KernelOpt = Annotated[
    str | None,
    typer.Option("--kernel", "-k", metavar="PATH|-", rich_help_panel=KERNEL,
                 help="Coefficients from .npy or text: (k,), (C, k) or (O, C/G, k)."),
]
GroupsOpt = Annotated[
    int, number_option("--groups", metavar="G", rich_help_panel=KERNEL,
                      help="Groups G for an (O, C/G, k) kernel.")
]
ModeOpt = Annotated[
    Mode, choice_option("--mode", Mode, rich_help_panel=CONV,
                       help="same (length N), valid (N−K+1), full (N+K−1), causal (N, like lfilter).")
]
PadOpt = Annotated[
    str | None,
    typer.Option("--pad", metavar="P|L:R", rich_help_panel=CONV,
                 help="The pads themselves, as PyTorch's padding=: P samples at both ends, or L "
                 "left and R right; instead of --mode (--padding fills them)."),
]
PaddingOpt = Annotated[
    Padding, choice_option("--padding", Padding, rich_help_panel=CONV, help="What fills the pad.")
]
BiasOpt = Annotated[
    str | None,
    typer.Option("--bias", metavar="B|PATH", rich_help_panel=CONV,
                 help="Add B to every output after the convolution, or one value per output "
                 "channel from a .npy or text file (nn.Conv1d's bias)."),
]
StrideOpt = Annotated[
    int, number_option("--stride", metavar="S", rich_help_panel=CONV,
                       help="Keep every s-th output (y[::s]).")
]
DilationOpt = Annotated[
    int, number_option("--dilation", metavar="D", rich_help_panel=CONV,
                       help="Spacing d between taps.")
]
CorrelateOpt = Annotated[
    bool,
    flag_option("--correlate", rich_help_panel=CONV,
                 help="Cross-correlate (exactly torch conv1d) instead of convolving."),
]
MethodOpt = Annotated[
    Method, choice_option("--method", Method, rich_help_panel=RUN, help="auto picks the faster.")
]
DeviceOpt = Annotated[Device, choice_option("--device", Device, rich_help_panel=RUN,
                                            help="Where to compute.")]
DtypeOpt = Annotated[
    Dtype | None,
    choice_option("--dtype", Dtype, rich_help_panel=RUN,
                 help="Compute precision. Default: float64 for float64 NPY input, else float32."),
]
RateOpt = Annotated[
    float | None, number_option("--rate", metavar="HZ", rich_help_panel=IO,
                                help="Sample rate (Hz) of NPY input (audio keeps its own).")
]
LayoutOpt = Annotated[
    Layout | None, choice_option("--layout", Layout, rich_help_panel=IO,
                                   help="2-D NPY axes: ct = (channels, time), tc = (time, channels).")
]
AllowNonfiniteOpt = Annotated[
    bool, flag_option("--allow-nonfinite", rich_help_panel=IO,
                       help="Let NaN/Inf samples propagate instead of refusing them.")
]
# FIR design (issue 7): a reusable option set; `filter` takes it, jacobian/explain can too.
DESIGN = "FIR design (Hz)"
LowpassOpt = Annotated[
    float | None,
    number_option("--lowpass", metavar="HZ", rich_help_panel=DESIGN,
                 help="Windowed-sinc lowpass with its −6 dB cutoff at HZ (= scipy firwin); "
                 "--window/--size shape it."),
]
HighpassOpt = Annotated[
    float | None,
    number_option("--highpass", metavar="HZ", rich_help_panel=DESIGN,
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
    number_option("--transition", metavar="HZ", rich_help_panel=DESIGN,
                 help="Transition width: with --attenuation (default 60 dB) Kaiser's formulas "
                 "choose the window's beta and the tap count."),
]
AttenuationOpt = Annotated[
    float | None,
    number_option("--attenuation", metavar="DB", rich_help_panel=DESIGN,
                 help="Stopband attenuation in dB for the Kaiser design (≥ 8)."),
]
ResponseOpt = Annotated[
    bool,
    flag_option("--response", rich_help_panel=DESIGN,
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
    number_option("--rate", metavar="HZ", rich_help_panel=DESIGN,
                 help="Sample rate: needed by --lowpass & co., puts --response and --plot in Hz."),
]
GainOpt = Annotated[
    float | None,
    number_option("--gain", metavar="DB", rich_help_panel=IO,
                 help="Scale the result by DB decibels before writing."),
]
NormalizeOutputOpt = Annotated[
    float | None,
    number_option("--normalize-output", metavar="[DBFS]", rich_help_panel=IO,
                 help="Scale the result so its peak is DBFS (default −1 dBFS) before writing."),
]
ClipOpt = Annotated[
    Clip,
    choice_option("--clip", Clip, rich_help_panel=IO,
                 help="Integer PCM output that would clip: warn (clamp and report count, peak and "
                 "the gain that avoids it), error (write nothing, exit 1) or clamp (silently)."),
]
JsonOpt = Annotated[bool, flag_option("--json", rich_help_panel=RUN, help="Print a JSON summary.")]
QuietOpt = Annotated[bool, flag_option("--quiet", "-q", rich_help_panel=RUN, help="No messages.")]
NoClobberOpt = Annotated[
    bool, flag_option("--no-clobber", rich_help_panel=IO,
                      help="Never replace an existing output: refuse it before any work.")
]


# --- flags -> the core's objects -----------------------------------------------------------------
def conv_spec(mode: str, padding: str, stride: int, dilation: int, correlate: bool, groups: int,
              pad: str | None = None):
    """The ``ConvSpec`` of the convolution options (``pad``: ``--pad``'s text, P or L:R)."""
    from convcli.core.spec import ConvSpec

    return ConvSpec(mode=mode, padding=padding, stride=stride, dilation=dilation,
                    correlate=correlate, groups=groups, pad=None if pad is None else parse_pad(pad))


def parse_pad(text: str) -> int | tuple[int, int]:
    """``--pad P`` -> P, ``--pad L:R`` -> (L, R); the spec refuses negative ones.

    >>> parse_pad("2"), parse_pad("1:3")
    (2, (1, 3))
    """
    from convcli.errors import UsageError

    try:
        parts = [int(part) for part in text.split(":")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2):
        raise UsageError(f"--pad takes P or L:R (whole numbers ≥ 0), got {text!r}",
                         "e.g. --pad 2, or --pad 1:3 for 1 sample on the left and 3 on the right")
    return parts[0] if len(parts) == 1 else (parts[0], parts[1])


def bias_values(text: str | None):
    """``--bias``'s values (``io.kernelfile.read_bias``), or None."""
    if text is None:
        return None
    from convcli.io.kernelfile import read_bias

    return read_bias(text)


def fir_request(lowpass=None, highpass=None, bandpass=None, bandstop=None, transition=None,
                attenuation=None):
    """The FIR design flags as one ``core.fir.FirRequest`` (None when no band flag is given)."""
    from convcli.core.fir import request_from_options

    return request_from_options(lowpass, highpass, bandpass, bandstop, transition, attenuation)


def given(ctx: typer.Context, name: str) -> bool:
    """Whether the option ``name`` was given on the command line (not just defaulted)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name != "DEFAULT"


def kernel_request(window: str | None, size: int | None, periodic: bool, normalize: str | None,
                   kernel: str | None, design=None):
    """Where the kernel comes from (``io.kernelfile.KernelRequest``); ``size`` None = not given
    on the command line, so a design's Kaiser formulas may choose it."""
    from convcli.io.kernelfile import KernelRequest

    return KernelRequest(window=window, size=size, periodic=periodic, normalize=normalize,
                         path=kernel, design=design)


def refuse_terminal(what: str, path: str = "-") -> None:
    """Refuse binary data bound for a terminal (it would fill the screen with noise and can
    leave the terminal in a strange state), before any work: stdout (``-``) or a tty device."""
    from convcli.io.atomic import is_terminal

    if is_terminal(path):
        where = "standard output" if path == "-" else path
        raise FlagError(f"{what} is binary and {where} is a terminal; nothing written",
                        "name a file with -o FILE, or pipe it: ... -o - | sox -t wav - out.wav")


def write_text(text: str) -> None:
    """Text that is the command's output, to stdout (a closed pipe ends quietly in main())."""
    from convcli.io.atomic import write_stdout

    write_stdout(text.encode())
