"""``convcli explain``: what a 1-D convolution with given options does, in words and numbers.

Everything here is asked of the ``ConvSpec`` (pads, lengths, ``tap``, ``source``, ``formula``);
nothing recomputes a pad. Pure Python and numpy: no torch, so ``explain`` starts fast.

Notation as in docs/semantics.md: N input length, k taps, d dilation, K = d·(k−1)+1, s stride. ``x[m]``
with m outside 0…N−1 denotes the pad value (0, a reflection, the edge sample, or a wrap).

    >>> from convcli.core.spec import ConvSpec
    >>> e = explain(ConvSpec(mode="same"), 8, 3)
    >>> e["output_length"], e["pads"], e["formula"]
    (8, [1, 1], 'y[i] = Σ_{j=0}^{2} w[j]·x[i + 1 − j]')
    >>> e["example"]["terms"]["0"]
    ['w[0]·x[1]', 'w[1]·x[0]', 'w[2]·0 (pad x[-1])']
"""

from __future__ import annotations

from typing import Any

import numpy as np

from convcli.core.spec import PADDINGS, ConvSpec

#: worked examples use the real N and k when they are this small, else a small stand-in
EXAMPLE_MAX_N = 12
EXAMPLE_MAX_K = 5
#: the JSON lists the Jacobian's diagonals tap by tap up to this many taps
MAX_LISTED_TAPS = 1000

PAD_WORDS = {
    "zeros": "0",
    "reflect": "x[−m] left, x[2(N−1)−m] right (mirror about the edge sample, numpy 'reflect')",
    "replicate": "x[0] left, x[N−1] right (the edge sample repeated, numpy 'edge')",
    "circular": "x[m mod N] (the signal wrapped around, numpy 'wrap')",
}


def explain(spec: ConvSpec, n: int, k: int, coefficients: np.ndarray | None = None,
            bias: float | None = None) -> dict[str, Any]:
    """Everything ``convcli explain`` prints, as a JSON-able dict.

    Args:
        spec: the convolution options.
        n: input length N (samples per channel).
        k: kernel length (taps).
        coefficients: ``[k]`` kernel used for the worked example when it is small enough;
            None uses ``w = [1, 2, …, k]`` (distinct values, so the flip is visible).
        bias: the bias b added to every y[i] (``--bias``), or None.

    Raises ``InputError`` (from ``spec.check``) when these options cannot convolve N samples.
    """
    spec.check(n, k)
    left, right = spec.pads(k)
    span = spec.span(k)
    s, d = spec.stride, spec.dilation
    length = spec.output_length(n, k)
    first_interior, last_interior = _interior_rows(spec, n, k)
    return {
        "command": "explain",
        "operation": "correlation" if spec.correlate else "convolution",
        "operation_words": _operation_words(spec),
        "spec": {"mode": spec.mode, "padding": spec.padding, "stride": s, "dilation": d,
                 "correlate": spec.correlate, "groups": spec.groups,
                 "pad": None if spec.pad is None else list(spec.pad)},
        "input_length": n,
        "taps": k,
        "span": span,
        "pads": [left, right],
        "padded_length": n + left + right,
        "stride1_length": spec.stride1_length(n, k),
        "output_length": length,
        "length_formula": f"⌊(N + {left} + {right} − K)/s⌋ + 1 = ⌊({n} + {left} + {right} − {span})/{s}⌋"
        f" + 1 = {length}",
        "formula": spec.formula(k) + ("" if bias is None else f" + {number_text(bias)}"),
        "bias": bias,
        "index_expr": spec.index_expr(k),
        "pad_value": PAD_WORDS[spec.padding],
        "equivalents": equivalents(spec, k, bias),
        "interior_rows": [first_interior, last_interior],
        "jacobian_input": _jacobian_input(spec, n, k, length, first_interior, last_interior,
                                          bias),
        "jacobian_kernel": _jacobian_kernel(spec, k, length, left),
        "channels": "Each channel is filtered on its own (depthwise) by a (k,) or (C, k) kernel; "
        "with an (O, C/G, k) kernel and --groups G, output channel o adds this sum over the C/G "
        "input channels of its group.",
        "example": example(spec, n, k, coefficients, bias),
    }


def input_index(spec: ConvSpec, i: int, j: int, k: int) -> int:
    """The unpadded input index y[i] reads through tap j (negative or ≥ N: a pad value)."""
    return spec.tap(i, j, k) - spec.pads(k)[0]


def _operation_words(spec: ConvSpec) -> str:
    if spec.correlate:
        return ("cross-correlation: the kernel slides over the input as written, w[0] meets the "
                "earliest sample of the window (torch.nn.functional.conv1d, which PyTorch calls "
                "convolution)")
    return ("true convolution: the kernel is flipped, w[0] meets the latest sample of the window "
            "(numpy.convolve, scipy.signal.convolve, lfilter in causal mode)")


def equivalents(spec: ConvSpec, k: int, bias: float | None = None) -> dict[str, str]:
    """The same numbers from numpy/scipy/torch, as expressions of ``x`` and ``w`` (1-D float
    arrays: numpy's for ``numpy`` and ``scipy``, tensors for the others; ``np``, ``torch``,
    ``F`` = ``torch.nn.functional``). Each evaluates to y (the suite evaluates them).

    ``torch`` pads by hand and correlates (any options); ``Conv1d`` is the one torch call with
    its own ``padding=`` where there is one (a symmetric pad, or ``'same'``); ``einsum`` is the
    sum written out: windows of the padded signal (``unfold``), every d-th sample of each, dotted
    with the taps. A ``bias`` b is added to each (``bias=`` in torch's calls).

    >>> print(equivalents(ConvSpec(pad=(1, 2), correlate=True, dilation=2), 3)["einsum"])
    torch.einsum("bcnk,k->bcn", F.pad(x[None, None], (1, 2), mode='constant').unfold(2, 5, 1)[..., ::2], w)[0, 0]
    """
    left, right = spec.pads(k)
    s, d, span = spec.stride, spec.dilation, spec.span(k)
    t_pad = PADDINGS[spec.padding][1]
    plus = "" if bias is None else f" + {float(bias)!r}"  # exact: repr reads back the same
    tensor_bias = "" if bias is None else f", x.new_tensor([{float(bias)!r}])"
    stride = f"[::{s}]" if s > 1 else ""
    options = f"{f', stride={s}' if s > 1 else ''}{f', dilation={d}' if d > 1 else ''}"
    weight = "w[None, None]" if spec.correlate else "w.flip(-1)[None, None]"
    padded = (f"F.pad(x[None, None], ({left}, {right}), mode='{t_pad}')" if left or right
              else "x[None, None]")
    wd = "w" if d == 1 else f"np.insert(w, np.repeat(np.arange(1, len(w)), {d - 1}), 0)"
    w_np = wd if spec.correlate else f"{wd}[::-1]"
    out = {
        "numpy": (f"np.correlate(np.pad(x, ({left}, {right}), mode='{PADDINGS[spec.padding][0]}'), "
                  f"{w_np}, mode='valid'){stride}{plus}"),
        "torch": f"F.conv1d({padded}, {weight}{tensor_bias}{options})[0, 0]",
    }
    conv1d = _torch_padding_call(spec, k, weight, options, tensor_bias)
    if conv1d:
        out["Conv1d"] = conv1d
    taps = "" if d == 1 else f"[..., ::{d}]"
    out["einsum"] = (f'torch.einsum("bcnk,k->bcn", {padded}.unfold(2, {span}, {s}){taps}, '
                     f'{"w" if spec.correlate else "w.flip(-1)"})[0, 0]{plus}')
    if spec.padding == "zeros" and d == 1:
        if not spec.correlate and spec.mode in ("full", "valid", "same"):
            out["scipy"] = f"scipy.signal.convolve(x, w, mode='{spec.mode}'){stride}{plus}"
        elif not spec.correlate and spec.mode == "causal":
            out["scipy"] = f"scipy.signal.lfilter(w, 1, x){stride}{plus}"
        elif spec.correlate and spec.mode == "valid":
            out["scipy"] = f"scipy.signal.correlate(x, w, mode='valid'){stride}{plus}"
    return out


def _torch_padding_call(spec: ConvSpec, k: int, weight: str, options: str,
                        tensor_bias: str) -> str | None:
    """torch's own ``padding=`` for these pads, if it has one: ``P`` for a symmetric pad, and
    ``'same'`` for correlate's same pads at stride 1 (torch refuses 'same' with a stride).
    Zeros are ``F.conv1d``'s; other fills need ``nn.Conv1d``'s ``padding_mode``, called with
    this kernel by ``torch.func.functional_call``."""
    left, right = spec.pads(k)
    if left == right == 0:
        return None  # no pads: the plain F.conv1d above is the call
    if left == right:
        padding = f"padding={left}"
    elif spec.correlate and spec.mode == "same" and spec.stride == 1:
        padding = "padding='same'"
    else:
        return None
    if spec.padding == "zeros":
        return f"F.conv1d(x[None, None], {weight}{tensor_bias}, {padding}{options})[0, 0]"
    module = (f"torch.nn.Conv1d(1, 1, {k}{options}, {padding}, padding_mode='{spec.padding}', "
              f"bias={bool(tensor_bias)}, dtype=x.dtype)")
    parameters = f"'weight': {weight}" + (f", 'bias': {tensor_bias[2:]}" if tensor_bias else "")
    return f"torch.func.functional_call({module}, {{{parameters}}}, x[None, None])[0, 0]"


def _interior_rows(spec: ConvSpec, n: int, k: int) -> tuple[int, int]:
    """First and last output index whose taps all fall inside the signal (first > last: none).

    Output i reads padded positions s·i … s·i+K−1, i.e. unpadded s·i−left … s·i−left+K−1.
    """
    left, _ = spec.pads(k)
    span, s = spec.span(k), spec.stride
    length = spec.output_length(n, k)
    first = -(-left // s)  # ceil(left / s)
    last = (n + left - span) // s  # s·i − left + K − 1 ≤ N − 1
    return min(first, length), min(last, length - 1)


def _jacobian_input(spec: ConvSpec, n: int, k: int, length: int, first: int, last: int,
                    bias: float | None = None) -> dict:
    """J[i, m] = ∂y[i]/∂x[m], shape (L_out, N), in words plus its diagonals."""
    s = spec.stride
    left, right = spec.pads(k)
    # diagonal offsets e = m − i are monotonic in j, so the band ends are taps 0 and k−1;
    # list every tap for reasonable k, the first and last 10 beyond (k may be millions)
    taps = range(k) if k <= MAX_LISTED_TAPS else [*range(10), *range(k - 10, k)]
    diagonals = [{"offset": input_index(spec, 0, j, k), "value": f"w[{j}]"} for j in taps]
    diagonals.sort(key=lambda e: e["offset"])
    offsets = [e["offset"] for e in diagonals]
    listed = [f"{e['offset']:+d}: {e['value']}" for e in reversed(diagonals)]
    where = ", ".join(listed if len(listed) <= 7 else [*listed[:3], "…", *listed[-3:]])
    if s == 1:
        c = input_index(spec, 0, 0, k)
        e_of_j = f"{c} {'+' if spec.correlate else '−'} {_times(spec.dilation, 'j')}"
        shape_words = (f"banded Toeplitz ({length} × {n}): J[i, i+e] = w[j] on diagonal "
                       f"e = {e_of_j}; nonzero diagonals {where}")
        if spec.dilation > 1:
            shape_words += f" (every {spec.dilation}th diagonal of the band; the others are 0)"
    else:
        shape_words = (f"strided banded ({length} × {n}): row i is row 0 shifted right by "
                       f"{s}·i columns, i.e. rows 0, {s}, {2 * s}, … of the stride-1 Toeplitz "
                       f"matrix (not Toeplitz itself); J[i, {s}·i+e] = w[j] for e in {where}")
    boundary_rows = max(first, 0) + max(length - 1 - last, 0)
    if left == 0 and right == 0:
        edges = "no pad: every row holds all k taps"
    elif spec.padding == "zeros":
        rows = [r for r in (_rows(0, first - 1), _rows(last + 1, length - 1)) if r]
        edges = (f"zero pad: {' and '.join(rows)} lose the taps that fall on the pad (the band "
                 f"is cut at the matrix edges)" if rows else "zero pad: no row reaches the pad")
    else:
        fold = {
            "reflect": "adds its weight to the mirrored sample's column (x[−m] / x[2(N−1)−m])",
            "replicate": "adds its weight to column 0 (left) or column N−1 (right)",
            "circular": "wraps around to the opposite end's column",
        }[spec.padding]
        edges = (f"{spec.padding} pad: in the {boundary_rows} boundary rows a tap that falls on "
                 f"the pad {fold}, so J = banded Toeplitz + corrections in those rows")
        if spec.padding == "circular" and left + right == spec.span(k) - 1 and s == 1 and k > 1:
            edges += f" (here J is exactly circulant, {n} × {n})"
    return {
        "shape": [length, n],
        "entry": "J[i, m] = Σ_j w[j] over the taps j with source(index(i, j)) = m",
        "structure": shape_words,
        "diagonals": diagonals,
        "diagonals_complete": k <= MAX_LISTED_TAPS,
        "band": [min(offsets), max(offsets)],
        "edges": edges,
        "nonzeros_per_row": k,
        "note": "independent of x: the convolution is linear, so J is the same for every input"
        + ("" if bias is None else "; the bias adds a constant and changes neither Jacobian"),
    }


def _jacobian_kernel(spec: ConvSpec, k: int, length: int, left: int) -> dict:
    """∂y[i]/∂w[j] = x̃[tap(i, j)], shape (L_out, k), x̃ the padded input."""
    s, d = spec.stride, spec.dilation
    if spec.correlate:
        kind = "Hankel (constant along anti-diagonals: depends on i + j)" if s == d == 1 else (
            f"a strided Hankel-like matrix (entry depends on {_times(s, 'i')} + {_times(d, 'j')})")
    else:
        kind = "Toeplitz (constant along diagonals: depends on i − j)" if s == d == 1 else (
            f"a strided Toeplitz-like matrix (entry depends on {_times(s, 'i')} − {_times(d, 'j')})")
    return {
        "shape": [length, k],
        "entry": f"∂y[i]/∂w[j] = x[{spec.index_expr(k)}] (the padded input)",
        "structure": f"{kind}, built from the padded input; depends on x, not on w",
    }


def example(spec: ConvSpec, n: int, k: int, coefficients: np.ndarray | None = None,
            bias: float | None = None) -> dict:
    """A worked example with numbers: x = 1, 2, …, N_ex and explicit sums for a few y[i]
    (plus ``bias``).

    Uses the real N and k when N ≤ 12 and k ≤ 5; otherwise N_ex = 8 (or more if the span needs
    it) and k_ex = k if k ≤ 5, else 3, with the same options.
    """
    ek = k if k <= EXAMPLE_MAX_K else 3
    span = spec.span(ek)
    en = n if (n <= EXAMPLE_MAX_N and ek == k) else max(8, span + 1)
    if coefficients is not None and ek == k:
        w = [float(v) for v in np.asarray(coefficients, dtype=float).reshape(-1, k)[0]]
        w_from = "the kernel given" + (" (first row)" if np.asarray(coefficients).ndim > 1 else "")
    else:
        w = [float(j + 1) for j in range(ek)]
        w_from = "distinct integers, so the flip shows"
    x = [float(m + 1) for m in range(en)]
    left, _ = spec.pads(ek)
    length = spec.output_length(en, ek)
    terms: dict[str, list[str]] = {}
    y = []
    for i in range(length):
        total, parts = 0.0, []
        for j in range(ek):
            m = spec.tap(i, j, ek) - left
            src = spec.source(spec.tap(i, j, ek), en, ek)
            value = 0.0 if src is None else x[src]
            total += w[j] * value
            if 0 <= m < en:
                parts.append(f"w[{j}]·x[{m}]")
            elif src is None:
                parts.append(f"w[{j}]·0 (pad x[{m}])")
            else:
                parts.append(f"w[{j}]·x[{src}] (pad x[{m}] = x[{src}])")
        y.append(total + (bias or 0.0))
        terms[str(i)] = parts + ([] if bias is None else [number_text(bias)])
    shown = sorted({0, min(1, length - 1), length - 1})
    return {
        "n": en,
        "k": ek,
        "same_as_asked": en == n and ek == k,
        "x": x,
        "w": w,
        "w_from": w_from,
        "pads": list(spec.pads(ek)),
        "y": y,
        "shown": shown,
        "terms": {str(i): terms[str(i)] for i in shown},
        "sums": {str(i): _numbers(w, x, spec, i, ek, en, bias) for i in shown},
    }


def _numbers(w: list[float], x: list[float], spec: ConvSpec, i: int, k: int, n: int,
             bias: float | None) -> str:
    """``1·2 + 2·1 + 3·0 = 4`` for one output of the example (``+ b`` with a bias)."""
    products, total = [], 0.0
    for j in range(k):
        src = spec.source(spec.tap(i, j, k), n, k)
        value = 0.0 if src is None else x[src]
        total += w[j] * value
        products.append(f"{number_text(w[j])}·{number_text(value)}")
    if bias is not None:
        products.append(number_text(bias))
        total += bias
    return " + ".join(products) + f" = {number_text(total)}"


def _times(factor: int, name: str) -> str:
    return name if factor == 1 else f"{factor}·{name}"


def _rows(a: int, b: int) -> str:
    return "" if b < a else f"row {a}" if a == b else f"rows {a}…{b}"


def number_text(v: float) -> str:
    """A number as the worked example writes it: an integer without ``.0``, else ``%g``."""
    return f"{v:g}" if abs(v - round(v)) > 1e-12 or abs(v) >= 1e15 else str(round(v))
