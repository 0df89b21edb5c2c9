"""``convcli explain``: what conv1d does with these options, in words and numbers (no torch)."""

from __future__ import annotations

from typing import Annotated

from convcli.cli.options import (
    BiasOpt,
    CorrelateOpt,
    DilationOpt,
    GroupsOpt,
    JsonOpt,
    KernelOpt,
    ModeOpt,
    NormalizeOpt,
    PaddingOpt,
    PadOpt,
    PeriodicOpt,
    QuietOpt,
    SizeOpt,
    StrideOpt,
    WindowOpt,
    bias_values,
    conv_spec,
    kernel_request,
    number_option,
    write_text,
)

EXAMPLES = [
    ("convcli explain --length 8 --size 3", "pads, output length and y[i]'s formula, worked out"),
    ("convcli explain --length 64 --size 3 --correlate --mode valid",
     "what torch.nn.Conv1d(…, 3) does to 64 samples"),
]


def command(
    length: Annotated[int, number_option("--length", "-N", metavar="N",
                                        help="Input length N in samples.")],
    size: SizeOpt = 31,
    window: WindowOpt = None,
    periodic: PeriodicOpt = False,
    normalize: NormalizeOpt = None,
    kernel: KernelOpt = None,
    groups: GroupsOpt = 1,
    mode: ModeOpt = "same",
    pad: PadOpt = None,
    padding: PaddingOpt = "zeros",
    stride: StrideOpt = 1,
    dilation: DilationOpt = 1,
    correlate: CorrelateOpt = False,
    bias: BiasOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    r"""Output length, pads, the formula of y\[i], the Jacobian and a worked example for any options.

    [b]convcli explain --length 8 --size 3[/b];
    [b]convcli explain --length 64 --size 3 --correlate --mode valid[/b] (= torch Conv1d).
    The kernel length is --size, or the length of --kernel; the worked example uses the given
    kernel's numbers when it is small, else w = 1, 2, …, k so the flip is visible.
    """
    from convcli.core.explain import explain
    from convcli.render.explain import render
    from convcli.render.reporter import Reporter

    spec = conv_spec(mode, padding, stride, dilation, correlate, groups, pad)
    coefficients = None
    if kernel is not None or window is not None:
        coefficients, _ = kernel_request(window, size, periodic, normalize, kernel).load()
    k = size if coefficients is None else coefficients.shape[-1]
    values = bias_values(bias)  # explain follows one channel: the first value of a bias file
    result = explain(spec, length, k, coefficients,
                     None if values is None else float(values.reshape(-1)[0]))
    report = Reporter(quiet=quiet, json_mode=json_)
    if not json_:
        write_text(render(result) + "\n")
    report.summary = result
    report.finish()
