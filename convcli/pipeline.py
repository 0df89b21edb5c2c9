"""Streaming: filter an audio file block by block, in memory bounded by the block and the kernel.

``stream_filter`` reads the input with soundfile in blocks, pushes them through an
``engine.Streamer`` (overlap-save state carried across blocks, the pads made from the signal's
head and tail, which are read first with a seek), and writes each block of output to the atomic
temporary output as it comes. The result is exactly the whole-signal result: every mode,
padding, stride and dilation, and integer PCM is rounded and clipped block by block with the
same ``signals.to_pcm`` as the whole path (rounding is per sample, so blocks change nothing).

``stream_block`` is the one place that decides "stream or whole" for ``convcli filter``.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from convcli.plan.costmodel import MethodChoice
from convcli.errors import InputError, OutputError, UsageError
from convcli.io.signals import (
    PCM,
    SOUNDFILE_FORMATS,
    WriteReport,
    format_from_path,
    read_bytes,
    sniff_format,
    to_pcm,
)

#: single audio inputs with more samples than this (all channels) stream by default (64 MB f32)
STREAM_SAMPLES = 1 << 24
#: default block, in frames (about 11 s at 48 kHz)
DEFAULT_BLOCK = 1 << 19

#: progress hook: called after each block with (frames done, frames in all)
ProgressHook = Callable[[int, int], None]


def audio_info(path: str) -> tuple[str, int, int, int] | None:
    """``(format, frames, channels, rate)`` of an audio file, or None for NPY/unknown/stdin."""
    if path == "-":
        return None
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
    except OSError:
        return None
    fmt = sniff_format(head)
    if fmt not in SOUNDFILE_FORMATS:
        return None
    import soundfile as sf

    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError, ValueError):
        return None
    return fmt, int(info.frames), int(info.channels), int(info.samplerate)


def stream_block(inputs: list[str], block: int | None, output: str | None = None,
                 out_format: str | None = None) -> int | None:
    """Stream (and with which block of frames) or filter whole: the one decision ``filter`` asks.

    Streams a single WAV/FLAC/OGG file when ``--block`` is given or when it holds more than
    ``STREAM_SAMPLES`` samples; NPY, stdin and several inputs are filtered whole (``--block``
    with them is a usage error, so the flag never silently does nothing).
    """
    if block is not None and block < 1:
        raise UsageError(f"--block must be a whole number of frames ≥ 1, got {block}")
    if len(inputs) != 1:
        if block is not None:
            raise UsageError("--block streams one input file; several inputs are filtered whole")
        return None
    info = audio_info(inputs[0])
    if info is None:
        if block is not None:
            raise UsageError("--block streams WAV/FLAC/OGG files; NPY and stdin are filtered whole",
                             "drop --block, or convert the input to WAV")
        return None
    in_format, frames, channels, _ = info
    if output is not None and (out_format or (in_format if output == "-" else format_from_path(output))) == "npy":
        if block is not None:
            raise UsageError("--block writes WAV/FLAC/OGG; NPY output is written whole")
        return None
    if block is not None:
        return block
    return DEFAULT_BLOCK if frames * channels > STREAM_SAMPLES else None


@dataclass
class StreamResult:
    """What ``stream_filter`` did: the write report, the run description and the shapes."""

    wrote: WriteReport
    run: dict
    shape_in: tuple[int, int, int]
    shape_out: tuple[int, int, int]
    rate: float
    seconds: float
    blocks: int = 0
    timings: dict = field(default_factory=dict)


def stream_filter(
    path: str,
    out,
    *,
    coefficients: np.ndarray,
    spec,
    out_format: str,
    subtype: str | None,
    block: int = DEFAULT_BLOCK,
    method: str = "auto",
    device: str = "auto",
    dtype: str = "auto",
    out_rate: float | None = None,
    gain_db: float | None = None,
    allow_nonfinite: bool = False,
    on_block: ProgressHook | None = None,
) -> StreamResult:
    """Filter audio file ``path`` into the open binary ``out`` block by block.

    Shape: the file's ``[1, C, N]`` -> ``[1, O, spec.output_length(N, k)]``; memory holds one
    block of ``block`` frames, the kernel span and the engine's chunk, never the file.
    ``subtype`` None means the input's; ``out_rate`` None the input's rate (``--stride`` divides
    it, see ``cli.output_rate``). ``gain_db`` scales the output (``--gain``) before it is
    rounded. ``on_block(done, total)`` is called after each block
    (progress bars hook in here).
    """
    import soundfile as sf

    from convcli.engines import numpy_backend as npengine
    from convcli.plan.memory import reuse_freed_memory

    reuse_freed_memory()  # every block allocates the same arrays again: no page faults for them
    source = io.BytesIO(read_bytes(path)) if path == "-" else path
    name = "stdin" if path == "-" else path
    started = time.perf_counter()
    try:
        infile = sf.SoundFile(source)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        raise InputError(f"cannot decode {name}: {exc}",
                         "the file may be truncated or corrupt; check it with `soxi`") from None
    with infile:
        n, channels, rate = infile.frames, infile.channels, infile.samplerate
        if n <= 0:
            raise InputError(f"{name} has no samples (0 frames)", "check the file was written completely")
        if dtype == "auto":  # as signals.read_signal: float64 where float32 would lose bits
            dtype = "float64" if infile.subtype in ("PCM_32", "DOUBLE") else "float32"
        subtype = subtype or (infile.subtype if sf.check_format(SOUNDFILE_FORMATS[out_format], infile.subtype)
                              else sf.default_subtype(SOUNDFILE_FORMATS[out_format]))
        k = coefficients.shape[-1]
        h = npengine.edge_extent(n, spec, k)
        head = infile.read(h, dtype=dtype, always_2d=True)
        infile.seek(n - h)
        tail = infile.read(h, dtype=dtype, always_2d=True)
        infile.seek(0)
        # the one engine decision for streams: numpy on the CPU for depthwise kernels, else torch
        engine = (_NumpyStream if npengine.use_numpy(device, coefficients, channels, spec)
                  else _TorchStream)(coefficients, spec, n, head, tail, method, device,
                                     allow_nonfinite)
        streamer = engine.streamer
        out_channels = engine.out_channels
        wrote = WriteReport(path="", format=out_format, subtype=subtype)
        try:
            sink = sf.SoundFile(out, "w", samplerate=int(out_rate or rate), channels=out_channels, subtype=subtype,
                                format=SOUNDFILE_FORMATS[out_format])
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            raise OutputError(f"cannot encode {out_channels}-channel "
                              f"{SOUNDFILE_FORMATS[out_format]}/{subtype}: {exc}") from None
        written = 0
        blocks = 0
        peak_in = 0.0
        from concurrent.futures import ThreadPoolExecutor

        # a reader and a writer thread: a block is read and decoded, and the one before it
        # rounded and written, while the one between them is filtered
        with sink, engine.context(), ThreadPoolExecutor(1, thread_name_prefix="convcli-write") as pool, \
                ThreadPoolExecutor(1, thread_name_prefix="convcli-read") as reader:
            pending = None

            def emit(y) -> None:
                """Queue ``y`` for writing, after the previous block (at most one in flight)."""
                nonlocal pending
                if pending is not None:
                    pending.result()  # in order, and a write error surfaces here
                pending = pool.submit(write, y)

            def write(y) -> None:
                nonlocal written
                if y.shape[-1] == 0:
                    return
                if gain_db:
                    y = y * 10.0 ** (gain_db / 20.0)
                rows = engine.to_numpy(y)[0]
                if subtype in PCM:
                    frames, clipped, peak = _rows_to_pcm(rows, subtype)
                    wrote.clipped += clipped
                else:
                    frames = np.ascontiguousarray(rows.T)
                    peak = float(np.max(np.abs(frames)))
                wrote.peak = max(wrote.peak, peak)
                sink.write(frames)
                written += frames.shape[0]

            done = 0
            for rows in _read_ahead(_read_rows(infile, block, dtype), reader):
                if rows.size:  # one min/max pass: the peak, and a NaN/Inf shows in it
                    low, high = npengine.extremes(rows)
                    if not math.isfinite(low + high):
                        if not allow_nonfinite:
                            _check_finite(rows[0].T, done, name)
                        low, high = 0.0, float(np.max(np.abs(rows)))
                    peak_in = max(peak_in, -low, high)
                emit(streamer.push(engine.block(rows)))
                done += rows.shape[-1]
                blocks += 1
                if on_block is not None:
                    on_block(done, n)
            emit(streamer.finish())
            if pending is not None:
                pending.result()
    run = engine.describe()
    if "fft_error_bound" in run:  # the bound with the whole signal's peak, not the head's
        run["fft_error_bound"] = run["fft_relative_error_bound"] * peak_in * engine.gain
    run["streamed"] = {"block": block, "blocks": blocks}
    return StreamResult(wrote=wrote, run=run, shape_in=(1, channels, n),
                        shape_out=(1, out_channels, written), rate=float(out_rate or rate),
                        seconds=time.perf_counter() - started, blocks=blocks)


def _frames_to_rows(frames: np.ndarray) -> np.ndarray:
    """soundfile's ``[t, C]`` frames as a contiguous ``[1, C, t]`` batch."""
    return np.ascontiguousarray(frames.T)[None]


def _read_rows(infile, block: int, dtype: str):
    """The open file's blocks of ``block`` frames as contiguous ``[1, C, t]`` arrays of ``dtype``.

    Integer PCM is read as the integers and scaled here, in the same pass that de-interleaves
    the channels: 3× less time than libsndfile's own conversion to float, and the same numbers
    (libsndfile also scales by 2^−(bits−1), and that power of two is exact).
    """
    if infile.subtype not in PCM:
        for frames in infile.blocks(blocksize=block, dtype=dtype, always_2d=True):
            yield _frames_to_rows(frames)
        return
    container = np.dtype(PCM[infile.subtype][1])
    unit = np.array(2.0 ** (1 - 8 * container.itemsize), dtype)
    for ints in infile.blocks(blocksize=block, dtype=container.name, always_2d=True):
        rows = np.empty((1, ints.shape[1], ints.shape[0]), dtype)
        for c in range(ints.shape[1]):  # a channel at a time: see _rows_to_pcm
            np.multiply(ints[:, c], unit, out=rows[0, c], dtype=dtype)
        yield rows


def _read_ahead(blocks, reader):
    """The items (never None) of the iterator ``blocks``, each next one fetched on ``reader``
    (an executor) while the caller works on the current one.

    >>> from concurrent.futures import ThreadPoolExecutor
    >>> with ThreadPoolExecutor(1) as pool:
    ...     list(_read_ahead(iter("abc"), pool))
    ['a', 'b', 'c']
    """
    pending = reader.submit(next, blocks, None)
    while (item := pending.result()) is not None:
        pending = reader.submit(next, blocks, None)
        yield item


def _rows_to_pcm(rows: np.ndarray, subtype: str) -> tuple[np.ndarray, int, float]:
    """``to_pcm`` of ``[C, t]`` rows into interleaved ``[t, C]`` frames, in the same pass.

    A channel at a time: numpy copies ``[C, t]`` into ``[t, C]`` 4-5× slower in one call
    (its inner loop runs over the C channels) than C long strided rows.
    """
    frames = np.empty(rows.shape[::-1], PCM[subtype][1])
    clipped, peak = 0, 0.0
    for c, row in enumerate(rows):
        _, row_clipped, row_peak = to_pcm(row, subtype, out=frames[:, c])
        clipped, peak = clipped + row_clipped, max(peak, row_peak)
    return frames, clipped, peak


class _NumpyStream:
    """The numpy engine's streamer (CPU, depthwise kernel): no torch import."""

    def __init__(self, coefficients, spec, n, head, tail, method, device, allow_nonfinite):
        from convcli.engines import numpy_backend as npengine

        self.np = npengine
        head_x, tail_x = _frames_to_rows(head), _frames_to_rows(tail)
        channels = head_x.shape[1]
        self.weight, run_spec = npengine.prepare_weight(coefficients, channels, spec, head_x.dtype)
        k = self.weight.shape[-1]
        choice = npengine.choose_method(n, k, run_spec, method, channels=channels, dtype=head_x.dtype,
                                        x=head_x if method == "auto" else None)
        if allow_nonfinite and choice.method == "direct":
            # blocks may hold NaN/Inf: numpy.correlate keeps them to the taps that touch them
            choice = MethodChoice("direct", "--allow-nonfinite: " + npengine.NONFINITE[1],
                                  npengine.NONFINITE[0], 0, None, choice.estimates)
        self.choice, self.head = choice, head_x
        self.streamer = npengine.Streamer(self.weight, run_spec, n, head_x, tail_x, choice)
        self.out_channels = channels
        self.gain = float(np.abs(self.weight).sum((1, 2)).max())

    def block(self, rows):
        return rows

    def to_numpy(self, y):
        return y

    def context(self):
        import contextlib

        return contextlib.nullcontext()

    def describe(self):
        return self.np.describe(self.choice, self.head, self.weight)


class _TorchStream:
    """The torch engine's streamer (CUDA, or kernels that mix channels)."""

    def __init__(self, coefficients, spec, n, head, tail, method, device, allow_nonfinite):
        import torch

        from convcli.engines.torch_backend import Streamer, choose_method, prepare_weight, resolve_device

        self.torch = torch
        self.target = target = resolve_device(device)
        head_t, tail_t = self.block(_frames_to_rows(head)), self.block(_frames_to_rows(tail))
        weight, run_spec = prepare_weight(coefficients, head_t.shape[1], spec, head_t)
        k = weight.shape[-1]
        choice = choose_method(n, k, run_spec, method, batch=1, channels=head_t.shape[1],
                               out_channels=weight.shape[0], dtype=head_t.dtype, device=str(target),
                               x=head_t if method == "auto" else None)
        if allow_nonfinite and choice.method == "direct" and choice.algorithm != "conv1d":
            # blocks may hold NaN/Inf: only F.conv1d keeps them to the taps that touch them
            choice = MethodChoice("direct", "--allow-nonfinite: F.conv1d propagates NaN/Inf "
                                  "only through the taps that touch them", "conv1d")
        self.choice, self.head, self.weight = choice, head_t, weight
        self.streamer = Streamer(weight, run_spec, n, head_t, tail_t, choice)
        self.out_channels = weight.shape[0]
        self.gain = float(weight.abs().sum((1, 2)).max())

    def block(self, rows):
        return self.torch.from_numpy(rows).to(self.target)

    def to_numpy(self, y):
        return y.cpu().numpy()

    def context(self):
        return self.torch.no_grad()

    def describe(self):
        from convcli.engines.torch_backend import describe

        return describe(self.choice, self.head, self.weight, self.target)


def _check_finite(frames: np.ndarray, offset: int, name: str) -> None:
    """As ``signals.check_finite``, for a block ``[t, C]`` starting at sample ``offset``."""
    bad = ~np.isfinite(frames)
    if not bad.any():
        return
    t, c = np.nonzero(bad)
    first = int(np.argmin(c + frames.shape[1] * t))  # time order, then channel
    t0, c0 = int(t[first]), int(c[first])
    raise InputError(
        f"{name} has {frames[t0, c0]} at channel {c0}, sample {offset + t0}",
        "clean the input, or pass --allow-nonfinite to let it propagate",
    )
