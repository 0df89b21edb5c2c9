"""The one convolution driver both engines run: checks, choice, pads, regions, chunks, streams.

An ``Engine`` is the whole algorithm above the arrays: ``conv1d`` checks the shapes and the
spec, chooses the method (``convcli.plan.selection``), builds a plan for the kernel, makes the
pads from the signal's ends (``spec.source`` says which sample fills each pad position), and
runs the plan over the output's regions: the outputs that read a pad run on a small joined
copy, the middle reads the signal in place, in chunks that keep the working set in cache
(``convcli.plan.geometry``). ``Streamer`` does the same for a signal that arrives in blocks
(overlap-save state carried from block to block), so a stream equals the whole-signal result.
A bias (one value per output channel, ``nn.Conv1d``'s) is added to what either returns, here
once for every plan, engine and stream.

A backend subclasses ``Engine`` with the few things that differ between array libraries
(``convcli.engines.numpy_backend``, ``convcli.engines.torch_backend``): how to join, allocate,
index and measure arrays, how to build and run a plan, and a whole-signal fast path where it
has one. No array library is imported here.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

from convcli.core.spec import ConvSpec
from convcli.plan import geometry
from convcli.plan.geometry import (
    chunk_outputs,
    edge_extent,
    edge_indices,
    left_edge_indices,
    output_regions,
    padded_slice,
)
from convcli.plan.selection import (
    MethodChoice,
    Observed,
    choose_method,
    costs_for,
    dynamic_range,
)


class Plan:
    """Valid, strided cross-correlation with one kernel: ``seg[B, C, P] -> [B, O, ⌊(P−K)/s⌋+1]``.

    ``granule``: a stream runs outputs in multiples of it but for the last block (whole
    frames of an FFT). ``chunk_elements``: outputs × rows one chunk of the whole-signal loop
    runs (``geometry.chunk_elements`` of the device; None: the CPU's, read when asked).
    """

    span: int
    stride: int
    out_channels: int
    granule: int = 1
    chunk_elements: int | None = None

    def outputs(self, seg_length: int) -> int:
        return max(0, (seg_length - self.span) // self.stride + 1)

    @property
    def elements(self) -> int:
        return geometry.CHUNK_ELEMENTS if self.chunk_elements is None else self.chunk_elements

    def chunk_outputs(self, rows: int) -> int:
        return chunk_outputs(rows, self.stride, self.elements)


class OverlapSavePlan(Plan):
    """The geometry of an overlap-save plan: frames of ``nfft`` hop by ``step = nfft − K + 1``.

    A chunk runs at least four frames per row (the FFT's work per output falls with the frame).
    """

    def __init__(self, span: int, stride: int, nfft: int):
        self.span, self.stride = span, stride
        self.nfft = max(nfft, span)
        self.step = self.nfft - span + 1

    def chunk_outputs(self, rows: int) -> int:
        return max(1, max(4 * self.elements // max(rows, 1), 4 * self.step) // self.stride)


class Engine:
    """``conv1d`` and ``Streamer`` over a backend's arrays (see the module doc).

    A backend sets ``name`` (``numpy`` or ``torch``, as ``plan.selection`` knows it) and
    defines the methods below that raise ``NotImplementedError``.
    """

    name: str = ""
    #: the whole-signal path can check each piece of the signal for NaN/Inf just before it
    #: multiplies it (then the choice need not read the signal first: ``conv1d_chosen``)
    fuses_finite_check = False

    # --- what a backend defines -------------------------------------------------------------
    def asarray(self, array: Any, device: str = "cpu") -> Any:
        """A host numpy array as this backend's array on ``device`` (no copy where it can)."""
        raise NotImplementedError

    def to_numpy(self, y: Any) -> Any:
        """A result as a numpy array on the host (the sink's boundary: one copy at most)."""
        raise NotImplementedError

    def no_grad(self) -> Any:
        """A context in which nothing records a graph for autograd."""
        return contextlib.nullcontext()

    def concat(self, parts: list) -> Any:
        """The arrays joined along the last axis."""
        raise NotImplementedError

    def zeros(self, like: Any, shape: tuple) -> Any:
        raise NotImplementedError

    def output(self, like: Any, shape: tuple, *sources: Any) -> Any | None:
        """An uninitialised output to compute into, or None where each piece must be a new
        array (autograd through ``sources``)."""
        raise NotImplementedError

    def take(self, ends: Any, index: list[int]) -> Any:
        """``ends[..., index]``."""
        raise NotImplementedError

    def extremes(self, x: Any) -> tuple[float, float]:
        """``(min, max)`` of ``x`` as floats (NaN where it holds one)."""
        raise NotImplementedError

    def host_sample(self, x: Any) -> Any:
        """``plan.selection.sample_runs`` of ``x``, flattened, as a numpy array on the host."""
        raise NotImplementedError

    def device_of(self, x: Any) -> str:
        raise NotImplementedError

    def check(self, x: Any, weight: Any, spec: ConvSpec) -> None:
        """Refuse a weight that does not fit ``x`` in ``spec.groups`` groups."""
        channels = x.shape[1]
        out_channels, per_group, _ = weight.shape
        if per_group * spec.groups != channels or out_channels % spec.groups:
            raise ValueError(f"weight {tuple(weight.shape)} does not fit {channels} channels in "
                             f"{spec.groups} groups")

    def add(self, y: Any, column: Any) -> Any:
        """``y + column``, into ``y`` where nothing needs it unchanged (``y`` is the engine's
        own output, never the caller's array)."""
        y += column
        return y

    def add_bias(self, y: Any, bias: Any | None) -> Any:
        """``y [B, O, t] + bias [O]``, one value per output channel (``nn.Conv1d``'s bias)."""
        return y if bias is None else self.add(y, bias[:, None])

    def make_plan(self, weight: Any, spec: ConvSpec, choice: MethodChoice, dtype: Any) -> Plan:
        raise NotImplementedError

    def run_plan(self, plan: Plan, seg: Any, out: Any | None) -> Any:
        """``plan`` over ``seg`` in chunks, into ``out`` if given; returns the outputs."""
        raise NotImplementedError

    def whole(self, plan: Plan, x: Any, left_pad: Any, right_pad: Any, n_out: int,
              nonfinite: list | None) -> Any | None:
        """The result by a path of the backend's own for the whole signal, or None (the
        regions then run). With ``nonfinite`` a list, see ``run_choice``."""
        return None

    # --- the driver --------------------------------------------------------------------------
    def edge_pads(self, head: Any, tail: Any, n: int, spec: ConvSpec, k: int) -> tuple[Any, Any]:
        """The left and right pads of a signal of ``n`` samples, from its ends only.

        ``head = x[..., :h]`` and ``tail = x[..., n−h:]`` with ``h = edge_extent(n, spec, k)``
        (or the whole signal for both). Which sample fills each pad position is
        ``spec.source``'s answer.

        Shape: ``[B, C, h], [B, C, h] -> [B, C, left], [B, C, right]``.
        """
        left, right = spec.pads(k)
        indices = edge_indices(n, head.shape[-1], tail.shape[-1], spec, k)
        if indices is None:
            rows = tuple(head.shape[:-1])
            return self.zeros(head, (*rows, left)), self.zeros(head, (*rows, right))
        ends = self.concat([head, tail])
        return self.take(ends, indices[0]), self.take(ends, indices[1])

    def observe(self, x: Any) -> Observed:
        """The signal's peak (``inf`` with NaN/Inf) and its dynamic range, for the choice."""
        low, high = self.extremes(x)
        peak = max(-low, high) if math.isfinite(low) and math.isfinite(high) else math.inf
        return Observed(peak, lambda p: dynamic_range(self.host_sample(x), peak=p))

    def choose_method(self, length: int, k: int, spec: ConvSpec, requested: str = "auto", *,
                      batch: int = 1, channels: int = 1, out_channels: int | None = None,
                      dtype: Any = "float32", device: str | None = None, x: Any = None,
                      costs: dict | None = None) -> MethodChoice:
        """``plan.selection.choose_method`` for this engine; with ``x``, by its statistics."""
        if device is None:
            device = "cpu" if x is None else self.device_of(x)
        observed = None if x is None or requested == "fft" or not _size(x) else self.observe(x)
        return choose_method(length, k, spec, requested, batch=batch, channels=channels,
                             out_channels=out_channels, dtype=dtype, engine=self.name,
                             device=device, observed=observed, costs=costs)

    def conv1d(self, x: Any, weight: Any, spec: ConvSpec,
               method: str | MethodChoice = "auto", bias: Any | None = None) -> Any:
        """Convolve (or correlate) a batch of multi-channel signals.

        Args:
            x: input signals.
            weight: the kernel as the user wrote it (not flipped).
            spec: pads (mode or explicit), padding, stride, dilation, correlate, groups.
            method: ``auto``, ``direct`` or ``fft`` (or a ``choose_method`` result); all give
                the same numbers to float tolerance.
            bias: added to every output of channel o after the convolution (``[O]``), or None.

        Shape:
            ``x [B, C, T]``, ``weight [O, C/G, k]``, ``bias [O]`` ->
            ``[B, O, spec.output_length(T, k)]``.
        """
        if isinstance(method, MethodChoice):
            self.check(x, weight, spec)
            check_bias(weight, bias)
            spec.check(x.shape[-1], weight.shape[-1])
            return self.add_bias(self.run_choice(x, weight, spec, method), bias)
        return self.conv1d_chosen(x, weight, spec, method, bias)[0]

    def conv1d_chosen(self, x: Any, weight: Any, spec: ConvSpec, method: str = "auto",
                      bias: Any | None = None) -> tuple[Any, MethodChoice]:
        """``conv1d`` by ``choose_method``'s choice for ``x``, and that choice.

        The signal's statistics only ever veto an FFT (its peak and dynamic range) or send
        NaN/Inf to the tap algorithm. So where the cost model alone picks the GEMM and the
        backend checks each piece just before multiplying it (``fuses_finite_check``: the
        check brings the piece into the core's cache, instead of a pass of its own through
        memory ahead of the GEMM: 0.5 ms of 4 for 64 × 1 s), the GEMM runs first, and that
        is the choice ``choose_method(x=x)`` makes for a finite signal; a signal with NaN or
        Inf is then chosen for with ``x`` read and runs again.
        """
        self.check(x, weight, spec)
        check_bias(weight, bias)
        batch, channels, length = x.shape
        out_channels, _, k = weight.shape
        spec.check(length, k)
        shape = {"batch": batch, "channels": channels, "out_channels": out_channels,
                 "dtype": x.dtype, "device": self.device_of(x)}
        costs = costs_for(length, k, spec, **shape, engine=self.name)
        if self.fuses_finite_check:
            blind = self.choose_method(length, k, spec, method, **shape, costs=costs)
            if blind.algorithm == "gemm":
                nonfinite: list = []
                y = self.run_choice(x, weight, spec, blind, nonfinite)
                if not nonfinite:
                    return self.add_bias(y, bias), blind
        choice = self.choose_method(length, k, spec, method, **shape, x=x, costs=costs)
        return self.add_bias(self.run_choice(x, weight, spec, choice), bias), choice

    def run_choice(self, x: Any, weight: Any, spec: ConvSpec, choice: MethodChoice,
                   nonfinite: list | None = None) -> Any:
        """``conv1d`` by a method already chosen (the checks passed). Where ``nonfinite`` is a
        list, an entry is appended to it if ``x`` holds NaN or Inf (read as it is computed
        where the backend can), and what returns is then no result."""
        batch, _channels, length = x.shape
        k = weight.shape[-1]
        plan = self.make_plan(weight, spec, choice, x.dtype)
        h = edge_extent(length, spec, k)
        left_pad, right_pad = self.edge_pads(x[..., :h], x[..., length - h :], length, spec, k)
        n_out = spec.output_length(length, k)
        y = self.whole(plan, x, left_pad, right_pad, n_out, nonfinite)
        if y is not None:
            return y
        if nonfinite is not None and not all(map(math.isfinite, self.extremes(x))):
            nonfinite.append(0)  # the regions read the signal in a pass of its own first
            return x[..., :0]
        out = self.output(x, (batch, plan.out_channels, n_out), x, weight)
        s, span = spec.stride, plan.span
        parts = []
        for m0, m1 in output_regions(n_out, left_pad.shape[-1], length, span, s):
            seg = padded_slice(left_pad, x, right_pad, s * m0, s * (m1 - 1) + span, self.concat)
            parts.append(self.run_plan(plan, seg, None if out is None else out[..., m0:m1]))
        return out if out is not None else self.concat(parts)

    def streamer(self, weight: Any, spec: ConvSpec, n: int | None = None, head: Any = None,
                 tail: Any = None, method: str | MethodChoice = "auto",
                 bias: Any | None = None) -> Streamer:
        """A ``Streamer`` for a signal of ``n`` samples (None: known at its end) whose ends are
        ``head`` and ``tail`` (None: held back from the blocks as they pass)."""
        return Streamer(self, weight, spec, n, head, tail, method, bias)

    # --- streams: host blocks in, host blocks out --------------------------------------------
    def host_buffer(self, shape: tuple, dtype: str, device: str) -> Any:
        """Host memory (numpy) for a block a stream reads next, on its way to ``device``
        (pinned on a GPU, so that its copy runs asynchronously)."""
        import numpy as np  # numpy only: the driver never imports torch

        return np.empty(shape, dtype)

    def upload(self, rows: Any, device: str) -> Any:
        """A host block ``[B, C, t]`` as this backend's array on ``device`` (its copy started)."""
        return self.asarray(rows, device)

    def download(self, y: Any) -> Any:
        """Start copying a stream's output to the host; ``host(handle)`` waits for it."""
        return y

    def host(self, handle: Any) -> Any:
        """The output ``download`` started, as a numpy array on the host."""
        return self.to_numpy(handle)


def _size(x: Any) -> int:
    return math.prod(x.shape)


def check_bias(weight: Any, bias: Any | None) -> None:
    """Refuse, before any work, a bias that is not one value per output channel ``[O]``."""
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"bias {tuple(bias.shape)} does not fit {weight.shape[0]} output channels")


#: the length a stream of unknown length is priced at when its method is chosen (an hour of
#: 48 kHz: long enough that the per-call costs of a method do not decide)
NOMINAL_LENGTH = 48_000 * 3600
#: a stream runs its outputs in pieces of this many (a whole number of the plan's granules),
#: counted from its first output: the pieces, and so the sums, are the same whatever blocks
#: the signal came in (a pipe read as its bytes arrive gives what the file streamed gives)
STREAM_PIECE = 1 << 17


class Streamer:
    """Convolve a signal that arrives in blocks (overlap-save state carried between them).

    The signal's length ``n`` may be known (a file, an honest header) or not (``n`` None: a
    pipe whose length shows only at its end). The pads come from the signal's ends: given
    first (``head = x[..., :h]``, ``tail = x[..., n−h:]``, ``h = edge_extent(n, spec, k)``),
    or held back from the blocks as they pass, which needs no seeking: the first
    ``max(pads) + 1`` samples wait until the left pad (reflect reads them, replicate the first)
    can be made; the last ``max(pads) + 1`` are kept until the end for the right pad. Zero
    padding holds nothing back. Circular padding, whose left pad is the signal's tail, needs
    ``n`` and ``tail`` first (``ValueError`` without them).

    ``push`` blocks in order, then ``finish``: what they return, joined, equals
    ``engine.conv1d(x, weight, spec)``. Memory: the block, the kernel span, the plan's chunk.
    For an unknown length the spec is checked at ``finish`` (``spec.check``: a kernel longer
    than a ``valid`` signal is found only then). ``method``: a ``MethodChoice``, or a name to
    choose by (which needs ``head``).

    Shape: blocks ``[B, C, t]`` -> outputs ``[B, O, t_out]`` (any ``t``, also shorter than K);
    ``bias [O]`` is added to each.
    """

    def __init__(self, engine: Engine, weight: Any, spec: ConvSpec, n: int | None = None,
                 head: Any = None, tail: Any = None, method: str | MethodChoice = "auto",
                 bias: Any | None = None):
        out_channels, _per_group, k = weight.shape
        if n is not None:
            spec.check(n, k)
        check_bias(weight, bias)
        self.bias = bias
        if spec.padding == "circular" and (n is None or tail is None):
            raise ValueError("circular padding reads the signal's tail first: give n and tail")
        self.engine, self.spec, self.k, self.n = engine, spec, k, n
        self.n_out = None if n is None else spec.output_length(n, k)
        reach = max(spec.pads(k)) + 1  # samples at each end the pads are made of
        self.reach = reach if n is None else min(reach, n)
        self.need = 0 if spec.padding == "zeros" else self.reach  # held back before any output
        if isinstance(method, MethodChoice):
            self.choice = method
        elif head is None:
            raise ValueError("choosing a method needs the signal's head; or pass a MethodChoice")
        else:
            self.choice = engine.choose_method(
                n or NOMINAL_LENGTH, k, spec, method, batch=head.shape[0],
                channels=head.shape[1], out_channels=out_channels, dtype=head.dtype,
                device=engine.device_of(head))
        self.plan = engine.make_plan(weight, spec, self.choice,
                                     (weight if head is None else head).dtype)
        granule = self.plan.granule
        self.piece = max(1, -(-STREAM_PIECE // granule)) * granule
        self.head, self.tail = head, tail
        # hold the last samples back for the right pad (zeros need none)
        self.keep_tail = tail is None and spec.padding != "zeros"
        self.held: list = []  # blocks that arrived before the left pad could be made
        self.waiting: list = []  # blocks after the buffer, not yet a whole piece
        self.waiting_length = 0
        self.buffer: Any = None  # the padded signal from global position self.start on
        self.start = 0
        self.done = 0  # outputs emitted
        self.received = 0  # samples of x pushed

    def push(self, block: Any) -> Any:
        """The outputs that ``block`` completes (possibly none)."""
        self.received += block.shape[-1]
        if self.n is not None and self.received > self.n:
            raise ValueError(f"pushed {self.received} samples into a stream of {self.n}")
        if self.keep_tail:
            self._keep(block)
        if self.buffer is None:
            self.held.append(block)
            if self.received < self.need and self.received != self.n:
                return self.engine.zeros(block, (block.shape[0], self.plan.out_channels, 0))
            block = self._begin()
        # blocks wait in a list until they complete a piece, then are joined once: joining
        # each block onto the buffer would copy the buffer again for every block
        self.waiting.append(block)
        self.waiting_length += block.shape[-1]
        end = self.start + self.buffer.shape[-1] + self.waiting_length
        plan = self.plan
        if end < plan.stride * (self.done + self.piece - 1) + plan.span:
            return self.engine.zeros(block, (block.shape[0], plan.out_channels, 0))
        self._join()
        return self._drain(final=False)

    def _join(self, *more: Any) -> None:
        self.buffer = self.engine.concat([self.buffer, *self.waiting, *more])
        self.waiting, self.waiting_length = [], 0

    def finish(self) -> Any:
        """The last outputs; every sample must have been pushed (of ``n``, if it was given)."""
        if self.n is None:
            self.spec.check(self.received, self.k)
            self.n, self.n_out = self.received, self.spec.output_length(self.received, self.k)
            self.reach = min(self.reach, self.n)
        elif self.received != self.n:
            raise ValueError(f"the stream ended after {self.received} of {self.n} samples")
        if self.buffer is None:  # shorter than the samples held back: the whole signal is here
            x = self._begin()
            self.buffer = self.engine.concat([self.buffer, x, self._right_pad()])
        else:
            self._join(self._right_pad())
        y = self._drain(final=True)
        assert self.done == self.n_out
        return y

    def _keep(self, block: Any) -> None:
        """The last ``reach`` samples of x so far (a small copy, never a view of a block)."""
        if block.shape[-1] >= self.reach:
            self.tail = self.engine.concat([block[..., block.shape[-1] - self.reach :]])
        elif self.tail is None:
            self.tail = self.engine.concat([block])
        else:
            joined = self.engine.concat([self.tail, block])
            self.tail = joined[..., max(0, joined.shape[-1] - self.reach) :]

    def _begin(self) -> Any:
        """Make the left pad from the held-back head; returns the samples held back."""
        x = self.held[0] if len(self.held) == 1 else self.engine.concat(self.held)
        self.held = []
        if self.head is None:
            self.head = x[..., : self.reach]
        left = self.spec.pads(self.k)[0]
        if self.spec.padding == "circular":
            self.buffer = self.engine.edge_pads(self.head, self.tail, self.n, self.spec, self.k)[0]
        elif (index := left_edge_indices(self.spec, self.k)) is None:
            self.buffer = self.engine.zeros(x, (*x.shape[:2], left))
        else:
            self.buffer = self.engine.take(self.head, index)
        return x

    def _right_pad(self) -> Any:
        head = self.head if self.head.shape[-1] <= self.n else self.head[..., : self.n]
        tail = head if self.tail is None else self.tail[..., max(0, self.tail.shape[-1] - self.reach) :]
        return self.engine.edge_pads(head, tail, self.n, self.spec, self.k)[1]

    def _drain(self, final: bool) -> Any:
        """Run the outputs the buffer holds, in whole pieces of ``self.piece`` counted from the
        first output, and at the ``final`` call (the right pad in) the rest: the same pieces
        whatever the blocks, and whether or not the length was known first."""
        plan = self.plan
        s, span = plan.stride, plan.span
        end = self.start + self.buffer.shape[-1]
        ready = 0 if end < span else (end - span) // s + 1
        if self.n_out is not None:
            ready = min(ready, self.n_out)
        if not final:  # more to come: whole pieces now, the rest with the next block
            ready = max(self.done, ready // self.piece * self.piece)
        batch = self.buffer.shape[0]
        if ready > self.done:
            out = self.engine.output(self.buffer, (batch, plan.out_channels, ready - self.done),
                                     self.buffer)
            parts = []
            for m0 in range(self.done, ready, self.piece):
                m1 = min(ready, m0 + self.piece)
                seg = self.buffer[..., s * m0 - self.start : s * (m1 - 1) + span - self.start]
                into = None if out is None else out[..., m0 - self.done : m1 - self.done]
                parts.append(self.engine.run_plan(plan, seg, into))
            y = self.engine.add_bias(out if out is not None else self.engine.concat(parts),
                                     self.bias)
            self.done = ready
        else:
            y = self.engine.zeros(self.buffer, (batch, plan.out_channels, 0))
        drop = min(s * self.done, end) - self.start
        if drop > 0:
            self.buffer = self.buffer[..., drop:]
            self.start += drop
        return y
