"""PNG pictures: a kernel (taps and magnitude response in dB) and a matrix (heatmap).

matplotlib is an optional extra (``pip install 'convcli[plot]'``), imported only when a
picture is drawn, through its object API (``Figure`` + Agg canvas): no pyplot, no global
backend state, safe in threads and without a display. Files are written atomically.

Sizes are fixed (no tight bounding box), so a picture is always ``WINDOW_SIZE`` or
``MATRIX_SIZE`` pixels.
"""

from __future__ import annotations

import numpy as np

from convcli.errors import ConvcliError, UsageError

DPI = 100
#: (width, height) in pixels
WINDOW_SIZE = (900, 640)
MATRIX_SIZE = (720, 640)
#: the magnitude plot shows at most this far below its peak
FLOOR_DB = 150.0


def _matplotlib():
    """``(Figure, FigureCanvasAgg)``, or a clear error naming the extra that provides them."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ConvcliError(
            "plotting needs matplotlib, which is not installed",
            "pip install 'convcli[plot]' (or pip install matplotlib)",
        ) from None
    return Figure, FigureCanvasAgg


def _check_png(path: str) -> None:
    if path != "-" and not path.lower().endswith(".png"):
        raise UsageError(f"pictures are written as PNG, and {path!r} does not end in .png",
                         "name the file FILE.png")


def _save(fig, canvas_type, path: str) -> None:
    from convcli.io.atomic import atomic_output

    canvas_type(fig)
    with atomic_output(path) as handle:
        fig.savefig(handle, format="png", dpi=DPI)


def plot_window(w, rate: float | None, path: str, *, title: str | None = None,
                nfft: int | None = None) -> None:
    """Write a PNG of the kernel ``w [k]``: taps over time above, ``|H(f)|`` in dB below.

    ``rate`` in Hz puts time in ms and frequency in Hz (None: samples and cycles/sample). The
    response is normalized to its peak (0 dB) and floored ``FLOOR_DB`` below it.

    Shape: ``w [k] -> PNG of WINDOW_SIZE pixels at path`` (``-`` = stdout).
    """
    from convcli.core.response import spectrum

    _check_png(path)
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 1:
        raise UsageError(f"plot_window draws one 1-D kernel, got shape {w.shape}")
    Figure, Canvas = _matplotlib()
    f, mag = spectrum(w, nfft)
    peak = float(mag.max())
    with np.errstate(divide="ignore"):
        db = 20 * np.log10(mag / peak) if peak > 0 else np.full_like(mag, -FLOOR_DB)
    db = np.maximum(db, -FLOOR_DB)
    n = np.arange(w.size)

    fig = Figure(figsize=(WINDOW_SIZE[0] / DPI, WINDOW_SIZE[1] / DPI), dpi=DPI,
                 layout="constrained")
    top, bottom = fig.subplots(2, 1, height_ratios=(1, 1.3))
    x = n / rate * 1000 if rate else n
    top.axhline(0, color="0.6", linewidth=0.8)
    if w.size <= 128:
        top.vlines(x, 0, w, color="C0", linewidth=1.2)
        top.plot(x, w, "o", color="C0", markersize=3)
    else:
        top.plot(x, w, color="C0", linewidth=1.2)
    top.set_xlabel("time (ms)" if rate else "tap n")
    top.set_ylabel("w[n]")
    top.set_title(title or f"{w.size} taps")
    top.grid(alpha=0.3)

    fx = f * rate if rate else f
    bottom.plot(fx, db, color="C1", linewidth=1.0)
    for level, style in ((-3, ":"), (-6, "--")):
        bottom.axhline(level, color="0.5", linestyle=style, linewidth=0.8, label=f"{level} dB")
    bottom.set_xlim(0, fx[-1])
    bottom.set_ylim(max(-FLOOR_DB, float(db.min())) - 5, 5)
    bottom.set_xlabel("frequency (Hz)" if rate else "frequency (cycles/sample)")
    bottom.set_ylabel("magnitude (dB re peak)")
    bottom.legend(loc="upper right", fontsize=8)
    bottom.grid(alpha=0.3)
    _save(fig, Canvas, path)


#: the axes and the colour bar of a Jacobian's picture: (x label, y label, value) per --wrt
JACOBIAN_LABELS = {
    "input": ("j: input sample x[j]", "i: output sample y[i]", "J[i, j] = ∂y[i]/∂x[j]"),
    "kernel": ("j: tap w[j]", "i: output sample y[i]", "J[i, j] = ∂y[i]/∂w[j]"),
}


def plot_matrix(J, path: str, *, title: str | None = None, wrt: str | None = None,
                origin: tuple[int, int] = (0, 0)) -> None:
    """Write a PNG heatmap of the matrix ``J [rows, cols]`` with a colour bar
    (``matrix_figure``).

    Shape: ``J [I, J] -> PNG of MATRIX_SIZE pixels at path`` (``-`` = stdout).
    """
    _check_png(path)
    fig, canvas = matrix_figure(J, title=title, wrt=wrt, origin=origin)
    _save(fig, canvas, path)


def matrix_figure(J, *, title: str | None = None, wrt: str | None = None,
                  origin: tuple[int, int] = (0, 0)):
    """``(Figure, canvas type)`` of the heatmap of ``J``: rows down the y axis (``i``),
    columns along the x axis (``j``), as the matrix is printed, numbered from ``origin``
    (the first row and column of a ``--rows``/``--cols`` block). The colour scale is
    symmetric about 0 (blue negative, red positive), so zeros are white and a banded
    Jacobian shows its band; ``wrt`` (input | kernel) names the axes and the colour bar's
    quantity (``JACOBIAN_LABELS``)."""
    J = np.asarray(J, dtype=np.float64)
    if J.ndim != 2 or J.size == 0:
        raise UsageError(f"plot_matrix draws a non-empty 2-D matrix, got shape {J.shape}")
    Figure, Canvas = _matplotlib()
    finite = J[np.isfinite(J)]
    limit = float(np.max(np.abs(finite))) if finite.size else 1.0
    limit = limit or 1.0
    fig = Figure(figsize=(MATRIX_SIZE[0] / DPI, MATRIX_SIZE[1] / DPI), dpi=DPI,
                 layout="constrained")
    ax = fig.subplots()
    r0, c0 = origin
    image = ax.imshow(J, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto",
                      interpolation="nearest" if max(J.shape) <= 512 else "antialiased",
                      extent=(c0 - 0.5, c0 + J.shape[1] - 0.5, r0 + J.shape[0] - 0.5, r0 - 0.5))
    xlabel, ylabel, value = JACOBIAN_LABELS.get(wrt, ("j", "i", "value"))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"{J.shape[0]} × {J.shape[1]}")
    fig.colorbar(image, ax=ax, label=value)
    return fig, Canvas
