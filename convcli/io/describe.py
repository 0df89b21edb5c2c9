"""``convcli info``: what a signal file holds, and its levels. numpy and soundfile only (no torch).

Levels are measured on the samples as floats with full scale 1.0 (integer PCM divided by
2^(bits−1), as soundfile reads it; NPY values as stored), in float64, over the finite samples.

    >>> import io, numpy as np
    >>> buf = io.BytesIO(); np.save(buf, np.array([[0.5, -0.5, 0.5, -0.5], [0.0, 0.0, 0.0, 1.0]]))
    >>> d = describe(buf.getvalue(), "x.npy")
    >>> d["shape"], d["dtype"], d["peak"], d["channel"][0]["rms"]
    ([1, 2, 4], 'float64', 1.0, 0.5)
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np

from convcli.io import signals
from convcli.errors import InputError


def describe(data: bytes, name: str, *, layout: str | None = None,
             rate: float | None = None) -> dict[str, Any]:
    """Describe one signal file given as bytes: container facts plus peak/RMS/DC per channel.

    A 2-D NPY that looks like (time, channels) is read that way (``layout_guessed`` says so)
    unless ``layout`` is given: ``info`` describes what it can instead of refusing.
    """
    fmt = signals.sniff_format(data[:12])
    guessed = False
    stored_dtype = None
    if fmt == "npy":
        shape, stored_dtype = _npy_header(data, name)
        if (layout is None and len(shape) == 2 and shape[0] > shape[1]
                and shape[0] > signals.TC_GUESS_MIN):
            layout, guessed = "tc", True
    signal = signals.decode_signal(data, name, layout=layout, rate=rate, dtype="float64")
    x = signal.data  # [B, C, T] float64
    batch, channels, frames = x.shape
    out: dict[str, Any] = {
        "file": name,
        "format": signal.format,
        "subtype": signal.subtype,
        "dtype": stored_dtype,
        "bytes": len(data),
        "rate": signal.rate,
        "batch": batch,
        "channels": channels,
        "frames": frames,
        "shape": [batch, channels, frames],
        "duration": frames / signal.rate if signal.rate else None,
    }
    if fmt == "npy":
        out["layout"] = signal.layout
        out["layout_guessed"] = guessed
    out.update(levels(x.transpose(1, 0, 2).reshape(channels, -1)))
    return out


def levels(x: np.ndarray) -> dict[str, Any]:
    """Peak, RMS and DC of ``x[C, T]``, overall and per channel (finite samples only).

    Also counts NaN/Inf and full-scale samples (|x| ≥ 1, clipped or about to be).
    """
    finite = np.isfinite(x)
    nonfinite = int(x.size - np.count_nonzero(finite))
    clean = np.where(finite, x, 0.0) if nonfinite else x
    count = np.maximum(np.count_nonzero(finite, axis=1), 1)
    peak = np.max(np.abs(clean), axis=1)
    energy = np.einsum("ct,ct->c", clean, clean)
    rms = np.sqrt(energy / count)
    dc = np.sum(clean, axis=1) / count
    full = np.count_nonzero(np.abs(clean) >= 1.0, axis=1)
    total = max(int(np.count_nonzero(finite)), 1)
    per_channel = [
        {"channel": c, "peak": float(peak[c]), "peak_dbfs": dbfs(float(peak[c])),
         "rms": float(rms[c]), "rms_dbfs": dbfs(float(rms[c])), "dc": float(dc[c]),
         "full_scale": int(full[c])}
        for c in range(x.shape[0])
    ]
    overall_peak = float(peak.max())
    overall_rms = math.sqrt(float(energy.sum()) / total)
    return {
        "peak": overall_peak,
        "peak_dbfs": dbfs(overall_peak),
        "rms": overall_rms,
        "rms_dbfs": dbfs(overall_rms),
        "dc": float(np.sum(clean) / total),
        "full_scale": int(full.sum()),
        "nonfinite": nonfinite,
        "channel": per_channel,
    }


def dbfs(value: float) -> float | None:
    """20·log10(value), None for silence (JSON has no −inf)."""
    return None if value <= 0 else 20 * math.log10(value)


def _npy_header(data: bytes, name: str) -> tuple[tuple[int, ...], str]:
    """(shape, dtype) from an NPY header without loading the array."""
    try:
        handle = io.BytesIO(data)
        fmt = np.lib.format
        version = fmt.read_magic(handle)
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        if version == (3, 0):  # 3.0 only changes the header's encoding to UTF-8
            handle = io.BytesIO(data[:6] + bytes([2, 0]) + data[8:])
            fmt.read_magic(handle)
        shape, _, dtype = read(handle)
    except (ValueError, OSError, EOFError, SyntaxError) as exc:  # numpy: bad or cut headers
        raise InputError(f"cannot read {name} as NPY: {exc}", "is the file complete?") from None
    return tuple(shape), str(dtype)
