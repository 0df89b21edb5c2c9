"""``convcli jacobian``: parse, size the matrix before torch is imported, compute (``autodiff``),
write or show it (``render.jacobian``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from convcli.cli.options import (
    IO,
    RUN,
    AllowNonfiniteOpt,
    BiasOpt,
    CorrelateOpt,
    DeviceOpt,
    DilationOpt,
    DtypeOpt,
    GroupsOpt,
    JsonOpt,
    KernelOpt,
    LayoutOpt,
    MethodOpt,
    ModeOpt,
    NoClobberOpt,
    NormalizeOpt,
    PaddingOpt,
    PadOpt,
    PeriodicOpt,
    QuietOpt,
    SizeOpt,
    StrideOpt,
    WindowOpt,
    bias_values,
    choice_option,
    conv_spec,
    flag_option,
    kernel_request,
    number_option,
)
from convcli.errors import ConvcliError, UsageError

WrtJac = Literal["input", "kernel"]
JacFormat = Literal["dense", "banded"]
Via = Literal["auto", "closed", "autograd"]
JAC_OUTPUTS = (".npy", ".csv", ".npz", ".png")


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


def output_kind(output: str | None, fmt: str | None) -> bool:
    """Whether the Jacobian is banded; refuses an output that cannot hold what was asked."""
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
    return banded


def save_matrix(result, output: str) -> str:
    """Write the Jacobian as .npy/.csv/.npz/.png or text on stdout; returns what was written."""
    from convcli.autodiff.banded import Banded
    from convcli.io import arrays
    from convcli.io.atomic import write_stdout

    matrix = result.matrix
    if isinstance(matrix, Banded):
        arrays.save_npz(matrix.arrays(), output)
        return f"banded .npz, {len(matrix.offsets)} diagonals + {len(matrix.edge_vals)} edge entries"
    array = matrix.cpu().numpy()
    suffix = Path(output).suffix.lower()
    if output == "-":
        write_stdout(arrays.text_of(array))
        return "text"
    if suffix == ".png":
        from convcli.render.jacobian import picture

        picture(result, array, output)
        return "PNG"
    if suffix == ".csv":
        arrays.save_text(array, output, ",")
    else:
        arrays.save_npy(array, output)
    return suffix.lstrip(".").upper()


EXAMPLES = [
    ("convcli jacobian --length 10 --size 3 --mode valid", "J = ∂y/∂x with a heatmap of its corner"),
    ("convcli jacobian --length 64 --check", "autograd against the closed form"),
    ("convcli jacobian --length 100000 --format banded -o J.npz",
     "a large Jacobian as its diagonals (docs/jacobians.md)"),
    ("convcli jacobian --length 32 --size 5 -o J.png", "a picture of the matrix"),
]


def command(
    input_path: Annotated[str | None, typer.Argument(
        metavar="INPUT", help="Signal file (batch item 0 is used). Default: random, --length.")] = None,
    wrt: Annotated[WrtJac, choice_option("--wrt", WrtJac, help="input: J[i, j] = ∂y[i]/∂x[j]; "
                   "kernel: J[i, j] = ∂y[i]/∂w[j].")] = "input",
    length: Annotated[int | None, number_option("--length", metavar="N", rich_help_panel=IO,
                      help="Samples of the random input used without INPUT (default 64).")] = None,
    seed: Annotated[int, number_option("--seed", metavar="S", rich_help_panel=IO,
                    help="Seed of the random input.")] = 0,
    channel: Annotated[str | None, typer.Option("--channel", metavar="C|O:C",
                       help="Which channel pair: C (depthwise: channel C), or O:C (output O, "
                       "input C) for an (O, C/G, k) kernel. Default 0.")] = None,
    rows: Annotated[str | None, typer.Option("--rows", metavar="A:B",
                    help="Only these rows (output samples).")] = None,
    cols: Annotated[str | None, typer.Option("--cols", metavar="A:B",
                    help="Only these columns (input samples or taps).")] = None,
    check: Annotated[bool, flag_option("--check", help="Compute J by autograd and by the closed "
                     "form, report the largest difference; exit 1 on mismatch.")] = False,
    fmt: Annotated[JacFormat | None, choice_option("--format", JacFormat, "-f", help="dense [L_out, N], "
                   "or banded .npz (diagonals + offsets, scales to N = 10⁶). Default: banded for "
                   "-o *.npz, else dense.")] = None,
    via: Annotated[Via, choice_option("--via", Via, rich_help_panel=RUN, help="auto = closed form "
                   "(exists for every option, cheapest); autograd = torch.func.")] = "auto",
    output: Annotated[str | None, typer.Option("--output", "-o", metavar="FILE|-", rich_help_panel=IO,
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
    no_clobber: NoClobberOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The Jacobian of conv1d (∂y/∂x or ∂y/∂w), by its closed form or by autograd."""
    from convcli.autodiff.inputs import DEFAULT_LENGTH, jacobian_input
    from convcli.io.atomic import check_output_path, keep_existing

    banded = output_kind(output, fmt)  # contradictions refused before reading anything
    if output is not None:
        with keep_existing(no_clobber):
            check_output_path(output)
    if "-" in (input_path, kernel) and input_path == kernel:
        raise UsageError("standard input can be read only once", "give a file for one of them")
    spec = conv_spec(mode, padding, stride, dilation, correlate, groups, pad)
    request = kernel_request(window, size, periodic, normalize, kernel)
    coefficients, _ = request.load()
    pair_index = parse_channel(channel)
    row_slice, col_slice = parse_range(rows, "--rows"), parse_range(cols, "--cols")
    sizes = (coefficients.shape[-1], spec, wrt, row_slice, col_slice, banded, via, check)
    if input_path is None:  # the random input is made only once the matrix is known to fit
        size_up(length or DEFAULT_LENGTH, dtype or "float32", *sizes)
    data, source = jacobian_input(input_path, length, seed, layout, dtype, allow_nonfinite,
                                  coefficients, groups)
    size_up(data.shape[-1], dtype or data.dtype.name, *sizes)

    report = compute(data, coefficients, spec, pair_index, channel, wrt, row_slice, col_slice,
                     banded, via, check, method, device, dtype, bias_values(bias))
    report.kernel, report.source, report.output = request, source, output
    result = report.result
    with keep_existing(no_clobber):
        wrote = save_matrix(result, output) if output is not None else None
    report.show(quiet=quiet, json_mode=json_, wrote=wrote)
    if result.check is not None and not result.check.ok:
        raise ConvcliError(
            f"--check: autograd and the closed form differ by {result.check.max_abs_diff:.3g} "
            f"(tolerance {result.check.tolerance:.3g})",
            "rerun with --dtype float64; if it persists, please report it with the command")


def size_up(n: int, dtype: str, k: int, spec, wrt: str, rows, cols, banded: bool, via: str,
            check: bool) -> None:
    """Refuse, before torch is even imported, a Jacobian of N = ``n`` that cannot fit."""
    from convcli.autodiff.sizing import check_banded, check_dense

    itemsize = 8 if dtype == "float64" else 4
    autograd = check or via == "autograd"
    if banded:
        check_banded(n, k, spec, itemsize, closed=via != "autograd" or check, autograd=autograd)
    else:
        check_dense(n, k, spec, wrt, rows, cols, itemsize, 2 if autograd else 1)


def compute(data, coefficients, spec, pair_index, channel, wrt, rows, cols, banded, via, check,
            method, device, dtype, bias=None):
    """The Jacobian of the channel pair asked for, in torch (imported here, not before the
    sizes were checked), as a ``render.jacobian.JacobianReport`` still to be told its source.
    ``bias`` (``--bias``) changes no Jacobian; the autograd route runs with it."""
    from dataclasses import replace

    from convcli.autodiff.grad import bias_tensor
    from convcli.autodiff.jacobian import channel_pair, jacobian
    from convcli.core.kernels import to_weight
    from convcli.engines.devices import resolve_device
    from convcli.engines.torch_backend import ENGINE, resolve_dtype
    from convcli.render.jacobian import JacobianReport

    target = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, data.dtype)
    weight_np, run_groups = to_weight(coefficients, data.shape[0], spec.groups)
    spec = replace(spec, groups=run_groups)
    if coefficients.ndim < 3 and pair_index[0] != pair_index[1]:
        raise UsageError(f"--channel {channel}: a (k,) or (C, k) kernel filters each channel "
                         "on its own, so only pairs C:C exist", "use --channel C")
    x = ENGINE.asarray(data, target).to(torch_dtype)
    b = None if bias is None else bias_tensor(bias, weight_np.shape[0], x)
    pair = channel_pair(x, ENGINE.asarray(weight_np, target).to(torch_dtype), spec, *pair_index, b)
    k, n = weight_np.shape[-1], data.shape[-1]
    pair.spec.check(n, k)
    engine = ENGINE.choose_method(n, k, pair.spec, method, dtype=torch_dtype, device=target)
    result = jacobian(pair, wrt, rows=rows, cols=cols, banded=banded, via=via, check=check,
                      method=method)
    return JacobianReport(result, pair, None, coefficients, "", target, torch_dtype, engine, None,
                          run_groups)
