"""Frequency-response figures of a kernel, measured on a dense rfft (numpy only).

For a window (or any smoothing kernel, main lobe at DC), as in Harris (1978):
- DC gain ``Σ w``;
- −3 dB and −6 dB bandwidth: the two-sided width of the main lobe where ``|H|`` is within
  3 (6) dB of ``|H(0)|``, in Hz (or cycles/sample without a rate) and in DFT bins of the
  window's length (``width · taps / rate``), the unit of Harris's tables;
- peak side-lobe level: the highest ``|H|`` beyond the main lobe's first null, in dB
  relative to ``|H(0)|``.

For a designed filter (``band``/``cutoffs`` given) the reference is the gain where firwin
scales it (DC, Nyquist, or the centre of the first passband) and:
- ``edges_3db``/``edges_6db``: where ``|H|`` crosses −3/−6 dB (the −6 dB edges are firwin's
  cutoffs), and the bandwidth those edges give (lowpass ``f₃``, highpass ``rate/2 − f₃``,
  bandpass the passband width, bandstop the notch width);
- passband ripple (peak-to-peak dB) and stopband attenuation (dB below the reference),
  measured outside the transition bands: ``±transition/2`` around each cutoff when given,
  else from each cutoff to the first null on its stopband side (the transition of a
  windowed sinc is symmetric about its −6 dB cutoff);
- peak side-lobe level: the highest ``|H|`` beyond those first nulls.

    >>> r = measure(np.ones(8))                     # rect window: sinc response
    >>> round(r.peak_sidelobe_db, 1), round(r.bandwidth_6db_bins, 2)
    (-12.8, 1.21)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from convcli.errors import UsageError

#: densest grid used (points of the rfft); the grid is at least 2^16 and ~64 points per bin
MAX_NFFT = 1 << 24


#: the −3 dB and −6 dB amplitude levels
LEVEL_3DB, LEVEL_6DB = 10 ** (-3 / 20), 10 ** (-6 / 20)


def dense_nfft(taps: int) -> int:
    """An FFT size giving ≥ 64 grid points per DFT bin of a ``taps``-long kernel, ≥ 2^16, at
    most ``MAX_NFFT`` unless the kernel is longer (then the power of two that holds it)."""
    dense = int(min(MAX_NFFT, max(1 << 16, 1 << math.ceil(math.log2(64 * max(taps, 1))))))
    return max(dense, 1 << math.ceil(math.log2(max(taps, 1))))


#: bytes an FFT point of ``measure`` costs at its peak: the complex spectrum, magnitudes,
#: frequencies and the masks of the bands
MEASURE_BYTES_PER_POINT = 48


def spectrum(h: np.ndarray, nfft: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(f [F], |H(f)| [F])`` on ``F = nfft//2 + 1`` points, f in cycles/sample (0 … 0.5).

    Shape: ``h [k] -> ([F], [F])``; ``|H|`` equals ``abs(scipy.signal.freqz(h, worN=...))``.
    """
    h = np.asarray(h, dtype=np.float64)
    if h.ndim != 1 or h.size == 0:
        raise UsageError(f"a frequency response needs one 1-D kernel, got shape {h.shape}")
    nfft = nfft or dense_nfft(h.size)
    if nfft < h.size:
        raise UsageError(f"nfft {nfft} is shorter than the kernel ({h.size} taps)")
    return np.fft.rfftfreq(nfft), np.abs(np.fft.rfft(h, nfft))


def gain_at(h: np.ndarray, f: float) -> float:
    """``|H(f)|`` at one frequency f in cycles/sample, summed exactly (no grid)."""
    n = np.arange(len(h))
    return float(abs(np.sum(np.asarray(h, dtype=np.float64) * np.exp(-2j * np.pi * f * n))))


def _db(ratio: float | None) -> float | None:
    if ratio is None:
        return None
    return -math.inf if ratio <= 0 else 20.0 * math.log10(ratio)


def _crossings(f: np.ndarray, g: np.ndarray, level: float) -> list[float]:
    """Frequencies where ``g`` crosses ``level``, linearly interpolated between grid points."""
    above = g >= level
    idx = np.nonzero(above[:-1] != above[1:])[0]
    out = []
    for i in idx:
        g0, g1 = g[i], g[i + 1]
        t = 0.0 if g1 == g0 else (level - g0) / (g1 - g0)
        out.append(float(f[i] + t * (f[i + 1] - f[i])))
    return out


def _first_minimum(g: np.ndarray, start: int, step: int) -> int:
    """Index of the first local minimum of ``g`` walking from ``start`` by ``step`` (±1);
    the end of the grid when there is none."""
    i = start
    last = len(g) - 1 if step > 0 else 0
    while i != last and g[i + step] < g[i]:
        i += step
    return i


@dataclass
class Response:
    """The measured figures; frequencies in ``unit`` (Hz with a rate, else cycles/sample)."""

    taps: int
    rate: float | None
    unit: str
    nfft: int
    dc_gain: float
    dc_gain_db: float | None
    bandwidth_3db: float | None = None
    bandwidth_6db: float | None = None
    bandwidth_3db_bins: float | None = None
    bandwidth_6db_bins: float | None = None
    first_null: float | None = None
    peak_sidelobe_db: float | None = None
    band: str | None = None
    cutoffs: list[float] | None = None
    reference_gain: float | None = None
    edges_3db: list[float] | None = None
    edges_6db: list[float] | None = None
    transition: float | None = None
    passband_ripple_db: float | None = None
    stopband_attenuation_db: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready (infinities become None)."""
        def clean(v):
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, list):
                return [clean(x) for x in v]
            return v

        return {k: clean(v) for k, v in asdict(self).items()}

    def rows(self) -> list[tuple[str, str]]:
        """(label, value) pairs for a table, in reading order; figures that do not apply are left out."""
        u = self.unit

        def freq(v: float | None) -> str:
            return "—" if v is None else (f"{v:,.1f} {u}" if u == "Hz" else f"{v:.5f} {u}")

        def db(v: float | None) -> str:
            return "—" if v is None else ("−∞ dB" if v == -math.inf else f"{v:.2f} dB")

        rows = [("taps", str(self.taps)),
                ("DC gain", f"{self.dc_gain:.6g} ({db(self.dc_gain_db)})")]
        if self.band is not None:
            rows.append(("design", f"{self.band} {':'.join(f'{c:g}' for c in self.cutoffs or [])} {u}"))
            rows.append(("−3 dB edges", ", ".join(freq(e) for e in self.edges_3db or []) or "—"))
            rows.append(("−6 dB edges", ", ".join(freq(e) for e in self.edges_6db or []) or "—"))
        for label, value, bins in (("−3 dB bandwidth", self.bandwidth_3db, self.bandwidth_3db_bins),
                                   ("−6 dB bandwidth", self.bandwidth_6db, self.bandwidth_6db_bins)):
            text = freq(value)
            if bins is not None:
                text += f" ({bins:.2f} bins)"
            rows.append((label, text))
        if self.band is None and self.first_null is not None:
            rows.append(("first null", freq(self.first_null)))
        rows.append(("peak side lobe", db(self.peak_sidelobe_db)))
        if self.band is not None:
            ripple = self.passband_ripple_db
            rows.append(("passband ripple", "—" if ripple is None else
                         f"{ripple:.3g} dB peak-to-peak"))
            rows.append(("stopband attenuation", db(self.stopband_attenuation_db)))
            if self.transition is not None:
                rows.append(("transition used", freq(self.transition)))
        return rows


def measure(
    h,
    rate: float | None = None,
    *,
    band: str | None = None,
    cutoffs=None,
    transition: float | None = None,
    nfft: int | None = None,
) -> Response:
    """Measure the response of the kernel ``h [k]`` (see the module docstring for definitions).

    ``rate`` in Hz (None: frequencies in cycles/sample). ``band``/``cutoffs`` (in the same unit)
    mark a designed filter; ``transition`` (same unit) sets the transition bands for ripple and
    attenuation.
    """
    h = np.asarray(h, dtype=np.float64)
    f, mag = spectrum(h, nfft)
    fs = float(rate) if rate else 1.0
    dc = float(np.sum(h))
    resp = Response(taps=h.size, rate=float(rate) if rate else None,
                    unit="Hz" if rate else "cycles/sample", nfft=(len(f) - 1) * 2,
                    dc_gain=dc, dc_gain_db=_db(abs(dc)))
    if band is None:
        return _window_response(resp, h, f * fs, mag, fs)
    return _design_response(resp, h, f * fs, mag, fs, band, cutoffs, transition)


def _window_response(resp: Response, h: np.ndarray, freqs: np.ndarray, mag: np.ndarray,
                     fs: float) -> Response:
    """A window's main lobe (−3/−6 dB bandwidths, first null) and its peak side lobe."""
    dc = resp.dc_gain
    if abs(dc) == 0:
        resp.notes.append("DC gain is 0: no main lobe at DC to measure")
        return resp
    g = mag / abs(dc)
    for attr, level in (("3db", LEVEL_3DB), ("6db", LEVEL_6DB)):
        cross = _crossings(freqs, g, level)
        if cross and g[0] >= level:
            setattr(resp, f"bandwidth_{attr}", 2 * cross[0])
            setattr(resp, f"bandwidth_{attr}_bins", 2 * cross[0] * h.size / fs)
    null = _first_minimum(g, 0, 1)
    if 0 < null < len(g) - 1:
        resp.first_null = float(freqs[null])
        resp.peak_sidelobe_db = _db(float(np.max(g[null:])))
    else:
        resp.notes.append("no side lobes: |H| has no minimum below Nyquist")
    return resp


def _design_response(resp: Response, h: np.ndarray, freqs: np.ndarray, mag: np.ndarray,
                     fs: float, band: str, cutoffs, transition: float | None) -> Response:
    """A design's band edges and bandwidths, then its ripple and attenuation (``_bands``)."""
    from convcli.core.fir import BANDS

    if band not in BANDS:
        raise UsageError(f"unknown band type {band!r}", f"one of {', '.join(BANDS)}")
    cut = [float(c) for c in np.atleast_1d(cutoffs)]
    count, pass_zero = BANDS[band]
    nyq = fs / 2
    resp.band, resp.cutoffs = band, cut
    # firwin's scale frequency: DC, Nyquist, or the first passband's centre
    edges = ([0.0] if pass_zero else []) + cut + ([nyq] if (count % 2 == 0) == pass_zero else [])
    left, right = edges[0], edges[1]
    scale_f = 0.0 if left == 0 else (nyq if right == nyq else 0.5 * (left + right))
    ref = gain_at(h, scale_f / fs)
    resp.reference_gain = ref
    if ref == 0:
        resp.notes.append("zero gain at the passband reference frequency")
        return resp
    g = mag / ref
    resp.edges_3db = _crossings(freqs, g, LEVEL_3DB)
    resp.edges_6db = _crossings(freqs, g, LEVEL_6DB)
    for attr, found in (("bandwidth_3db", resp.edges_3db), ("bandwidth_6db", resp.edges_6db)):
        if not found:
            continue
        if band == "lowpass":
            width = found[0]
        elif band == "highpass":
            width = nyq - found[-1]
        else:
            width = found[-1] - found[0] if len(found) >= 2 else None
        setattr(resp, attr, width)
    return _bands(resp, freqs, g, fs, cut, pass_zero, transition)


def _bands(resp: Response, freqs: np.ndarray, g: np.ndarray, fs: float, cut: list[float],
           pass_zero: bool, transition: float | None) -> Response:
    """Passband ripple and stopband attenuation outside the transition bands (``transition``
    wide, else from each cutoff to the first null on its stopband side)."""
    # the ideal response: pass where an even (odd) number of cutoffs lies below f
    below = np.searchsorted(np.asarray(cut), freqs, side="right")
    ideal = (below % 2 == 0) == pass_zero
    auto_half = []
    for i, c in enumerate(cut):
        start = min(max(round(c / fs * resp.nfft), 0), len(g) - 1)
        pass_below = (i % 2 == 0) == pass_zero
        j = _first_minimum(g, start, 1 if pass_below else -1)
        auto_half.append(abs(float(freqs[j]) - c))
    auto_mask = np.ones_like(freqs, dtype=bool)
    for c, hw in zip(cut, auto_half):
        auto_mask &= np.abs(freqs - c) >= hw
    stop_auto = ~ideal & auto_mask
    if stop_auto.any():
        resp.peak_sidelobe_db = _db(float(np.max(g[stop_auto])))
    if transition is not None:
        if not transition > 0:
            raise UsageError(f"transition must be > 0, got {transition:g}")
        resp.transition = float(transition)
        mask = np.ones_like(freqs, dtype=bool)
        for c in cut:
            mask &= np.abs(freqs - c) >= transition / 2
    else:
        resp.transition = 2 * max(auto_half) if auto_half else None
        mask = auto_mask
    passband, stopband = ideal & mask, ~ideal & mask
    if passband.any():
        lo, hi = float(np.min(g[passband])), float(np.max(g[passband]))
        resp.passband_ripple_db = _db(hi / lo) if lo > 0 else math.inf
    else:
        resp.notes.append("no passband left outside the transition bands")
    if stopband.any():
        top = float(np.max(g[stopband]))
        resp.stopband_attenuation_db = math.inf if top == 0 else -_db(top)  # type: ignore[operator]
    else:
        resp.notes.append("no stopband left outside the transition bands")
    return resp


# --- does a design do what it is for? ----------------------------------------------------------
#: a design that attenuates its stopband less than this (dB) hardly filters
WEAK_ATTENUATION_DB = 20.0
#: ... or whose passband ripples more than this (dB, peak-to-peak) colours what it keeps
WEAK_RIPPLE_DB = 1.0
#: designs longer than this are not measured for weakness (their spectrum would cost
#: gigabytes; only Kaiser's formulas or a deliberate --size choose so many taps)
WEAK_MAX_TAPS = 1 << 20


def design_weakness(design) -> str | None:
    """One line saying how a ``core.fir.Design`` misses what it is for, and what would not;
    None when its stopband attenuation is at least ``WEAK_ATTENUATION_DB`` and its passband
    ripple at most ``WEAK_RIPPLE_DB`` (measured by ``measure`` as ``--response`` shows them).

    The advice: a transition band that fits beside the cutoffs (``--transition``, Kaiser's
    formulas then choose the taps for 60 dB), or the tap count those formulas would choose.
    An attenuation asked for explicitly (``--attenuation 10``) is not second-guessed, nor a
    design of more than ``WEAK_MAX_TAPS`` taps measured.
    """
    from convcli.core import fir

    request, rate = design.request, design.rate
    if design.size > WEAK_MAX_TAPS:
        return None
    measured = measure(design.coefficients, rate, band=request.band,
                       cutoffs=list(request.cutoffs), transition=request.transition,
                       nfft=min(dense_nfft(design.size), 1 << 21))
    attenuation, ripple = measured.stopband_attenuation_db, measured.passband_ripple_db
    # no stopband beyond the transition (a response flat to Nyquist) filters nothing either
    weak_stop = (attenuation is None or attenuation < WEAK_ATTENUATION_DB) and (
        request.attenuation is None)
    weak_pass = ripple is not None and ripple > WEAK_RIPPLE_DB
    if not (weak_stop or weak_pass):
        return None
    nyquist = rate / 2
    cut = request.cutoffs
    room = min([cut[0], nyquist - cut[-1]] + ([(cut[1] - cut[0]) / 2] if len(cut) == 2 else []))
    transition = float(f"{room:.2g}")
    taps, _ = fir.kaiserord(fir.DEFAULT_ATTENUATION, transition / nyquist)
    taps += fir.passes_nyquist(request.band) and taps % 2 == 0
    found = [f"{max(attenuation, 0.0):.1f} dB of stopband attenuation" if attenuation is not None
             else "no stopband beyond its transition band"]
    if ripple is not None:
        found.append(f"{ripple:.1f} dB of passband ripple")
    return (f"the {design.describe()} at {rate:g} Hz has only {' and '.join(found)} "
            f"(a filter wants ≥ {WEAK_ATTENUATION_DB:g} dB and ≤ {WEAK_RIPPLE_DB:g} dB): try "
            f"--transition {transition:g} (Kaiser's formulas choose the taps) or --size {taps}")
