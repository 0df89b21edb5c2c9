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
from convcli.core.levels import apply_level, check_level_options, dbfs_text, peak_gain_db
from convcli.core.response import design_weakness
from convcli.core.spec import ConvSpec
from convcli.errors import InputError, OutputError, UsageError
from convcli.io.atomic import atomic_outputs, atomic_stream, check_output_path, keep_existing
from convcli.io.formats import (
    EXTENSIONS,
    FORMATS,
    PCM,
    WriteReport,
    check_channels,
    choose_subtype,
    clip_verdict,
    format_from_path,
    writable,
)
from convcli.io.kernelfile import KernelRequest
from convcli.io.signals import Signal, check_finite, encode, read_signal
from convcli.plan.memory import check_allocation, check_filter_memory, reuse_freed_memory
from convcli.plan.ratecache import rates_source
from convcli.plan.selection import describe_run, engine_for

#: single audio inputs with more samples than this (all channels) stream by default (64 MB f32)
STREAM_SAMPLES = 1 << 24
#: a short file whose whole-signal filter the cost model prices above this many seconds streams
#: (one engine call shows no progress; a stream shows its rate and the time left)
WHOLE_SECONDS = 1.0
#: default block, in frames (about 11 s at 48 kHz)
DEFAULT_BLOCK = 1 << 19
#: the most standard input is read in one block (about 5.5 s at 48 kHz); a block is what has
#: arrived (``io.pipes.StreamReader.read_ready``), so a slow producer is not waited for, and
#: the output comes in pieces of ``engines.driver.STREAM_PIECE`` frames (2.7 s at 48 kHz)
PIPE_BLOCK = 1 << 18
#: copies of a block a stream holds at once, counted in float64 (read ahead, decoded rows,
#: the padded buffer, the output, its PCM frames, the one being written)
BLOCK_COPIES = 6
#: what ``--block`` and the memory check suggest when a whole-signal run would not fit
STREAM_HINT = "filter it in pieces with --block (streaming), or use fewer inputs at once"

#: ``progress(total, description, unit=None)``: a context manager yielding ``tick(advance=1,
#: *, description=None, total=None)`` (``render.progress.progress`` has this shape)
Progress = Callable[..., contextlib.AbstractContextManager]


@contextlib.contextmanager
def no_progress(total: float | None = None, description: str = "", **kwargs) -> Iterator[Callable]:
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
    """``in.wav`` -> ``in.filtered.wav`` beside it (``--format`` picks the extension); an input
    whose format convcli cannot write (``unwritable_input``) gets ``in.filtered.wav``."""
    p = Path(path)
    suffix = f".{out_format}" if out_format else p.suffix
    if not out_format and unwritable_input(path) is not None:
        suffix = ".wav"
    return str(p.with_name(f"{p.stem}.filtered{suffix}"))


def unwritable_input(path: str) -> str | None:
    """Why an output in ``path``'s own format could not be written (its extension names no
    format convcli writes, or libsndfile cannot write that format at its rate and channel
    count, e.g. Opus at 44.1 kHz), or None when it can (or the input cannot be read at all:
    the reader says why)."""
    from convcli.io.blocks import probe

    fmt = format_from_path(path)
    if fmt in ("npy", "wav") or path == "-":  # always written
        return None
    facts = probe(path)
    if facts is None:
        return None
    if fmt is None:
        return f"convcli does not write {Path(path).suffix or 'files without an extension'}"
    reason = writable(fmt, choose_subtype(fmt, source_format=facts.format), facts.rate,
                      facts.channels)
    return None if reason is None else f"libsndfile cannot write it here: {reason}"


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
    """``--format``, else stdout takes the input's format (WAV where convcli cannot write
    that), else the output name's extension."""
    if requested:
        return requested
    if out == "-":
        return input_format if input_format in FORMATS else "wav"
    found = format_from_path(out)
    if found is None:
        raise UsageError(f"cannot tell the output format from {out!r}",
                         f"use a name ending in one of .{', .'.join(sorted(EXTENSIONS))}, or "
                         "pass --format")
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


def design_rate(request, signals: list) -> float:
    """The one sample rate a design is made for; refuses NPY without --rate and mixed rates.

    ``signals``: what was read (``Signal``s or ``BlockSource``s: a ``name`` and a ``rate``)."""
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
def stream_block(job: FilterJob, coefficients: np.ndarray | None = None) -> int | None:
    """Stream (and with which block of frames) or filter whole: the one decision ``filter`` asks.

    One input streams whenever it can be streamed, which is always: standard input or a FIFO
    (in blocks of ``PIPE_BLOCK``), a file with ``--block``, a file whose header says it holds more
    than ``STREAM_SAMPLES`` samples (any format, NPY too: ``io.blocks.probe``). FIR designs
    (the rate is in the header) and ``--normalize-output`` (a first pass measures the peak)
    stream too; a pipe cannot be read twice, so ``--normalize-output`` on stdin is refused.
    Short files are filtered whole (faster: one engine call) unless the cost model prices
    that call above ``WHOLE_SECONDS`` (``coefficients`` given: streamed, it shows progress).
    Several inputs are ``run_several``'s to split (``--block`` with them is a usage error, so
    the flag never silently does nothing).
    """
    block = job.block
    if block is not None:
        limits.check("block", block)
    if len(job.inputs) != 1:
        if block is not None:
            raise UsageError("--block streams one input; several inputs are filtered whole")
        return None
    from convcli.io.blocks import is_pipe, probe

    path = job.inputs[0]
    if path == "-" or is_pipe(path):
        if job.normalize_output is not None:
            where = "standard input" if path == "-" else f"the pipe {path}"
            raise UsageError("--normalize-output measures the result before it writes it, and "
                             f"{where} can be read only once",
                             "use --gain DB, or save the input to a file first")
        return block or PIPE_BLOCK
    if block is not None:
        return block

    facts = probe(path, job.layout)
    if facts is None:  # not readable: the whole path says why
        return None
    if facts.frames * facts.channels * facts.batch > STREAM_SAMPLES:
        return DEFAULT_BLOCK
    if coefficients is not None and predicted_seconds(job, facts, coefficients) > WHOLE_SECONDS:
        return DEFAULT_BLOCK  # one long engine call: streamed, it shows how far it has got
    return None


def predicted_seconds(job: FilterJob, facts, coefficients: np.ndarray) -> float:
    """What the cost model says filtering a file of these ``facts`` whole takes on the CPU
    (``plan.selection.choose_method``'s estimate of the method that would run)."""
    from convcli.plan.selection import choose_method

    weight, groups = to_weight(coefficients, facts.channels, job.spec.groups)
    spec = job.spec if groups == job.spec.groups else replace(job.spec, groups=groups)
    if facts.frames < 1 or spec.stride1_length(facts.frames, weight.shape[-1]) < 1:
        return 0.0  # the whole path refuses it
    choice = choose_method(facts.frames, weight.shape[-1], spec, job.method, batch=facts.batch,
                           channels=facts.channels, out_channels=weight.shape[0],
                           engine=engine_for("cpu", depthwise(weight.shape[0], weight.shape[1],
                                                              groups)))
    direct = [seconds for name, seconds in choice.estimates.items() if name != "fft"]
    return choice.estimates.get("fft", 0.0) if choice.method == "fft" else max(direct, default=0.0)


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
    block = stream_block(job, coefficients)
    if block is not None:
        result = run_streamed(job, coefficients, block, progress)
    elif len(job.inputs) > 1:
        result = run_several(job, coefficients, progress)
    else:
        result = run_whole(job, coefficients, progress)
    source, out = job.inputs[0], job.outputs[0]
    if (len(job.inputs) == 1 and job.out_format is None and out.endswith(".filtered.wav")
            and Path(source).suffix.lower() not in (".wav", ".wave")
            and (why := unwritable_input(source)) is not None):
        result.notes.append(f"{source}: {why}, so the result is WAV")
    return result


# --- several inputs ------------------------------------------------------------------------------
def run_several(job: FilterJob, coefficients: np.ndarray | None,
                progress: Progress) -> FilterResult:
    """Several inputs: each long one (more than ``STREAM_SAMPLES`` by its header) streams on
    its own, one after another, so memory stays bounded whatever their number and length; the
    rest are read whole and batched by shape. One result, its files in the inputs' order."""
    from types import SimpleNamespace

    from convcli.io.blocks import probe

    facts = [probe(path, job.layout) for path in job.inputs]
    long = [i for i, f in enumerate(facts)
            if f is not None and f.frames * f.channels * f.batch > STREAM_SAMPLES]
    if not long:
        return run_whole(job, coefficients, progress)
    design, warnings = None, []
    if coefficients is None:  # one design for all: the headers give the rates
        heard = [SimpleNamespace(name=path, rate=f.rate)
                 for path, f in zip(job.inputs, facts) if f is not None]
        coefficients, design = job.kernel.load(design_rate(job.kernel.design, heard))
        if (weakness := design_weakness(design)) is not None:
            warnings.append(weakness)
    short = [i for i in range(len(job.inputs)) if i not in long]
    groups = [[i] for i in long] + ([short] if short else [])
    parts = []
    for group in groups:
        part = replace(job, inputs=[job.inputs[i] for i in group],
                       outputs=[job.outputs[i] for i in group])
        parts.append(run_streamed(part, coefficients, DEFAULT_BLOCK, progress) if len(group) == 1
                     and group[0] in long else run_whole(part, coefficients, progress))
    files: list[Any] = [None] * len(job.inputs)
    for group, part_result in zip(groups, parts):
        for i, file in zip(group, part_result.files):
            files[i] = file
    first = parts[0]
    timings: dict = {}
    for part_result in parts:
        for key, value in part_result.timings.items():
            timings[key] = timings.get(key, 0.0) + value
    return FilterResult(
        kernel=job.kernel.summary(coefficients, design), spec=first.spec, run=first.run,
        seconds=sum(p.seconds for p in parts), timings=timings, clip=job.clip, files=files,
        label=job.kernel.label(coefficients, design),
        notes=[n for p in parts for n in p.notes],
        warnings=warnings + [w for p in parts for w in p.warnings], bias=first.bias)


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
        check_output_channels(job, coefficients, signal.shape[1], out_format, out)
    return signals


def check_output_channels(job: FilterJob, coefficients: np.ndarray | None, channels: int,
                          out_format: str, out: str) -> None:
    """More output channels than the format holds: refused now, not after filtering them all
    (a design keeps the input's channels)."""
    out_channels = channels if coefficients is None else weight_shape(
        coefficients.shape, channels, job.spec.groups)[0][0]
    check_channels(out_format, out_channels, "stdout" if out == "-" else out)


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
    with progress(1, f"filtering {len(signals)} signal{'s' * (len(signals) > 1)}") as tick:
        results, run = filter_arrays([s.data for s in signals], coefficients, job.spec,
                                     method=job.method, device=device, bias=job.bias)
        tick()
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
def run_streamed(job: FilterJob, coefficients: np.ndarray | None, block: int,
                 progress: Progress) -> FilterResult:
    """``filter`` for one input streamed in blocks of ``block`` frames (bounded memory)."""
    from convcli.io.blocks import open_source

    path, out = job.inputs[0], job.outputs[0]
    seekable = job.spec.padding == "circular" or job.normalize_output is not None
    with open_source(path, layout=job.layout, rate=job.rate, dtype=job.dtype or "auto",
                     seekable=seekable) as source:
        design = None
        warnings: list[str] = []
        notes: list[str] = []
        if coefficients is None:  # a design needs only the header's rate
            coefficients, design = job.kernel.load(design_rate(job.kernel.design, [source]))
            if (weakness := design_weakness(design)) is not None:
                warnings.append(weakness)
        out_format = output_format(out, job.out_format, source.format)
        if out_format != "npy" and source.rate is None:
            raise UsageError(f"{out_format.upper()} output needs a sample rate and "
                             f"{source.name} is NPY", "pass --rate HZ")
        check_output_channels(job, coefficients, source.channels, out_format, out)
        frames = block if source.frames is None else min(block, max(source.frames, 1))
        check_allocation(BLOCK_COPIES * 8 * frames * source.channels * source.batch,
                         f"--block {block:,} (frames of {source.channels} channels, in flight)",
                         f"use a smaller --block (the default is {DEFAULT_BLOCK:,})")
        out_rate = output_rate(source.rate, job.spec.stride, out_format, warnings)
        gain = job.gain
        if job.normalize_output is not None:
            gain = _normalizing_gain(job, source, coefficients, block, out, out_format, notes,
                                     warnings, progress)
        with progress(source.frames, f"filtering {Path(source.name).name}",
                      unit="frames") as tick:
            done = [0]

            def on_block(frames: int) -> None:
                tick(frames - done[0])
                done[0] = frames

            stream = stream_source(source, out, coefficients=coefficients, spec=job.spec,
                                   out_format=out_format, subtype=job.subtype, block=block,
                                   method=job.method, device=job.device, out_rate=out_rate,
                                   gain_db=gain, allow_nonfinite=job.allow_nonfinite,
                                   clip=job.clip, on_block=on_block, bias=job.bias)
    wrote = stream.wrote
    warning = clip_verdict(wrote, "warn" if job.clip == "error" else job.clip)
    if warning:
        warnings.append(warning)
    file = file_result(source.name, out, wrote, list(stream.shape_in), list(stream.shape_out),
                       out_rate, gain or 0.0)
    return FilterResult(
        kernel=job.kernel.summary(coefficients, design),
        spec=job.spec.summary(coefficients.shape[-1]), run=stream.run, seconds=stream.seconds,
        timings=stream.timings, clip=job.clip, files=[file],
        label=job.kernel.label(coefficients, design), notes=notes, warnings=warnings,
        bias=bias_summary(job.bias))


def _normalizing_gain(job: FilterJob, source, coefficients: np.ndarray, block: int, out: str,
                      out_format: str, notes: list[str], warnings: list[str],
                      progress: Progress) -> float | None:
    """``--normalize-output`` on a stream: a first pass filters the whole input and measures
    the result's peak; the gain that brings it to the level asked for (``core.levels``)."""
    from convcli import streaming
    from convcli.engines.devices import resolve_device

    with progress(source.frames, "measuring the peak", unit="frames") as tick:
        done = [0]

        def on_block(frames: int) -> None:
            tick(frames - done[0])
            done[0] = frames

        blocks = source.blocks(block)
        started = streaming.start(source, blocks, coefficients, job.spec, method=job.method,
                                  device=resolve_device(job.device),
                                  allow_nonfinite=job.allow_nonfinite, block=block,
                                  bias=job.bias)
        with started.engine.no_grad():
            peak = streaming.pump(started, blocks, None, name=source.name,
                                  allow_nonfinite=job.allow_nonfinite, on_block=on_block).peak_out
    source.rewind()
    chosen = choose_subtype(out_format, job.subtype, source_format=source.format,
                            source_subtype=source.subtype)
    gain = peak_gain_db(peak, job.normalize_output, full_scale(chosen))
    if gain is None:
        warnings.append(f"{out}: the result is silent; --normalize-output left it as it is")
        return None
    notes.append(f"{out}: gain {gain:+.2f} dB, peak "
                 f"{dbfs_text(peak * 10.0 ** (gain / 20.0))}")
    return gain


@dataclass
class StreamResult:
    """What ``stream_file`` did: the write report, the run description and the shapes."""

    wrote: WriteReport
    run: dict
    shape_out: tuple[int, int, int]
    seconds: float
    timings: dict
    blocks: int = 0
    shape_in: tuple[int, int, int] = (1, 0, 0)


def stream_file(path: str, out, *, coefficients: np.ndarray, spec: ConvSpec, out_format: str,
                subtype: str | None = None, block: int = DEFAULT_BLOCK, method: str = "auto",
                device: str = "auto", dtype: str | None = None, out_rate: float | None = None,
                gain_db: float | None = None, allow_nonfinite: bool = False,
                layout: str | None = None, rate: float | None = None, clip: str = "warn",
                on_block: Callable[[int], None] | None = None,
                bias: np.ndarray | None = None) -> StreamResult:
    """Filter the input ``path`` (a file of any format ``filter`` reads, or ``-``) into ``out``
    (a path, ``-``, or an open binary file) block by block.

    Shape: the input's ``[B, C, N]`` -> ``[B, O, spec.output_length(N, k)]``; memory holds a
    few blocks of ``block`` frames, the kernel span and the engine's chunk, never the signal
    (``convcli.streaming``). Integer PCM is rounded and clipped block by block with the same
    ``to_pcm`` as the whole path (rounding is per sample, so blocks change nothing).
    ``subtype`` None is the input's (where the format has it); ``out_rate`` None the input's
    rate; ``gain_db`` scales the output before it is rounded; ``rate``/``layout`` are NPY's;
    ``bias`` is ``FilterJob``'s. ``on_block(frames done)`` follows each block (progress).
    """
    from convcli.io.blocks import open_source

    with open_source(path, layout=layout, rate=rate, dtype=dtype or "auto",
                     seekable=spec.padding == "circular") as source:
        return stream_source(source, out, coefficients=coefficients, spec=spec,
                             out_format=out_format, subtype=subtype, block=block, method=method,
                             device=device, out_rate=out_rate, gain_db=gain_db,
                             allow_nonfinite=allow_nonfinite, clip=clip, on_block=on_block,
                             bias=bias)


def stream_source(source, out, *, coefficients: np.ndarray, spec: ConvSpec, out_format: str,
                  subtype: str | None, block: int, method: str, device: str,
                  out_rate: float | None, gain_db: float | None, allow_nonfinite: bool,
                  clip: str = "warn", on_block=None,
                  bias: np.ndarray | None = None) -> StreamResult:
    """``stream_file`` for a ``BlockSource`` already open (see there)."""
    from convcli import streaming
    from convcli.engines.devices import resolve_device
    from convcli.io.atomic import StreamTarget
    from convcli.io.sinks import flows_to_pipe, open_sink

    started_at = time.perf_counter()
    device = resolve_device(device)
    blocks = source.blocks(block)
    started = streaming.start(source, blocks, coefficients, spec, method=method, device=device,
                              allow_nonfinite=allow_nonfinite, block=block, bias=bias)
    engine, streamer = started.engine, started.streamer
    source.alloc = lambda shape, dtype: engine.host_buffer(shape, dtype, device)
    subtype = choose_subtype(out_format, subtype, source_format=source.format,
                             source_subtype=source.subtype)
    k = coefficients.shape[-1]
    frames_out = None if source.frames is None else spec.output_length(source.frames, k)
    name = out if isinstance(out, str) else getattr(out, "name", "<output>")
    if isinstance(out, str):
        spool = out == "-" and (clip == "error" or not flows_to_pipe(
            out_format, subtype, frames_out is not None, _stdout_fd()))
        target_context = atomic_stream(out, spool=spool)
    else:
        target_context = contextlib.nullcontext(StreamTarget(out, out.seekable()))
    with target_context as target:
        sink = open_sink(target, out_format=out_format, subtype=subtype,
                         rate=out_rate or source.rate, batch=source.batch,
                         channels=started.out_channels, frames=frames_out, layout=source.layout,
                         mask=source.channel_mask if started.out_channels == source.channels
                         else None, dtype=str(started.first.dtype),
                         name="stdout" if name == "-" else str(name))
        try:
            with engine.no_grad():
                pumped = streaming.pump(started, blocks, sink.write, name=source.name,
                                        gain_db=gain_db, allow_nonfinite=allow_nonfinite,
                                        on_block=on_block)
        except BaseException:
            sink.abandon()
            raise
        sink.close()
        sink.report.path = "stdout" if name == "-" else str(name)
        clip_verdict(sink.report, clip)  # --clip error: the output goes, nothing is written
    run = describe_run(streamer.choice, engine=engine.name, device=device,
                       dtype=str(started.first.dtype), peak=pumped.peak_in, gain=started.gain)
    run["streamed"] = {"block": block, "blocks": pumped.blocks}
    return StreamResult(wrote=sink.report, run=run,
                        shape_out=(source.batch, started.out_channels, pumped.written),
                        seconds=time.perf_counter() - started_at, timings=pumped.spent,
                        blocks=pumped.blocks,
                        shape_in=(source.batch, source.channels, pumped.frames))


def _stdout_fd() -> int | None:
    import sys

    try:
        return sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return None
