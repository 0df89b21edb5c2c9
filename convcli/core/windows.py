"""Window registry: name -> builder, parameters, symmetric/periodic, normalization.

Coefficients equal ``scipy.signal.get_window((name, param), N, fftbins=periodic)`` to float64
precision; they are computed here with numpy alone (scipy stays a test-only dependency). The
formulas follow scipy's ``signal/windows/_windows.py`` line by line so the rounding matches too.

    >>> w = window("hann", 5)
    >>> w.round(3).tolist()
    [0.0, 0.5, 1.0, 0.5, 0.0]
    >>> float(normalize(w, "sum").sum())
    1.0
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from convcli.core import limits
from convcli.errors import InputError, UsageError


def _general_cosine(m: int, a: tuple[float, ...]) -> np.ndarray:
    fac = np.linspace(-np.pi, np.pi, m)
    w = np.zeros(m)
    for k, coeff in enumerate(a):
        w += coeff * np.cos(k * fac)
    return w


def _bartlett(m: int) -> np.ndarray:
    n = np.arange(0, m)
    return np.where(np.less_equal(n, (m - 1) / 2.0), 2.0 * n / (m - 1), 2.0 - 2.0 * n / (m - 1))


def _triang(m: int) -> np.ndarray:
    n = np.arange(1, (m + 1) // 2 + 1)
    if m % 2 == 0:
        w = (2 * n - 1.0) / m
        return np.r_[w, w[::-1]]
    w = 2 * n / (m + 1.0)
    return np.r_[w, w[-2::-1]]


def _kaiser(m: int, beta: float) -> np.ndarray:
    n = np.arange(0, m)
    alpha = (m - 1) / 2.0
    return np.i0(beta * np.sqrt(1 - ((n - alpha) / alpha) ** 2.0)) / np.i0(beta)


def _gaussian(m: int, std: float) -> np.ndarray:
    n = np.arange(0, m) - (m - 1.0) / 2.0
    return np.exp(-(n**2) / (2 * std * std))


def _tukey(m: int, alpha: float) -> np.ndarray:
    if alpha <= 0:
        return np.ones(m)
    if alpha >= 1.0:
        return _general_cosine(m, (0.5, 0.5))
    n = np.arange(0, m)
    width = int(np.floor(alpha * (m - 1) / 2.0))
    n1, n2, n3 = n[0 : width + 1], n[width + 1 : m - width - 1], n[m - width - 1 :]
    w1 = 0.5 * (1 + np.cos(np.pi * (-1 + 2.0 * n1 / alpha / (m - 1))))
    w3 = 0.5 * (1 + np.cos(np.pi * (-2.0 / alpha + 1 + 2.0 * n3 / alpha / (m - 1))))
    return np.concatenate((w1, np.ones(n2.shape), w3))


def _cosine(m: int) -> np.ndarray:
    return np.sin(np.pi / m * (np.arange(0, m) + 0.5))


def _bohman(m: int) -> np.ndarray:
    fac = np.abs(np.linspace(-1, 1, m)[1:-1])
    w = (1 - fac) * np.cos(np.pi * fac) + 1.0 / np.pi * np.sin(np.pi * fac)
    return np.r_[0, w, 0]


@dataclass(frozen=True)
class WindowKind:
    """One registry entry: a symmetric builder and its optional parameter."""

    build: Callable[..., np.ndarray]  # (m, [param]) -> symmetric window of m ≥ 2 points
    param: str | None = None  # name of the parameter, e.g. "beta"
    default: float | None = None  # None with a param = the parameter is required
    scipy_name: str = ""  # what scipy.signal.get_window calls it

    def check_param(self, name: str, value: float) -> None:
        if name in ("gaussian",) and value <= 0:
            raise UsageError(f"window {name}: {self.param} must be > 0, got {value:g}",
                             f"e.g. --window {name}:3")
        if name == "kaiser" and abs(value) > MAX_KAISER_BETA:
            raise UsageError(f"window kaiser: beta {value:g} is out of range (at most "
                             f"{MAX_KAISER_BETA:g} either way: I0(beta) overflows float64 beyond)",
                             "beta 14 already reaches about 135 dB of stopband attenuation")


WINDOWS: dict[str, WindowKind] = {
    "hann": WindowKind(lambda m: _general_cosine(m, (0.5, 0.5)), scipy_name="hann"),
    "hamming": WindowKind(lambda m: _general_cosine(m, (0.54, 0.46)), scipy_name="hamming"),
    "blackman": WindowKind(lambda m: _general_cosine(m, (0.42, 0.50, 0.08)), scipy_name="blackman"),
    "blackmanharris": WindowKind(
        lambda m: _general_cosine(m, (0.35875, 0.48829, 0.14128, 0.01168)),
        scipy_name="blackmanharris",
    ),
    "nuttall": WindowKind(
        lambda m: _general_cosine(m, (0.3635819, 0.4891775, 0.1365995, 0.0106411)),
        scipy_name="nuttall",
    ),
    "flattop": WindowKind(
        lambda m: _general_cosine(
            m, (0.21557895, 0.41663158, 0.277263158, 0.083578947, 0.006947368)
        ),
        scipy_name="flattop",
    ),
    "bartlett": WindowKind(_bartlett, scipy_name="bartlett"),
    "triang": WindowKind(_triang, scipy_name="triang"),
    "rect": WindowKind(lambda m: np.ones(m), scipy_name="boxcar"),
    "cosine": WindowKind(_cosine, scipy_name="cosine"),
    "bohman": WindowKind(_bohman, scipy_name="bohman"),
    "kaiser": WindowKind(_kaiser, param="beta", scipy_name="kaiser"),
    "gaussian": WindowKind(_gaussian, param="std", scipy_name="gaussian"),
    "tukey": WindowKind(_tukey, param="alpha", default=0.5, scipy_name="tukey"),
}
ALIASES = {"hanning": "hann", "boxcar": "rect", "rectangular": "rect", "box": "rect",
           "triangle": "triang", "blackman-harris": "blackmanharris"}
NORMALIZATIONS = ("sum", "peak", "none")
#: refuse absurd sizes before any allocation (a window is held in memory whole)
MAX_SIZE = limits.MAX_TAPS


#: the largest |beta| of a Kaiser window: I0(beta) is finite in float64 up to about 713
MAX_KAISER_BETA = 700.0


def parse_window(spec: str) -> tuple[str, float | None]:
    """``"kaiser:8.6"`` -> ``("kaiser", 8.6)``; ``"hann"`` -> ``("hann", None)``.

    Unknown names get the nearest registered name as a hint.
    """
    name, _, raw = spec.strip().partition(":")
    name = ALIASES.get(name.lower(), name.lower())
    if name not in WINDOWS:
        close = difflib.get_close_matches(name, [*WINDOWS, *ALIASES], n=1)
        hint = f"did you mean {ALIASES.get(close[0], close[0])!r}?" if close else f"known: {', '.join(WINDOWS)}"
        raise UsageError(f"unknown window {spec!r}", hint)
    kind = WINDOWS[name]
    if kind.param is None:
        if raw:
            raise UsageError(f"window {name!r} takes no parameter, got {spec!r}", f"use --window {name}")
        return name, None
    if not raw:
        if kind.default is None:
            raise UsageError(
                f"window {name!r} needs its {kind.param}", f"e.g. --window {name}:8"
            )
        return name, kind.default
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(
            f"window {name!r}: {kind.param} must be a number, got {raw!r}", f"e.g. {name}:8"
        ) from None
    if not np.isfinite(value):
        raise UsageError(f"window {name!r}: {kind.param} must be finite, got {raw!r}",
                         f"e.g. --window {name}:8")
    kind.check_param(name, value)
    return name, value


def catalog() -> list[dict]:
    """The registry as data (``window --list``): each window's name, how it is written, its
    parameter and default, scipy's name and the other names it answers to."""
    rows = []
    for name, kind in WINDOWS.items():
        rows.append({
            "name": name,
            "usage": name if kind.param is None else f"{name}:{kind.param.upper()}",
            "param": kind.param, "default": kind.default,
            "required": kind.param is not None and kind.default is None,
            "scipy": kind.scipy_name,
            "aliases": sorted(alias for alias, target in ALIASES.items() if target == name),
        })
    return rows


def window(name: str, size: int, param: float | None = None, periodic: bool = False) -> np.ndarray:
    """The window ``name`` of ``size`` points, float64, shape ``[size]``.

    Symmetric by default (filter design); ``periodic=True`` is scipy's ``fftbins=True``.
    """
    limits.check("size", size)
    kind = WINDOWS[name]
    if size == 1:
        return np.ones(1)
    m = size + 1 if periodic else size
    with np.errstate(all="ignore"):  # refused just below, with the parameter named
        w = kind.build(m) if kind.param is None else kind.build(m, param)
    if not np.isfinite(w).all():
        raise UsageError(f"window {name}:{param:g} has non-finite coefficients at {size} taps",
                         f"choose another {kind.param} (the window's formula overflows float64)")
    return w[:-1] if periodic else w


def normalize(w: np.ndarray, how: str) -> np.ndarray:
    """Scale coefficients: ``sum`` (unity DC gain), ``peak`` (max |w| = 1) or ``none``."""
    if how == "none":
        return w
    if how == "sum":
        total = float(np.sum(w))
        if total == 0 or not np.isfinite(total):
            raise InputError(
                "the kernel sums to zero, so --normalize sum (unity DC gain) is undefined",
                "use --normalize peak or none",
            )
        return w / total
    if how == "peak":
        peak = float(np.max(np.abs(w)))
        if peak == 0:
            raise InputError("the kernel is all zeros, so --normalize peak is undefined",
                             "use --normalize none")
        return w / peak
    raise UsageError(f"--normalize must be one of {', '.join(NORMALIZATIONS)}, got {how!r}")
