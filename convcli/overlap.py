"""Overlap-save bookkeeping for a signal that arrives in blocks, shared by both engines.

The state is the padded signal from global position ``start`` on, how many outputs are out and
how many input samples came in. Each engine's ``Streamer`` says only how to join arrays, make an
empty result and run its plan on a segment; no numpy or torch here.
"""

from __future__ import annotations

from typing import Any


class BlockStreamer:
    """Push blocks ``[B, C, t]`` in order, get the outputs each one completes, then ``finish``.

    Subclasses call ``_begin`` and define ``_concat``, ``_empty`` and ``_run``.
    """

    def _begin(self, plan: Any, left: Any, right: Any, n: int, n_out: int) -> None:
        self.plan, self.left, self.right = plan, left, right
        self.n, self.n_out = n, n_out
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
