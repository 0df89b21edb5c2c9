"""The geometry of a convolution run, shared by both engines: indices and sizes, no arrays.

Everything here follows from the ``ConvSpec`` and a few sizes; no array library but numpy
(for index tables), no torch. Each engine asks it and only says how to join arrays, make an
empty result and multiply:

- the pads: which samples of a signal's ends fill them (``edge_extent``, ``edge_indices``);
- the regions: which outputs read the pads and which read only the signal
  (``output_regions``), and a stretch of the padded signal without building it
  (``padded_slice``);
- the banded GEMM: outputs per block (``gemm_block``), whether its matrix fits
  (``gemm_fits``), which tap fills each cell of the band (``band_index``) and how a row splits
  into whole blocks and a ragged end (``GemmGeometry``);
- overlap-save: frame counts (``fft_frames``) and the frame sizes worth pricing
  (``fft_candidates``, ``next_fast_len``);
- chunks: how many outputs one chunk of the whole-signal loop runs (``chunk_outputs``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from convcli.core.spec import ConvSpec


def edge_extent(n: int, spec: ConvSpec, k: int) -> int:
    """How many samples at each end of a signal of ``n`` the pads are made of."""
    return min(n, max(spec.pads(k)) + 1)


def edge_indices(n: int, h: int, tail_length: int, spec: ConvSpec,
                 k: int) -> tuple[list[int], list[int]] | None:
    """Where each pad sample comes from, as indices into ``concat(head, tail)``.

    ``head = x[..., :h]``, ``tail = x[..., n − tail_length:]``; ``spec.source`` says which sample
    fills each pad position. None for zero padding (the pads are zeros).

    >>> edge_indices(5, 3, 3, ConvSpec(mode="full", padding="reflect"), 3)
    ([2, 1], [4, 2])
    """
    if spec.padding == "zeros":
        return None
    left, right = spec.pads(k)

    def index(positions: range) -> list[int]:
        sources = [spec.source(m, n, k) for m in positions]
        return [t if t < h else h + t - (n - tail_length) for t in sources]  # type: ignore[operator]

    return index(range(left)), index(range(left + n, left + n + right))


def left_edge_indices(spec: ConvSpec, k: int) -> list[int] | None:
    """Where each sample of the left pad comes from, as indices into the signal's first
    ``left + 1`` samples; None for zero padding. Reflect and replicate read only the
    signal's start whatever its length (a stream of unknown length can pad its left end);
    circular padding reads its tail (``edge_indices``, which needs the length).

    >>> left_edge_indices(ConvSpec(mode="full", padding="reflect"), 3)
    [2, 1]
    """
    if spec.padding == "zeros":
        return None
    if spec.padding == "circular":
        raise ValueError("circular padding's left pad is the signal's tail: use edge_indices")
    left = spec.pads(k)[0]
    # the length only matters past the signal's end: any n > left gives the same indices
    return [spec.source(m, left + 1, k) for m in range(left)]  # type: ignore[misc]


def output_regions(n_out: int, left: int, length: int, span: int,
                   stride: int) -> list[tuple[int, int]]:
    """Outputs ``[0, m_a)`` read the left pad, ``[m_a, m_b)`` only the signal, the rest the right pad.

    >>> output_regions(8, 1, 8, 3, 1)
    [(0, 1), (1, 7), (7, 8)]
    """
    m_a = min(n_out, -(-left // stride))
    m_b = max(m_a, min(n_out, (left + length - span) // stride + 1))
    return [(m0, m1) for m0, m1 in ((0, m_a), (m_a, m_b), (m_b, n_out)) if m0 < m1]


def padded_slice(left_pad: Any, x: Any, right_pad: Any, a: int, b: int,
                 concat: Callable[[list], Any]) -> Any:
    """``xp[..., a:b]`` of the padded signal ``xp = [left_pad, x, right_pad]`` without building
    ``xp``: a view of ``x`` where no pad is involved."""
    left, length = left_pad.shape[-1], x.shape[-1]
    pieces = []
    for start, part in ((0, left_pad), (left, x), (left + length, right_pad)):
        lo, hi = max(a, start), min(b, start + part.shape[-1])
        if lo < hi:
            pieces.append(part[..., lo - start : hi - start])
    return pieces[0] if len(pieces) == 1 else concat(pieces)


# --- chunks --------------------------------------------------------------------------------
#: Outputs per chunk (× rows) for the whole-signal loop: ~4 MB of float32 working set (cache).
CHUNK_ELEMENTS = 1 << 20
#: On a GPU, chunks only bound memory: each one costs kernel launches and the device has room.
CUDA_CHUNK_ELEMENTS = 1 << 25


def chunk_elements(device) -> int:
    """Outputs × rows per chunk of the whole-signal loop on ``device`` (a name or torch device)."""
    return CUDA_CHUNK_ELEMENTS if str(device).startswith("cuda") else CHUNK_ELEMENTS


def chunk_outputs(rows: int, stride: int, elements: int = CHUNK_ELEMENTS) -> int:
    """Outputs per chunk of ``rows`` rows so that a chunk's working set stays near ``elements``.

    >>> chunk_outputs(2, 1)
    524288
    """
    return max(elements // max(rows, 1) // stride, 1)


# --- the banded GEMM ----------------------------------------------------------------------
#: Bytes of one banded GEMM matrix at most: ``(B·s + K − s) × B`` values with ``B ≥ (K − s)/s``
#: grows as K², 18 GB at 48 000 taps; past this, ``direct`` multiplies the taps instead
#: (``F.conv1d`` in torch, ``numpy.correlate`` in numpy)
GEMM_MAX_BAND_BYTES = 1 << 28


def gemm_fits(span: int, stride: int, itemsize: int = 4) -> bool:
    """The banded GEMM's matrix for this kernel span stays within ``GEMM_MAX_BAND_BYTES``.

    >>> gemm_fits(4095, 1), gemm_fits(16383, 1)
    (True, False)
    """
    block = gemm_block(span, stride)
    return (block * stride + span) * block * itemsize <= GEMM_MAX_BAND_BYTES


def gemm_block(span: int, stride: int) -> int:
    """Outputs per banded block: the fewest that let two blocks cover a kernel span.

    A block of B outputs costs B·s + K − s multiply-adds per output, so B should be as small as
    the band allows, ≥ (K − s)/s, rounded up to a multiple of 8 (whole SIMD lanes) and at
    least 16 (narrower products lose more to call and packing overhead than the band saves).
    Measured on this CPU (numpy and torch, float32 and float64, k = 3…255, s = 1…5), this was
    the fastest block or within noise of it; the former 64/128 floor cost 1.3-2.5× for k < 32
    or s > 1.

    >>> gemm_block(31, 1), gemm_block(3, 1), gemm_block(255, 3)
    (32, 16, 88)
    """
    least = -(-(span - stride) // stride)
    return max(16, -(-least // 8) * 8)


#: numpy.fft's time per sample grows past 2^17-point frames (cache; 48 000 taps, float32 run in
#: float32, one thread: 18 ns per output at 2^17, 20 at 2^18-2^19, 36 at 2^20), so the numpy
#: engine's frames stop at this size or the power of two ≥ 2K, whichever is larger
NUMPY_MAX_NFFT = 1 << 17
#: the numpy engine joins rows whose padded length is at most this end to end (one GEMM for a
#: batch of short clips); longer rows are read in place, with no padded copy
JOIN_ROW = 1 << 16


def joins_rows(rows: int, padded: int) -> bool:
    """The numpy engine runs ``rows`` rows of ``padded`` samples (pads included) joined end to
    end into one (``numpy_backend.conv1d_joined``)."""
    return rows > 1 and padded <= JOIN_ROW


def band_index(span: int, stride: int, block: int) -> np.ndarray:
    """Which tap fills each cell of the band: ``M[r, i] = w[index[r, i]]`` (``span`` = 0).

    One block of ``block`` outputs spans ``hop + tail = block·s + max(K − s, 0)`` samples; output
    ``i`` reads sample ``r`` through tap ``r − s·i`` where that lies in ``0 … K−1``. Index
    ``span`` points at a zero appended to the (oriented, dilated) kernel row.

    Shape: ``-> [hop + tail, block]``.

    >>> band_index(3, 1, 2).tolist()   # K = 3, one sample per output, 2 outputs
    [[0, 3], [1, 0], [2, 1], [3, 2]]
    """
    rows = np.arange(block * stride + max(span - stride, 0))[:, None]
    t = rows - stride * np.arange(block)[None, :]
    return np.where((t >= 0) & (t < span), t, span)


@dataclass(frozen=True)
class GemmGeometry:
    """The blocks of one banded GEMM: block ``j`` of ``block`` outputs is
    ``X_j @ M1 + X_{j+1}[:tail] @ M2``, ``X_j`` the ``hop = block·s`` samples from ``j·hop``.

    >>> g = GemmGeometry.of(31, 1)
    >>> g.block, g.hop, g.tail, g.split(100, 70)
    (32, 32, 30, (2, 64))
    """

    span: int
    stride: int
    block: int

    @classmethod
    def of(cls, span: int, stride: int) -> GemmGeometry:
        return cls(span, stride, gemm_block(span, stride))

    @property
    def hop(self) -> int:
        return self.block * self.stride

    @property
    def tail(self) -> int:
        """How far a block's outputs read into the next block's samples."""
        return max(self.span - self.stride, 0)

    def split(self, length: int, n_out: int) -> tuple[int, int]:
        """``(full, main)``: how many whole blocks lie inside a row of ``length`` samples
        (block ``j`` reads ``[j·hop, (j+1)·hop + tail)``), and the outputs they give; the
        ``n_out − main`` outputs left run from a zero-padded copy of the ragged end."""
        if not n_out:
            return 0, 0
        full = min(max(0, (length - self.tail) // self.hop), -(-n_out // self.block))
        return full, min(full * self.block, n_out)

    def ragged(self, count: int) -> tuple[int, int]:
        """``(blocks, samples)`` a ragged end of ``count`` outputs runs as (padded with zeros)."""
        blocks = -(-count // self.block)
        return blocks, blocks * self.hop + self.tail


# --- overlap-save ------------------------------------------------------------------------
def fft_frames(length: int, span: int, nfft: int) -> tuple[int, int, int, int]:
    """``(n1, step, frames, need)`` for overlap-save of ``length`` samples with frames of
    ``nfft``: ``n1`` stride-1 outputs, each frame keeps ``step = nfft − K + 1`` of them, and
    ``frames`` frames read ``need`` samples (the last one zero-padded past ``length``).

    >>> fft_frames(100, 31, 64)
    (70, 34, 3, 132)
    """
    n1 = length - span + 1
    step = nfft - span + 1
    frames = -(-n1 // step)
    return n1, step, frames, (frames - 1) * step + nfft


def fft_candidates(padded: int, span: int) -> list[int]:
    """Frame sizes worth pricing: powers of two from 2K up, and one frame for the whole signal;
    none shorter than the span (a frame keeps ``nfft − K + 1`` outputs).

    >>> fft_candidates(100, 31), fft_candidates(3, 4)
    ([64, 100], [4])
    """
    sizes = []
    n = max(64, 1 << (2 * span - 1).bit_length())
    whole = next_fast_len(max(padded, span))
    while n < whole and n <= 1 << 22:
        sizes.append(n)
        n *= 2
    sizes.append(whole)
    return sizes


def numpy_max_nfft(span: int) -> int:
    """The numpy engine's largest FFT frame: ``NUMPY_MAX_NFFT`` or the power of two ≥ 2K."""
    return max(NUMPY_MAX_NFFT, 1 << (2 * span - 1).bit_length())


def next_fast_len(n: int) -> int:
    """Smallest 2^a·3^b·5^c ≥ n (sizes pocketfft and cuFFT handle fastest)."""
    best = 1 << max(n - 1, 0).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best
