"""A corpus's files in and out, at the least cost per file: integer PCM WAV decoded from its
bytes straight into its batch and encoded by convcli (the numbers and bytes libsndfile and
``filter`` give), anything else through ``io.signals`` and ``pipeline.encode_output``; every
output written to a temporary file beside it and renamed whole.
"""

from __future__ import annotations

import io
import itertools
import mmap
import os
import threading
from dataclasses import dataclass

import numpy as np

from convcli import pipeline
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

#: a file larger than this is mapped, not read
MAP_BYTES = 1 << 20


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


def sweep_parts(outputs: list[str]) -> int:
    """Remove the temporary files of these outputs that a killed process left (a Dask worker
    lost mid-write): ``.NAME.ID.part`` beside each. Only this run's outputs: another shard
    writing into the same folder keeps its own. Returns how many were removed."""
    wanted: dict[str, set[str]] = {}
    for path in outputs:
        folder, name = os.path.split(path)
        wanted.setdefault(folder or ".", set()).add(name)
    removed = 0
    for folder, names in wanted.items():
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        for entry in entries:
            if (entry.startswith(".") and entry.endswith(".part")
                    and entry[1:-5].rsplit(".", 1)[0] in names):
                try:
                    os.unlink(os.path.join(folder, entry))
                    removed += 1
                except OSError:
                    pass
    return removed
