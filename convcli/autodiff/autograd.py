"""Jacobians by automatic differentiation (``torch.func``), independent of the closed form.

The engine's differentiable ``conv1d`` is differentiated with ``vjp``/``jvp`` vmapped over
chunks of basis vectors (never a Python loop over rows), so ``--check`` compares two routes to
the same numbers. For N = 10⁶ the banded form is recovered by forward mode with compressed
seeds (columns ``m ≡ r (mod K)`` share one seed: a row touches at most one of them), plus
one-hot seeds for the few columns circular padding wraps around.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from convcli.autodiff.banded import Banded, fill_edges
from convcli.autodiff.closed import band_offsets, edge_rows, input_entries, slice_bounds
from convcli.core.spec import ConvSpec

#: memory one chunk of basis vectors may use in the autograd routes
CHUNK_BYTES = 256 * 2**20


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
    r0, r1 = slice_bounds(rows, out_length)
    c0, c1 = slice_bounds(cols, n)
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
    edges = edge_rows(n, k, spec, length).to(device)
    empty = torch.zeros(0, dtype=torch.long, device=device)
    if edges.numel() == 0:
        how = f"forward mode with {width} compressed seeds (torch.func.jvp vmapped)"
        return Banded(offsets, bands, empty, empty.clone(), primal.new_zeros(0), (length, n), s), how
    # Edge rows: where their entries may sit comes from the spec (tap/source); their values
    # from the same compressed pass. A row's entries inside the K columns from its first one
    # have distinct classes; entries beyond that (circular wrap-around) are "far": their
    # columns get a one-hot seed each, and they are taken out of the compressed sums.
    local, cols, _ = input_entries(torch.ones(k, device=device), n, spec, edges)
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
    er, ec, ev = fill_edges(bands, offsets, s, edges[local], cols, values)
    how = (f"forward mode with {width} compressed seeds (torch.func.jvp vmapped)"
           + (f" and {far.numel()} one-hot seeds for wrapped-around columns" if far.numel() else ""))
    return Banded(offsets, bands, er, ec, ev, (length, n), s), how
