"""``convcli info``: what a signal file holds, and its levels. numpy and soundfile only (no torch).

Levels are measured on the samples as floats with full scale 1.0 (integer PCM divided by
2^(bits−1), as soundfile reads it; NPY values as stored), in float64, over the finite samples.

    >>> import io
    >>> import numpy as np
    >>> buf = io.BytesIO(); np.save(buf, np.array([[0.5, -0.5, 0.5, -0.5], [0.0, 0.0, 0.0, 1.0]]))
    >>> d = describe(buf.getvalue(), "x.npy")
    >>> d["shape"], d["dtype"], d["peak"], d["channel"][0]["rms"]
    ([1, 2, 4], 'float64', 1.0, 0.5)
"""

from __future__ import annotations

from typing import Any

from convcli.core.levels import levels
from convcli.io import formats, npy, signals


def describe(data: bytes, name: str, *, layout: str | None = None,
             rate: float | None = None) -> dict[str, Any]:
    """Describe one signal file given as bytes: container facts plus peak/RMS/DC per channel.

    A 2-D NPY that looks like (time, channels) is read that way (``layout_guessed`` says so)
    unless ``layout`` is given: ``info`` describes what it can instead of refusing.
    """
    fmt = formats.sniff_format(data[:12])
    guessed = False
    stored_dtype = None
    if fmt == "npy":
        shape, dtype, _ = npy.read_header(data, name)
        stored_dtype = str(dtype)
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
