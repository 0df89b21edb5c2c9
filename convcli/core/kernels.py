"""Kernels: read coefficient files and shape them into a conv weight ``[O, C/G, k]``.

"The kernel" is always the coefficients as the user wrote them (or as ``convcli window``
printed them); whether they are flipped is the ConvSpec's business, not this module's.

    >>> w, groups = to_weight(np.array([1.0, 2.0, 3.0]), channels=2, groups=1)
    >>> w.shape, groups                      # the same kernel on each channel, depthwise
    ((2, 1, 3), 2)
"""

from __future__ import annotations

import re

import numpy as np

from convcli.errors import InputError, UsageError

MAX_TAPS = 50_000_000


def parse_kernel_bytes(data: bytes, name: str) -> np.ndarray:
    """Coefficients from .npy bytes or text (one per line, or whitespace/comma separated).

    Text with several lines of several numbers is 2-D ``(C, k)``. ``#`` starts a comment.
    NPY is loaded with pickles refused, so a crafted file never runs code.
    """
    if not data.strip():
        raise InputError(f"kernel {name} is empty", "give one coefficient per line, or a .npy file")
    if data[:6] == b"\x93NUMPY":
        from convcli.io.signals import load_npy  # the one np.load of convcli: pickles refused

        return _check_array(load_npy(data, f"kernel {name}"), name)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(
            f"kernel {name} is neither .npy nor text", "give one number per line, or a .npy file"
        ) from None
    rows = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            rows.append([float(tok) for tok in re.split(r"[\s,;]+", line) if tok])
        except ValueError as exc:
            raise InputError(
                f"kernel {name}: not a number in line {line[:40]!r} ({exc})",
                "give one number per line, or numbers separated by spaces or commas",
            ) from None
    if not rows:
        raise InputError(f"kernel {name} has no coefficients", "give one number per line")
    if all(len(r) == 1 for r in rows) or len(rows) == 1:
        array = np.array([v for r in rows for v in r])
    else:
        if len({len(r) for r in rows}) != 1:
            raise InputError(
                f"kernel {name}: rows have different lengths {sorted({len(r) for r in rows})}",
                "a 2-D text kernel needs one row of k numbers per channel",
            )
        array = np.array(rows)
    return _check_array(array, name)


def _check_array(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype.kind not in "biuf":
        raise InputError(
            f"kernel {name} has dtype {array.dtype}, not real numbers", "save a float array"
        )
    if array.ndim not in (1, 2, 3) or array.size == 0:
        raise InputError(
            f"kernel {name} has shape {array.shape}",
            "a kernel is (k,), (C, k) or (O, C/G, k) with k ≥ 1",
        )
    if array.shape[-1] > MAX_TAPS:
        raise InputError(f"kernel {name} has {array.shape[-1]:,} taps (at most {MAX_TAPS:,})")
    array = array.astype(np.float64)
    bad = np.argwhere(~np.isfinite(array))
    if len(bad):
        raise InputError(
            f"kernel {name} has a non-finite coefficient at index {tuple(int(i) for i in bad[0])}",
            "every coefficient must be a finite number",
        )
    return array


def to_weight(kernel: np.ndarray, channels: int, groups: int = 1) -> tuple[np.ndarray, int]:
    """Shape a kernel for ``conv1d``: returns ``(weight [O, C/G, k], groups)``.

    - ``(k,)``: the same kernel on every channel (depthwise, groups = C, O = C)
    - ``(C, k)``: one kernel per channel (depthwise, groups = C, O = C)
    - ``(O, C/G, k)``: a full conv weight with ``groups`` (O output channels)
    """
    if kernel.ndim == 1:
        if groups != 1:
            raise UsageError("--groups applies to a 3-D (O, C/G, k) kernel only",
                             "drop --groups, or give an (O, C/G, k) .npy kernel")
        return np.broadcast_to(kernel, (channels, 1, kernel.shape[0])).copy(), channels
    if kernel.ndim == 2:
        if groups != 1:
            raise UsageError("--groups applies to a 3-D (O, C/G, k) kernel only",
                             "drop --groups, or give an (O, C/G, k) .npy kernel")
        if kernel.shape[0] != channels:
            raise InputError(
                f"the kernel has {kernel.shape[0]} rows but the signal has {channels} channels",
                "a (C, k) kernel needs one row per channel; use a (k,) kernel to share it",
            )
        return kernel[:, None, :].copy(), channels
    out_channels, per_group, _ = kernel.shape
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
    return kernel.copy(), groups


def make_kernel(
    *,
    window_spec: str | None = None,
    size: int | None = 31,
    periodic: bool = False,
    normalization: str | None = None,
    kernel_bytes: bytes | None = None,
    kernel_name: str = "kernel",
    design=None,
    rate: float | None = None,
) -> np.ndarray:
    """The final coefficients, as applied and in the order written: a window, a file or a design.

    A window is normalized ``sum`` unless told otherwise; a kernel file is used as written
    unless ``normalization`` is given explicitly (then each ``[..., k]`` row is normalized).
    ``design`` (a ``fir.FirRequest``) designs a windowed-sinc filter for ``rate`` Hz with
    ``window_spec`` (default hann) and ``size`` (None: the default, or Kaiser's choice); it
    keeps firwin's own scaling unless ``normalization`` is given explicitly.

    Shape: ``-> [k]``, or the file's ``(C, k)`` / ``(O, C/G, k)``.
    """
    from convcli.core import windows

    if design is not None:
        return designed_kernel(design, rate, window_spec=window_spec, size=size, periodic=periodic,
                               normalization=normalization, has_file=kernel_bytes is not None)[0]
    if size is None:
        size = 31
    if kernel_bytes is not None:
        if window_spec is not None:
            raise UsageError("--window and --kernel both given", "use one of them")
        kernel = parse_kernel_bytes(kernel_bytes, kernel_name)
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
):
    """A windowed-sinc design (``fir.design``) as a kernel: ``(coefficients [k], Design)``.

    ``rate`` is the signal's sample rate (None is a clear error: NPY needs ``--rate``).
    """
    from convcli.core import fir
    from convcli.core import windows

    flag = f"--{request.band}"
    if has_file:
        raise UsageError(f"{flag} and --kernel both given", "design a filter or read one, not both")
    if periodic:
        raise UsageError(f"--periodic does not apply to {flag}: a linear-phase FIR uses the "
                         "symmetric window", "drop --periodic")
    if rate is None:
        raise UsageError(f"{flag} is in Hz and needs the signal's sample rate; NPY has none",
                         "pass --rate HZ")
    made = fir.design(request, rate, size=size, window=window_spec)
    coefficients = made.coefficients
    if normalization not in (None, "none"):
        coefficients = windows.normalize(coefficients, normalization)
    return coefficients, made
