"""The filter pipeline: ``FilterJob -> FilterResult``, for whole files and streams alike.

One way through, whatever the input::

    source (file | stdin) -> Signal [B, C, T] or blocks [1, C, t]   (convcli.io)
    kernel (window | FIR design | file) -> coefficients               (io.kernelfile, core)
    ConvSpec (mode, padding, stride, dilation, flip, groups)          (core.spec)
    selection: engine (numpy | torch) and method (direct | fft)       (plan.selection)
    engine: conv1d on the whole signal, or a Streamer over blocks     (engines)
    sink (file | stdout, atomic) <- y; FilterResult                   (io.atomic)

``run_filter`` streams a single long audio file (or any with ``--block``) block by block in
bounded memory, and reads everything else whole, batching inputs of equal shape into one
engine call (``filter_arrays``). Both report the same ``FilterResult``, whose ``summary()`` is
the one ``--json`` schema of ``convcli filter``. Nothing here prints: progress goes through the
``progress`` hook, messages and warnings into the result, errors are ``ConvcliError``.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from convcli.core import limits
from convcli.core.kernels import bias_for, check_representable, depthwise, to_weight, weight_shape
from convcli.core.levels import apply_level, check_level_options, dbfs_text
from convcli.core.response import design_weakness
from convcli.core.spec import ConvSpec
from convcli.errors import InputError, OutputError, UsageError
from convcli.io.atomic import atomic_output, atomic_outputs, check_output_path, keep_existing
from convcli.io.formats import (
    PCM,
    SOUNDFILE_FORMATS,
    WriteReport,
    audio_dtype,
    check_channels,
    choose_subtype,
    clip_verdict,
    format_from_path,
    libsndfile_message,
)
from convcli.io.kernelfile import KernelRequest
from convcli.io.signals import Signal, check_finite, encode, read_bytes, read_signal
from convcli.plan.geometry import edge_extent
from convcli.plan.memory import check_allocation, check_filter_memory, reuse_freed_memory
from convcli.plan.ratecache import rates_source
from convcli.plan.selection import describe_run, engine_for, tap_choice

#: single audio inputs with more samples than this (all channels) stream by default (64 MB f32)
STREAM_SAMPLES = 1 << 24
#: default block, in frames (about 11 s at 48 kHz)
DEFAULT_BLOCK = 1 << 19
#: copies of a block a stream holds at once, counted in float64 (read ahead, decoded rows,
#: the padded buffer, the output, its PCM frames, the one being written)
BLOCK_COPIES = 6
#: what ``--block`` and the memory check suggest when a whole-signal run would not fit
STREAM_HINT = "filter it in pieces with --block (streaming), or use fewer inputs at once"

#: ``progress(total, description)``: a context manager yielding ``tick(advance=1, *,
#: description=None, total=None)`` (``render.progress.progress`` has this shape)
Progress = Callable[..., contextlib.AbstractContextManager]


@contextlib.contextmanager
def no_progress(total: float | None = None, description: str = "") -> Iterator[Callable]:
    """A ``Progress`` that shows nothing."""
    yield lambda *args, **kwargs: None


# --- the job -----------------------------------------------------------------------------------
@dataclass
class FilterJob:
    """Everything ``convcli filter`` was asked, parsed: what to read, how to convolve, where to.

    ``outputs`` holds one path per input (``-`` for stdout), as ``plan_outputs`` names them.
    ``dtype`` None is the data's own precision; ``rate`` the rate of NPY input; ``bias`` one
    number for every output channel or one per channel (``core.kernels.bias_for``), or None.
    """

    inputs: list[str]
    outputs: list[str]
    kernel: KernelRequest = field(default_factory=KernelRequest)
    spec: ConvSpec = field(default_factory=ConvSpec)
    out_format: str | None = None
    subtype: str | None = None
    layout: str | None = None
    rate: float | None = None
    method: str = "auto"
    device: str = "auto"
    dtype: str | None = None
    gain: float | None = None
    normalize_output: float | None = None
    clip: str = "warn"
    block: int | None = None
    allow_nonfinite: bool = False
    bias: np.ndarray | None = None
    no_clobber: bool = False  # an existing output is refused, not replaced


@dataclass
class FileResult:
    """One output as written: its shapes, format and what clipping happened."""

    input: str
    output: str
    format: str
    subtype: str | None
    shape_in: list[int]
    shape_out: list[int]
    rate: float | None
    clipped: int
    peak: float
    gain_db: float
    safe_gain_db: float | None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class FilterResult:
    """What ``run_filter`` did; ``summary()`` is ``convcli filter --json``."""

    kernel: dict
    spec: dict
    run: dict
    seconds: float
    timings: dict
    clip: str
    files: list[FileResult]
    label: str
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    bias: list[float] | None = None

    def summary(self) -> dict:
        return {
            "command": "filter",
            "kernel": self.kernel,
            "spec": self.spec,
            "bias": self.bias,
            **self.run,
            "rates": rates_source(self.run["device"], self.run["engine"]),
            "seconds": self.seconds,
            "timings": self.timings,
            "clipped": sum(f.clipped for f in self.files),
            "clip": self.clip,
            "files": [f.to_dict() for f in self.files],
        }


# --- outputs, decided before any work ----------------------------------------------------------
def same_file(a: str, b: str) -> bool:
    if a == "-" or b == "-":
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def default_output(path: str, out_format: str | None) -> str:
    """``in.wav`` -> ``in.filtered.wav`` beside it (``--format`` picks the extension)."""
    p = Path(path)
    suffix = f".{out_format}" if out_format else p.suffix
    return str(p.with_name(f"{p.stem}.filtered{suffix}"))


def plan_outputs(inputs: list[str], output: str | None, out_dir: str | None,
                 out_format: str | None, kernel_path: str | None = None) -> list[str]:
    """Where each input's result goes, refused before any work when it cannot be written."""
    if any(not path for path in inputs):
        raise UsageError("an input path is empty ('')", "give a file path, or - for stdin")
    if output == "" or out_dir == "":
        raise UsageError(f"{'-o' if output == '' else '--out-dir'} is empty ('')",
                         "give a file name (or - for stdout), or leave the option out")
    if len(inputs) > 1 and output is not None:
        raise UsageError("-o takes one input; several inputs need --out-dir DIR")
    if out_dir is not None and output is not None:
        raise UsageError("use either -o or --out-dir, not both")
    if inputs.count("-") > 1 or (kernel_path == "-" and "-" in inputs):
        raise UsageError("standard input can be read only once", "give files for the others")
    if out_dir is not None:
        if "-" in inputs:
            raise UsageError("--out-dir names outputs after input files; stdin has no name",
                             "use -o for a single stdin input")
        if not Path(out_dir).is_dir():
            raise OutputError(f"output directory {out_dir} does not exist", f"mkdir -p {out_dir}")
        suffix = (lambda p: f".{out_format}") if out_format else (lambda p: Path(p).suffix)
        outputs = [str(Path(out_dir) / (Path(p).stem + suffix(p))) for p in inputs]
    elif len(inputs) > 1:
        raise UsageError("several inputs need --out-dir DIR")
    else:
        outputs = [output or ("-" if inputs[0] == "-" else default_output(inputs[0], out_format))]
    for out in outputs:
        for src in inputs:
            if same_file(out, src):
                raise UsageError(f"output {out} is also an input; convcli never overwrites its input",
                                 "choose another -o")
    if len(set(map(os.path.abspath, outputs))) != len(outputs):
        raise UsageError("two inputs would write the same output name", "rename one input")
    for out in outputs:
        check_output_path(out)
    return outputs


def output_format(out: str, requested: str | None, input_format: str) -> str:
    """``--format``, else stdout takes the input's format, else the output name's extension."""
    if requested:
        return requested
    if out == "-":
        return input_format
    found = format_from_path(out)
    if found is None:
        raise UsageError(f"cannot tell the output format from {out!r}",
                         "use a .wav/.flac/.ogg/.npy name or pass --format")
    return found


def output_rate(rate: float | None, stride: int, out_format: str,
                warnings: list[str]) -> float | None:
    """Keeping every s-th sample divides the sample rate by s (audio needs whole Hz)."""
    if rate is None or stride == 1:
        return rate
    decimated = rate / stride
    if out_format != "npy" and decimated != int(decimated):
        warnings.append(f"--stride {stride} makes the rate {decimated:g} Hz; {out_format.upper()} "
                        f"stores whole Hz, so it is written as {round(decimated)} Hz")
        return float(round(decimated))
    return decimated


def full_scale(subtype: str | None) -> float:
    """The largest sample an output holds: (2^(b−1) − 1)/2^(b−1) for b-bit PCM, else 1.0, so
    ``--normalize-output 0`` reaches full scale without clipping a sample."""
    if subtype in PCM:
        scale = PCM[subtype][0]
        return (scale - 1) / scale
    return 1.0


def design_rate(request, signals: list[Signal]) -> float:
    """The one sample rate a design is made for; refuses NPY without --rate and mixed rates."""
    from convcli.core.fir import format_cutoffs

    flag = f"--{request.band} {format_cutoffs(request.cutoffs)}"
    missing = [s.name for s in signals if s.rate is None]
    if missing:
        raise UsageError(f"{flag} is in Hz, and {missing[0]} is NPY with no sample rate",
                         "pass --rate HZ")
    rates = sorted({s.rate for s in signals})
    if len(rates) > 1:
        by_rate = {s.rate: s.name for s in signals}
        listed = ", ".join(f"{by_rate[r]} at {r:g} Hz" for r in rates)
        raise UsageError(f"{flag} designs a different filter for each sample rate, and the inputs "
                         f"have {len(rates)} ({listed})", "filter each rate in its own run")
    request.check_rate(rates[0], signals[0].name)
    return rates[0]


# --- stream or whole ---------------------------------------------------------------------------
@dataclass(frozen=True)
class AudioInfo:
    """What a stream needs to know of an audio file before reading it."""

    format: str
    frames: int
    channels: int
    rate: int


def audio_info(path: str) -> AudioInfo | None:
    """The facts of an audio file, or None for NPY, stdin or what soundfile cannot open."""
    from convcli.io.blocks import audio_info as facts

    if path != "-" and not os.path.isfile(path):  # a FIFO or a device cannot seek to its end
        return None
    found = facts(path)
    return None if found is None else AudioInfo(*found)


def stream_block(job: FilterJob) -> int | None:
    """Stream (and with which block of frames) or filter whole: the one decision ``filter`` asks.

    Streams a single WAV/FLAC/OGG file when ``--block`` is given or when it holds more than
    ``STREAM_SAMPLES`` samples; NPY, stdin and several inputs are filtered whole (``--block``
    with them is a usage error, so the flag never silently does nothing). A FIR design and
    ``--normalize-output`` need the whole signal first.
    """
    block = job.block
    if block is not None:
        limits.check("block", block)
    if block is not None and (job.kernel.design is not None or job.normalize_output is not None):
        raise UsageError("--block streams a fixed kernel; FIR design and --normalize-output "
                         "need the whole signal first", "drop --block (or use --gain)")
    if job.kernel.design is not None or job.normalize_output is not None:
        return None
    if len(job.inputs) != 1:
        if block is not None:
            raise UsageError("--block streams one input file; several inputs are filtered whole")
        return None
    info = audio_info(job.inputs[0])
    if info is None:
        if block is not None:
            raise UsageError("--block streams WAV/FLAC/OGG files; NPY and stdin are filtered whole",
                             "drop --block, or convert the input to WAV")
        return None
    out = job.outputs[0]
    if (job.out_format or (info.format if out == "-" else format_from_path(out))) == "npy":
        if block is not None:
            raise UsageError("--block writes WAV/FLAC/OGG; NPY output is written whole")
        return None
    if block is not None:
        check_allocation(BLOCK_COPIES * 8 * min(block, max(info.frames, 1)) * info.channels,
                         f"--block {block:,} (frames of {info.channels} channels, in flight)",
                         f"use a smaller --block (the default is {DEFAULT_BLOCK:,})")
        return block
    return DEFAULT_BLOCK if info.frames * info.channels > STREAM_SAMPLES else None


def run_filter(job: FilterJob, progress: Progress = no_progress) -> FilterResult:
    """Filter every input of ``job`` into its output: streamed or whole (``stream_block``)."""
    # the engines' temporaries (a few MB per chunk) come back from the heap, not page-faulted
    # in afresh each time: 64 × 1 s clips filter in 4 ms instead of 6
    reuse_freed_memory()
    with keep_existing(job.no_clobber):
        for out in job.outputs:
            check_output_path(out)  # --no-clobber: an existing output is refused before work
        return _run_filter(job, progress)


def _run_filter(job: FilterJob, progress: Progress) -> FilterResult:
    check_level_options(job.gain, job.normalize_output)
    coefficients = None if job.kernel.design is not None else job.kernel.load()[0]
    block = stream_block(job)
    if block is not None:
        return run_streamed(job, coefficients, block, progress)
    return run_whole(job, coefficients, progress)


# --- whole signals -------------------------------------------------------------------------------
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


def prepare(coefficients: np.ndarray, channels: int, spec: ConvSpec, device: str):
    """The engine that runs this kernel on ``device`` (resolved), its weight ``[O, C/G, k]``
    as numpy and the spec to run (a ``(k,)``/``(C, k)`` kernel runs depthwise, groups = C)."""
    from convcli import engines

    weight, groups = to_weight(coefficients, channels, spec.groups)
    run_spec = spec if groups == spec.groups else replace(spec, groups=groups)
    engine = engines.load(engine_for(device, depthwise(weight.shape[0], weight.shape[1], groups)))
    return engine, weight, run_spec


def bias_array(engine, bias: np.ndarray | None, out_channels: int, dtype, device: str):
    """The bias ``[O]`` as the engine's array, or None (``core.kernels.bias_for``'s rules)."""
    if bias is None:
        return None
    return engine.asarray(bias_for(bias, out_channels).astype(dtype), device)


def filter_arrays(arrays: list, coefficients: np.ndarray, spec: ConvSpec, *,
                  method: str = "auto", device: str = "auto",
                  bias: np.ndarray | None = None) -> tuple[list, dict]:
    """Filter several ``[B, C, T]`` numpy arrays with one kernel (and ``bias``, ``FilterJob``'s);
    equal shapes run as one batch.

    The engine is ``plan.selection.engine_for``'s (numpy on the CPU for depthwise kernels,
    else torch, imported only then). Returns the results as numpy arrays (input order) and
    what ran (``selection.describe_run``, for the first batch). The sink boundary: results
    are copied to host memory here, once.
    """
    from convcli.engines.devices import resolve_device

    target = resolve_device(device)

    def run(batch):
        engine, weight_np, run_spec = prepare(coefficients, batch.shape[1], spec, target)
        check_representable(weight_np, batch.dtype)
        x = engine.asarray(batch, target)
        weight = engine.asarray(weight_np.astype(batch.dtype), target)
        b = bias_array(engine, bias, weight_np.shape[0], batch.dtype, target)
        with engine.no_grad():
            y, choice = engine.conv1d_chosen(x, weight, run_spec, method, b)  # checks the spec
        peak = gain = None
        if choice.method == "fft":  # its error bound needs the peak: one more pass, FFT only
            low, high = engine.extremes(x) if math.prod(batch.shape) else (0.0, 0.0)
            peak, gain = max(-low, high), float(np.abs(weight_np).sum((1, 2)).max())
        return engine.to_numpy(y), (choice, engine.name, batch.dtype, peak, gain)

    results, (choice, name, dtype, peak, gain), groups = filter_by_shape(arrays, run, np.concatenate)
    return results, describe_run(choice, engine=name, device=target, dtype=dtype,
                                 batches=groups, peak=peak, gain=gain)


def read_inputs(job: FilterJob, progress: Progress,
                coefficients: np.ndarray | None = None) -> list[Signal]:
    """Every input read whole and checked (NaN/Inf unless allowed) before anything computes;
    then each output (its rate, and its channels for the kernel ``coefficients``)."""
    signals = []
    with progress(len(job.inputs), "reading") as tick:
        for path in job.inputs:
            tick(0, description=f"reading {path}")
            signal = read_signal(path, layout=job.layout, rate=job.rate, dtype=job.dtype or "auto")
            if not job.allow_nonfinite:
                check_finite(signal)
            signals.append(signal)
            tick()
    for signal, out in zip(signals, job.outputs):  # refuse impossible outputs before computing
        out_format = output_format(out, job.out_format, signal.format)
        if out_format != "npy" and signal.rate is None:
            raise UsageError(f"{out_format.upper()} output needs a sample rate and {signal.name} "
                             "is NPY", "pass --rate HZ")
        if out_format != "npy" and signal.shape[0] > 1:
            raise OutputError(f"{out_format.upper()} holds one signal, but {signal.name} is a "
                              f"batch of {signal.shape[0]}; nothing computed",
                              "write .npy for batched results")
        # more channels than the format holds: refused now, not after filtering them all
        out_channels = signal.shape[1] if coefficients is None else weight_shape(  # (a design
            coefficients.shape, signal.shape[1], job.spec.groups)[0][0]  # keeps the channels)
        check_channels(out_format, out_channels, "stdout" if out == "-" else out)
    return signals


def run_whole(job: FilterJob, coefficients: np.ndarray | None, progress: Progress) -> FilterResult:
    """Read every input, filter them (equal shapes as one batch), write every output at once."""
    clock = time.perf_counter()
    signals = read_inputs(job, progress, coefficients)
    read_seconds = time.perf_counter() - clock
    design = None
    notes: list[str] = []
    warnings: list[str] = []
    if coefficients is None:  # a design depends on the inputs' sample rate
        coefficients, design = job.kernel.load(design_rate(job.kernel.design, signals))
        if (weakness := design_weakness(design)) is not None:
            warnings.append(weakness)
    from convcli.engines.devices import free_bytes, resolve_device

    device = resolve_device(job.device)
    check_filter_memory([s.data for s in signals], coefficients, job.spec, job.method, STREAM_HINT,
                        device=device, device_free=free_bytes(device))
    started = time.perf_counter()
    with progress(None, f"filtering {len(signals)} signal{'s' * (len(signals) > 1)}"):
        results, run = filter_arrays([s.data for s in signals], coefficients, job.spec,
                                     method=job.method, device=device, bias=job.bias)
    elapsed = time.perf_counter() - started
    clock = time.perf_counter()
    files = write_outputs(job, signals, results, progress, notes, warnings)
    return FilterResult(
        kernel=job.kernel.summary(coefficients, design),
        spec=job.spec.summary(coefficients.shape[-1]), run=run, seconds=elapsed,
        timings={"read": read_seconds, "compute": elapsed, "write": time.perf_counter() - clock},
        clip=job.clip, files=files, label=job.kernel.label(coefficients, design), notes=notes,
        warnings=warnings, bias=bias_summary(job.bias))


def bias_summary(bias: np.ndarray | None) -> list[float] | None:
    """``--json``'s ``bias``: the values as given (one number for every channel, or one per
    output channel), or null."""
    return None if bias is None else [float(v) for v in np.ravel(bias)]


def write_outputs(job: FilterJob, signals: list[Signal], results: list, progress: Progress,
                  notes: list[str], warnings: list[str]) -> list[FileResult]:
    """Encode every result (level, rounding, the ``--clip`` policy), then write all outputs
    atomically together: a failure on the last leaves none of them."""
    encoded = []
    with progress(2 * len(job.outputs), "encoding") as tick:
        for signal, out, data in zip(signals, job.outputs, results):
            tick(0, description=f"encoding {'stdout' if out == '-' else out}")
            encoded.append(encode_output(job, signal, out, data, notes, warnings))
            tick()
        with atomic_outputs(job.outputs) as handles:
            for out, handle, (writer, _) in zip(job.outputs, handles, encoded):
                tick(0, description=f"writing {'stdout' if out == '-' else out}")
                writer(handle)
                tick()
    return [file for _, file in encoded]


def encode_output(job: FilterJob, signal: Signal, out: str, data: np.ndarray, notes: list[str],
                  warnings: list[str]) -> tuple[Callable, FileResult]:
    """One result ready to write (``io.signals.encode``) and what it will be."""
    out_format = output_format(out, job.out_format, signal.format)
    chosen = choose_subtype(out_format, job.subtype, source_format=signal.format,
                            source_subtype=signal.subtype)
    data, level = apply_level(data, gain_db=job.gain, peak_dbfs=job.normalize_output,
                              full_scale=full_scale(chosen))
    if level.silent:
        warnings.append(f"{out}: the result is silent; --normalize-output left it as it is")
    elif level.gain_db or job.normalize_output is not None:
        notes.append(f"{out}: gain {level.gain_db:+.2f} dB, peak {dbfs_text(level.peak_after)}")
    out_rate = output_rate(signal.rate, job.spec.stride, out_format, warnings)
    writer, wrote = encode(data, out_format=out_format, rate=out_rate, subtype=chosen,
                           layout=signal.layout)
    wrote.path = out
    top = np.finfo(data.dtype).max if data.dtype.kind == "f" else math.inf
    if not job.allow_nonfinite and not max(level.peak_before, level.peak_after) <= top:
        raise InputError(f"{out}: filtering {signal.name} overflowed: the result holds Inf or "
                         "NaN samples; nothing written",
                         "compute with --dtype float64, or lower the kernel's scale or --gain")
    warning = clip_verdict(wrote, job.clip)  # --clip error raises here, before any write
    if warning and job.gain and wrote.safe_gain_db is not None:
        warning += f" (on top of --gain {job.gain:g}: use --gain {job.gain + wrote.safe_gain_db:.1f})"
    if warning:
        warnings.append(warning)
    return writer, file_result(signal.name, out, wrote, list(signal.shape), list(data.shape),
                               out_rate, level.gain_db)


def file_result(name: str, out: str, wrote: WriteReport, shape_in: list, shape_out: list,
                rate: float | None, gain_db: float) -> FileResult:
    return FileResult(input=name, output=out, format=wrote.format, subtype=wrote.subtype,
                      shape_in=shape_in, shape_out=shape_out, rate=rate, clipped=wrote.clipped,
                      peak=wrote.peak, gain_db=gain_db, safe_gain_db=wrote.safe_gain_db)


# --- streams -------------------------------------------------------------------------------------
def run_streamed(job: FilterJob, coefficients: np.ndarray, block: int,
                 progress: Progress) -> FilterResult:
    """``filter`` for one audio file streamed in blocks of ``block`` frames (bounded memory)."""
    path, out = job.inputs[0], job.outputs[0]
    info = audio_info(path)
    assert info is not None
    warnings: list[str] = []
    out_format = output_format(out, job.out_format, info.format)
    out_rate = output_rate(float(info.rate), job.spec.stride, out_format, warnings)
    with progress(info.frames, "filtering") as tick, atomic_output(out) as handle:
        frames = [0]

        def on_block(done: int, total: int) -> None:
            tick(done - frames[0])
            frames[0] = done

        stream = stream_file(path, handle, coefficients=coefficients, spec=job.spec,
                             out_format=out_format, subtype=job.subtype, block=block,
                             method=job.method, device=job.device, dtype=job.dtype,
                             out_rate=out_rate, gain_db=job.gain,
                             allow_nonfinite=job.allow_nonfinite, on_block=on_block,
                             bias=job.bias)
        stream.wrote.path = out
        warning = clip_verdict(stream.wrote, job.clip)  # --clip error: the temporary file goes
    if warning:
        warnings.append(warning)
    wrote = stream.wrote
    file = file_result("stdin" if path == "-" else path, out, wrote, [1, info.channels, info.frames],
                       list(stream.shape_out), out_rate, job.gain or 0.0)
    return FilterResult(
        kernel=job.kernel.summary(coefficients), spec=job.spec.summary(coefficients.shape[-1]),
        run=stream.run, seconds=stream.seconds, timings=stream.timings, clip=job.clip,
        files=[file], label=job.kernel.label(coefficients), warnings=warnings,
        bias=bias_summary(job.bias))


@dataclass
class StreamResult:
    """What ``stream_file`` did: the write report, the run description and the output shape."""

    wrote: WriteReport
    run: dict
    shape_out: tuple[int, int, int]
    seconds: float
    timings: dict
    blocks: int = 0


class _BlockSource:
    """An open audio file read in blocks: its facts, its ends (for the pads) and its rows."""

    def __init__(self, path: str, dtype: str | None):
        import soundfile as sf

        source = io.BytesIO(read_bytes(path)) if path == "-" else path
        self.name = "stdin" if path == "-" else path
        try:
            self.file = sf.SoundFile(source)
        except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
            raise InputError(f"cannot decode {self.name}: {libsndfile_message(exc)}",
                             "the file may be truncated or corrupt; check it with `soxi`") from None
        self.n, self.channels, self.rate = self.file.frames, self.file.channels, self.file.samplerate
        if self.n <= 0:
            self.file.close()
            raise InputError(f"{self.name} has no samples (0 frames)",
                             "check the file was written completely")
        self.dtype = audio_dtype(self.file.subtype, dtype or "auto")

    def ends(self, h: int) -> tuple[np.ndarray, np.ndarray]:
        """The first and last ``h`` frames as ``[1, C, h]`` rows (then back to the start)."""
        from convcli.io.blocks import frames_to_rows

        head = self.file.read(h, dtype=self.dtype, always_2d=True)
        self.file.seek(self.n - h)
        tail = self.file.read(h, dtype=self.dtype, always_2d=True)
        self.file.seek(0)
        return frames_to_rows(head), frames_to_rows(tail)


def open_streamer(job: FilterJob, coefficients: np.ndarray, head: np.ndarray, tail: np.ndarray,
                  n: int):
    """The engine and a ``Streamer`` for a signal of ``n`` frames with these ends."""
    from convcli.engines.devices import resolve_device

    device = resolve_device(job.device)
    engine, weight_np, spec = prepare(coefficients, head.shape[1], job.spec, device)
    check_representable(weight_np, head.dtype)
    weight = engine.asarray(weight_np.astype(head.dtype), device)
    head_x, tail_x = engine.asarray(head, device), engine.asarray(tail, device)
    k = weight_np.shape[-1]
    choice = engine.choose_method(n, k, spec, job.method, channels=head.shape[1],
                                  out_channels=weight_np.shape[0], dtype=head.dtype,
                                  device=device, x=head_x if job.method == "auto" else None)
    if job.allow_nonfinite:  # blocks may hold NaN/Inf: the algorithm that multiplies the taps
        choice = tap_choice(choice, engine.name, "--allow-nonfinite")
    bias = bias_array(engine, job.bias, weight_np.shape[0], head.dtype, device)
    streamer = engine.streamer(weight, spec, n, head_x, tail_x, choice, bias)
    gain = float(np.abs(weight_np).sum((1, 2)).max())
    return engine, streamer, device, gain


def stream_file(path: str, out, *, coefficients: np.ndarray, spec: ConvSpec, out_format: str,
                subtype: str | None = None, block: int = DEFAULT_BLOCK, method: str = "auto",
                device: str = "auto", dtype: str | None = None, out_rate: float | None = None,
                gain_db: float | None = None, allow_nonfinite: bool = False,
                on_block: Callable[[int, int], None] | None = None,
                bias: np.ndarray | None = None) -> StreamResult:
    """Filter audio file ``path`` into the open binary ``out`` block by block.

    Shape: the file's ``[1, C, N]`` -> ``[1, O, spec.output_length(N, k)]``; memory holds one
    block of ``block`` frames, the kernel span and the engine's chunk, never the file. The
    pads come from the file's ends, read first with a seek; integer PCM is rounded and
    clipped block by block with the same ``to_pcm`` as the whole path (rounding is per sample,
    so blocks change nothing). ``subtype`` None is the input's (where the format has it);
    ``out_rate`` None the input's rate; ``gain_db`` scales the output before it is rounded;
    ``bias`` is ``FilterJob``'s. ``on_block(done, total)`` follows each block (progress).
    """
    import soundfile as sf

    started = time.perf_counter()
    job = FilterJob([path], [out if isinstance(out, str) else "-"], spec=spec, subtype=subtype,
                    method=method, device=device, dtype=dtype, gain=gain_db,
                    allow_nonfinite=allow_nonfinite, bias=bias)
    source = _BlockSource(path, dtype)
    with source.file:
        head, tail = source.ends(edge_extent(source.n, job.spec, coefficients.shape[-1]))
        subtype = choose_subtype(out_format, job.subtype, source_format=source.file.format.lower(),
                                 source_subtype=source.file.subtype)
        engine, streamer, device, gain = open_streamer(job, coefficients, head, tail, source.n)
        out_channels = streamer.plan.out_channels
        check_channels(out_format, out_channels, "the output")  # libsndfile may crash instead
        try:
            sink = sf.SoundFile(out, "w", samplerate=int(out_rate or source.rate),
                                channels=out_channels, subtype=subtype,
                                format=SOUNDFILE_FORMATS[out_format])
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            raise OutputError(f"cannot encode {out_channels}-channel "
                              f"{SOUNDFILE_FORMATS[out_format]}/{subtype}: {exc}") from None
        wrote = WriteReport(path="", format=out_format, subtype=subtype)
        with sink, engine.no_grad():
            blocks, written, peak_in, spent = _pump(job, source, engine, streamer, sink, wrote,
                                                    block, on_block)
    run = describe_run(streamer.choice, engine=engine.name, device=device, dtype=source.dtype,
                       peak=peak_in, gain=gain)
    run["streamed"] = {"block": block, "blocks": blocks}
    seconds = time.perf_counter() - started
    return StreamResult(wrote=wrote, run=run, shape_out=(1, out_channels, written),
                        seconds=seconds, timings=spent, blocks=blocks)


def _pump(job: FilterJob, source: _BlockSource, engine, streamer, sink, wrote: WriteReport,
          block: int, on_block) -> tuple[int, int, float, dict]:
    """Blocks in, outputs out: a reader and a writer thread beside the filter, so a block is
    read and decoded, and the one before it rounded and written, while the one between them
    is filtered. Returns (blocks, frames written, the input's peak, seconds each of the three
    spent: they overlap)."""
    from concurrent.futures import ThreadPoolExecutor

    from convcli.engines.numpy_backend import extremes
    from convcli.io.blocks import check_block_finite, read_ahead, read_rows, rows_to_pcm

    spent = {"read": 0.0, "compute": 0.0, "write": 0.0}
    written = [0]
    scale = 10.0 ** (job.gain / 20.0) if job.gain else None

    def timed_rows():
        rows_of = read_rows(source.file, block, source.dtype)
        while True:
            clock = time.perf_counter()
            rows = next(rows_of, None)
            spent["read"] += time.perf_counter() - clock
            if rows is None:
                return
            yield rows

    def write(y) -> None:
        clock = time.perf_counter()
        if y.shape[-1]:
            rows = engine.to_numpy(y if scale is None else y * scale)[0]
            if wrote.subtype in PCM:
                frames, clipped, peak = rows_to_pcm(rows, wrote.subtype)
                wrote.clipped += clipped
            else:
                frames = np.ascontiguousarray(rows.T)
                peak = float(np.max(np.abs(frames)))
            wrote.peak = max(wrote.peak, peak)
            sink.write(frames)
            written[0] += frames.shape[0]
        spent["write"] += time.perf_counter() - clock

    done = blocks = 0
    peak_in = 0.0
    with ThreadPoolExecutor(1, thread_name_prefix="convcli-write") as writer, \
            ThreadPoolExecutor(1, thread_name_prefix="convcli-read") as reader:
        pending = None

        def emit(y) -> None:  # after the previous block (one in flight); its error surfaces here
            nonlocal pending
            if pending is not None:
                pending.result()
            pending = writer.submit(write, y)

        for rows in read_ahead(timed_rows(), reader):
            clock = time.perf_counter()
            if rows.size:  # one min/max pass: the peak, and a NaN/Inf shows in it
                low, high = extremes(rows)
                if not math.isfinite(low + high):
                    if not job.allow_nonfinite:
                        check_block_finite(rows, done, source.name)
                    low, high = 0.0, float(np.max(np.abs(rows)))
                peak_in = max(peak_in, -low, high)
            y = streamer.push(engine.asarray(rows, engine.device_of(streamer.buffer)))
            spent["compute"] += time.perf_counter() - clock
            emit(y)
            done += rows.shape[-1]
            blocks += 1
            if on_block is not None:
                on_block(done, source.n)
        emit(streamer.finish())
        if pending is not None:
            pending.result()
    return blocks, written[0], peak_in, spent
