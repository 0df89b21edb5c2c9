"""``convcli filter``: parse the flags into a ``pipeline.FilterJob``, run it, render the result."""

from __future__ import annotations

from typing import Annotated

import typer

from convcli.cli.options import (
    IO,
    RUN,
    AllowNonfiniteOpt,
    AttenuationOpt,
    BandpassOpt,
    BandstopOpt,
    BiasOpt,
    ClipOpt,
    CorrelateOpt,
    DeviceOpt,
    DilationOpt,
    DtypeOpt,
    Format,
    GainOpt,
    GroupsOpt,
    HighpassOpt,
    JsonOpt,
    KernelOpt,
    LayoutOpt,
    LowpassOpt,
    MethodOpt,
    ModeOpt,
    NoClobberOpt,
    NormalizeOpt,
    NormalizeOutputOpt,
    PaddingOpt,
    PadOpt,
    PeriodicOpt,
    QuietOpt,
    RateOpt,
    SizeOpt,
    StrideOpt,
    TransitionOpt,
    WindowOpt,
    bias_values,
    choice_option,
    conv_spec,
    fir_request,
    given,
    kernel_request,
    number_option,
    refuse_terminal,
)

#: shown at the end of --help; tests/test_help.py runs each one in a copy of sample_data/
EXAMPLES = [
    ("convcli filter chord.wav --window hann --size 31 -o smooth.wav",
     "smooth with a 31-tap Hann window (unity DC gain); the default output is chord.filtered.wav"),
    ("convcli filter speech.wav --lowpass 3000 --transition 500 -o low.wav",
     "a lowpass at 3 kHz whose taps and Kaiser window Kaiser's formulas choose (60 dB)"),
    ("convcli filter batch.npy --kernel smooth5.txt --correlate --mode valid -o y.npy",
     "exactly torch.nn.functional.conv1d (cross-correlation, no padding)"),
    ("convcli filter chord.wav --kernel smooth5.txt --mode causal --no-clobber -o causal.wav",
     "= scipy.signal.lfilter(taps, 1, x); an existing causal.wav is kept"),
    ("convcli window kaiser:8 --size 63 | convcli filter chord.wav --kernel - -o k.wav",
     "the coefficients of one command as the kernel of the next"),
]


def command(
    ctx: typer.Context,
    inputs: Annotated[list[str], typer.Argument(metavar="INPUT", help="Signal files, or - for stdin.")],
    output: Annotated[str | None, typer.Option("--output", "-o", metavar="FILE|-", rich_help_panel=IO,
                      help="Output path, or - for stdout. Default: INPUT_STEM.filtered.EXT.")] = None,
    out_dir: Annotated[str | None, typer.Option("--out-dir", metavar="DIR", rich_help_panel=IO,
                       help="Directory for the outputs of several inputs.")] = None,
    fmt: Annotated[Format | None, choice_option("--format", Format, "-f", rich_help_panel=IO,
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
    pad: PadOpt = None,
    padding: PaddingOpt = "zeros",
    stride: StrideOpt = 1,
    dilation: DilationOpt = 1,
    correlate: CorrelateOpt = False,
    bias: BiasOpt = None,
    method: MethodOpt = "auto",
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = None,
    allow_nonfinite: AllowNonfiniteOpt = False,
    clip: ClipOpt = "warn",
    block: Annotated[int | None, number_option("--block", metavar="FRAMES", rich_help_panel=RUN,
                     help="Stream the input in blocks of this many frames (bounded memory). "
                     "Default: stdin streams in blocks of up to 262144, long files in blocks of "
                     "524288.")] = None,
    no_clobber: NoClobberOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Convolve signals with a window, a kernel file or a FIR design."""
    from convcli import pipeline
    from convcli.io.atomic import keep_existing
    from convcli.render.reporter import Reporter

    design = fir_request(lowpass, highpass, bandpass, bandstop, transition, attenuation)
    with keep_existing(no_clobber):  # refused before work
        outputs = pipeline.plan_outputs(inputs, output, out_dir, fmt, kernel)
    for out in outputs:
        refuse_terminal("the filtered signal", out)
    job = pipeline.FilterJob(
        inputs=inputs, outputs=outputs, spec=conv_spec(mode, padding, stride, dilation, correlate,
                                                       groups, pad),
        kernel=kernel_request(window, size if design is None or given(ctx, "size") else None,
                              periodic, normalize, kernel, design),
        out_format=fmt, subtype=subtype, layout=layout, rate=rate, method=method, device=device,
        dtype=dtype, gain=gain, normalize_output=normalize_output, clip=clip, block=block,
        allow_nonfinite=allow_nonfinite, bias=bias_values(bias), no_clobber=no_clobber)
    report = Reporter(quiet=quiet, json_mode=json_, data_on_stdout="-" in outputs)
    result = pipeline.run_filter(job, progress=report.progress)
    render(result, report)
    report.summary = result.summary()
    report.finish()


def render(result, report) -> None:
    """The messages of a filter run: per output what was written, then what ran and how long."""
    from convcli.render.reporter import human_shape, mode_words

    for message in result.warnings:
        report.warn(message)
    for message in result.notes:
        report.info(message)
    for file in result.files:
        batch, channels, frames = file.shape_out
        where = "stdout" if file.output == "-" else file.output
        report.info(f"wrote [bold]{where}[/bold]: {human_shape(channels, frames, file.rate)}"
                    f"{f', batch {batch}' if batch != 1 else ''}, {file.format.upper()}"
                    f"{f' {file.subtype}' if file.subtype else ''}")
    run, spec = result.run, result.spec
    streamed = run.get("streamed")
    how = (f", streamed in {streamed['blocks']} blocks of {streamed['block']} frames"
           if streamed else "")
    report.info(f"{result.label}, {'correlate' if spec['correlate'] else 'convolve'} "
                f"{mode_words(spec)}, {run['method']} ({run['engine']} engine) on {run['device']} "
                f"{run['dtype']}{how}, {result.seconds:.3f} s")
