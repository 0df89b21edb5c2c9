"""How big a Jacobian is, refused before anything is allocated (and before torch is imported).

A dense ``[L_out, N]`` Jacobian grows as N²: ``check_dense`` prices the block asked for from
the spec alone, so ``jacobian`` refuses at once, with the hint to ``--format banded``, a
matrix that would not fit.
"""

from __future__ import annotations

from convcli.core.spec import ConvSpec
from convcli.plan.memory import check_allocation

DENSE_HINT = ("use --format banded -o J.npz (diagonals plus offsets, O(k·N)), "
              "or --rows/--cols to take a block")


def refuse_dense(rows: int, cols: int, itemsize: int, copies: int = 1,
                 limit: int | None = None) -> None:
    """Refuse, before allocating, a dense ``[rows, cols]`` Jacobian that will not fit.

    Counts ``copies`` computed matrices (2 with ``--check``) plus one for the output.

    >>> refuse_dense(1_000, 1_000, 8, limit=10_000)
    Traceback (most recent call last):
    ...
    convcli.errors.ResourceError: a dense 1,000 × 1,000 Jacobian needs about 15.3 MiB but only 9.8 KiB of memory is available (hint: use --format banded -o J.npz (diagonals plus offsets, O(k·N)), or --rows/--cols to take a block)
    """
    check_allocation(rows * cols * itemsize * (copies + 1), f"a dense {rows:,} × {cols:,} Jacobian",
                     DENSE_HINT, limit=limit)


def check_dense(n: int, k: int, spec: ConvSpec, wrt: str, rows: slice | None,
                cols: slice | None, itemsize: int, copies: int) -> None:
    """Refuse the dense block ``rows × cols`` of the ``wrt`` Jacobian of N = ``n`` samples and
    ``k`` taps that will not fit (``spec.check`` first: these options must convolve N)."""
    spec.check(n, k)
    length_out = spec.output_length(n, k)
    r_start, r_stop, _ = (rows or slice(None)).indices(length_out)
    c_start, c_stop, _ = (cols or slice(None)).indices(n if wrt == "input" else k)
    refuse_dense(max(0, r_stop - r_start), max(0, c_stop - c_start), itemsize, copies)
