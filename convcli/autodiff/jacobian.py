"""The ``jacobian`` command's core: one channel pair, closed form or autograd, checked if asked.

``channel_pair`` reduces a conv to one (output, input) channel pair; ``jacobian`` computes
that pair's Jacobian (dense block or banded) by the closed form (``autodiff.closed``) or by
autograd (``autodiff.autograd``) of the engine's ``conv1d``, and ``compare`` checks one route
against the other; ``jacobian_formula`` says the structure in words.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import torch

from convcli.autodiff.autograd import autograd_banded, autograd_jacobian
from convcli.autodiff.banded import Banded
from convcli.autodiff.closed import (
    band_offsets,
    input_jacobian,
    input_jacobian_banded,
    kernel_jacobian,
    slice_bounds,
)
from convcli.autodiff.sizing import refuse_dense
from convcli.core.spec import ConvSpec
from convcli.errors import UsageError

WRT = ("input", "kernel")
#: largest |autograd − closed form| accepted, relative to max(1, max |J|), by dtype
TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-9}


# --- one channel pair of a conv --------------------------------------------------------------
@dataclass(frozen=True)
class Pair:
    """One (output channel, input channel) pair of a conv, reduced to a single-output conv.

    ``x [Cg, N]`` are the input channels of the output's group, ``weight [1, Cg, k]`` its
    kernel rows, ``local`` the position of the chosen input channel among them, ``spec`` the
    conv options with ``groups = 1``, ``bias`` the output's bias ``[1]`` or None (it adds a
    constant: neither Jacobian depends on it, and the autograd route runs with it to show so).
    """

    x: torch.Tensor
    weight: torch.Tensor
    local: int
    spec: ConvSpec
    output: int
    input: int
    bias: torch.Tensor | None = None

    @property
    def row(self) -> torch.Tensor:
        """``[N]``: the chosen input channel."""
        return self.x[self.local]

    @property
    def w(self) -> torch.Tensor:
        """``[k]``: the kernel row linking the pair, as the user wrote it."""
        return self.weight[0, self.local]


def channel_pair(x: torch.Tensor, weight: torch.Tensor, spec: ConvSpec,
                 output: int, input: int, bias: torch.Tensor | None = None) -> Pair:
    """Select output channel ``output`` and input channel ``input`` of a conv.

    Shape: ``x [C, N]``, ``weight [O, C/G, k]`` (``spec.groups = G``), ``bias [O]`` -> ``Pair``.

    >>> p = channel_pair(torch.zeros(4, 8), torch.zeros(6, 2, 3), ConvSpec(groups=2), 5, 3)
    >>> p.x.shape, p.weight.shape, p.local
    (torch.Size([2, 8]), torch.Size([1, 2, 3]), 1)
    """
    channels = x.shape[0]
    out_channels, per_group, _ = weight.shape
    if not 0 <= output < out_channels:
        raise UsageError(f"--channel: output channel {output} does not exist "
                         f"(the conv has {out_channels}: 0…{out_channels - 1})")
    if not 0 <= input < channels:
        raise UsageError(f"--channel: input channel {input} does not exist "
                         f"(the signal has {channels}: 0…{channels - 1})")
    group = output // (out_channels // spec.groups)
    first = group * per_group
    if not first <= input < first + per_group:
        raise UsageError(
            f"--channel {output}:{input}: output channel {output} reads input channels "
            f"{first}…{first + per_group - 1} only (--groups {spec.groups}), so J would be all zeros",
            f"pick --channel {output}:C with C in {first}…{first + per_group - 1}",
        )
    return Pair(x[first : first + per_group], weight[output : output + 1], input - first,
                replace(spec, groups=1), output, input,
                None if bias is None else bias[output : output + 1])


def pair_functions(pair: Pair, method: str = "auto"):
    """``(f_input, f_kernel)``: ``y[N_out]`` of the pair's output as a function of one row.

    ``f_input(x_row [N])`` replaces the chosen input channel; ``f_kernel(w_row [k])`` the
    kernel row. Both run the engine's differentiable ``conv1d``.
    """
    from convcli.engines.torch_backend import conv1d

    channels = pair.x.shape[0]
    pick_x = torch.zeros(channels, 1, dtype=pair.x.dtype, device=pair.x.device)
    pick_x[pair.local] = 1
    pick_w = torch.zeros(1, channels, 1, dtype=pair.weight.dtype, device=pair.weight.device)
    pick_w[0, pair.local] = 1

    def f_input(row: torch.Tensor) -> torch.Tensor:
        x = row[None] if channels == 1 else pair.x * (1 - pick_x) + pick_x * row
        return conv1d(x[None], pair.weight, pair.spec, method, pair.bias)[0, 0]

    def f_kernel(row: torch.Tensor) -> torch.Tensor:
        weight = row[None, None] if channels == 1 else pair.weight * (1 - pick_w) + pick_w * row
        return conv1d(pair.x[None], weight, pair.spec, method, pair.bias)[0, 0]

    return f_input, f_kernel


# --- check ---------------------------------------------------------------------------------------
@dataclass
class CheckResult:
    """Autograd against the closed form: the largest |difference| and the verdict."""

    max_abs_diff: float
    tolerance: float
    ok: bool
    autograd: str = ""


def compare(closed: torch.Tensor | Banded, auto: torch.Tensor | Banded) -> CheckResult:
    """Largest |closed − auto| over every entry; tolerance by dtype, relative to max |J|.

    >>> compare(torch.eye(2), torch.eye(2) + 1e-7).ok
    True
    """
    if isinstance(closed, Banded):
        assert isinstance(auto, Banded) and torch.equal(closed.offsets, auto.offsets)
        diff = float((closed.bands - auto.bands).abs().max()) if closed.bands.numel() else 0.0
        n = closed.shape[1]
        keys = torch.cat([closed.edge_rows * n + closed.edge_cols, auto.edge_rows * n + auto.edge_cols])
        if keys.numel():
            unique, inverse = torch.unique(keys, return_inverse=True)
            delta = closed.edge_vals.new_zeros(unique.numel())
            delta.index_add_(0, inverse, torch.cat([closed.edge_vals, -auto.edge_vals]))
            diff = max(diff, float(delta.abs().max()))
        values = torch.cat([closed.bands.flatten(), closed.edge_vals])
        dtype = closed.bands.dtype
    else:
        diff = float((closed - auto).abs().max()) if closed.numel() else 0.0
        values, dtype = closed, closed.dtype
    scale = max(1.0, float(values.abs().max())) if values.numel() else 1.0
    tolerance = TOLERANCE.get(dtype, 1e-4) * scale
    return CheckResult(diff, tolerance, diff <= tolerance)


# --- the jacobian command's core -------------------------------------------------------------
@dataclass
class JacobianResult:
    """What ``jacobian()`` computed: the matrix (dense block or ``Banded``) and how."""

    matrix: torch.Tensor | Banded
    wrt: str
    full_shape: tuple[int, int]
    rows: tuple[int, int]
    cols: tuple[int, int]
    pair: tuple[int, int]
    method: str
    check: CheckResult | None = None
    details: dict = field(default_factory=dict)


def jacobian(
    pair: Pair,
    wrt: str = "input",
    *,
    rows: slice | None = None,
    cols: slice | None = None,
    banded: bool = False,
    via: str = "auto",
    check: bool = False,
    method: str = "auto",
    memory_limit: int | None = None,
) -> JacobianResult:
    """The Jacobian of one channel pair, closed form or autograd, checked if asked.

    Args:
        pair: from ``channel_pair``.
        wrt: ``input`` (``[L_out, N]``) or ``kernel`` (``[L_out, k]``).
        rows, cols: slices of the block to compute (dense only).
        banded: return a ``Banded`` (input only; scales to N = 10⁶).
        via: ``auto`` (closed form: it exists for every option and is cheapest), ``closed``
            or ``autograd``.
        check: also compute the other route and compare (``result.check``).
        method: the engine's ``direct``/``fft``/``auto`` for the autograd route.
        memory_limit: bytes to plan with (default: the machine's available memory).

    >>> p = channel_pair(torch.arange(5.0)[None], torch.ones(1, 1, 3), ConvSpec(mode="valid"), 0, 0)
    >>> r = jacobian(p, "kernel", check=True)
    >>> r.matrix.tolist(), r.method, r.check.ok
    ([[2.0, 1.0, 0.0], [3.0, 2.0, 1.0], [4.0, 3.0, 2.0]], 'closed form', True)
    """
    if wrt not in WRT:
        raise UsageError(f"--wrt must be input or kernel, got {wrt!r}")
    if via not in ("auto", "closed", "autograd"):
        raise UsageError(f"--via must be auto, closed or autograd, got {via!r}")
    routes = Routes(pair, wrt, banded, rows, cols, method)
    if not banded:
        (r0, r1), (c0, c1) = routes.block
        refuse_dense(r1 - r0, c1 - c0, pair.x.element_size(),
                     2 if check or via == "autograd" else 1, memory_limit)
    details: dict = {}
    with torch.no_grad():
        first = "autograd" if via == "autograd" else "closed"
        matrix = routes.run(first, details)
        result = JacobianResult(matrix, wrt, routes.shape, *routes.block, (pair.output, pair.input),
                                "autograd" if first == "autograd" else "closed form", None, details)
        if check:
            second = "closed" if first == "autograd" else "autograd"
            other = routes.run(second, details)
            result.check = compare(*((other, matrix) if second == "closed" else (matrix, other)))
            result.check.autograd = details["autograd"]
        return result


class Routes:
    """The two ways to one pair's Jacobian block: ``run("closed")`` and ``run("autograd")``."""

    def __init__(self, pair: Pair, wrt: str, banded: bool, rows: slice | None,
                 cols: slice | None, method: str):
        spec, k, n = pair.spec, pair.weight.shape[-1], pair.x.shape[-1]
        spec.check(n, k)
        length = spec.output_length(n, k)
        self.shape = (length, n if wrt == "input" else k)
        if banded:
            if wrt != "input":
                raise UsageError("--format banded is for --wrt input; the kernel Jacobian "
                                 f"[{length}, {k}] is already compact", "use --format dense")
            if rows is not None or cols is not None:
                raise UsageError("--rows/--cols slice a dense Jacobian",
                                 "drop them, or use --format dense")
        self.block = ((0, length), (0, n)) if banded else (slice_bounds(rows, length),
                                                           slice_bounds(cols, self.shape[1]))
        self.pair, self.wrt, self.banded, self.method = pair, wrt, banded, method

    def closed(self):
        pair, spec, n = self.pair, self.pair.spec, self.pair.x.shape[-1]
        rows, cols = (slice(*self.block[0]), slice(*self.block[1]))
        if self.banded:
            return input_jacobian_banded(pair.w, n, spec)
        if self.wrt == "input":
            return input_jacobian(pair.w, n, spec, rows, cols)
        return kernel_jacobian(pair.row, pair.weight.shape[-1], spec, rows, cols)

    def autograd(self):
        pair = self.pair
        f_input, f_kernel = pair_functions(pair, self.method)
        if self.banded:
            return autograd_banded(f_input, pair.row, pair.weight.shape[-1], pair.spec)
        f, primal = (f_input, pair.row) if self.wrt == "input" else (f_kernel, pair.w)
        return autograd_jacobian(f, primal, self.shape[0], slice(*self.block[0]),
                                 slice(*self.block[1]))

    def run(self, name: str, details: dict):
        """The matrix by route ``name``, its seconds (and autograd's mode) into ``details``."""
        started = time.perf_counter()
        if name == "autograd":
            with torch.enable_grad():
                out, details["autograd"] = self.autograd()
        else:
            out = self.closed()
        details[f"{name}_seconds"] = time.perf_counter() - started
        return out


# --- words ---------------------------------------------------------------------------------------
def _linear(terms: list[tuple[int, str]], constant: int) -> str:
    """``[(1, "i"), (-2, "j")], 3`` -> ``i − 2·j + 3``."""
    text = ""
    for coefficient, name in terms:
        if coefficient == 0:
            continue
        magnitude = "" if abs(coefficient) == 1 else f"{abs(coefficient)}·"
        sign = ("−" if coefficient < 0 else "") if not text else (" − " if coefficient < 0 else " + ")
        text += f"{sign}{magnitude}{name}"
    if constant or not text:
        text += (f"{constant}" if not text else f" {'−' if constant < 0 else '+'} {abs(constant)}")
    return text


def _band_line(spec: ConvSpec, k: int, taps=None) -> str:
    """``banded: D non-zero diagonals at j − i ∈ {...}``: the diagonals a non-zero tap is on."""
    offsets, tap_of = band_offsets(k, spec)
    shown = offsets.tolist()
    zero = 0
    if taps is not None:
        values = [float(v) for v in (taps.tolist() if hasattr(taps, "tolist") else taps)]
        shown = [o for o, t in zip(shown, tap_of.tolist()) if values[t] != 0]
        zero = k - len(shown)
    listed = (", ".join(map(str, shown)) if len(shown) <= 8
              else f"{shown[0]}, {shown[1]}, …, {shown[-1]}")
    diag = "j − i" if spec.stride == 1 else f"j − {spec.stride}·i"
    count = len(shown)
    text = f"banded: {count} non-zero diagonal{'s' if count != 1 else ''} at {diag} ∈ {{{listed}}}"
    if zero:
        text += f" (of {k}: {zero} tap{'s are' if zero > 1 else ' is'} 0)"
    if spec.stride != 1:
        text += f" (stride {spec.stride}: each row moves {spec.stride} columns)"
    return text


def jacobian_formula(spec: ConvSpec, k: int, wrt: str = "input", taps=None) -> list[str]:
    """The Jacobian's structure in words: the entry formula, its band, what padding adds.

    ``taps`` (the ``k`` coefficients of the pair, when known) counts only the diagonals whose
    tap is non-zero: hann(5) has zeros at both ends, so 3 of its 5 diagonals are non-zero.

    >>> jacobian_formula(ConvSpec(mode="valid"), 3)[0]
    'J[i, j] = ∂y[i]/∂x[j] = w[i − j + 2] where 0 ≤ i − j + 2 ≤ 2, else 0'
    >>> jacobian_formula(ConvSpec(mode="causal"), 3)[0]
    'J[i, j] = ∂y[i]/∂x[j] = w[i − j] where 0 ≤ i − j ≤ 2, else 0'
    >>> jacobian_formula(ConvSpec(mode="valid", correlate=True), 3, "kernel")[0]
    'J[i, j] = ∂y[i]/∂w[j] = x[i + j]'
    >>> jacobian_formula(ConvSpec(), 5, taps=[0.0, 0.5, 1.0, 0.5, 0.0])[1]
    'banded: 3 non-zero diagonals at j − i ∈ {-1, 0, 1} (of 5: 2 taps are 0)'
    """
    s, d = spec.stride, spec.dilation
    left, right = spec.pads(k)
    K = spec.span(k)
    if wrt == "kernel":
        lines = [f"J[i, j] = ∂y[i]/∂w[j] = x[{spec.index_expr(k)}]",
                 "windows of the padded input, one row per output sample, w in the order written"
                 + ("" if spec.correlate else " (so each window is read backwards: convolve)")]
    else:
        if spec.correlate:  # column m = s·i + d·t − left  ->  t = (m − s·i + left)/d
            index = _linear([(1, "j"), (-s, "i")], left)
        else:  # m = s·i + K − 1 − d·t − left  ->  t = (s·i + K − 1 − left − m)/d
            index = _linear([(s, "i"), (-1, "j")], K - 1 - left)
        if d == 1:
            lines = [f"J[i, j] = ∂y[i]/∂x[j] = w[{index}] where 0 ≤ {index} ≤ {k - 1}, else 0"]
        else:
            lines = [(f"J[i, j] = ∂y[i]/∂x[j] = w[({index})/{d}] where {d} divides {index} and "
                      f"0 ≤ ({index})/{d} ≤ {k - 1}, else 0")]
        lines.append(_band_line(spec, k, taps))
    pads = f"pads {left} left, {right} right"
    sides = {  # what the first rows (left pad) and the last rows (right pad) gain
        "replicate": ("column 0", "column N−1"),
        "reflect": (f"columns 1…{left}", f"columns N−{right + 1}…N−2"),
        "circular": (f"columns N−{left}…N−1", f"columns 0…{right - 1}"),
    }
    if spec.padding == "zeros":
        fold = "taps that fall in the pad read 0, so rows near the edges have fewer terms"
    else:
        named = [f"the first rows at {sides[spec.padding][0]}"] if left else []
        named += [f"the last rows at {sides[spec.padding][1]}"] if right else []
        fold = "the taps that fall in the pad fold back: " + " and ".join(named)
        fold += " (corner blocks)" if spec.padding == "circular" else ""
    folds = {spec.padding: fold}
    lines.append(f"{spec.padding} padding ({pads}): {folds[spec.padding]}" if left or right
                 else "no padding (valid): every row has all k taps")
    return lines
