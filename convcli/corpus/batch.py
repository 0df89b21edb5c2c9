"""One batch of a corpus: read on threads, filter (equal lengths in one engine call), write
atomically, one result per file. What ``local`` runs on its threads and a Dask worker runs.

A file's failure (unreadable, corrupt, an output that cannot be written, ``--clip error``) is
that file's result; the batch goes on. Files of one kernel, channel count and dtype run as one
engine call: with zero padding (``--padding zeros``, the default) shorter files are padded
with zeros to the longest of their bucket and the result cropped, which is exact (the samples
past a file's end are zeros either way); other paddings group by exact length.
"""

from __future__ import annotations

import io
import itertools
import mmap
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from convcli import pipeline
from convcli.corpus.kernels import KernelBank
from convcli.errors import ConvcliError, InputError
from convcli.io.formats import (
    EXTENSIONS,
    PCM,
    WriteReport,
    audio_dtype,
    choose_subtype,
    clip_verdict,
)
from convcli.io.signals import Signal, check_finite, decode_signal
from convcli.io.wav import CODECS, decode_samples, encode_samples, header_bytes, read_header

#: a file larger than this streams through ``pipeline.run_streamed`` on its own (bounded memory)
STREAM_BYTES = 2 * pipeline.STREAM_SAMPLES
#: a file larger than this is mapped, not read
MAP_BYTES = 1 << 20
#: padding to the longest of a bucket wastes at most this share of its samples
BUCKET_SLACK = 1.25
#: the most samples one engine call of a batch takes (all files, channels and padding)
CALL_SAMPLES = 1 << 24


@dataclass(frozen=True)
class Task:
    """One output to make: ``kernel`` indexes the bank; ``size`` is the input's bytes (0 when
    missing) for sizing batches."""

    input: str
    output: str
    kernel: int
    size: int = 0


@dataclass
class Settings:
    """What every batch of a run shares. ``since``: an output already written at or after
    this time (a Dask task redone after its worker was lost) is not written again."""

    job: pipeline.FilterJob
    bank: KernelBank
    since: float | None = None
    threads: int = 2


def result(task: Task, bank: KernelBank, status: str = "done", error: str | None = None,
           frames: int | None = None, seconds: float = 0.0, clipped: int = 0,
           peak: float | None = None) -> dict:
    """One line of the report."""
    return {"input": task.input, "output": task.output, "status": status, "error": error,
            "kernel": bank.names[task.kernel], "frames": frames, "seconds": round(seconds, 6),
            "clipped": clipped, "peak": None if peak is None else round(float(peak), 7)}


def describe(exc: BaseException) -> str:
    if isinstance(exc, ConvcliError):
        return exc.message
    if isinstance(exc, OSError):
        return f"{exc.filename or 'I/O'}: {exc.strerror or exc}"
    return f"internal error: {type(exc).__name__}: {exc}"


def run_batch(settings: Settings, tasks: list[Task], pool: ThreadPoolExecutor | None = None
              ) -> list[dict]:
    """Every task of the batch done or failed: one result each, in task order. Reads and
    writes run on ``pool`` (``settings.threads`` of its own when None)."""
    own = pool is None
    if own:
        pool = ThreadPoolExecutor(settings.threads, thread_name_prefix="convcli-io")
    try:
        return _run(settings, tasks, pool)
    finally:
        if own:
            pool.shutdown()


def worker_batch(settings: Settings, parts: list[list[Task]]) -> list[dict]:
    """A Dask task: batches one after another (each the very batch a local run makes, so
    every output is the same to the last bit), BLAS on one thread (the other workers have the
    cores)."""
    from convcli.engines import blas

    lines: list[dict] = []
    with blas.single_threaded(), ThreadPoolExecutor(settings.threads,
                                                    thread_name_prefix="convcli-io") as pool:
        for part in parts:
            lines += run_batch(settings, part, pool)
    return lines


def _run(settings: Settings, tasks: list[Task], pool: ThreadPoolExecutor) -> list[dict]:
    job, bank = settings.job, settings.bank
    results: list[dict | None] = [None] * len(tasks)
    whole = []
    for i, task in enumerate(tasks):
        if task.size > STREAM_BYTES:
            results[i] = stream_one(settings, task)
        else:
            whole.append(i)
    reads = list(pool.map(lambda i: timed(read_one, tasks[i].input, job), whole))
    signals: dict[int, tuple[Read, float]] = {}
    for i, (read, spent) in zip(whole, reads):
        if isinstance(read, BaseException):
            results[i] = result(tasks[i], bank, "failed", describe(read), seconds=spent)
        else:
            signals[i] = (read, spent)
    outputs = filter_all(settings, tasks, signals)
    written = pool.map(lambda i: write_one(settings, tasks[i], signals[i], outputs[i]), signals)
    for i, line in zip(signals, written):
        results[i] = line
    return results  # type: ignore[return-value]


def timed(function, *args):
    """``(function(*args) or the exception it raised, seconds)``."""
    started = time.perf_counter()
    try:
        value = function(*args)
    except Exception as exc:  # noqa: BLE001 (one file's failure, reported; the rest goes on)
        value = exc
    return value, time.perf_counter() - started


@dataclass
class Read:
    """A file read: its ``Signal`` and, for integer PCM WAV, its sample bytes, decoded only
    when its batch is laid out (straight into the batch: no copy of its own). ``shape``
    ``[B, C, T]`` and ``dtype`` are the samples' either way."""

    signal: Signal
    shape: tuple[int, int, int]
    dtype: np.dtype
    raw: memoryview | None = None

    def place(self, out: np.ndarray) -> None:
        """The samples into ``out`` ``[B, C, T]``; the signal's data becomes that view."""
        if self.raw is not None:
            decode_samples(self.raw, self.signal.subtype, self.shape[1], str(self.dtype), out=out)
            self.raw = None
        else:
            out[...] = self.signal.data
        self.signal.data = out


def read_one(path: str, job: pipeline.FilterJob) -> Read:
    """A file read whole. Plain PCM and float WAV (most corpora) is decoded by ``io.wav``
    from its bytes (libsndfile's numbers, without opening it); anything else by
    ``io.signals``. NaN/Inf refused unless allowed (integer PCM holds none)."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size > MAP_BYTES:  # the page cache's own pages: no copy
            data: bytes | mmap.mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        else:
            data = f.read()
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE" and job.layout is None and job.rate is None:
        read = _plain_wav(data, path, job.dtype)
        if read is not None:
            return read
    signal = decode_signal(bytes(data) if isinstance(data, mmap.mmap) else data, path,
                           layout=job.layout, rate=job.rate, dtype=job.dtype or "auto")
    if not job.allow_nonfinite:
        check_finite(signal)
    return Read(signal, signal.data.shape, signal.data.dtype)


def _plain_wav(data, path: str, dtype: str | None) -> Read | None:
    try:  # (a header past its first 64 KiB is io.signals' to read)
        header = read_header(io.BytesIO(data[: 1 << 16]).read, path)
    except ConvcliError:
        return None  # io.signals says what is wrong with it
    fmt, start = header.format, header.data_offset
    if (fmt.subtype not in PCM or header.data_bytes is None or header.data_bytes == 0
            or start + header.data_bytes > len(data)):
        return None  # float WAV too: it is checked for NaN/Inf as it is decoded
    kind = np.dtype(audio_dtype(fmt.subtype, dtype or "auto"))
    signal = Signal(None, float(fmt.rate), "wav", fmt.subtype, "ct", path,  # type: ignore[arg-type]
                    fmt.channel_mask)
    return Read(signal, (1, fmt.channels, header.frames), kind,
                memoryview(data)[start : start + header.frames * fmt.block_align])


def filter_all(settings: Settings, tasks: list[Task], signals: dict) -> dict:
    """Each signal's result (or the exception of its engine call), by task index."""
    job, bank = settings.job, settings.bank
    groups: dict[tuple, list[int]] = {}
    for i, (read, _) in signals.items():
        groups.setdefault((tasks[i].kernel, read.signal.rate, read.shape[1], read.dtype.str),
                          []).append(i)
    outputs: dict = {}
    for (kernel, rate, _, _), members in groups.items():
        try:
            coefficients = bank.get(kernel, rate)
        except ConvcliError as exc:
            outputs.update({i: exc for i in members})
            continue
        for bucket in buckets(members, lambda i: signals[i][0].shape[-1],
                              job.spec.padding == "zeros"):
            outputs.update(filter_bucket(job, coefficients, [signals[i][0] for i in bucket],
                                         bucket))
    return outputs


def buckets(members: list[int], length, pad: bool) -> list[list[int]]:
    """Groups run as one call: equal lengths, or (``pad``) lengths within ``BUCKET_SLACK`` of
    the bucket's shortest, at most ``CALL_SAMPLES`` padded samples (channels aside).

    >>> buckets([0, 1, 2, 3], [100, 120, 100, 400].__getitem__, True)
    [[0, 2, 1], [3]]
    >>> buckets([0, 1, 2], [100, 120, 100].__getitem__, False)
    [[0, 2], [1]]
    """
    ordered = sorted(members, key=length)
    out: list[list[int]] = []
    for i in ordered:
        n = length(i)
        if out:
            first, last = length(out[-1][0]), out[-1]
            fits = n == first or (pad and n <= first * BUCKET_SLACK)
            if fits and n * (len(last) + 1) <= CALL_SAMPLES:
                last.append(i)
                continue
        out.append([i])
    return out


def filter_bucket(job: pipeline.FilterJob, coefficients: np.ndarray, reads: list[Read],
                  members: list[int]) -> dict:
    """One engine call for the bucket, its files laid out in one ``[ΣB, C, T]`` array (zeros
    after the shorter ones); each result cropped to its file's own length."""
    longest = max(r.shape[-1] for r in reads)
    batch = np.empty((sum(r.shape[0] for r in reads), reads[0].shape[1], longest),
                     reads[0].dtype)
    rows = []
    at = 0
    for read in reads:
        b, _, n = read.shape
        batch[at : at + b, :, n:] = 0
        read.place(batch[at : at + b, :, :n])
        rows.append((at, b))
        at += b
    started = time.perf_counter()
    try:
        (ys,), _ = pipeline.filter_arrays([batch], coefficients, job.spec, method=job.method,
                                          device=job.device, bias=job.bias)
    except (ConvcliError, ValueError, MemoryError) as exc:
        return {i: exc for i in members}
    share = (time.perf_counter() - started) / len(members)
    k = coefficients.shape[-1]
    return {i: (ys[at : at + b, :, : job.spec.output_length(r.shape[-1], k)], share)
            for i, r, (at, b) in zip(members, reads, rows)}


def write_one(settings: Settings, task: Task, read: tuple[Read, float], output) -> dict:
    """Encode one result (``pipeline.encode_output``: level, rounding, ``--clip``) and put it
    in place atomically."""
    signal, spent, frames = read[0].signal, read[1], read[0].shape[-1]
    bank = settings.bank
    if isinstance(output, BaseException):
        return result(task, bank, "failed", describe(output), frames, spent)
    y, share = output
    started = time.perf_counter()
    if STOP.is_set():
        return result(task, bank, "failed", "interrupted", frames, spent)
    try:
        encoded = encode_wav(settings.job, signal, task.output, y)
        if encoded is None:
            writer, file = pipeline.encode_output(settings.job, signal, task.output, y, [], [])
            clipped, peak = file.clipped, file.peak
        else:
            writer, clipped, peak = encoded
        write_atomic(task.output, writer, settings.since)
    except Exception as exc:  # noqa: BLE001 (this file's failure: the rest goes on)
        return result(task, bank, "failed", describe(exc), frames,
                      spent + share + time.perf_counter() - started)
    return result(task, bank, "done", None, frames,
                  spent + share + time.perf_counter() - started, clipped, peak)


_subtypes: dict[tuple, str] = {}


def encode_wav(job: pipeline.FilterJob, signal: Signal, out: str, y: np.ndarray):
    """``pipeline.encode_output`` for the common case, at a fraction of its cost per file: WAV
    of a subtype convcli encodes, no level change, stride 1. Returns ``(writer, clipped,
    peak)``, or None for everything else (``encode_output`` then). The same bytes and checks:
    NaN/Inf bound for PCM (``to_pcm``) or overflowing float, ``--clip`` (``clip_verdict``)."""
    if job.gain is not None or job.normalize_output is not None or job.spec.stride != 1:
        return None
    fmt = job.out_format or EXTENSIONS.get(os.path.splitext(out)[1][1:].lower())
    if fmt != "wav" or y.shape[0] != 1 or signal.rate is None or not 0 < y.shape[1] <= 2:
        return None
    key = (job.subtype, signal.format, signal.subtype)
    if key not in _subtypes:
        _subtypes[key] = choose_subtype("wav", job.subtype, source_format=signal.format,
                                        source_subtype=signal.subtype)
    subtype = _subtypes[key]
    if subtype not in CODECS or signal.rate != int(signal.rate):
        return None
    raw, clipped, peak = encode_samples(y[0], subtype)
    if not job.allow_nonfinite and not peak <= np.finfo(y.dtype).max:
        raise InputError(f"{out}: filtering {signal.name} overflowed: the result holds Inf or "
                         "NaN samples; nothing written",
                         "compute with --dtype float64, or lower the kernel's scale or --gain")
    clip_verdict(WriteReport(out, "wav", subtype, clipped, peak), job.clip)
    head = header_bytes(y.shape[1], int(signal.rate), subtype, y.shape[-1])  # as encode's

    def writer(handle) -> None:
        handle.write(head)
        handle.write(raw)
        if len(raw) & 1:
            handle.write(b"\0")

    return writer, clipped, peak


#: set when the run stops (SIGTERM, Ctrl-C): a batch in flight writes nothing more
STOP = threading.Event()
_names = itertools.count()


def write_atomic(path: str, writer, since: float | None = None) -> None:
    """``writer(handle)`` into ``.NAME.ID.part`` beside ``path``, renamed over it when
    complete: an output is whole or absent, whatever stops the run. No fsync: a rename is
    atomic for every process that reads the files (a power cut is another matter, and costs
    a disk flush per file to guard against). ``since``: see ``Settings``."""
    folder, name = os.path.split(path)
    folder = folder or "."
    if since is not None:
        try:
            if os.stat(path).st_mtime >= since:
                return  # written by this run already (a redone task)
        except OSError:
            pass
    tmp = os.path.join(folder, f".{name}.{os.getpid():x}-{next(_names):x}.part")
    try:
        try:
            handle = open(tmp, "wb")  # noqa: SIM115 (closed below)
        except FileNotFoundError:  # its folder is new (a stat per file would cost more)
            os.makedirs(folder, exist_ok=True)
            handle = open(tmp, "wb")  # noqa: SIM115
        with handle:
            writer(handle)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def stream_one(settings: Settings, task: Task) -> dict:
    """A large file on its own, streamed in blocks (``pipeline.run_streamed``)."""
    bank, job = settings.bank, settings.job
    started = time.perf_counter()
    one = replace(job, inputs=[task.input], outputs=[task.output])
    coefficients = bank.coefficients[task.kernel]
    try:
        os.makedirs(os.path.dirname(task.output) or ".", exist_ok=True)
        done = pipeline.run_streamed(one, coefficients, pipeline.DEFAULT_BLOCK,
                                     pipeline.no_progress).files[0]
    except Exception as exc:  # noqa: BLE001 (this file's failure: the rest goes on)
        return result(task, bank, "failed", describe(exc), seconds=time.perf_counter() - started)
    return result(task, bank, "done", None, done.shape_in[-1], time.perf_counter() - started,
                  done.clipped, done.peak)
