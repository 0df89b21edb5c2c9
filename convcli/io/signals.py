"""Read and write whole signals: WAV/FLAC/OGG through soundfile, NPY through numpy; stdin/stdout.

A signal in memory is a float array ``[B, C, T]`` (numpy here; the torch engine wraps it in a
tensor without a copy). Audio loads as ``[1, C, frames]``. ``encode`` prepares a result for an
atomic output (``convcli.io.atomic``).
"""

from __future__ import annotations

import contextlib
import io
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from convcli.core import limits
from convcli.errors import InputError, OutputError, UsageError
from convcli.io.formats import (
    PCM,
    SOUNDFILE_FORMATS,
    WriteReport,
    audio_dtype,
    check_channels,
    format_name,
    libsndfile_message,
    sniff,
    to_pcm,
)
from convcli.io.npy import check_npy, load_npy, signal_layout, to_file_layout
from convcli.io.wav import CODECS, fix_wav_lengths, header_bytes, read_header, wav_data_shortfall

#: libsndfile's frame count for "not known" (SF_COUNT_MAX), or anything past it
UNKNOWN_FRAMES = 1 << 40


@dataclass
class Signal:
    """Samples ``data[B, C, T]`` plus what is needed to write them back the same way."""

    data: np.ndarray
    rate: float | None
    format: str  # one of FORMATS
    subtype: str | None = None  # soundfile subtype of audio input (PCM_16, FLOAT, ...)
    layout: str = "ct"  # NPY layout read: "t", "ct", "tc" or "bct"
    name: str = "<signal>"
    channel_mask: int | None = None  # a WAVE_FORMAT_EXTENSIBLE input's speaker mask

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.data.shape  # type: ignore[return-value]

def read_bytes(path: str, stdin: BinaryIO | None = None, what: str = "input") -> bytes:
    """All bytes of ``path`` (``-`` = stdin), with a clear error for missing/empty inputs.

    ``what`` names the role in messages ("input", "kernel"). A device (``/dev/zero``,
    ``/dev/tty``) and a terminal on stdin are refused: neither ends. Pipes, FIFOs and stdin
    are read in chunks, refused once they outgrow the memory available.
    """
    if path == "-":
        if stdin is None:
            refuse_terminal_stdin(what)
        try:
            data = read_stream(stdin or sys.stdin.buffer, f"the {what} on standard input")
        except OSError as exc:
            raise InputError(f"cannot read the {what} from standard input: {exc.strerror or exc}",
                             "check the command that writes into the pipe") from None
        if not data:
            raise InputError(f"standard input is empty (the {what} was to come from it)",
                             "pipe a WAV/FLAC/OGG/NPY stream into convcli, or give a file")
        return data
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise InputError(f"no such {what} file: {path}", "check the path") from None
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror or exc}",
                         "check the path and its permissions") from None
    if stat.S_ISDIR(mode):
        raise InputError(f"{what} {path} is a directory, not a file",
                         "give a file path" + (f", or filter every file in it with `convcli "
                                               f"corpus {path} --out-dir OUT`"
                                               if what == "input" else ""))
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        raise InputError(f"{what} {path} is a device, not a file (it may never end)",
                         "give a file, or pipe the data into - (stdin)")
    try:
        if stat.S_ISREG(mode):
            from convcli.plan.memory import check_allocation

            check_allocation(p.stat().st_size, f"reading {what} {path}",
                             "split the file, or filter it in pieces with --block (streaming)")
            data = p.read_bytes()
        else:  # a FIFO or a socket: its length is known only at its end
            with open(p, "rb") as handle:
                data = read_stream(handle, f"{what} {path}")
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror or exc}",
                         "check the file's permissions") from None
    if not data:
        raise InputError(f"{what} {path} is empty (0 bytes)", "check the file was written completely")
    return data


#: bytes read from a stream at a time
STREAM_CHUNK = 16 << 20


def read_stream(handle: BinaryIO, what: str) -> bytes:
    """Everything ``handle`` gives until its end, in ``STREAM_CHUNK`` reads; refused (a
    ``ResourceError``) once what was read, twice over (it is decoded next), outgrows the
    memory available."""
    from convcli.plan.memory import check_allocation

    chunks, total = [], 0
    while chunk := handle.read(STREAM_CHUNK):
        chunks.append(chunk)
        total += len(chunk)
        check_allocation(2 * total, f"reading {what} ({total:,} bytes so far)",
                         "give the file's path instead of a pipe (long audio files stream in "
                         "blocks), or split it")
    return b"".join(chunks)


def refuse_terminal_stdin(what: str = "input") -> None:
    """Standard input that is a terminal never ends (a user would wait for nothing): refused."""
    if _is_terminal(sys.stdin):
        raise InputError(f"standard input is a terminal, and the {what} was to come from it",
                         "pipe a file in (convcli ... - < in.wav), or give the file's path")


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def read_signal(
    path: str,
    *,
    layout: str | None = None,
    rate: float | None = None,
    dtype: str = "auto",
    stdin: BinaryIO | None = None,
) -> Signal:
    """Load ``path`` (or ``-``) as a ``Signal``; format from magic bytes, not the name.

    ``layout`` is for 2-D NPY: ``ct`` (channels, time; default) or ``tc``. ``rate`` sets the
    rate of NPY input (audio keeps its own). ``dtype`` is float32, float64 or auto: float64
    where float32 would lose bits (float64 NPY, 32-bit and double audio), else float32.
    """
    data = read_bytes(path, stdin)
    return decode_signal(data, "stdin" if path == "-" else path, layout=layout, rate=rate,
                         dtype=dtype)

def decode_signal(
    data: bytes, name: str, *, layout: str | None = None, rate: float | None = None,
    dtype: str = "auto",
) -> Signal:
    """``read_signal`` for bytes already in memory; ``name`` is used in messages."""
    if rate is not None:
        limits.check("rate", rate)
    fmt = sniff(data)
    if fmt is None:
        raise InputError(
            f"{name} is not a WAV, FLAC, OGG, MP3, AIFF or other file libsndfile reads, nor NPY "
            f"(unrecognised first bytes {data[:4]!r})",
            "convert it with sox or ffmpeg first",
        )
    if fmt == "npy":
        return _read_npy(data, name, layout=layout, rate=rate, dtype=dtype)
    if layout is not None:
        raise UsageError("--layout applies to NPY input only")
    signal = _read_audio(data, name, fmt, dtype=dtype)
    if rate is not None:
        raise UsageError(f"--rate gives NPY input its sample rate; {name} is {fmt.upper()} at "
                         f"{signal.rate:g} Hz and keeps its own",
                         "drop --rate (to change the rate, resample first: "
                         "sox in.wav -r 16000 out.wav)")
    return signal

def _read_audio(data: bytes, name: str, fmt: str, *, dtype: str) -> Signal:
    import soundfile as sf

    from convcli.plan.memory import check_allocation

    data = checked_audio_bytes(data, name, fmt)
    mask = None
    if fmt == "wav":  # a WAVE_FORMAT_EXTENSIBLE input's speaker mask, kept for the output
        with contextlib.suppress(InputError):
            mask = read_header(io.BytesIO(data).read, name).format.channel_mask
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            fmt = format_name(f.format, f.subtype)
            subtype, rate, declared = f.subtype, f.samplerate, f.frames
            dtype = audio_dtype(subtype, dtype)
            if not 0 <= declared < UNKNOWN_FRAMES or not f.seekable():
                # a length not in the header (a pipe's FLAC, OGG) or no seeking (GSM 6.10):
                # read to the end in pieces, priced by the bytes (at most 16× as samples)
                check_allocation(16 * len(data) * np.dtype(dtype).itemsize // 2,
                                 f"decoding {name}", "split the file, or use --dtype float32")
                frames = _read_to_end(f, dtype)
                declared = frames.shape[0]
            else:
                check_allocation(declared * f.channels * np.dtype(dtype).itemsize,
                                 f"decoding {name}", "split the file, or use --dtype float32")
                frames = f.read(dtype=dtype, always_2d=True)
            log = f.extra_info if fmt in ("ogg", "opus") else ""
    except AUDIO_ERRORS as exc:
        raise decode_error(name, fmt, exc) from None
    check_complete(name, fmt, frames.shape[0], declared, log)
    return Signal(
        data=np.ascontiguousarray(frames.T[None]),
        rate=float(rate),
        format=fmt,
        subtype=subtype,
        layout="ct",
        name=name,
        channel_mask=mask,
    )


#: what soundfile raises for a file it cannot decode (libsndfile's errors, and its checks
#: of the values a header gives: a rate beyond int, a frame count numpy cannot allocate)
AUDIO_ERRORS = (RuntimeError, ValueError, TypeError, OverflowError, MemoryError)


def decode_error(name: str, fmt: str, exc: Exception) -> InputError:
    """The one line for an audio file libsndfile cannot decode."""
    return InputError(f"cannot decode {name} as {fmt.upper()}: {libsndfile_message(exc)}",
                      "the file may be truncated or corrupt; check it with `soxi` or `ffprobe`")


def checked_audio_bytes(data: bytes, name: str, fmt: str, size: int | None = None) -> bytes:
    """Refuse a WAV shorter than its header says (``size``: the whole file's, when ``data``
    is its beginning); return the bytes with a pipe writer's placeholder lengths repaired."""
    if fmt != "wav":
        return data
    if (short := wav_data_shortfall(data, size)) is not None:
        declared, present = short
        raise InputError(
            f"{name} is truncated: its header announces {declared:,} bytes of samples but only "
            f"{present:,} are there",
            "convcli refuses a partial recording; to use what is there, rewrite it first: "
            "sox in.wav fixed.wav",
        )
    return fix_wav_lengths(data)  # after the truncation check: only "unknown length" markers


def check_complete(name: str, fmt: str, got: int, declared: int, log: str = "") -> None:
    """Refuse audio whose stream ended before its header's frame count, or an OGG without its
    end-of-stream mark (``log``: libsndfile's ``extra_info``), or no samples at all."""
    if 0 < got < declared:
        what = f"the {fmt.upper()} stream ends after {got:,} of {declared:,} frames"
    elif "ended unexpectedly" in log or "lacks an end-of-stream" in log:
        what = f"the {fmt.upper()} stream ends without its end-of-stream mark"
    else:
        what = None
    if what:
        raise InputError(f"{name} is truncated: {what}",
                         "convcli refuses a partial recording; re-encode what is there first "
                         "if you want it (sox in.ogg fixed.ogg)")
    if got == 0:
        raise InputError(f"{name} has no samples (0 frames)", "check the file was written completely")


def _read_to_end(f, dtype: str) -> np.ndarray:
    """Every frame of an open ``soundfile.SoundFile`` whose length is not known, ``[T, C]``."""
    pieces = []
    while (piece := f.read(1 << 20, dtype=dtype, always_2d=True)).shape[0]:
        pieces.append(piece)
    return np.concatenate(pieces) if pieces else np.zeros((0, f.channels), dtype)


def _read_npy(data: bytes, name: str, *, layout: str | None, rate: float | None, dtype: str) -> Signal:
    array = load_npy(data, name)
    bct, used = npy_batches(array, name, layout)
    if dtype == "auto":
        dtype = "float64" if array.dtype == np.float64 else "float32"
    return Signal(
        data=np.ascontiguousarray(bct, dtype=dtype),
        rate=rate,
        format="npy",
        subtype=None,
        layout=used,
        name=name,
    )


def npy_batches(array: np.ndarray, name: str, layout: str | None) -> tuple[np.ndarray, str]:
    """An NPY array as a ``[B, C, T]`` view (nothing copied) and the layout read: ``t``,
    ``ct``, ``tc`` or ``bct``; what cannot be a signal is refused (``npy.check_npy``,
    ``npy.signal_layout``)."""
    check_npy(array.shape, array.dtype, name)
    used = signal_layout(array.shape, layout, name)
    views = {"t": lambda a: a[None, None, :], "ct": lambda a: a[None], "tc": lambda a: a.T[None],
             "bct": lambda a: a}
    return views[used](array), used


def find_nonfinite(data: np.ndarray) -> tuple[int, int, int] | None:
    """(batch, channel, sample) of the first NaN/Inf in ``data[B, C, T]``, or None.

    First in time (then channel), as a listener would meet it.
    """
    bad = ~np.isfinite(data)
    if not bad.any():
        return None
    b, c, t = np.nonzero(bad)
    first = int(np.argmin(c + data.shape[1] * (t + data.shape[2] * b)))
    return int(b[first]), int(c[first]), int(t[first])


def nonfinite_error(name: str, value: float, channel: int, sample: int,
                    item: int | None = None) -> InputError:
    """The error for NaN/Inf at ``channel``, ``sample`` (of batch ``item`` when there are several)."""
    where = f"batch item {item}, " if item is not None else ""
    return InputError(f"{name} has {value} at {where}channel {channel}, sample {sample}",
                      "clean the input, or pass --allow-nonfinite to let it propagate")


def check_finite(signal: Signal) -> None:
    """Refuse NaN/Inf, naming the first channel and sample (``--allow-nonfinite`` skips this)."""
    where = find_nonfinite(signal.data)
    if where is None:
        return
    b, c, t = where
    raise nonfinite_error(signal.name, signal.data[b, c, t], c, t,
                          b if signal.data.shape[0] > 1 else None)


# --- writing -----------------------------------------------------------------------------

def encode(
    data: np.ndarray,
    *,
    out_format: str,
    rate: float | None,
    subtype: str | None,
    layout: str = "ct",
    channel_mask: int | None = None,
) -> tuple[Callable[[BinaryIO], None], WriteReport]:
    """Prepare ``data[B, C, T]`` for writing: returns a writer and its report (clipping).

    WAV of the PCM and float subtypes is written by convcli (``wav.header_bytes``: exact
    lengths, WAVE_FORMAT_EXTENSIBLE with ``channel_mask`` past 2 channels or 16 bits); other
    formats and subtypes by libsndfile.
    """
    report = WriteReport(path="", format=out_format, subtype=subtype)
    if out_format == "npy":
        array = to_file_layout(data, layout)
        return (lambda handle: np.save(_Chunks(handle), array, allow_pickle=False)), report
    import soundfile as sf

    batch, channels, frame_count = data.shape
    check_channels(out_format, channels, "the output")
    if batch != 1:
        raise OutputError(
            f"{out_format.upper()} holds one signal, but the result is a batch of {batch}",
            "write .npy for batched results",
        )
    if rate is None:
        raise UsageError(
            f"{out_format.upper()} output needs a sample rate, and NPY input has none",
            "pass --rate HZ",
        )
    if rate != int(rate) or rate <= 0:
        raise UsageError(f"{out_format.upper()} needs a whole positive sample rate, got {rate:g}")
    if out_format == "wav" and subtype in CODECS:
        from convcli.io.wav import encode_samples

        raw, report.clipped, report.peak = encode_samples(data[0], subtype)
        head = header_bytes(channels, int(rate), subtype, frame_count, channel_mask)
        pad = b"\0" if len(raw) & 1 else b""
        return (lambda handle: [handle.write(head), handle.write(raw), handle.write(pad)]), report
    frames = np.ascontiguousarray(data[0].T)
    if subtype in PCM:
        frames, report.clipped, report.peak = to_pcm(frames, subtype)
    else:
        report.peak = float(np.max(np.abs(frames))) if frames.size else 0.0
    major = SOUNDFILE_FORMATS[out_format]

    def write(handle: BinaryIO) -> None:
        # encode in memory, then one plain write: libsndfile writing through a Python file
        # swallows OSErrors (ENOSPC) inside its cffi callback and reports nonsense
        buffer = io.BytesIO()
        try:
            sf.write(buffer, frames, int(rate), subtype=subtype, format=major)
        except AUDIO_ERRORS as exc:
            raise OutputError(f"cannot encode {channels}-channel {major}/{subtype} at "
                              f"{rate:g} Hz: {libsndfile_message(exc)}; nothing written",
                              "choose another --subtype or format (.npy holds anything)") from None
        handle.write(buffer.getbuffer())

    return write, report

class _Chunks:
    """Hide a real file from ``np.save`` so it writes in 16 MiB ``write()`` calls (whose
    OSError carries errno, e.g. ENOSPC) instead of ``ndarray.tofile`` (whose does not)."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle

    def write(self, data: bytes) -> int:
        return self.handle.write(data)
