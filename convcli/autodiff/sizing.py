"""How big a Jacobian is, refused before anything is allocated (and before torch is imported).

A dense ``[L_out, N]`` Jacobian grows as N²: ``check_dense`` prices the block asked for from
the spec alone, so ``jacobian`` refuses at once, with the hint to ``--format banded``, a
matrix that would not fit.
"""

from __future__ import annotations

from convcli.core.spec import ConvSpec
from convcli.errors import UsageError
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
    convcli.errors.ResourceError: a dense 1,000 × 1,000 Jacobian needs about 30.5 MiB but only 9.8 KiB of memory is available (hint: use --format banded -o J.npz (diagonals plus offsets, O(k·N)), or --rows/--cols to take a block)
    """
    # + 16 bytes an entry: the closed form's int64 source indices and their masks
    check_allocation(rows * cols * (itemsize * (copies + 1) + 16),
                     f"a dense {rows:,} × {cols:,} Jacobian", DENSE_HINT, limit=limit)


def check_dense(n: int, k: int, spec: ConvSpec, wrt: str, rows: slice | None,
                cols: slice | None, itemsize: int, copies: int) -> None:
    """Refuse the dense block ``rows × cols`` of the ``wrt`` Jacobian of N = ``n`` samples and
    ``k`` taps that will not fit (``spec.check`` first: these options must convolve N)."""
    spec.check(n, k)
    length_out = spec.output_length(n, k)
    r_start, r_stop, _ = (rows or slice(None)).indices(length_out)
    c_start, c_stop, _ = (cols or slice(None)).indices(n if wrt == "input" else k)
    for flag, start, stop, total in (("--rows", r_start, r_stop, length_out),
                                     ("--cols", c_start, c_stop, n if wrt == "input" else k)):
        if stop <= start:
            raise UsageError(f"{flag} selects none of the Jacobian's {total:,} "
                             f"{flag[2:]} ({start}:{stop} is empty)",
                             f"give {flag} A:B with A < B ≤ {total}")
    refuse_dense(r_stop - r_start, c_stop - c_start, itemsize, copies)


BANDED_HINT = ("take a shorter --length (or input), or a block of the dense Jacobian with "
               "--rows/--cols")


def banded_bytes(n: int, k: int, spec: ConvSpec, itemsize: int, closed: bool,
                 autograd: bool) -> int:
    """Peak bytes of a banded input Jacobian of N = ``n`` samples and ``k`` taps, on the safe
    side: the bands ``[k, L_out]``, the row indices and masks
    of the closed form, the entries a non-zero padding folds back, and for autograd its
    compressed seeds (k tangents of N samples and their outputs) with their padded copies."""
    length = spec.output_length(n, k)
    left, right = spec.pads(k)
    edges = 0 if spec.padding == "zeros" else min(left + right, length) * k
    need = k * length * itemsize + n * itemsize
    if closed:
        need += 3 * length * 8 + edges * (3 * 8 + itemsize) * 2
    if autograd:
        need += 4 * k * (n + left + right + length) * itemsize + edges * (3 * 8 + itemsize) * 2
    return need


def check_banded(n: int, k: int, spec: ConvSpec, itemsize: int, closed: bool = True,
                 autograd: bool = False, limit: int | None = None) -> None:
    """Refuse, before torch is imported or the input made, a banded Jacobian that cannot fit.

    >>> check_banded(300_000_000, 31, ConvSpec(), 4, limit=2**30)
    Traceback (most recent call last):
    ...
    convcli.errors.ResourceError: a banded 300,000,000 × 300,000,000 Jacobian (31 diagonals) needs about 42.5 GiB but only 1.0 GiB of memory is available (hint: take a shorter --length (or input), or a block of the dense Jacobian with --rows/--cols)
    """
    spec.check(n, k)
    check_allocation(banded_bytes(n, k, spec, itemsize, closed, autograd),
                     f"a banded {spec.output_length(n, k):,} × {n:,} Jacobian ({k} diagonals)",
                     BANDED_HINT, limit=limit)


def check_grad(shape: tuple[int, int, int], weight: tuple[int, int, int], spec: ConvSpec,
               itemsize: int) -> None:
    """Refuse, before torch is imported, a gradient of conv1d that cannot fit: the forward
    pass at its larger method (``plan.memory.conv_bytes``: input, padded copy, output, FFT
    buffers) kept for the backward pass, which needs as much again for the gradients, plus
    the weight and its gradient. ``shape`` is the input's ``[B, C, N]``, ``weight`` the conv
    weight's ``(O, C/G, k)``."""
    from convcli.plan.memory import conv_bytes

    batch, channels, n = shape
    out_channels, per_group, k = weight
    spec.check(n, k)
    forward = max(conv_bytes(batch, channels, n, out_channels, k, spec, method, itemsize)
                  for method in ("direct", "fft"))
    need = 3 * forward + 3 * out_channels * per_group * k * max(itemsize, 8)
    check_allocation(need, f"the gradient of conv1d over {batch * channels * n:,} samples "
                     f"(span {spec.span(k):,})",
                     "use a shorter input or a smaller --dilation/kernel, or fewer channels")
