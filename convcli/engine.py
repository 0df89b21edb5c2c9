"""The engine: batched multi-channel conv1d with the exact semantics of a ``ConvSpec``.

``conv1d(x, weight, spec)`` is the one entry point: ``[B, C, T] x [O, C/G, k] -> [B, O, T_out]``.
It pads explicitly (``F.pad``; ``conv1d(padding=...)`` takes a slow path on CPU builds), flips the
kernel unless correlating, and runs the direct or FFT method. Everything is differentiable and
device-agnostic: tensors stay on the device they came on, nothing is moved behind the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from convcli.errors import ConvcliError, UsageError
from convcli.spec import PADDINGS, ConvSpec

METHODS = ("auto", "direct", "fft")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available else cpu; ``cuda`` without CUDA is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConvcliError(
            "--device cuda was asked for, but this torch build sees no CUDA device",
            "use --device cpu (or auto), or install a CUDA build of torch on a machine with a GPU",
        )
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def resolve_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise UsageError(f"--dtype must be float32 or float64, got {name!r}")
    return DTYPES[name]


@dataclass(frozen=True)
class MethodChoice:
    """Which method runs and why (``--json`` reports both)."""

    method: str
    reason: str


def choose_method(length: int, k: int, spec: ConvSpec, requested: str = "auto") -> MethodChoice:
    """Pick direct or FFT for a signal of ``length`` samples and a kernel of ``k`` taps.

    Direct costs ~K multiply-adds per output; FFT ~c·log2(nfft) per sample regardless of K.
    Measured on 2 CPU cores (MEASUREMENTS.md): direct wins for spans up to ~63 taps,
    FFT from ~127 taps up.
    """
    if requested not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}, got {requested!r}")
    if requested != "auto":
        return MethodChoice(requested, "asked for with --method")
    span = spec.span(k)
    if span <= 96 or length <= 2 * span:
        return MethodChoice("direct", f"kernel span {span} ≤ 96 taps or signal ≤ 2 spans: direct is cheaper")
    return MethodChoice("fft", f"kernel span {span} > 96 taps: FFT costs O(log n) per sample")


def pad(x: torch.Tensor, spec: ConvSpec, k: int) -> torch.Tensor:
    """Pad ``x[B, C, T]`` on the time axis as ``spec`` says, ``[B, C, T + left + right]``."""
    left, right = spec.pads(k)
    if left == 0 and right == 0:
        return x
    mode = PADDINGS[spec.padding][1]
    return F.pad(x, (left, right), mode=mode)


def oriented(weight: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """The weight as cross-correlation applies it: flipped for convolution."""
    return weight if spec.correlate else weight.flip(-1)


def conv1d(
    x: torch.Tensor, weight: torch.Tensor, spec: ConvSpec, method: str = "auto"
) -> torch.Tensor:
    """Convolve (or correlate) a batch of multi-channel signals.

    Args:
        x: input signals.
        weight: the kernel as the user wrote it (not flipped).
        spec: mode, padding, stride, dilation, correlate, groups.
        method: ``auto``, ``direct`` or ``fft``; all give the same numbers to float tolerance.

    Shape:
        ``x [B, C, T]``, ``weight [O, C/G, k]`` -> ``[B, O, spec.output_length(T, k)]``.

    Differentiable in both ``x`` and ``weight``; runs on their device.

    >>> x = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    >>> conv1d(x, torch.tensor([[[1.0, 0.0, -1.0]]]), ConvSpec(mode="valid")).tolist()
    [[[2.0, 2.0]]]
    """
    batch, channels, length = x.shape
    out_channels, per_group, k = weight.shape
    assert per_group * spec.groups == channels, "weight does not match channels/groups"
    assert out_channels % spec.groups == 0
    spec.check(length, k)
    choice = choose_method(length, k, spec, method)
    xp = pad(x, spec, k)
    w = oriented(weight, spec)
    if choice.method == "direct":
        return direct_correlate(xp, w, spec)
    return fft_correlate(xp, w, spec)


def direct_correlate(xp: torch.Tensor, w: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """Valid cross-correlation of an already padded ``xp[B, C, P]`` with ``w[O, C/G, k]``."""
    return F.conv1d(xp, w, stride=spec.stride, dilation=spec.dilation, groups=spec.groups)


def dilate(w: torch.Tensor, dilation: int) -> torch.Tensor:
    """Insert ``dilation − 1`` zeros between taps: ``[..., k] -> [..., d·(k−1)+1]``."""
    if dilation == 1:
        return w
    k = w.shape[-1]
    spaced = F.pad(w.unsqueeze(-1), (0, dilation - 1)).reshape(*w.shape[:-1], k * dilation)
    return spaced[..., : dilation * (k - 1) + 1]


def next_fast_len(n: int) -> int:
    """Smallest 2^a·3^b·5^c ≥ n (sizes pocketfft and cuFFT handle fastest)."""
    best = 1 << max(n - 1, 0).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def fft_correlate(xp: torch.Tensor, w: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """Same result as ``direct_correlate``, through one FFT of the whole padded signal."""
    batch, channels, padded = xp.shape
    out_channels, per_group, _ = w.shape
    groups = spec.groups
    wd = dilate(w, spec.dilation)
    span = wd.shape[-1]
    n = next_fast_len(padded)
    spectrum_x = torch.fft.rfft(xp, n).reshape(batch, groups, per_group, -1)
    spectrum_w = torch.fft.rfft(wd, n).reshape(groups, out_channels // groups, per_group, -1)
    # correlation = convolution with the conjugate spectrum; sum over the channels in a group
    spectrum_y = torch.einsum("bgcf,gocf->bgof", spectrum_x, spectrum_w.conj())
    y = torch.fft.irfft(spectrum_y.reshape(batch, out_channels, -1), n)
    return y[..., : padded - span + 1 : spec.stride]


def filter_batches(
    arrays: list,
    coefficients,
    spec: ConvSpec,
    *,
    method: str = "auto",
    device: str = "auto",
) -> tuple[list, dict]:
    """Filter several ``[B, C, T]`` numpy arrays with one kernel; equal shapes run as one batch.

    Returns the results as numpy arrays (in input order) and what ran (method, reason, device,
    dtype, batches). This is the sink boundary: results are copied to host memory here, once.
    """
    import numpy as np

    from convcli.kernels import to_weight

    target = resolve_device(device)
    groups_by_shape: dict[tuple, list[int]] = {}
    for index, array in enumerate(arrays):
        groups_by_shape.setdefault((array.shape[1:], array.dtype.str), []).append(index)
    results: list = [None] * len(arrays)
    choices = []
    for (shape, _), members in groups_by_shape.items():
        channels, length = shape
        batch = np.concatenate([arrays[i] for i in members]) if len(members) > 1 else arrays[members[0]]
        weight_np, groups = to_weight(coefficients, channels, spec.groups)
        run_spec = spec if groups == spec.groups else _with_groups(spec, groups)
        x = torch.from_numpy(batch).to(target)
        weight = torch.from_numpy(weight_np).to(device=target, dtype=x.dtype)
        run_spec.check(length, weight.shape[-1])
        choice = choose_method(length, weight.shape[-1], run_spec, method)
        choices.append(choice)
        with torch.no_grad():
            y = conv1d(x, weight, run_spec, choice.method).cpu().numpy()
        start = 0
        for i in members:
            size = arrays[i].shape[0]
            results[i] = y[start : start + size]
            start += size
    first = choices[0]
    return results, {
        "method": first.method,
        "reason": first.reason,
        "device": str(target),
        "dtype": str(arrays[0].dtype),
        "batches": len(groups_by_shape),
    }


def _with_groups(spec: ConvSpec, groups: int) -> ConvSpec:
    from dataclasses import replace

    return replace(spec, groups=groups)
