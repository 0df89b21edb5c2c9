"""``convcli grad``: the gradient of a scalar loss of conv1d (``autodiff.grad``), written or
summarised."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Literal

import typer

from convcli.cli.options import (
    IO,
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
    RateOpt,
    SizeOpt,
    StrideOpt,
    WindowOpt,
    bias_values,
    choice_option,
    conv_spec,
    kernel_request,
    refuse_terminal,
)
from convcli.errors import UsageError

WrtGrad = Literal["input", "kernel", "both"]
Loss = Literal["sum", "mean", "energy", "mse"]


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
    from convcli.io import arrays
    from convcli.io.atomic import atomic_output
    from convcli.io.npy import to_file_layout
    from convcli.io.signals import encode

    if out_format == "npz":
        arrays.save_npz({"input": to_file_layout(grads["input"], signal.layout),
                         "kernel": grads["kernel"]}, output)
        return "NPZ (input, kernel)"
    (name, array), = grads.items()
    if name == "kernel":
        arrays.save_npy(array.reshape(coefficients_shape), output)
        return f"NPY {tuple(coefficients_shape)}"
    writer, _ = encode(array, out_format=out_format, rate=signal.rate,
                       subtype=None if out_format == "npy" else "FLOAT", layout=signal.layout)
    with atomic_output(output) as handle:
        writer(handle)
    return f"{out_format.upper()}{'' if out_format == 'npy' else ' FLOAT'}"

EXAMPLES = [
    ("convcli grad chord.wav --loss energy --wrt input -o dx.wav", "∂(Σ y²)/∂x as a float WAV"),
    ("convcli grad batch.npy --loss mean --wrt kernel --size 5 -o dw.npy", "∂(mean y)/∂w"),
]


def command(
    input_path: Annotated[str, typer.Argument(metavar="INPUT", help="Signal file, or - for stdin.")],
    loss: Annotated[Loss, choice_option("--loss", Loss, help="sum | mean of the output; energy = Σ y²; "
                    "mse = mean (y − target)² over every output element.")],
    target: Annotated[str | None, typer.Option("--target", metavar="FILE", rich_help_panel=IO,
                      help="The target output for --loss mse, shaped like the output.")] = None,
    wrt: Annotated[WrtGrad, choice_option("--wrt", WrtGrad, help="Gradient with respect to the input, "
                   "the kernel (as written), or both.")] = "input",
    output: Annotated[str | None, typer.Option("--output", "-o", metavar="FILE|-", rich_help_panel=IO,
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
    """The gradient of a scalar loss of conv1d with respect to the input, the kernel or both."""
    from convcli.io.atomic import check_output_path, keep_existing
    from convcli.io.signals import check_finite, read_signal

    check_paths(loss, target, output, input_path, kernel)
    if output is not None:
        with keep_existing(no_clobber):
            check_output_path(output)
        refuse_terminal("the gradient", output)
    wrt_names = ("input", "kernel") if wrt == "both" else (wrt,)
    spec = conv_spec(mode, padding, stride, dilation, correlate, groups, pad)
    request = kernel_request(window, size, periodic, normalize, kernel)
    coefficients, _ = request.load()
    bias_given = bias_values(bias)
    signal = read_signal(input_path, layout=layout, rate=rate, dtype=dtype or "auto")
    wanted = read_signal(target, layout=layout, dtype=dtype or "auto") if target else None
    if not allow_nonfinite:
        check_finite(signal)
        if wanted is not None:
            check_finite(wanted)
    out_format = gradient_format(output, wrt_names, signal.rate) if output is not None else None
    size_up(signal, coefficients, spec, dtype)

    import torch

    from convcli.autodiff import grad as autodiff
    from convcli.engines.devices import resolve_device
    from convcli.engines.torch_backend import resolve_dtype

    where = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, signal.data.dtype)
    x = torch.from_numpy(signal.data).to(device=where, dtype=torch_dtype)
    w = torch.from_numpy(coefficients).to(device=where, dtype=torch_dtype)
    y_target = (torch.from_numpy(wanted.data).to(device=where, dtype=torch_dtype)
                if wanted is not None else None)
    started = time.perf_counter()
    value, grads = autodiff.grad(x, w, spec, loss, wrt_names, y_target, method, bias_given)
    elapsed = time.perf_counter() - started
    arrays = {name: g.cpu().numpy() for name, g in grads.items()}
    with keep_existing(no_clobber):
        wrote = (save_gradient(arrays, output, out_format, signal, coefficients.shape)
                 if output is not None else None)
    run = {"loss": loss, "value": float(value), "wrt": list(wrt_names), "input": signal.name,
           "target": target, "spec": spec.summary(coefficients.shape[-1]),
           "bias": None if bias_given is None else [float(v) for v in bias_given.reshape(-1)],
           "kernel": request.summary(coefficients), "device": str(where),
           "dtype": str(torch_dtype)[6:], "seconds": elapsed, "output": output}
    render(run, grads, request.label(coefficients), wrote, quiet=quiet, json_mode=json_)


def size_up(signal, coefficients, spec, dtype: str | None) -> None:
    """Refuse, before torch is imported, a gradient that cannot fit (a huge --dilation pads
    the input by its span on both sides)."""
    from convcli.autodiff.sizing import check_grad
    from convcli.core.kernels import weight_shape

    shape, _ = weight_shape(coefficients.shape, signal.data.shape[1], spec.groups)
    itemsize = 8 if (dtype or signal.data.dtype.name) == "float64" else 4
    check_grad(signal.data.shape, shape, spec, itemsize)


def check_paths(loss: str, target: str | None, output: str | None, input_path: str,
                kernel: str | None) -> None:
    """Refuse, before reading anything, a target without mse (or mse without one), an output
    that is also an input, and stdin asked for twice."""
    from convcli.pipeline import same_file

    if loss == "mse" and target is None:
        raise UsageError("--loss mse needs --target FILE", "give the output you want to match")
    if target is not None and loss != "mse":
        raise UsageError("--target is used by --loss mse only")
    for source in (input_path, target, kernel):
        if output is not None and source is not None and same_file(output, source):
            raise UsageError(f"output {output} is also an input; convcli never overwrites its input",
                             "choose another -o")
    if len([p for p in (input_path, kernel, target) if p == "-"]) > 1:
        raise UsageError("standard input can be read only once", "give files for the others")


def render(run: dict, grads: dict, label: str, wrote: str | None, *, quiet: bool,
           json_mode: bool) -> None:
    """The loss, each gradient's norms and what ran; ``--json``: the same as one summary."""
    from convcli.autodiff.grad import norm
    from convcli.render.reporter import Reporter, mode_words

    output = run["output"]
    report = Reporter(quiet=quiet, json_mode=json_mode, data_on_stdout=output == "-")
    symbols = {"input": "∂loss/∂x", "kernel": "∂loss/∂w"}
    report.info(f"loss ({run['loss']}) = {run['value']:.9g}")
    largest = {name: float(g.abs().max()) if g.numel() else 0.0 for name, g in grads.items()}
    for name, g in grads.items():
        report.info(f"‖{symbols[name]}‖₂ = {norm(g):.6g}, max |{symbols[name]}| = "
                    f"{largest[name]:.6g}, shape {tuple(g.shape)}")
    spec = run["spec"]
    report.info(f"{label}, {'correlate' if spec['correlate'] else 'convolve'} {mode_words(spec)}, "
                f"reverse-mode autograd on {run['device']} {run['dtype']}, {run['seconds']:.3f} s")
    if wrote is not None:
        report.info(f"wrote [bold]{'stdout' if output == '-' else output}[/bold]: {wrote}")
    report.summary = {
        "command": "grad", **{key: run[key] for key in ("loss", "value", "wrt")},
        "method": "autograd (reverse mode, torch.autograd.grad)",
        "norms": {name: norm(g) for name, g in grads.items()},
        "max_abs": largest,
        "shapes": {name: list(g.shape) for name, g in grads.items()},
        **{key: run[key] for key in ("input", "target", "spec", "bias", "kernel", "device",
                                     "dtype", "seconds", "output")},
    }
    report.finish()
