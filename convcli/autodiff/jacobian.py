"""Derivatives of conv1d: closed-form and autograd Jacobians, banded storage, grad, check.

A 1-D convolution is linear in its input and in its kernel, so both Jacobians are known in
closed form, and every entry comes from the ``ConvSpec`` alone (``spec.tap`` says which padded
position output ``i`` reads through tap ``j``; ``spec.source`` says which input sample a padded
position holds, padding modes folded in):

- input Jacobian, one (output channel, input channel) pair, ``[L_out, N]``:
  ``J[i, m] = Σ_j w[j] · [source(tap(i, j)) == m]`` — a banded Toeplitz matrix whose ``k``
  diagonals hold the taps, plus the entries a non-zero padding folds back near the edges.
- kernel Jacobian, ``[L_out, k]``: ``J[i, j] = ∂y[i]/∂w[j] = x_padded[tap(i, j)]`` — windows of
  the padded input, ``w`` in the order the user wrote it (reversed windows for convolve).

The autograd versions differentiate the engine's ``conv1d`` with ``torch.func`` (``vjp``/``jvp``
vmapped over chunks of basis vectors; never a Python loop over rows), so ``check`` compares two
independent routes to the same numbers. For N = 10⁶ the banded form is recovered by forward mode
with compressed seeds (columns ``m ≡ r (mod K)`` share one seed: a row touches at most one of
them), plus reverse mode for the few edge rows a padding folds.

Everything is a tensor in, tensor out and runs on the device of its inputs.

    >>> import torch
    >>> from convcli.core.spec import ConvSpec
    >>> input_jacobian(torch.tensor([1.0, 2.0, 3.0]), 4, ConvSpec(mode="valid")).tolist()
    [[3.0, 2.0, 1.0, 0.0], [0.0, 3.0, 2.0, 1.0]]
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from convcli.errors import InputError, UsageError
from convcli.plan.memory import refuse_dense
from convcli.core.spec import ConvSpec

WRT = ("input", "kernel")
LOSSES = ("sum", "mean", "energy", "mse")
#: largest |autograd − closed form| accepted, relative to max(1, max |J|), by dtype
TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-9}
#: memory one chunk of basis vectors may use in the autograd routes
CHUNK_BYTES = 256 * 2**20


# --- index maps from the spec --------------------------------------------------------------
def _rows(rows: slice | None, length: int) -> tuple[int, int]:
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


def _edge_rows(n: int, k: int, spec: ConvSpec, length: int) -> torch.Tensor:
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


def _input_entries(w: torch.Tensor, n: int, spec: ConvSpec, rows: torch.Tensor):
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
    r0, r1 = _rows(rows, spec.output_length(n, k))
    c0, c1 = _rows(cols, n)
    local, col, val = _input_entries(w, n, spec, torch.arange(r0, r1))
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
    r0, r1 = _rows(rows, spec.output_length(n, k))
    c0, c1 = _rows(cols, k)
    rows_t = torch.arange(r0, r1, device=x.device)
    taps = torch.arange(c0, c1, device=x.device)
    source = source_index(spec.tap(rows_t[:, None], taps[None, :], k), n, k, spec)
    padded = torch.cat([x, x.new_zeros(1)])  # index n reads the zero of zero padding
    return padded[torch.where(source < 0, n, source)]


# --- banded storage ----------------------------------------------------------------------------
@dataclass
class Banded:
    """An input Jacobian ``[L_out, N]`` stored as diagonals plus the entries padding folds.

    ``J[i, stride·i + offsets[d]] = bands[d, i]`` wherever that column is in ``0 … N−1``
    (``bands`` is 0 where it is not), and ``J[edge_rows[e], edge_cols[e]] = edge_vals[e]``;
    every other entry is 0. The two parts never name the same entry. ``edge_*`` is empty
    for zero padding.

    Shape: ``offsets [D]`` long, ``bands [D, L_out]``, ``edge_rows/edge_cols/edge_vals [E]``.
    """

    offsets: torch.Tensor
    bands: torch.Tensor
    edge_rows: torch.Tensor
    edge_cols: torch.Tensor
    edge_vals: torch.Tensor
    shape: tuple[int, int]
    stride: int

    @property
    def nbytes(self) -> int:
        parts = (self.offsets, self.bands, self.edge_rows, self.edge_cols, self.edge_vals)
        return sum(t.numel() * t.element_size() for t in parts)

    def to_dense(self) -> torch.Tensor:
        """``[L_out, N]``: the densified matrix (what the README's numpy snippet does)."""
        length, n = self.shape
        out = self.bands.new_zeros(length, n)
        rows = torch.arange(length, device=self.bands.device)
        for offset, band in zip(self.offsets.tolist(), self.bands):
            cols = self.stride * rows + offset
            ok = (cols >= 0) & (cols < n)
            out[rows[ok], cols[ok]] = band[ok]
        out[self.edge_rows, self.edge_cols] = self.edge_vals
        return out

    def block(self, rows: tuple[int, int], cols: tuple[int, int]) -> torch.Tensor:
        """``J[r0:r1, c0:c1]`` densified, without building the whole matrix."""
        (r0, r1), (c0, c1) = rows, cols
        out = self.bands.new_zeros(r1 - r0, c1 - c0)
        local = torch.arange(r1 - r0, device=self.bands.device)
        for offset, band in zip(self.offsets.tolist(), self.bands[:, r0:r1]):
            c = self.stride * (local + r0) + offset - c0
            ok = (c >= 0) & (c < c1 - c0) & (c + c0 < self.shape[1])
            out[local[ok], c[ok]] = band[ok]
        inside = ((self.edge_rows >= r0) & (self.edge_rows < r1)
                  & (self.edge_cols >= c0) & (self.edge_cols < c1))
        out[self.edge_rows[inside] - r0, self.edge_cols[inside] - c0] = self.edge_vals[inside]
        return out

    def arrays(self) -> dict:
        """The numpy arrays of the ``.npz`` file (see README: Gradients and Jacobians)."""
        return {
            "offsets": self.offsets.cpu().numpy(),
            "bands": self.bands.cpu().numpy(),
            "edge_rows": self.edge_rows.cpu().numpy(),
            "edge_cols": self.edge_cols.cpu().numpy(),
            "edge_vals": self.edge_vals.cpu().numpy(),
            "shape": torch.tensor(self.shape).numpy(),
            "stride": torch.tensor(self.stride).numpy(),
        }


def _fill_edges(bands: torch.Tensor, offsets: torch.Tensor, stride: int, rows: torch.Tensor,
                cols: torch.Tensor, vals: torch.Tensor):
    """Split coalesced entries of edge rows into band entries (written) and the rest (returned)."""
    position = torch.searchsorted(offsets, cols - stride * rows).clamp(max=offsets.numel() - 1)
    on_band = offsets[position] == cols - stride * rows
    bands[position[on_band], rows[on_band]] = vals[on_band]
    off = ~on_band
    return rows[off], cols[off], vals[off]


def _coalesce(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, n: int):
    keys, inverse = torch.unique(rows * n + cols, return_inverse=True)
    summed = vals.new_zeros(keys.numel()).index_add_(0, inverse, vals)
    return keys // n, keys % n, summed


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
    edges = _edge_rows(n, k, spec, length)
    empty = torch.zeros(0, dtype=torch.long, device=w.device)
    if edges.numel() == 0:
        return Banded(offsets, bands, empty, empty.clone(), w.new_zeros(0), (length, n), s)
    local, col, val = _input_entries(w, n, spec, edges)
    rows, cols, vals = _coalesce(edges.to(w.device)[local], col, val, n)
    bands[:, edges.to(w.device)] = 0
    er, ec, ev = _fill_edges(bands, offsets, s, rows, cols, vals)
    keep = ev != 0
    return Banded(offsets, bands, er[keep], ec[keep], ev[keep], (length, n), s)


# --- autograd ----------------------------------------------------------------------------------
def _chunk(per_item_bytes: int) -> int:
    return max(1, CHUNK_BYTES // max(1, per_item_bytes))


def autograd_jacobian(
    f: Callable[[torch.Tensor], torch.Tensor],
    primal: torch.Tensor,
    out_length: int,
    rows: slice | None = None,
    cols: slice | None = None,
) -> tuple[torch.Tensor, str]:
    """Dense Jacobian of ``f`` at ``primal`` by ``torch.func``, and which mode ran.

    Forward mode (``jvp`` vmapped over one-hot input columns) unless the block has far fewer
    rows than columns (``4·rows < cols``, e.g. ``--rows 0:10`` of a long signal): then reverse
    mode (``vjp`` vmapped over one-hot output rows). Both cost one batched conv per basis
    vector; forward mode is preferred at equal cost because ``torch.func.vjp`` imports
    ``torch._dynamo`` on first use (1.5–5 s here). The basis vectors go through in chunks of
    about ``CHUNK_BYTES``.

    Shape: ``f: [n] -> [L]``, ``primal [n]`` -> ``[rows, cols]`` of the ``[L, n]`` Jacobian.

    >>> J, how = autograd_jacobian(lambda v: 2 * v[1:], torch.ones(3), 2)
    >>> J.tolist(), how.split(":")[0]
    ([[0.0, 2.0, 0.0], [0.0, 0.0, 2.0]], 'forward mode')
    """
    n = primal.shape[-1]
    r0, r1 = _rows(rows, out_length)
    c0, c1 = _rows(cols, n)
    item = primal.element_size() * 4 * (n + out_length)
    step = _chunk(item)
    dtype, device = primal.dtype, primal.device
    if 4 * (r1 - r0) < c1 - c0:
        _, pullback = torch.func.vjp(f, primal)
        pull = torch.func.vmap(lambda v: pullback(v)[0])
        parts = []
        for start in range(r0, r1, step):  # chunks of rows, each one vmapped call
            stop = min(r1, start + step)
            basis = torch.zeros(stop - start, out_length, dtype=dtype, device=device)
            basis[torch.arange(stop - start), torch.arange(start, stop)] = 1
            with warnings.catch_warnings():
                # torch notes that vmap over unfold's backward takes a slower fallback; the
                # numbers are exact, and the user can do nothing about it
                warnings.filterwarnings("ignore", message="There is a performance drop")
                parts.append(pull(basis)[:, c0:c1])
        chunks = len(parts)
        result = torch.cat(parts) if parts else torch.zeros(0, c1 - c0, dtype=dtype, device=device)
        return result, f"reverse mode: torch.func.vjp vmapped over {r1 - r0} rows in {chunks} chunk(s)"
    push = torch.func.vmap(lambda v: torch.func.jvp(f, (primal,), (v,))[1])
    parts = []
    for start in range(c0, c1, step):
        stop = min(c1, start + step)
        basis = torch.zeros(stop - start, n, dtype=dtype, device=device)
        basis[torch.arange(stop - start), torch.arange(start, stop)] = 1
        parts.append(push(basis)[:, r0:r1])
    result = torch.cat(parts).T
    return result, f"forward mode: torch.func.jvp vmapped over {c1 - c0} columns in {len(parts)} chunk(s)"


def autograd_banded(
    f: Callable[[torch.Tensor], torch.Tensor], primal: torch.Tensor, k: int, spec: ConvSpec
) -> tuple[Banded, str]:
    """The banded input Jacobian of ``f`` by autograd, in O(K) passes instead of O(N).

    Forward mode with compressed seeds: seed ``r`` is 1 on every column ``m ≡ r (mod K)``.
    A row's footprint spans at most K consecutive columns, so each ``(J·seed_r)[i]`` is the one
    entry of row ``i`` in that class. The rows a non-zero padding folds (the first and last few)
    read the same pass at the positions the spec's pattern names; circular padding's
    wrap-around columns get one one-hot seed each. The spec gives where entries may be (the
    sparsity pattern), never a value.

    Shape: ``f: [N] -> [L_out]``, ``primal [N]`` -> ``Banded``.
    """
    n = primal.shape[-1]
    length, s = spec.output_length(n, k), spec.stride
    dtype, device = primal.dtype, primal.device
    offsets, _ = band_offsets(k, spec)
    offsets = offsets.to(device)
    width = int(offsets[-1] - offsets[0]) + 1
    classes = torch.arange(n, device=device) % width
    push = torch.func.vmap(lambda v: torch.func.jvp(f, (primal,), (v,))[1])
    step = _chunk(primal.element_size() * 6 * (n + length))
    compressed = []
    for start in range(0, width, step):  # chunks of seeds, not rows
        seeds = torch.arange(start, min(width, start + step), device=device)
        compressed.append(push((classes[None, :] == seeds[:, None]).to(dtype)))
    compressed = torch.cat(compressed)  # [width, L_out]
    bands = primal.new_zeros(offsets.numel(), length)
    base = (s * torch.arange(length, device=device)) % width  # class of column s·i
    for d, offset in enumerate(offsets.tolist()):
        first, last = max(0, -(offset // s)), min(length, (n - 1 - offset) // s + 1)
        if last > first:
            shifted = base[first:last] + offset % width  # class of column s·i + offset
            shifted = torch.where(shifted >= width, shifted - width, shifted)
            bands[d, first:last] = compressed[:, first:last].gather(0, shifted[None])[0]
    edges = _edge_rows(n, k, spec, length).to(device)
    empty = torch.zeros(0, dtype=torch.long, device=device)
    if edges.numel() == 0:
        how = f"forward mode with {width} compressed seeds (torch.func.jvp vmapped)"
        return Banded(offsets, bands, empty, empty.clone(), primal.new_zeros(0), (length, n), s), how
    # Edge rows: where their entries may sit comes from the spec (tap/source); their values
    # from the same compressed pass. A row's entries inside the K columns from its first one
    # have distinct classes; entries beyond that (circular wrap-around) are "far": their
    # columns get a one-hot seed each, and they are taken out of the compressed sums.
    local, cols, _ = _input_entries(torch.ones(k, device=device), n, spec, edges)
    keys = torch.unique(local * n + cols)
    local, cols = keys // n, keys % n
    first = torch.full((edges.numel(),), n, dtype=torch.long, device=device)
    first = first.scatter_reduce(0, local, cols, reduce="amin")
    far = torch.unique(cols[cols >= first[local] + width])
    exact = primal.new_zeros(far.numel(), edges.numel())  # J[edges, far].T
    for start in range(0, far.numel(), step):
        chunk = far[start : start + step]
        basis = torch.zeros(chunk.numel(), n, dtype=dtype, device=device)
        basis[torch.arange(chunk.numel()), chunk] = 1
        exact[start : start + chunk.numel()] = push(basis)[:, edges]
    by_class = primal.new_zeros(width, edges.numel()).index_add_(0, far % width, exact)
    is_far = torch.isin(cols, far)
    values = compressed[cols % width, edges[local]] - by_class[cols % width, local]
    if far.numel():
        where = torch.searchsorted(far, cols[is_far])
        values[is_far] = exact[where, local[is_far]]
    bands[:, edges] = 0
    er, ec, ev = _fill_edges(bands, offsets, s, edges[local], cols, values)
    how = (f"forward mode with {width} compressed seeds (torch.func.jvp vmapped)"
           + (f" and {far.numel()} one-hot seeds for wrapped-around columns" if far.numel() else ""))
    return Banded(offsets, bands, er, ec, ev, (length, n), s), how


# --- one channel pair of a conv --------------------------------------------------------------
@dataclass(frozen=True)
class Pair:
    """One (output channel, input channel) pair of a conv, reduced to a single-output conv.

    ``x [Cg, N]`` are the input channels of the output's group, ``weight [1, Cg, k]`` its
    kernel rows, ``local`` the position of the chosen input channel among them, ``spec`` the
    conv options with ``groups = 1``.
    """

    x: torch.Tensor
    weight: torch.Tensor
    local: int
    spec: ConvSpec
    output: int
    input: int

    @property
    def row(self) -> torch.Tensor:
        """``[N]``: the chosen input channel."""
        return self.x[self.local]

    @property
    def w(self) -> torch.Tensor:
        """``[k]``: the kernel row linking the pair, as the user wrote it."""
        return self.weight[0, self.local]


def channel_pair(x: torch.Tensor, weight: torch.Tensor, spec: ConvSpec,
                 output: int, input: int) -> Pair:
    """Select output channel ``output`` and input channel ``input`` of a conv.

    Shape: ``x [C, N]``, ``weight [O, C/G, k]`` (``spec.groups = G``) -> ``Pair``.

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
                replace(spec, groups=1), output, input)


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
        return conv1d(x[None], pair.weight, pair.spec, method)[0, 0]

    def f_kernel(row: torch.Tensor) -> torch.Tensor:
        weight = row[None, None] if channels == 1 else pair.weight * (1 - pick_w) + pick_w * row
        return conv1d(pair.x[None], weight, pair.spec, method)[0, 0]

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
    spec, k, n = pair.spec, pair.weight.shape[-1], pair.x.shape[-1]
    spec.check(n, k)
    length = spec.output_length(n, k)
    width = n if wrt == "input" else k
    if banded:
        if wrt != "input":
            raise UsageError("--format banded is for --wrt input; the kernel Jacobian "
                             f"[{length}, {k}] is already compact", "use --format dense")
        if rows is not None or cols is not None:
            raise UsageError("--rows/--cols slice a dense Jacobian", "drop them, or use --format dense")
        r0, r1, c0, c1 = 0, length, 0, n
    else:
        r0, r1 = _rows(rows, length)
        c0, c1 = _rows(cols, width)
        refuse_dense(r1 - r0, c1 - c0, pair.x.element_size(),
                     2 if check or via == "autograd" else 1, memory_limit)
    f_input, f_kernel = pair_functions(pair, method)
    primal = pair.row if wrt == "input" else pair.w
    f = f_input if wrt == "input" else f_kernel

    def closed():
        if banded:
            return input_jacobian_banded(pair.w, n, spec)
        if wrt == "input":
            return input_jacobian(pair.w, n, spec, slice(r0, r1), slice(c0, c1))
        return kernel_jacobian(pair.row, k, spec, slice(r0, r1), slice(c0, c1))

    def auto():
        if banded:
            return autograd_banded(f_input, primal, k, spec)
        return autograd_jacobian(f, primal, length, slice(r0, r1), slice(c0, c1))

    import time

    def timed(route, name, details):
        started = time.perf_counter()
        if name == "autograd":
            with torch.enable_grad():
                out, how = route()
            details["autograd"] = how
        else:
            out = route()
        details[f"{name}_seconds"] = time.perf_counter() - started
        return out

    details: dict = {}
    with torch.no_grad():
        first = "autograd" if via == "autograd" else "closed"
        matrix = timed(auto if first == "autograd" else closed, first, details)
        result = JacobianResult(matrix, wrt, (length, width), (r0, r1), (c0, c1),
                                (pair.output, pair.input),
                                "autograd" if first == "autograd" else "closed form", None, details)
        if check:
            second = "closed" if first == "autograd" else "autograd"
            other = timed(closed if second == "closed" else auto, second, details)
            pair_ = (other, matrix) if second == "closed" else (matrix, other)
            result.check = compare(*pair_)
            result.check.autograd = details["autograd"]
        return result


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


def jacobian_formula(spec: ConvSpec, k: int, wrt: str = "input") -> list[str]:
    """The Jacobian's structure in words: the entry formula, its band, what padding adds.

    >>> jacobian_formula(ConvSpec(mode="valid"), 3)[0]
    'J[i, j] = ∂y[i]/∂x[j] = w[i − j + 2] where 0 ≤ i − j + 2 ≤ 2, else 0'
    >>> jacobian_formula(ConvSpec(mode="causal"), 3)[0]
    'J[i, j] = ∂y[i]/∂x[j] = w[i − j] where 0 ≤ i − j ≤ 2, else 0'
    >>> jacobian_formula(ConvSpec(mode="valid", correlate=True), 3, "kernel")[0]
    'J[i, j] = ∂y[i]/∂w[j] = x[i + j]'
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
        offsets, _ = band_offsets(k, spec)
        shown = offsets.tolist()
        listed = (", ".join(map(str, shown)) if len(shown) <= 8
                  else f"{shown[0]}, {shown[1]}, …, {shown[-1]}")
        diag = "j − i" if s == 1 else f"j − {s}·i"
        lines.append(f"banded: {k} non-zero diagonal{'s' if k > 1 else ''} at {diag} ∈ {{{listed}}}"
                     + ("" if s == 1 else f" (stride {s}: each row moves {s} columns)"))
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


# --- grad ----------------------------------------------------------------------------------------
def weight_from_coefficients(coefficients: torch.Tensor, channels: int, groups: int = 1):
    """Shape coefficients ``(k,)``, ``(C, k)`` or ``(O, C/G, k)`` into ``weight [O, C/G, k]``.

    Differentiable: the gradient of a shared ``(k,)`` kernel sums over the channels.
    Returns ``(weight, groups)`` like ``kernels.to_weight`` (whose checks run first).
    """
    import numpy as np

    from convcli.core.kernels import to_weight

    _, groups = to_weight(np.zeros(tuple(coefficients.shape)), channels, groups)
    if coefficients.ndim == 1:
        return coefficients.expand(channels, 1, coefficients.shape[0]), groups
    if coefficients.ndim == 2:
        return coefficients[:, None, :], groups
    return coefficients, groups


def loss_value(y: torch.Tensor, loss: str, target: torch.Tensor | None = None) -> torch.Tensor:
    """A scalar loss of the output ``y [B, O, L_out]``.

    sum: Σ y; mean: mean y; energy: Σ y²; mse: mean (y − target)² over every element.

    >>> float(loss_value(torch.tensor([1.0, -2.0]), "energy"))
    5.0
    """
    if loss == "sum":
        return y.sum()
    if loss == "mean":
        return y.mean()
    if loss == "energy":
        return (y * y).sum()
    if loss == "mse":
        if target is None:
            raise UsageError("--loss mse needs --target FILE", "give the target output")
        if tuple(target.shape) != tuple(y.shape):
            raise InputError(
                f"the target has shape {tuple(target.shape)} but the output has {tuple(y.shape)} "
                "(batch, channels, time)",
                "make the target with the same options, e.g. convcli filter … -o target.npy",
            )
        return ((y - target) ** 2).mean()
    raise UsageError(f"--loss must be one of {', '.join(LOSSES)}, got {loss!r}")


def grad(
    x: torch.Tensor,
    coefficients: torch.Tensor,
    spec: ConvSpec,
    loss: str,
    wrt: tuple[str, ...] = ("input",),
    target: torch.Tensor | None = None,
    method: str = "auto",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss of ``conv1d(x, kernel)`` and its gradients (reverse-mode autograd).

    Shape: ``x [B, C, T]``, ``coefficients (k,) | (C, k) | (O, C/G, k)`` ->
    ``(loss [], {"input": [B, C, T], "kernel": coefficients.shape})`` for the names in ``wrt``.

    >>> value, g = grad(torch.ones(1, 1, 4), torch.ones(2), ConvSpec(mode="valid"), "sum", ("input", "kernel"))
    >>> float(value), g["input"].tolist(), g["kernel"].tolist()
    (6.0, [[[1.0, 2.0, 2.0, 1.0]]], [3.0, 3.0])
    """
    from convcli.engines.torch_backend import conv1d

    for name in wrt:
        if name not in WRT:
            raise UsageError(f"--wrt must be input, kernel or both, got {name!r}")
    with torch.enable_grad():
        x = x.detach().requires_grad_("input" in wrt)
        coefficients = coefficients.detach().requires_grad_("kernel" in wrt)
        weight, groups = weight_from_coefficients(coefficients, x.shape[1], spec.groups)
        y = conv1d(x, weight, replace(spec, groups=groups), method)
        value = loss_value(y, loss, target)
        leaves = [x if name == "input" else coefficients for name in wrt]
        grads = torch.autograd.grad(value, leaves)
    return value.detach(), {name: g.detach() for name, g in zip(wrt, grads)}


def norm(t: torch.Tensor) -> float:
    """Euclidean norm of every element, as a float."""
    return float(math.sqrt(float((t.double() ** 2).sum())))
