"""ConvSpec: the one owner of the convolution semantics (docs/semantics.md).

Every command (filter, jacobian, grad, explain) and every engine path asks a ``ConvSpec`` for
pads, lengths and tap positions; none recomputes a pad on its own.

Notation (as in docs/semantics.md): k kernel length, d dilation, span K = d·(k−1)+1, N input length,
s stride. The padded input is ``xp`` (length N + left + right); the stride-1 result is computed
on it and then subsampled, ``y = y1[::s]``. The pads come from ``mode``'s table, or are given
explicitly (``pad``: PyTorch's ``padding=``), which ``mode`` then reports as ``explicit``.

- convolve (default):  y[i] = Σ_j w[j] · xp[s·i + K−1 − d·j]   (kernel flipped: numpy.convolve)
- correlate:           y[i] = Σ_j w[j] · xp[s·i + d·j]         (torch.nn.functional.conv1d)
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

from convcli.core import limits
from convcli.errors import InputError, UsageError

MODES = ("same", "valid", "full", "causal")
#: what ``mode`` reports when the pads are given explicitly (``pad``, ``--pad``)
EXPLICIT = "explicit"
#: padding name -> (numpy.pad mode, torch.nn.functional.pad mode)
PADDINGS = {
    "zeros": ("constant", "constant"),
    "reflect": ("reflect", "reflect"),
    "replicate": ("edge", "replicate"),
    "circular": ("wrap", "circular"),
}


@dataclass(frozen=True)
class ConvSpec:
    """What a 1-D convolution does, independent of data, method and device.

    >>> spec = ConvSpec(mode="same")
    >>> spec.pads(31), spec.output_length(1000, 31)
    ((15, 15), 1000)
    >>> ConvSpec(mode="valid", correlate=True).output_length(64, 3)   # Conv1d(2, 16, 3) on 64 samples
    62
    >>> spec = ConvSpec(pad=2, correlate=True)   # Conv1d(..., padding=2)
    >>> spec.mode, spec.pads(3), spec.output_length(10, 3)
    ('explicit', (2, 2), 12)

    ``pad``: the (left, right) pads themselves (a single number pads both ends alike), instead
    of ``mode``'s; ``mode`` must then be left at its default, and reports ``explicit``.
    """

    mode: str = "same"
    padding: str = "zeros"
    stride: int = 1
    dilation: int = 1
    correlate: bool = False
    groups: int = 1
    pad: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.pad is not None:
            object.__setattr__(self, "pad", _pad_pair(self.pad))  # frozen: normalized once
            if self.mode not in ("same", EXPLICIT):
                raise UsageError(f"--pad sets the pads itself, and --mode {self.mode} sets them "
                                 "too", "give one of --pad and --mode")
            object.__setattr__(self, "mode", EXPLICIT)
        elif self.mode == EXPLICIT:
            raise UsageError("mode 'explicit' needs the pads themselves",
                             "give pad=(left, right), or --pad L:R")
        if self.mode not in (*MODES, EXPLICIT):
            raise UsageError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.padding not in PADDINGS:
            raise UsageError(
                f"--padding must be one of {', '.join(PADDINGS)}, got {self.padding!r}"
            )
        for name in ("stride", "dilation", "groups"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise UsageError(f"--{name} must be a whole number ≥ 1, got {value!r}",
                                 f"--{name} 1 is the plain convolution")
            limits.check(name, value)

    # --- lengths and pads -------------------------------------------------------------
    def span(self, k: int) -> int:
        """K = d·(k−1)+1: how many input samples one output sample looks at."""
        return self.dilation * (k - 1) + 1

    def pads(self, k: int) -> tuple[int, int]:
        """(left, right) pad for a kernel of length k: the explicit ``pad``, else the mode's
        (the SPEC table)."""
        if self.pad is not None:
            return self.pad
        K = self.span(k)
        if self.mode == "same":
            left = (K - 1) // 2 if self.correlate else K // 2
            return left, K - 1 - left
        if self.mode == "valid":
            return 0, 0
        if self.mode == "full":
            return K - 1, K - 1
        return K - 1, 0  # causal

    def stride1_length(self, n: int, k: int) -> int:
        """Length of the result before ``--stride`` subsamples it (may be ≤ 0 when invalid)."""
        left, right = self.pads(k)
        return n + left + right - self.span(k) + 1

    def output_length(self, n: int, k: int) -> int:
        """L_out = ⌊(N + left + right − K)/s⌋ + 1, the torch formula with explicit pads."""
        length1 = self.stride1_length(n, k)
        return 0 if length1 <= 0 else (length1 - 1) // self.stride + 1

    def check(self, n: int, k: int) -> None:
        """Refuse, with a hint, a signal/kernel pair these options cannot convolve."""
        if k < 1:
            raise InputError("the kernel is empty", "give at least one coefficient")
        if n < 1:
            raise InputError("the signal has no samples", "check the input file")
        K = self.span(k)
        left, right = self.pads(k)
        if self.stride1_length(n, k) <= 0:
            if self.pad is None:
                raise InputError(
                    f"kernel span {K} (k={k}, dilation={self.dilation}) is longer than the "
                    f"signal ({n} samples) in {self.mode} mode",
                    "use --mode same/full/causal, a shorter --size or a smaller --dilation",
                )
            raise InputError(
                f"kernel span {K} (k={k}, dilation={self.dilation}) is longer than the padded "
                f"signal ({n} + {left} + {right} = {n + left + right} samples) with --pad "
                f"{left}:{right}",
                "use a larger --pad, a shorter --size or a smaller --dilation",
            )
        shorter = "a smaller --pad" if self.pad is not None else "a shorter kernel"
        longest = max(left, right)
        if self.padding == "reflect" and longest > n - 1:
            raise InputError(
                f"reflect padding needs {longest} samples but the signal has only {n} "
                f"(reflect can pad at most N−1 = {n - 1})",
                f"use --padding replicate or zeros, or {shorter}",
            )
        if self.padding == "circular" and longest > n:
            raise InputError(
                f"circular padding needs {longest} samples but the signal has only {n}",
                f"use --padding replicate or zeros, or {shorter}",
            )

    def summary(self, k: int) -> dict:
        """The options and the pads for a kernel of length k, as ``--json`` shows them.

        >>> ConvSpec(mode="causal").summary(3)["pads"]
        [2, 0]
        """
        return {"mode": self.mode, "padding": self.padding, "stride": self.stride,
                "dilation": self.dilation, "correlate": self.correlate, "groups": self.groups,
                "pads": list(self.pads(k))}

    # --- tap positions (used by the closed-form Jacobian and by explain) ----------------
    def tap(self, i: int, j: int, k: int) -> int:
        """Index into the *padded* input that output i reads through tap j."""
        if self.correlate:
            return self.stride * i + self.dilation * j
        return self.stride * i + self.span(k) - 1 - self.dilation * j

    def source(self, m: int, n: int, k: int) -> int | None:
        """Which sample of the unpadded input (length n) padded position m holds; None = zero."""
        t = m - self.pads(k)[0]
        if 0 <= t < n:
            return t
        if self.padding == "zeros":
            return None
        if self.padding == "replicate":
            return min(max(t, 0), n - 1)
        if self.padding == "circular":
            return t % n
        return -t if t < 0 else 2 * (n - 1) - t  # reflect (a single fold: pads ≤ n−1)

    def index_expr(self, k: int) -> str:
        """The input index read by y[i] through tap j, e.g. ``2·i + 15 − j`` (no padding shift)."""
        left = self.pads(k)[0]
        s, d = self.stride, self.dilation
        offset = -left if self.correlate else self.span(k) - 1 - left
        parts = ["i" if s == 1 else f"{s}·i"]
        if offset:
            parts.append(f"{'+' if offset > 0 else '−'} {abs(offset)}")
        parts.append(f"{'+' if self.correlate else '−'} {'j' if d == 1 else f'{d}·j'}")
        return " ".join(parts)

    def formula(self, k: int) -> str:
        """y[i] for these options in one line, e.g. ``y[i] = Σ_{j=0}^{30} w[j]·x[i + 15 − j]``."""
        return f"y[i] = Σ_{{j=0}}^{{{k - 1}}} w[j]·x[{self.index_expr(k)}]"


def _pad_pair(pad) -> tuple[int, int]:
    """``P`` or ``(L, R)`` as ``(L, R)``, refused unless whole numbers ≥ 0 (torch's ``F.pad``
    would crop for a negative one; ``nn.Conv1d`` refuses it)."""
    pair = tuple(pad) if isinstance(pad, (tuple, list)) else (pad, pad)
    whole = len(pair) == 2 and all(
        isinstance(p, numbers.Integral) and not isinstance(p, bool) and p >= 0 for p in pair)
    if not whole:
        raise UsageError(f"--pad takes whole numbers ≥ 0, P or L:R (pad=P or (L, R)), got {pad!r}",
                         "e.g. --pad 2, or --pad 1:3 for 1 sample on the left and 3 on the right")
    return int(pair[0]), int(pair[1])
