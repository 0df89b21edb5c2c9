"""One batch of a corpus: read, filter (equal lengths in one engine call), write atomically,
one result per file, all in the calling thread. What ``local`` runs on its threads, in this
process or in a Dask worker.

A file's failure (unreadable, corrupt, an output that cannot be written, ``--clip error``) is
that file's result; the batch goes on. Files of one kernel, channel count and dtype run as one
engine call: with zero padding (``--padding zeros``, the default) shorter files are padded
with zeros to the longest of their bucket and the result cropped, which is exact (the samples
past a file's end are zeros either way); other paddings group by exact length. On CUDA a call
is sized to the device's free memory (``call_frames``), and a call that still runs out of it
is split in halves (a file that alone does not fit fails alone).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, replace

import numpy as np

from convcli import pipeline
from convcli.core.kernels import weight_shape
from convcli.corpus.files import STOP, Read, encode_wav, read_one, write_atomic
from convcli.corpus.kernels import KernelBank
from convcli.errors import ConvcliError
from convcli.plan.memory import conv_bytes

#: a file larger than this streams through ``pipeline.run_streamed`` on its own (bounded memory)
STREAM_BYTES = 2 * pipeline.STREAM_SAMPLES
#: padding to the longest of a bucket wastes at most this share of its samples
BUCKET_SLACK = 1.25
#: the most frames one engine call of a batch takes (files × padded length, channels aside)
CALL_SAMPLES = 1 << 24
#: on CUDA, one engine call takes at most this share of the device's free memory (two batches
#: may be on the device at once)
DEVICE_SHARE = 0.4


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
    this time (a Dask task redone after its worker was lost) is not written again. ``cwd``:
    the folder relative paths are relative to (the client's: a Dask worker runs in its own)."""

    job: pipeline.FilterJob
    bank: KernelBank
    since: float | None = None
    cwd: str | None = None

    def where(self, path: str) -> str:
        """``path`` as this process opens it (the report keeps it as it was given)."""
        return path if self.cwd is None else os.path.join(self.cwd, path)


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


def run_batch(settings: Settings, tasks: list[Task]) -> list[dict]:
    """Every task of the batch done or failed: one result each, in task order. Reads and
    writes are done here, in this thread: handing each small file to a pool of its own cost
    more in thread switches than it saved (``local`` keeps batches side by side instead)."""
    job, bank = settings.job, settings.bank
    results: list[dict | None] = [None] * len(tasks)
    whole = []
    for i, task in enumerate(tasks):
        if task.size > STREAM_BYTES:
            results[i] = stream_one(settings, task)
        else:
            whole.append(i)
    reads = [timed(read_one, settings.where(tasks[i].input), job) for i in whole]
    signals: dict[int, tuple[Read, float]] = {}
    for i, (read, spent) in zip(whole, reads):
        if isinstance(read, BaseException):
            results[i] = result(tasks[i], bank, "failed", describe(read), seconds=spent)
        else:
            signals[i] = (read, spent)
    outputs = filter_all(settings, tasks, signals)
    for i, read in signals.items():
        results[i] = write_one(settings, tasks[i], read, outputs[i])
    return results  # type: ignore[return-value]


def timed(function, *args):
    """``(function(*args) or the exception it raised, seconds)``."""
    started = time.perf_counter()
    try:
        value = function(*args)
    except Exception as exc:  # noqa: BLE001 (one file's failure, reported; the rest goes on)
        value = exc
    return value, time.perf_counter() - started


def filter_all(settings: Settings, tasks: list[Task], signals: dict) -> dict:
    """Each signal's result (or the exception of its engine call), by task index."""
    job, bank = settings.job, settings.bank
    groups: dict[tuple, list[int]] = {}
    for i, (read, _) in signals.items():
        groups.setdefault((tasks[i].kernel, read.signal.rate, read.shape[1], read.dtype.str),
                          []).append(i)
    free = device_free(job.device) if groups else None
    outputs: dict = {}
    for (kernel, rate, channels, dtype), members in groups.items():
        try:
            coefficients = bank.get(kernel, rate)
        except ConvcliError as exc:
            outputs.update({i: exc for i in members})
            continue
        length = lambda i: signals[i][0].shape[-1]
        limit = call_frames(free, coefficients.shape, channels, min(map(length, members)),
                            job.spec, np.dtype(dtype).itemsize)
        for bucket in buckets(members, length, job.spec.padding == "zeros", limit):
            outputs.update(filter_bucket(job, coefficients, [signals[i][0] for i in bucket],
                                         bucket))
    return outputs


def device_free(device: str) -> int | None:
    """Bytes free on ``device`` when it resolves to a CUDA device, else None (the CPU's
    batches are bounded by ``CALL_SAMPLES`` alone)."""
    from convcli.engines.devices import free_bytes, resolve_device

    return free_bytes(resolve_device(device))


def call_frames(free: int | None, kernel_shape: tuple, channels: int, shortest: int, spec,
                itemsize: int) -> int:
    """The most frames (files × padded length) one engine call takes: ``CALL_SAMPLES``, and
    with ``free`` bytes on the device what ``DEVICE_SHARE`` of them holds, priced per frame
    by ``plan.memory.conv_bytes`` for an FFT call (the costlier method) on the group's
    shortest file (where padding costs most per frame). At least one file.

    >>> call_frames(None, (31,), 1, 16000, None, 4) == CALL_SAMPLES
    True
    """
    if free is None:
        return CALL_SAMPLES
    try:
        (out_channels, _, k), _ = weight_shape(kernel_shape, channels, spec.groups)
    except ConvcliError:
        return CALL_SAMPLES  # (the engine call says what is wrong, for each file)
    per_frame = conv_bytes(1, channels, shortest, out_channels, k, spec, "fft",
                           itemsize) / max(shortest, 1)
    return max(1, min(CALL_SAMPLES, int(free * DEVICE_SHARE / per_frame)))


def buckets(members: list[int], length, pad: bool, limit: int = CALL_SAMPLES
            ) -> list[list[int]]:
    """Groups run as one call: equal lengths, or (``pad``) lengths within ``BUCKET_SLACK`` of
    the bucket's shortest, at most ``limit`` padded frames (channels aside) unless one file
    alone is more.

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
            if fits and n * (len(last) + 1) <= limit:
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
    except RuntimeError as exc:  # (torch's OutOfMemoryError is one)
        if not out_of_device_memory(exc):
            raise
        if len(members) == 1:
            from convcli.engines.devices import resolve_device

            return {members[0]: ConvcliError(
                f"out of memory on {resolve_device(job.device)} for one file of "
                f"{reads[0].shape[-1]} frames", "use --device cpu for it, or free the device")}
        half = len(members) // 2  # the halves, one after the other
        return {**filter_bucket(job, coefficients, reads[:half], members[:half]),
                **filter_bucket(job, coefficients, reads[half:], members[half:])}
    share = (time.perf_counter() - started) / len(members)
    k = coefficients.shape[-1]
    return {i: (ys[at : at + b, :, : job.spec.output_length(r.shape[-1], k)], share)
            for i, r, (at, b) in zip(members, reads, rows)}


def out_of_device_memory(exc: BaseException) -> bool:
    """``exc`` is torch's out-of-memory error (torch is imported already when it can be)."""
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    return oom is not None and isinstance(exc, oom)


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
        write_atomic(settings.where(task.output), writer, settings.since)
    except Exception as exc:  # noqa: BLE001 (this file's failure: the rest goes on)
        return result(task, bank, "failed", describe(exc), frames,
                      spent + share + time.perf_counter() - started)
    return result(task, bank, "done", None, frames,
                  spent + share + time.perf_counter() - started, clipped, peak)


def stream_one(settings: Settings, task: Task) -> dict:
    """A large file on its own, streamed in blocks (``pipeline.run_streamed``)."""
    bank, job = settings.bank, settings.job
    started = time.perf_counter()
    one = replace(job, inputs=[settings.where(task.input)],
                  outputs=[settings.where(task.output)])
    coefficients = bank.coefficients[task.kernel]
    try:
        os.makedirs(os.path.dirname(one.outputs[0]) or ".", exist_ok=True)
        done = pipeline.run_streamed(one, coefficients, pipeline.DEFAULT_BLOCK,
                                     pipeline.no_progress).files[0]
    except Exception as exc:  # noqa: BLE001 (this file's failure: the rest goes on)
        return result(task, bank, "failed", describe(exc), seconds=time.perf_counter() - started)
    return result(task, bank, "done", None, done.shape_in[-1], time.perf_counter() - started,
                  done.clipped, done.peak)
