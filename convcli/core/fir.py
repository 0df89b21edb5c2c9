"""Windowed-sinc FIR design: lowpass, highpass, bandpass, bandstop, and Kaiser's formulas.

``firwin`` computes exactly what ``scipy.signal.firwin(size, cutoff, window=..., pass_zero=...,
fs=rate)`` computes (scale=True), line for line, with numpy alone and the windows of
``convcli.core.windows``: the ideal response is a sum of sincs, one pair per passband, multiplied by
a symmetric window and scaled to unity gain at DC (lowpass, bandstop), at Nyquist (highpass)
or at the centre of the first passband (bandpass).

``kaiserord`` and ``kaiser_beta`` are Kaiser's empirical formulas (Oppenheim & Schafer, as in
``scipy.signal.kaiserord``): from a transition width and a stopband attenuation they choose
the tap count and the window's beta, so users need not guess ``--size``.

    >>> h = firwin(5, [1000.0], 8000.0, "lowpass", ("hamming", None))
    >>> h.shape, round(float(h.sum()), 12)        # unity gain at DC
    ((5,), 1.0)
    >>> kaiserord(60.0, 0.05)                     # 60 dB, transition 5 % of Nyquist
    (147, 5.65326)
    >>> design(FirRequest("lowpass", (4000.0,), transition=1000.0, attenuation=60.0),
    ...        44100.0).describe()
    'lowpass 4000 Hz, kaiser:5.65326 (161 taps: 60 dB, 1000 Hz transition)'
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from convcli.core import limits
from convcli.errors import UsageError

#: band -> (number of cutoffs, DC in the passband (scipy's pass_zero))
BANDS: dict[str, tuple[int, bool]] = {
    "lowpass": (1, True),
    "highpass": (1, False),
    "bandpass": (2, False),
    "bandstop": (2, True),
}
#: stopband attenuation (dB) used when only --transition is given
DEFAULT_ATTENUATION = 60.0
#: float64 arrays ``firwin`` holds at once (positions, sincs, window, result): bytes a tap
FIRWIN_BYTES_PER_TAP = 6 * 8
#: the window of a design when none is named (the same default as `filter --window`)
DEFAULT_WINDOW = "hann"


def passes_nyquist(band: str) -> bool:
    """Whether the band's last passband reaches Nyquist (then the tap count must be odd)."""
    count, pass_zero = BANDS[band]
    return (count % 2 == 0) == pass_zero


@dataclass(frozen=True)
class FirRequest:
    """What the user asked for, in Hz: a band type, its cutoffs, and optionally a Kaiser spec.

    ``cutoffs`` is ``(fc,)`` for lowpass/highpass and ``(lo, hi)`` for bandpass/bandstop, at the
    −6 dB (half-amplitude) points, as in scipy's firwin. ``transition`` (Hz) and
    ``attenuation`` (dB) select a Kaiser design (see ``design``).
    """

    band: str
    cutoffs: tuple[float, ...]
    transition: float | None = None
    attenuation: float | None = None

    def __post_init__(self) -> None:
        if self.band not in BANDS:
            raise UsageError(f"unknown band type {self.band!r}", f"one of {', '.join(BANDS)}")
        count = BANDS[self.band][0]
        if len(self.cutoffs) != count:
            raise UsageError(f"--{self.band} takes {count} cutoff(s), got {len(self.cutoffs)}")
        for value in self.cutoffs:
            limits.check(self.band, value)
        if count == 2 and not self.cutoffs[0] < self.cutoffs[1]:
            raise UsageError(
                f"--{self.band} {self.cutoffs[0]:g}:{self.cutoffs[1]:g}: LO must be below HI",
                f"e.g. --{self.band} {min(self.cutoffs):g}:{max(self.cutoffs):g}",
            )
        if self.transition is not None:
            limits.check("transition", self.transition)
        if self.attenuation is not None:
            limits.check("attenuation", self.attenuation)

    @property
    def pass_zero(self) -> bool:
        return BANDS[self.band][1]

    def check_rate(self, rate: float, source: str = "") -> None:
        """Refuse cutoffs outside (0, rate/2), naming where the rate came from."""
        nyquist = rate / 2
        bad = [f for f in self.cutoffs if not 0 < f < nyquist]
        if bad:
            where = f" of {source}" if source else ""
            raise UsageError(
                f"--{self.band} {format_cutoffs(self.cutoffs)}: {bad[0]:g} Hz is outside "
                f"(0, {nyquist:g}) Hz, the band below Nyquist at the {rate:g} Hz rate{where}",
                f"cutoffs must lie strictly between 0 and {nyquist:g} Hz",
            )
        if self.transition is not None and self.transition >= nyquist:
            raise UsageError(f"--transition {self.transition:g} Hz is not below Nyquist "
                             f"({nyquist:g} Hz)", "give a narrower transition band")


def format_cutoffs(cutoffs: tuple[float, ...]) -> str:
    return ":".join(f"{f:g}" for f in cutoffs)


def parse_edges(text: str, flag: str) -> tuple[float, float]:
    """``"300:3400"`` -> ``(300.0, 3400.0)`` for ``--bandpass``/``--bandstop``.

    >>> parse_edges("300:3400", "--bandpass")
    (300.0, 3400.0)
    """
    parts = text.replace(",", ":").split(":")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise UsageError(f"{flag} {text!r}: expected LO:HI in Hz", f"e.g. {flag} 300:3400") from None
    if len(values) != 2:
        raise UsageError(f"{flag} {text!r}: expected two edges LO:HI in Hz", f"e.g. {flag} 300:3400")
    return values  # type: ignore[return-value]


def request_from_options(
    lowpass: float | None = None,
    highpass: float | None = None,
    bandpass: str | None = None,
    bandstop: str | None = None,
    transition: float | None = None,
    attenuation: float | None = None,
) -> FirRequest | None:
    """The CLI's design flags as one ``FirRequest``, or None when no band flag is given.

    At most one of the four band flags; ``--transition``/``--attenuation`` need one of them.
    """
    given = {name: value for name, value in (("lowpass", lowpass), ("highpass", highpass),
                                             ("bandpass", bandpass), ("bandstop", bandstop))
             if value is not None}
    if len(given) > 1:
        raise UsageError(f"--{' and --'.join(given)} both given; one design per run",
                         "a bandpass is --bandpass LO:HI; chain two runs to cascade filters")
    if not given:
        if transition is not None or attenuation is not None:
            flag = "--transition" if transition is not None else "--attenuation"
            raise UsageError(f"{flag} applies to a designed filter",
                             "add --lowpass, --highpass, --bandpass or --bandstop")
        return None
    (band, value), = given.items()
    cutoffs = parse_edges(value, f"--{band}") if isinstance(value, str) else (float(value),)
    return FirRequest(band, cutoffs, transition=transition, attenuation=attenuation)


# --- Kaiser's formulas ----------------------------------------------------------------------
def kaiser_beta(attenuation: float) -> float:
    """Kaiser window beta for a stopband attenuation in dB (``scipy.signal.kaiser_beta``)."""
    a = attenuation
    if a > 50:
        return 0.1102 * (a - 8.7)
    if a > 21:
        return 0.5842 * (a - 21) ** 0.4 + 0.07886 * (a - 21)
    return 0.0


def kaiser_atten(size: int, width: float) -> float:
    """Attenuation (dB) reached by ``size`` taps for a transition ``width`` (1 = Nyquist)."""
    return 2.285 * (size - 1) * np.pi * width + 7.95


def kaiserord(attenuation: float, width: float) -> tuple[int, float]:
    """(taps, beta) for ``attenuation`` dB and a transition ``width`` (1 = Nyquist).

    Equal to ``scipy.signal.kaiserord(attenuation, width)``.
    """
    a = abs(attenuation)
    if a < 8:
        raise UsageError(f"--attenuation {a:g} dB is too small for Kaiser's formula (≥ 8 dB)")
    if not width > 0:
        raise UsageError(f"transition width must be > 0, got {width:g}")
    beta = kaiser_beta(a)
    taps = (a - 7.95) / 2.285 / (np.pi * width) + 1
    return math.ceil(taps), beta


# --- design -------------------------------------------------------------------------------
def firwin(
    size: int,
    cutoffs,
    rate: float,
    band: str,
    window: tuple[str, float | None] = (DEFAULT_WINDOW, None),
) -> np.ndarray:
    """Windowed-sinc FIR coefficients, ``scipy.signal.firwin(size, cutoffs, window=...,
    pass_zero=band, fs=rate)`` with ``scale=True``.

    Args:
        size: number of taps; odd for highpass and bandstop (their passband reaches Nyquist).
        cutoffs: ``[fc]`` or ``[lo, hi]`` in Hz, strictly inside ``(0, rate/2)``, increasing.
        rate: sample rate in Hz.
        band: lowpass, highpass, bandpass or bandstop.
        window: ``(name, param)`` of ``convcli.core.windows`` (symmetric), e.g. ``("kaiser", 8.0)``.

    Shape: ``-> [size]`` float64, symmetric (linear phase, delay ``(size−1)/2`` samples).
    """
    from convcli.core import windows

    if band not in BANDS:
        raise UsageError(f"unknown band type {band!r}", f"one of {', '.join(BANDS)}")
    if size < 1:
        raise UsageError(f"--size must be ≥ 1, got {size}")
    nyquist = 0.5 * rate
    cut = np.atleast_1d(np.asarray(cutoffs, dtype=np.float64)) / float(nyquist)
    if cut.size != BANDS[band][0]:
        raise UsageError(f"--{band} takes {BANDS[band][0]} cutoff(s), got {cut.size}")
    if cut.min() <= 0 or cut.max() >= 1:
        raise UsageError(f"--{band}: cutoffs must lie strictly between 0 and {nyquist:g} Hz "
                         f"(half the {rate:g} Hz rate)")
    if np.any(np.diff(cut) <= 0):
        raise UsageError(f"--{band}: LO must be below HI")
    pass_zero = BANDS[band][1]
    pass_nyquist = passes_nyquist(band)
    if pass_nyquist and size % 2 == 0:
        raise UsageError(
            f"a {band} filter needs an odd number of taps, got --size {size} (an even-length "
            "linear-phase FIR has zero gain at Nyquist, inside this filter's passband)",
            f"use --size {size + 1}",
        )
    edges = np.concatenate((np.zeros(int(pass_zero)), cut, np.ones(int(pass_nyquist))))
    bands = edges.reshape(-1, 2)
    alpha = 0.5 * (size - 1)
    m = np.arange(0, size, dtype=np.float64) - alpha
    h = np.zeros(size)
    for left, right in bands:
        h += right * np.sinc(right * m)
        h -= left * np.sinc(left * m)
    name, param = window
    h *= windows.window(name, size, param, periodic=False)
    left, right = bands[0]
    if left == 0:
        scale_frequency = 0.0
    elif right == 1:
        scale_frequency = 1.0
    else:
        scale_frequency = 0.5 * (left + right)
    gain = np.sum(h * np.cos(np.pi * m * scale_frequency))
    if gain == 0 or not np.isfinite(gain):  # scipy returns NaNs here
        raise UsageError(f"a {size}-tap {band} with the {name} window has no gain to scale "
                         "(the window is zero where the filter needs taps)",
                         "use a larger --size")
    h /= gain
    return h


@dataclass(frozen=True)
class Design:
    """A designed filter: its coefficients and how they were chosen."""

    coefficients: np.ndarray = field(repr=False)  # [size]
    request: FirRequest
    rate: float
    window: tuple[str, float | None]
    note: str = ""  # how the size/window were chosen (Kaiser spec), for messages

    @property
    def size(self) -> int:
        return int(self.coefficients.shape[0])

    def window_text(self) -> str:
        name, param = self.window
        return name if param is None else f"{name}:{param:g}"

    def describe(self) -> str:
        text = (f"{self.request.band} {format_cutoffs(self.request.cutoffs)} Hz, "
                f"{self.window_text()} ({self.size} taps")
        return text + (f": {self.note})" if self.note else ")")


def design(
    request: FirRequest,
    rate: float,
    *,
    size: int | None = None,
    window: str | None = None,
    reserve=None,
) -> Design:
    """Design the filter ``request`` for a signal at ``rate`` Hz.

    - no ``transition``/``attenuation``: ``window`` (default hann) of ``size`` (default 31) taps;
    - ``transition`` (+ ``attenuation``, default 60 dB) and no ``size``: Kaiser's formulas choose
      the tap count and beta (``scipy.signal.kaiserord``), then one tap is added when the band
      needs an odd count (highpass, bandstop);
    - ``transition`` with an explicit ``size``: beta from the attenuation those taps reach over
      that transition (``scipy.signal.firwin(..., width=transition)``);
    - ``attenuation`` with an explicit ``size``: a Kaiser window with ``kaiser_beta(attenuation)``.

    ``reserve(nbytes, taps)``, when given, is asked before the taps are computed (the memory
    check of the layer above: Kaiser's formulas may choose millions of taps).

    Shape: ``-> Design`` whose ``coefficients`` are ``[taps]``.
    """
    from convcli.core import windows

    request.check_rate(rate)
    nyquist = rate / 2
    kaiser = request.transition is not None or request.attenuation is not None
    if kaiser and window is not None:
        raise UsageError("--transition/--attenuation choose a Kaiser window themselves; "
                         f"the window {window!r} contradicts them",
                         "drop --window (window command: name it kaiser), or drop "
                         "--transition/--attenuation and give --size")
    note = ""
    if request.transition is not None and size is None:
        attenuation = request.attenuation if request.attenuation is not None else DEFAULT_ATTENUATION
        size, beta = kaiserord(attenuation, request.transition / nyquist)
        if passes_nyquist(request.band) and size % 2 == 0:
            size += 1
        note = f"{attenuation:g} dB, {request.transition:g} Hz transition"
        chosen: tuple[str, float | None] = ("kaiser", beta)
    elif request.transition is not None:
        if request.attenuation is not None:
            raise UsageError("--size, --transition and --attenuation all given: Kaiser's "
                             "formulas fix the size from the other two",
                             "drop --size (or --attenuation)")
        assert size is not None
        attenuation = kaiser_atten(size, request.transition / nyquist)
        beta = kaiser_beta(attenuation)
        chosen = ("kaiser", beta)
        note = f"{request.transition:g} Hz transition, ~{attenuation:.1f} dB"
    elif request.attenuation is not None:
        if size is None:
            raise UsageError("--attenuation alone cannot choose the tap count",
                             "add --transition HZ (or give --size N)")
        chosen = ("kaiser", kaiser_beta(request.attenuation))
        note = f"{request.attenuation:g} dB"
    else:
        chosen = windows.parse_window(window or DEFAULT_WINDOW)
        size = 31 if size is None else size
    if size > limits.MAX_TAPS:
        raise UsageError(f"the design needs {size:,} taps (at most {limits.MAX_TAPS:,})",
                         "widen --transition or lower --attenuation")
    if reserve is not None:
        reserve(FIRWIN_BYTES_PER_TAP * size, size)
    h = firwin(size, request.cutoffs, rate, request.band, chosen)
    return Design(h, request, float(rate), chosen, note)
