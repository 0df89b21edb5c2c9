"""Kernels: read coefficient files and shape them into a conv weight ``[O, C/G, k]``.

"The kernel" is always the coefficients as the user wrote them (or as ``convcli window``
printed them); whether they are flipped is the ConvSpec's business, not this module's.

    >>> w, groups = to_weight(np.array([1.0, 2.0, 3.0]), channels=2, groups=1)
    >>> w.shape, groups                      # the same kernel on each channel, depthwise
    ((2, 1, 3), 2)
"""

from __future__ import annotations

import numpy as np

from convcli.errors import InputError, UsageError


def depthwise(out_channels: int, per_group: int, groups: int) -> bool:
    """One input channel per group and one output per input: what windows and (C, k) files give.

    >>> depthwise(2, 1, 2), depthwise(16, 2, 1)
    (True, False)
    """
    return per_group == 1 and out_channels == groups


def to_weight(kernel: np.ndarray, channels: int, groups: int = 1) -> tuple[np.ndarray, int]:
    """Shape a kernel for ``conv1d``: returns ``(weight [O, C/G, k], groups)``.

    - ``(k,)``: the same kernel on every channel (depthwise, groups = C, O = C)
    - ``(C, k)``: one kernel per channel (depthwise, groups = C, O = C)
    - ``(O, C/G, k)``: a full conv weight with ``groups`` (O output channels)
    """
    shape, groups = weight_shape(kernel.shape, channels, groups)
    if kernel.ndim == 1:
        return np.broadcast_to(kernel, shape).copy(), groups
    if kernel.ndim == 2:
        return kernel[:, None, :].copy(), groups
    return kernel.copy(), groups


def weight_shape(kernel_shape: tuple, channels: int,
                 groups: int = 1) -> tuple[tuple[int, int, int], int]:
    """``((O, C/G, k), groups)`` of ``to_weight``, checked the same way but nothing allocated:
    what the memory check prices before the weight exists.

    >>> weight_shape((31,), 2), weight_shape((16, 2, 3), 2)
    (((2, 1, 31), 2), ((16, 2, 3), 1))
    """
    if len(kernel_shape) in (1, 2) and groups != 1:
        raise UsageError("--groups applies to a 3-D (O, C/G, k) kernel only",
                         "drop --groups, or give an (O, C/G, k) .npy kernel")
    if len(kernel_shape) == 1:
        return (channels, 1, kernel_shape[0]), channels
    if len(kernel_shape) == 2:
        if kernel_shape[0] != channels:
            raise InputError(
                f"the kernel has {kernel_shape[0]} rows but the signal has {channels} channels",
                "a (C, k) kernel needs one row per channel; use a (k,) kernel to share it",
            )
        return (channels, 1, kernel_shape[1]), channels
    out_channels, per_group, k = kernel_shape
    if channels % groups or out_channels % groups:
        raise InputError(
            f"--groups {groups} must divide both the {channels} input channels and the "
            f"{out_channels} output channels of the kernel",
            "choose --groups that divides both",
        )
    if per_group != channels // groups:
        raise InputError(
            f"the kernel's second axis is {per_group} but {channels} channels / {groups} groups "
            f"= {channels // groups}",
            "an (O, C/G, k) kernel needs C/G = channels ÷ --groups",
        )
    return (out_channels, per_group, k), groups


def check_representable(weight: np.ndarray, dtype) -> None:
    """Refuse a kernel the compute precision cannot hold: 1e308 becomes inf in float32, and
    every output it touches NaN or inf."""
    limit = float(np.finfo(dtype).max)
    big = float(np.max(np.abs(weight))) if weight.size else 0.0
    if big > limit:
        raise InputError(f"the kernel has a coefficient of {big:.6g}, beyond the range of "
                         f"{np.dtype(dtype).name} (±{limit:.3g})",
                         "compute with --dtype float64, or scale the kernel down")


def bias_for(bias, out_channels: int) -> np.ndarray:
    """A bias as one value per output channel ``[O]``: one number is added to every channel
    (``--bias B``), else there must be one value per output channel, as ``nn.Conv1d``'s.

    >>> bias_for(0.5, 3).tolist(), bias_for([1.0, 2.0], 2).tolist()
    ([0.5, 0.5, 0.5], [1.0, 2.0])
    """
    values = np.asarray(bias, dtype=np.float64)
    if not np.isfinite(values).all():
        raise InputError("the bias holds a non-finite value", "every bias must be a finite number")
    if values.size == 1 and values.ndim <= 1:
        return np.full(out_channels, float(values.reshape(())))
    if values.shape != (out_channels,):
        raise InputError(
            f"the bias has shape {values.shape} but the convolution has {out_channels} output "
            "channels", "give one value per output channel, or one number for all of them")
    return values


def make_kernel(
    *,
    window_spec: str | None = None,
    size: int | None = 31,
    periodic: bool = False,
    normalization: str | None = None,
    kernel: np.ndarray | None = None,
    design=None,
    rate: float | None = None,
) -> np.ndarray:
    """The final coefficients, as applied and in the order written: a window, a file or a design.

    A window is normalized ``sum`` unless told otherwise; a kernel file is used as written
    unless ``normalization`` is given explicitly (then each ``[..., k]`` row is normalized);
    ``kernel`` is the file's coefficients as ``io.kernelfile`` read them.
    ``design`` (a ``fir.FirRequest``) designs a windowed-sinc filter for ``rate`` Hz with
    ``window_spec`` (default hann) and ``size`` (None: the default, or Kaiser's choice); it
    keeps firwin's own scaling unless ``normalization`` is given explicitly.

    Shape: ``-> [k]``, or the file's ``(C, k)`` / ``(O, C/G, k)``.
    """
    from convcli.core import windows

    if design is not None:
        return designed_kernel(design, rate, window_spec=window_spec, size=size, periodic=periodic,
                               normalization=normalization, has_file=kernel is not None)[0]
    if size is None:
        size = 31
    if kernel is not None:
        if window_spec is not None:
            raise UsageError("--window and --kernel both given", "use one of them")
        if normalization in (None, "none"):
            return kernel
        rows = kernel.reshape(-1, kernel.shape[-1])
        return np.stack([windows.normalize(row, normalization) for row in rows]).reshape(kernel.shape)
    name, param = windows.parse_window(window_spec or "hann")
    return windows.normalize(windows.window(name, size, param, periodic), normalization or "sum")


def designed_kernel(
    request,
    rate: float | None,
    *,
    window_spec: str | None = None,
    size: int | None = None,
    periodic: bool = False,
    normalization: str | None = None,
    has_file: bool = False,
    reserve=None,
):
    """A windowed-sinc design (``fir.design``) as a kernel: ``(coefficients [k], Design)``.

    ``rate`` is the signal's sample rate (None is a clear error: NPY needs ``--rate``);
    ``reserve`` is ``fir.design``'s memory check.
    """
    from convcli.core import fir, windows

    flag = f"--{request.band}"
    if has_file:
        raise UsageError(f"{flag} and --kernel both given", "design a filter or read one, not both")
    if periodic:
        raise UsageError(f"--periodic does not apply to {flag}: a linear-phase FIR uses the "
                         "symmetric window", "drop --periodic")
    if rate is None:
        raise UsageError(f"{flag} is in Hz and needs the signal's sample rate; NPY has none",
                         "pass --rate HZ")
    made = fir.design(request, rate, size=size, window=window_spec, reserve=reserve)
    coefficients = made.coefficients
    if normalization not in (None, "none"):
        coefficients = windows.normalize(coefficients, normalization)
    return coefficients, made
