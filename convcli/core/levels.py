"""Levels: what a signal measures (peak, RMS, DC per channel) and what changes it on the way out
(a fixed gain in dB, or peak normalization to a level in dBFS).

The output level is applied to a filtered result before it is written (and before integer
PCM is rounded and clipped), so ``--normalize-output`` is how a filter with gain above 1
avoids clipping.

    >>> y, info = apply_level(np.array([[[0.5, -0.25]]]), peak_dbfs=0.0)
    >>> y.tolist(), round(info.gain_db, 2)
    ([[[1.0, -0.5]]], 6.02)
    >>> y, info = apply_level(np.array([[[0.5, -0.25]]]), gain_db=6.0206)
    >>> y.round(4).tolist()
    [[[1.0, -0.5]]]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from convcli.core import limits
from convcli.errors import UsageError

#: --normalize-output without a value: peak to −1 dBFS, headroom for lossy codecs and resampling
DEFAULT_PEAK_DBFS = -1.0


@dataclass(frozen=True)
class LevelChange:
    """What ``apply_level`` did: the gain applied and the peak before and after (1.0 = 0 dBFS)."""

    gain_db: float
    peak_before: float
    peak_after: float
    silent: bool = False  # peak normalization asked for, but the result is all zeros


def check_level_options(gain_db: float | None, peak_dbfs: float | None) -> None:
    """Refuse contradictory or non-finite level options (before any work is done)."""
    if gain_db is not None and peak_dbfs is not None:
        raise UsageError("--gain and --normalize-output both set the output level",
                         "use --gain DB for a fixed change or --normalize-output DBFS for a peak")
    for name, value in (("gain", gain_db), ("normalize-output", peak_dbfs)):
        if value is not None:
            limits.check(name, value)


def apply_level(
    data: np.ndarray,
    *,
    gain_db: float | None = None,
    peak_dbfs: float | None = None,
    full_scale: float = 1.0,
) -> tuple[np.ndarray, LevelChange]:
    """Scale ``data`` by ``gain_db`` dB, or so that its peak |sample| is ``peak_dbfs`` dBFS.

    The peak is taken over the whole array (every batch item and channel of one output), so
    the balance between channels is kept. An all-zero result is returned unchanged.
    ``full_scale`` is the largest sample the output holds (0 dBFS): 1.0 for float formats,
    32767/32768 for PCM_16, so that ``peak_dbfs=0`` does not clip its peak sample.

    Shape: ``[...] -> [...]`` (same shape and dtype; a new array unless nothing changes).
    """
    check_level_options(gain_db, peak_dbfs)
    peak = float(np.max(np.abs(data))) if data.size else 0.0
    if gain_db is None and peak_dbfs is None:
        return data, LevelChange(0.0, peak, peak)
    if peak_dbfs is not None:
        if peak == 0 or not math.isfinite(peak):
            return data, LevelChange(0.0, peak, peak, silent=peak == 0)
        factor = 10.0 ** (peak_dbfs / 20.0) * full_scale / peak
    else:
        factor = 10.0 ** (gain_db / 20.0)  # type: ignore[operator]
    out = (data * factor).astype(data.dtype, copy=False)
    return out, LevelChange(20.0 * math.log10(factor), peak, peak * factor)


def peak_gain_db(peak: float, peak_dbfs: float, full_scale: float = 1.0) -> float | None:
    """The gain in dB that brings a result whose peak |sample| is ``peak`` to ``peak_dbfs``
    dBFS (``apply_level``'s, for a result measured in a pass of its own: a stream); None for
    a silent or non-finite result, which is left as it is.

    >>> round(peak_gain_db(0.5, 0.0), 2), peak_gain_db(0.0, -1.0)
    (6.02, None)
    """
    if peak == 0 or not math.isfinite(peak):
        return None
    return 20.0 * math.log10(10.0 ** (peak_dbfs / 20.0) * full_scale / peak)


def levels(x: np.ndarray) -> dict[str, Any]:
    """Peak, RMS and DC of ``x[C, T]``, overall and per channel (finite samples only).

    Also counts NaN/Inf and full-scale samples (|x| ≥ 1, clipped or about to be).
    """
    meter = LevelMeter(x.shape[0])
    meter.add(x)
    return meter.result()


class LevelMeter:
    """``levels`` of a signal that arrives in blocks ``[C, t]``: the same figures, in memory
    of one block (``info`` measures a 4 GB file this way)."""

    def __init__(self, channels: int) -> None:
        self.count = np.zeros(channels, np.int64)  # finite samples
        self.peak = np.zeros(channels)
        self.energy = np.zeros(channels)
        self.total = np.zeros(channels)
        self.full = np.zeros(channels, np.int64)
        self.nonfinite = 0

    def add(self, x: np.ndarray) -> None:
        """One block ``[C, t]`` (any real dtype; measured in float64)."""
        x = np.ascontiguousarray(x, dtype=np.float64)  # rows in a line: 4× faster below
        if x.shape[-1] == 0:
            return
        low, high = x.min(axis=1), x.max(axis=1)  # NaN shows in both; no |x| copy
        if np.isfinite(low).all() and np.isfinite(high).all():
            clean, counts = x, np.full(x.shape[0], x.shape[1], np.int64)
            peak = np.maximum(-low, high)
        else:
            finite = np.isfinite(x)
            counts = np.count_nonzero(finite, axis=1)
            clean = np.where(finite, x, 0.0)
            peak = np.max(np.abs(clean), axis=1)
        self.nonfinite += int(x.size - counts.sum())
        self.count += counts
        np.maximum(self.peak, peak, out=self.peak)
        self.energy += np.einsum("ct,ct->c", clean, clean)
        self.total += np.sum(clean, axis=1)
        if (peak >= 1.0).any():  # counted only where a sample reaches full scale
            self.full += np.count_nonzero(np.abs(clean) >= 1.0, axis=1)

    def result(self) -> dict[str, Any]:
        count = np.maximum(self.count, 1)
        rms = np.sqrt(self.energy / count)
        dc = self.total / count
        total = max(int(self.count.sum()), 1)
        per_channel = [
            {"channel": c, "peak": float(self.peak[c]), "peak_dbfs": dbfs(float(self.peak[c])),
             "rms": float(rms[c]), "rms_dbfs": dbfs(float(rms[c])), "dc": float(dc[c]),
             "full_scale": int(self.full[c])}
            for c in range(len(self.peak))
        ]
        overall_peak = float(self.peak.max()) if len(self.peak) else 0.0
        overall_rms = math.sqrt(float(self.energy.sum()) / total)
        return {
            "peak": overall_peak,
            "peak_dbfs": dbfs(overall_peak),
            "rms": overall_rms,
            "rms_dbfs": dbfs(overall_rms),
            "dc": float(self.total.sum() / total),
            "full_scale": int(self.full.sum()),
            "nonfinite": self.nonfinite,
            "channel": per_channel,
        }


def dbfs_text(peak: float) -> str:
    """``+3.5 dBFS``, or ``−inf dBFS`` for silence.

    >>> dbfs_text(0.5), dbfs_text(0.0)
    ('-6.0 dBFS', '−inf dBFS')
    """
    return "−inf dBFS" if peak <= 0 else f"{20 * math.log10(peak):+.1f} dBFS"


def dbfs(value: float) -> float | None:
    """20·log10(value), None for silence (JSON has no −inf)."""
    return None if value <= 0 else 20 * math.log10(value)
