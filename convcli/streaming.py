"""The stream: a source's blocks through an engine's ``Streamer`` into a sink, in bounded memory.

``start`` chooses the engine and the method from the first block (it is read before anything
is chosen: the choice's statistics come from it) and opens the ``Streamer``; ``pump`` then
runs three things side by side, so that output flows within about a block of input:

    reader thread:  block j+1 read and decoded (``io.blocks``), into pinned memory on a GPU
    this thread:    block j checked (NaN/Inf, peak), copied to the device, pushed, its output's
                    copy back to the host started (``Engine.upload``/``download``)
    writer thread:  block j−1's output scaled, rounded and written (``io.sinks``)

Memory holds a few blocks, the kernel span and the engine's chunk, never the signal. The
pipeline (``convcli.pipeline.run_streamed``) decides what streams and reports the result;
nothing here prints.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from convcli.core.kernels import bias_for, check_representable, depthwise, to_weight
from convcli.core.spec import ConvSpec
from convcli.io.blocks import BlockSource, check_block_finite, read_ahead, settle
from convcli.io.pipes import Worker
from convcli.plan.geometry import edge_extent
from convcli.plan.selection import engine_for, tap_choice


@dataclass
class Started:
    """A stream ready to run: the engine, its ``Streamer``, the device, the weight as numpy."""

    engine: object
    streamer: object
    device: str
    weight: np.ndarray
    first: np.ndarray  # the first block, read to choose by
    first_on_device: object  # and on the device

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    @property
    def gain(self) -> float:
        """The kernel's largest absolute sum (the FFT error bound's factor)."""
        return float(np.abs(self.weight).sum((1, 2)).max())


def start(source: BlockSource, blocks: Iterator[np.ndarray], coefficients: np.ndarray,
          spec: ConvSpec, *, method: str = "auto", device: str = "cpu",
          allow_nonfinite: bool = False, block: int = 1 << 19,
          bias: np.ndarray | None = None) -> Started:
    """The engine (``plan.selection.engine_for``) and a ``Streamer`` for ``source``, chosen by
    its first block (taken from ``blocks``). Circular padding's left pad is the signal's tail:
    it is read first (the source is seekable, or read through once: ``tail_by_reading``).
    ``bias``: one value for every output channel or one per channel (``core.kernels.bias_for``)."""
    from convcli import engines
    from convcli.io.blocks import tail_by_reading

    weight_np, groups = to_weight(coefficients, source.channels, spec.groups)
    run_spec = spec if groups == spec.groups else _with_groups(spec, groups)
    check_representable(weight_np, source.dtype)
    k, n = weight_np.shape[-1], source.frames
    tail = None
    if spec.padding == "circular":  # before the first block is read: this may read through
        assert n is not None, "circular padding streams a seekable source"
        tail = tail_by_reading(source, edge_extent(n, run_spec, k), block)
    first = next(blocks)
    engine = engines.load(engine_for(device, depthwise(weight_np.shape[0], weight_np.shape[1],
                                                       groups)))
    weight_np = weight_np.astype(first.dtype)
    weight = engine.asarray(weight_np, device)
    x = engine.upload(first, device)
    choice = engine.choose_method(n or _nominal(), k, run_spec, method, batch=first.shape[0],
                                  channels=first.shape[1], out_channels=weight_np.shape[0],
                                  dtype=first.dtype, device=device,
                                  x=x if method == "auto" else None)
    if allow_nonfinite:  # blocks may hold NaN/Inf: the algorithm that multiplies the taps
        choice = tap_choice(choice, engine.name, "--allow-nonfinite")
    if tail is not None:
        tail = engine.upload(tail.astype(first.dtype), device)
    b = None if bias is None else engine.asarray(
        bias_for(bias, weight_np.shape[0]).astype(first.dtype), device)
    streamer = engine.streamer(weight, run_spec, n, None, tail, choice, b)
    return Started(engine, streamer, device, weight_np, first, x)


def _with_groups(spec: ConvSpec, groups: int) -> ConvSpec:
    from dataclasses import replace

    return replace(spec, groups=groups)


def _nominal() -> int:
    from convcli.engines.driver import NOMINAL_LENGTH

    return NOMINAL_LENGTH


@dataclass
class Pumped:
    """What ``pump`` did: blocks and frames in, frames out, the input's and output's peaks
    (the output's after the gain), and the seconds reading, computing and writing took (they
    overlap)."""

    blocks: int = 0
    frames: int = 0
    written: int = 0
    peak_in: float = 0.0
    peak_out: float = 0.0
    spent: dict = field(default_factory=lambda: {"read": 0.0, "compute": 0.0, "write": 0.0})


def pump(started: Started, blocks: Iterator[np.ndarray], write: Callable | None, *,
         name: str, gain_db: float | None = None, allow_nonfinite: bool = False,
         on_block: Callable[[int], None] | None = None) -> Pumped:
    """Every block of ``blocks`` (after ``started.first``) through the stream; each output
    block ``[B, O, t]`` (numpy, scaled by ``gain_db``) goes to ``write`` on the writer thread
    (``None``: only its peak is measured, ``--normalize-output``'s first pass).
    ``on_block(frames done)`` follows each block (progress)."""
    engine, streamer, device = started.engine, started.streamer, started.device
    done = Pumped()
    scale = 10.0 ** (gain_db / 20.0) if gain_db else None

    def timed(rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        while True:
            clock = time.perf_counter()
            rows = next(rest, None)
            done.spent["read"] += time.perf_counter() - clock
            if rows is None:
                return
            yield rows

    def out(handle) -> None:
        clock = time.perf_counter()
        rows = engine.host(handle)
        if rows.shape[-1]:
            rows = rows if scale is None else rows * np.asarray(scale, rows.dtype)
            if write is None:
                done.peak_out = max(done.peak_out, float(np.max(np.abs(rows))))
            else:
                write(rows)
            done.written += rows.shape[-1]
        done.spent["write"] += time.perf_counter() - clock

    with Worker("convcli-read") as reader, Worker("convcli-write") as writer:
        pending = None

        def emit(y) -> None:  # one write in flight: its error surfaces at the next block
            nonlocal pending
            handle = engine.download(y)
            if pending is not None:
                pending.result()
            pending = writer.submit(out, handle)

        try:
            for rows in _chain(started.first, read_ahead(timed(blocks), reader)):
                clock = time.perf_counter()
                _check(rows, done, name, allow_nonfinite)
                x = started.first_on_device if done.blocks == 0 else engine.upload(rows, device)
                y = streamer.push(x)
                done.spent["compute"] += time.perf_counter() - clock
                emit(y)
                done.frames += rows.shape[-1]
                done.blocks += 1
                if on_block is not None:
                    on_block(done.frames)
            emit(streamer.finish())
        except BaseException:
            if pending is not None:  # the sink is abandoned next: no write may still run
                settle(pending)
            raise
        if pending is not None:
            pending.result()
    return done


def _chain(first, rest):
    yield first
    yield from rest


def _check(rows: np.ndarray, done: Pumped, name: str, allow_nonfinite: bool) -> None:
    """One min/max pass over a block: its peak, and a NaN/Inf shows in it."""
    from convcli.engines.numpy_backend import extremes

    if not rows.size:
        return
    low, high = extremes(rows)
    if not math.isfinite(low + high):
        if not allow_nonfinite:
            check_block_finite(rows, done.frames, name)
        low, high = 0.0, float(np.max(np.abs(rows[np.isfinite(rows)]), initial=0.0))
    done.peak_in = max(done.peak_in, -low, high)
