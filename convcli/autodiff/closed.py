"""The closed-form Jacobians of conv1d, from the ``ConvSpec`` alone.

A 1-D convolution is linear in its input and in its kernel, so both Jacobians are known in
closed form, and every entry comes from the spec (``spec.tap`` says which padded position
output ``i`` reads through tap ``j``; ``spec.source`` says which input sample a padded
position holds, padding modes folded in):

- input Jacobian, one (output channel, input channel) pair, ``[L_out, N]``:
  ``J[i, m] = Σ_j w[j] · [source(tap(i, j)) == m]`` — a banded Toeplitz matrix whose ``k``
  diagonals hold the taps, plus the entries a non-zero padding folds back near the edges.
- kernel Jacobian, ``[L_out, k]``: ``J[i, j] = ∂y[i]/∂w[j] = x_padded[tap(i, j)]`` — windows of
  the padded input, ``w`` in the order the user wrote it (reversed windows for convolve).

Tensor in, tensor out, on the device of its inputs.

    >>> input_jacobian(torch.tensor([1.0, 2.0, 3.0]), 4, ConvSpec(mode="valid")).tolist()
    [[3.0, 2.0, 1.0, 0.0], [0.0, 3.0, 2.0, 1.0]]
"""

from __future__ import annotations

import torch

from convcli.autodiff.banded import Banded, coalesce, fill_edges
from convcli.core.spec import ConvSpec
from convcli.errors import UsageError


# --- index maps from the spec --------------------------------------------------------------
def slice_bounds(rows: slice | None, length: int) -> tuple[int, int]:
    """A ``slice`` (step 1) over ``length`` as ``(start, stop)``."""
    if rows is None:
        return 0, length
    start, stop, step = rows.indices(length)
    if step != 1:
        raise UsageError(f"row/column slices take no step, got {rows}")
    return start, max(start, stop)


def source_index(m: torch.Tensor, n: int, k: int, spec: ConvSpec) -> torch.Tensor:
    """Map padded positions ``m`` (any shape, long) to input samples; ``-1`` where the pad is 0.

    Only the ``left + right`` pad positions are looked up through ``spec.source``; the rest is
    the shift by the left pad. Assumes ``spec.check(n, k)`` passed.

    >>> source_index(torch.arange(7), 4, 4, ConvSpec(mode="causal", padding="reflect")).tolist()
    [3, 2, 1, 0, 1, 2, 3]
    """
    left, right = spec.pads(k)
    t = m - left
    if left == 0 and right == 0:
        return t

    def table(positions: range) -> torch.Tensor:
        found = [spec.source(p, n, k) for p in positions]
        return torch.tensor([-1 if s is None else s for s in found] or [-1],
                            dtype=torch.long, device=m.device)

    low = table(range(left))
    high = table(range(left + n, left + n + right))
    out = t.clone()
    before, after = m < left, m >= left + n
    out[before] = low[m[before]]
    out[after] = high[m[after] - left - n]
    return out


def band_offsets(k: int, spec: ConvSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Diagonals of the input Jacobian: ``offsets[d]`` (ascending) and the tap ``taps[d]`` on it.

    Row ``i`` reads input sample ``s·i + offsets[d]`` through tap ``taps[d]`` (before padding).

    >>> [t.tolist() for t in band_offsets(3, ConvSpec(mode="valid"))]   # w[2] on j − i = 0
    [[0, 1, 2], [2, 1, 0]]
    """
    left = spec.pads(k)[0]
    taps = torch.arange(k)
    offsets = spec.tap(0, taps, k) - left
    order = torch.argsort(offsets)
    return offsets[order], taps[order]


def edge_rows(n: int, k: int, spec: ConvSpec, length: int) -> torch.Tensor:
    """Rows that read a pad position whose padding is not zero (the rows padding folds)."""
    if spec.padding == "zeros":
        return torch.zeros(0, dtype=torch.long)
    left, _ = spec.pads(k)
    starts = spec.tap(0, torch.arange(k), k)
    low, high = int(starts.min()), int(starts.max())
    s = spec.stride
    head = min(length, max(0, -((low - left) // s)))  # rows with s·i + low < left
    tail = max(head, min(length, -((left + n - high) // -s)))  # first row with s·i + high ≥ left+n
    return torch.cat([torch.arange(head), torch.arange(tail, length)])


def input_entries(w: torch.Tensor, n: int, spec: ConvSpec, rows: torch.Tensor):
    """Uncoalesced (local row, column, value) entries of the input Jacobian's ``rows``."""
    k = w.shape[-1]
    rows = rows.to(w.device)
    taps = torch.arange(k, device=w.device)
    source = source_index(spec.tap(rows[:, None], taps[None, :], k), n, k, spec)
    local = torch.arange(rows.numel(), device=w.device)[:, None].expand_as(source)
    keep = source >= 0
    return local[keep], source[keep], w[None, :].expand_as(source)[keep]


# --- closed form -----------------------------------------------------------------------------
def input_jacobian(
    w: torch.Tensor, n: int, spec: ConvSpec, rows: slice | None = None, cols: slice | None = None
) -> torch.Tensor:
    """Closed-form ``J[i, m] = ∂y[i]/∂x[m]`` for one channel pair, from the spec alone.

    Args:
        w: the kernel row for this (output, input) channel pair, as the user wrote it.
        n: input length N.
        spec: the conv options (``groups`` is not used: one channel pair).
        rows, cols: optional slices; only that block is computed.

    Shape: ``w [k]`` -> ``[L_out, N]`` (or the sliced block), ``L_out = spec.output_length(N, k)``.

    >>> input_jacobian(torch.ones(3), 5, ConvSpec(mode="causal")).int().tolist()
    [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1]]
    """
    k = w.shape[-1]
    spec.check(n, k)
    r0, r1 = slice_bounds(rows, spec.output_length(n, k))
    c0, c1 = slice_bounds(cols, n)
    local, col, val = input_entries(w, n, spec, torch.arange(r0, r1))
    keep = (col >= c0) & (col < c1)
    out = torch.zeros(r1 - r0, c1 - c0, dtype=w.dtype, device=w.device)
    return out.index_put_((local[keep], col[keep] - c0), val[keep], accumulate=True)


def kernel_jacobian(
    x: torch.Tensor, k: int, spec: ConvSpec, rows: slice | None = None, cols: slice | None = None
) -> torch.Tensor:
    """Closed-form ``J[i, j] = ∂y[i]/∂w[j] = x_padded[tap(i, j)]``: windows of the padded input.

    ``w`` is in the order the user wrote it, so for convolve column ``j`` holds the window
    read backwards (``x[i + k − 1 − j]`` in valid mode), for correlate forwards (``x[i + j]``).

    Shape: ``x [N]`` (the one input channel of the pair) -> ``[L_out, k]`` (or the slice).

    >>> kernel_jacobian(torch.tensor([1.0, 2.0, 3.0, 4.0]), 2, ConvSpec(mode="valid")).tolist()
    [[2.0, 1.0], [3.0, 2.0], [4.0, 3.0]]
    """
    n = x.shape[-1]
    spec.check(n, k)
    r0, r1 = slice_bounds(rows, spec.output_length(n, k))
    c0, c1 = slice_bounds(cols, k)
    rows_t = torch.arange(r0, r1, device=x.device)
    taps = torch.arange(c0, c1, device=x.device)
    source = source_index(spec.tap(rows_t[:, None], taps[None, :], k), n, k, spec)
    padded = torch.cat([x, x.new_zeros(1)])  # index n reads the zero of zero padding
    return padded[torch.where(source < 0, n, source)]


def input_jacobian_banded(w: torch.Tensor, n: int, spec: ConvSpec) -> Banded:
    """Closed-form input Jacobian in banded form: O(k·L_out) memory, so N = 10⁶ fits easily.

    Shape: ``w [k]`` -> ``Banded`` of ``[L_out, N]`` with ``D = k`` diagonals.

    >>> b = input_jacobian_banded(torch.tensor([1.0, 2.0]), 4, ConvSpec(padding="circular"))
    >>> b.offsets.tolist(), b.edge_rows.tolist(), b.edge_cols.tolist(), b.edge_vals.tolist()
    ([-1, 0], [0], [3], [2.0])
    >>> torch.equal(b.to_dense(), input_jacobian(torch.tensor([1.0, 2.0]), 4, ConvSpec(padding="circular")))
    True
    """
    k = w.shape[-1]
    spec.check(n, k)
    length, s = spec.output_length(n, k), spec.stride
    offsets, taps = band_offsets(k, spec)
    bands = w.new_zeros(len(offsets), length)
    for d, (offset, tap) in enumerate(zip(offsets.tolist(), taps.tolist())):
        first = max(0, -(offset // s))  # first row whose column s·i + offset ≥ 0
        last = min(length, (n - 1 - offset) // s + 1)
        if last > first:
            bands[d, first:last] = w[tap]
    offsets = offsets.to(w.device)
    edges = edge_rows(n, k, spec, length)
    empty = torch.zeros(0, dtype=torch.long, device=w.device)
    if edges.numel() == 0:
        return Banded(offsets, bands, empty, empty.clone(), w.new_zeros(0), (length, n), s)
    local, col, val = input_entries(w, n, spec, edges)
    rows, cols, vals = coalesce(edges.to(w.device)[local], col, val, n)
    bands[:, edges.to(w.device)] = 0
    er, ec, ev = fill_edges(bands, offsets, s, rows, cols, vals)
    keep = ev != 0
    return Banded(offsets, bands, er[keep], ec[keep], ev[keep], (length, n), s)
