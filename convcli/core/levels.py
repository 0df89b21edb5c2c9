"""Output level: a fixed gain in dB, or peak normalization to a level in dBFS.

Applied to a filtered result before it is written (and before integer PCM is rounded and
clipped), so ``--normalize-output`` is how a filter with gain above 1 avoids clipping.

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

import numpy as np

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
    for flag, value in (("--gain", gain_db), ("--normalize-output", peak_dbfs)):
        if value is not None and not math.isfinite(value):
            raise UsageError(f"{flag} must be a finite number of dB, got {value}")


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
