"""The independent reference: numpy/scipy only, written from the semantics table (docs/semantics.md), not from convcli.

``reference_conv(x, w, ...)`` is what every engine path and the CLI are checked against.
"""

from __future__ import annotations

import numpy as np

NUMPY_PAD = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def spec_pads(mode: str, span: int, correlate: bool) -> tuple[int, int]:
    """The modes' pads (docs/semantics.md), spelled out independently of convcli.core.spec."""
    if mode == "same":
        left = (span - 1) // 2 if correlate else span // 2
        return left, span - 1 - left
    return {"valid": (0, 0), "full": (span - 1, span - 1), "causal": (span - 1, 0)}[mode]


def dilated(w: np.ndarray, d: int) -> np.ndarray:
    out = np.zeros(d * (len(w) - 1) + 1, dtype=w.dtype)
    out[::d] = w
    return out


def reference_conv1(x: np.ndarray, w: np.ndarray, mode="same", padding="zeros", stride=1,
                    dilation=1, correlate=False) -> np.ndarray:
    """One channel, one kernel: numpy.pad + numpy.convolve/correlate(valid) + [::stride]."""
    wd = dilated(np.asarray(w, dtype=np.float64), dilation)
    left, right = spec_pads(mode, len(wd), correlate)
    xp = np.pad(np.asarray(x, dtype=np.float64), (left, right), mode=NUMPY_PAD[padding])
    y = np.correlate(xp, wd, mode="valid") if correlate else np.convolve(xp, wd, mode="valid")
    return y[::stride]


def reference_conv(x: np.ndarray, weight: np.ndarray, groups: int, **options) -> np.ndarray:
    """``x[B, C, T]``, ``weight[O, C/G, k]`` -> ``[B, O, T_out]`` by summing per-channel refs."""
    batch = x.shape[0]
    out_channels, per_group, _ = weight.shape
    per_out_group = out_channels // groups
    rows = []
    for b in range(batch):
        outs = []
        for o in range(out_channels):
            g = o // per_out_group
            acc = sum(
                reference_conv1(x[b, g * per_group + c], weight[o, c], **options)
                for c in range(per_group)
            )
            outs.append(acc)
        rows.append(outs)
    return np.asarray(rows)
