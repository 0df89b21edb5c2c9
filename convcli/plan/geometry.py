"""Index bookkeeping shared by both engines (torch and numpy); no array library here.

- which samples of a signal's ends fill its pads (``edge_extent``, ``edge_indices``),
- which outputs read the pads and which read only the signal (``output_regions``), and a
  stretch of the padded signal without building it (``padded_slice``),
- the overlap-save state of a signal that arrives in blocks (``BlockStreamer``).

Each engine says only how to join arrays, make an empty result and run its plan.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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


class BlockStreamer:
    """Push blocks ``[B, C, t]`` in order, get the outputs each one completes, then ``finish``.

    Subclasses call ``_begin`` and define ``_concat``, ``_empty`` and ``_run``.
    """

    def _begin(self, plan: Any, left: Any, right: Any, n: int, n_out: int,
               granule: int = 1) -> None:
        """``granule``: run outputs in multiples of it until the last block (whole overlap-save
        frames, so that no frame is cut short in the middle of the signal)."""
        self.plan, self.left, self.right = plan, left, right
        self.n, self.n_out, self.granule = n, n_out, granule
        self.buffer = left  # the padded signal from global position self.start on
        self.start = 0
        self.done = 0  # outputs emitted
        self.received = 0  # samples of x pushed

    def _concat(self, parts: list) -> Any:
        raise NotImplementedError

    def _empty(self, batch: int, length: int) -> Any:
        raise NotImplementedError

    def _run(self, seg: Any, length: int) -> Any:
        raise NotImplementedError

    def push(self, block: Any) -> Any:
        """The outputs that ``block`` completes (possibly none)."""
        self.received += block.shape[-1]
        if self.received > self.n:
            raise ValueError(f"pushed {self.received} samples into a stream of {self.n}")
        parts = [self.buffer, block] + ([self.right] if self.received == self.n else [])
        self.buffer = self._concat(parts)
        return self._drain()

    def finish(self) -> Any:
        """The last outputs; every sample must have been pushed."""
        if self.received != self.n:
            raise ValueError(f"the stream ended after {self.received} of {self.n} samples")
        y = self._drain()
        assert self.done == self.n_out
        return y

    def _drain(self) -> Any:
        s, span = self.plan.stride, self.plan.span
        end = self.start + self.buffer.shape[-1]
        ready = 0 if end < span else min(self.n_out, (end - span) // s + 1)
        if ready < self.n_out:  # more to come: whole granules now, the rest with the next block
            ready = self.done + (ready - self.done) // self.granule * self.granule
        if ready > self.done:
            seg = self.buffer[..., s * self.done - self.start : s * (ready - 1) + span - self.start]
            y = self._run(seg, ready - self.done)
            self.done = ready
        else:
            y = self._empty(self.buffer.shape[0], 0)
        drop = min(s * self.done, end) - self.start
        if drop > 0:
            self.buffer = self.buffer[..., drop:]
            self.start += drop
        return y


def filter_by_shape(arrays: list, run: Callable[[Any], tuple[Any, Any]],
                    join: Callable[[list], Any]) -> tuple[list, Any, int]:
    """``run(batch)`` once per group of arrays of equal ``[C, T]`` shape and dtype, joined along
    the batch axis by ``join``; its output ``[ΣB, O, T_out]`` is split back in input order.

    ``run`` returns ``(output, what ran)``. Returns the outputs (input order), what the first
    group's run returned beside its output, and the number of groups.
    """
    groups: dict[tuple, list[int]] = {}
    for index, array in enumerate(arrays):
        groups.setdefault((array.shape[1:], array.dtype.str), []).append(index)
    results: list = [None] * len(arrays)
    first = None
    for members in groups.values():
        batch = join([arrays[i] for i in members]) if len(members) > 1 else arrays[members[0]]
        y, ran = run(batch)
        first = ran if first is None else first
        start = 0
        for i in members:
            size = arrays[i].shape[0]
            results[i] = y[start : start + size]
            start += size
    return results, first, len(groups)
