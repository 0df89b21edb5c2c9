"""Read and write signals: WAV/FLAC/OGG through soundfile, NPY through numpy; stdin/stdout.

A signal in memory is a float array ``[B, C, T]`` (numpy here; the engine wraps it in a torch
tensor without a copy). Audio loads as ``[1, C, frames]``. Every write goes to a temporary file
beside the target and is renamed at the end, so a failure never leaves a partial output.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from convcli.errors import InputError, OutputError, UsageError

FORMATS = ("wav", "flac", "ogg", "npy")
#: our format name -> soundfile's major format
SOUNDFILE_FORMATS = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG"}
#: integer PCM subtypes: full-scale value and the container dtype soundfile is given
#: (libsndfile keeps the top bits of the container, so 24-bit goes in int32 << 8, 8-bit in int16 << 8)
PCM = {
    "PCM_S8": (2**7, np.int16, 8),
    "PCM_U8": (2**7, np.int16, 8),
    "PCM_16": (2**15, np.int16, 0),
    "PCM_24": (2**23, np.int32, 8),
    "PCM_32": (2**31, np.int32, 0),
}
#: a 2-D NPY this much longer along axis 0 is almost surely (time, channels)
TC_GUESS_MIN = 16


@dataclass
class Signal:
    """Samples ``data[B, C, T]`` plus what is needed to write them back the same way."""

    data: np.ndarray
    rate: float | None
    format: str  # one of FORMATS
    subtype: str | None = None  # soundfile subtype of audio input (PCM_16, FLOAT, ...)
    layout: str = "ct"  # NPY layout read: "t", "ct", "tc" or "bct"
    name: str = "<signal>"

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.data.shape  # type: ignore[return-value]


def sniff_format(head: bytes) -> str | None:
    """Format from magic bytes: RIFF/RF64 -> wav, fLaC -> flac, OggS -> ogg, \\x93NUMPY -> npy."""
    if head[:4] in (b"RIFF", b"RF64", b"RIFX") and head[8:12] == b"WAVE" or head[:4] == b"RF64":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:6] == b"\x93NUMPY":
        return "npy"
    return None


def format_from_path(path: str) -> str | None:
    """``x.WAV`` -> ``wav``; None when the extension is not one convcli writes."""
    ext = Path(path).suffix.lower().lstrip(".")
    ext = {"oga": "ogg", "wave": "wav"}.get(ext, ext)
    return ext if ext in FORMATS else None


def read_bytes(path: str, stdin: BinaryIO | None = None) -> bytes:
    """All bytes of ``path`` (``-`` = stdin), with a clear error for missing/empty inputs."""
    if path == "-":
        data = (stdin or sys.stdin.buffer).read()
        if not data:
            raise InputError("standard input is empty", "pipe a WAV/FLAC/OGG/NPY stream into convcli")
        return data
    p = Path(path)
    if not p.exists():
        raise InputError(f"no such file: {path}", "check the path")
    if p.is_dir():
        raise InputError(f"{path} is a directory, not a signal file")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    if not data:
        raise InputError(f"{path} is empty (0 bytes)", "check the file was written completely")
    return data


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
    if rate is not None and not (rate > 0 and math.isfinite(rate)):
        raise UsageError(f"--rate must be a positive number of Hz, got {rate:g}")
    data = read_bytes(path, stdin)
    name = "stdin" if path == "-" else path
    fmt = sniff_format(data[:12])
    if fmt is None:
        raise InputError(
            f"{name} is not a WAV, FLAC, OGG or NPY file (unrecognised first bytes {data[:4]!r})",
            "convert it with sox or ffmpeg first",
        )
    if fmt == "npy":
        return _read_npy(data, name, layout=layout, rate=rate, dtype=dtype)
    if layout is not None:
        raise UsageError("--layout applies to NPY input only")
    return _read_audio(data, name, fmt, dtype=dtype)


def _read_audio(data: bytes, name: str, fmt: str, *, dtype: str) -> Signal:
    import soundfile as sf

    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            subtype, rate = f.subtype, f.samplerate
            if dtype == "auto":
                dtype = "float64" if subtype in ("PCM_32", "DOUBLE") else "float32"
            frames = f.read(dtype=dtype, always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        raise InputError(
            f"cannot decode {name} as {fmt.upper()}: {exc}",
            "the file may be truncated or corrupt; check it with `soxi` or `ffprobe`",
        ) from None
    if frames.shape[0] == 0:
        raise InputError(f"{name} has no samples (0 frames)", "check the file was written completely")
    return Signal(
        data=np.ascontiguousarray(frames.T[None]),
        rate=float(rate),
        format=fmt,
        subtype=subtype,
        layout="ct",
        name=name,
    )


def _read_npy(data: bytes, name: str, *, layout: str | None, rate: float | None, dtype: str) -> Signal:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InputError(
                f"{name} holds Python objects, which convcli never unpickles",
                "save a plain float array with numpy.save",
            ) from None
        raise InputError(f"cannot read {name} as NPY: {exc}", "is the file complete?") from None
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot read {name} as NPY: {exc}", "is the file complete?") from None
    if array.dtype.kind not in "biuf":
        raise InputError(
            f"{name} has dtype {array.dtype}; convcli filters real numbers",
            "save a real float array (for complex data, filter .real and .imag separately)",
        )
    if array.size == 0:
        raise InputError(f"{name} is an empty array {array.shape}", "a signal needs at least one sample")
    if layout not in (None, "ct", "tc"):
        raise UsageError(f"--layout must be ct or tc, got {layout!r}")
    if array.ndim == 1:
        bct, used = array[None, None, :], "t"
    elif array.ndim == 2:
        if layout == "tc":
            bct, used = array.T[None], "tc"
        else:
            if layout is None and array.shape[0] > array.shape[1] and array.shape[0] > TC_GUESS_MIN:
                raise InputError(
                    f"{name} has shape {array.shape}: {array.shape[0]} channels of "
                    f"{array.shape[1]} samples looks like (time, channels)",
                    "pass --layout tc to read it as (time, channels), or --layout ct to insist",
                )
            bct, used = array[None], "ct"
    elif array.ndim == 3:
        if layout == "tc":
            raise UsageError("--layout tc applies to 2-D NPY only; 3-D is (batch, channels, time)")
        bct, used = array, "bct"
    else:
        raise InputError(
            f"{name} has {array.ndim} dimensions {array.shape}",
            "an NPY signal is (time,), (channels, time) or (batch, channels, time)",
        )
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


def check_finite(signal: Signal) -> None:
    """Refuse NaN/Inf, naming the first channel and sample (``--allow-nonfinite`` skips this)."""
    where = find_nonfinite(signal.data)
    if where is None:
        return
    b, c, t = where
    value = signal.data[b, c, t]
    item = f"batch item {b}, " if signal.data.shape[0] > 1 else ""
    raise InputError(
        f"{signal.name} has {value} at {item}channel {c}, sample {t}",
        "clean the input, or pass --allow-nonfinite to let it propagate",
    )


# --- writing -----------------------------------------------------------------------------
@dataclass
class WriteReport:
    """What happened on the way out: clipping of integer PCM, where it went."""

    path: str
    format: str
    subtype: str | None
    clipped: int = 0  # samples clamped to the integer range
    peak: float = 0.0  # largest |sample| before clamping, full scale = 1.0


def choose_subtype(out_format: str, source: Signal | None, requested: str | None) -> str | None:
    """The soundfile subtype for an audio output (None for NPY).

    ``--subtype`` wins; else the input's subtype when the output format has it (WAV keeps
    PCM_16/24/FLOAT...); NPY input becomes FLOAT in WAV; else soundfile's default.
    """
    if out_format == "npy":
        if requested:
            raise UsageError("--subtype applies to audio output, not NPY")
        return None
    import soundfile as sf

    major = SOUNDFILE_FORMATS[out_format]
    if requested:
        requested = requested.upper()
        if not sf.check_format(major, requested):
            allowed = ", ".join(sf.available_subtypes(major))
            raise UsageError(f"--subtype {requested} is not available for {major}", f"use one of {allowed}")
        return requested
    if source is not None and source.subtype and sf.check_format(major, source.subtype):
        return source.subtype
    if out_format == "wav" and (source is None or source.format == "npy"):
        return "FLOAT"
    return sf.default_subtype(major)


def to_pcm(frames: np.ndarray, subtype: str) -> tuple[np.ndarray, int, float]:
    """Round float frames (full scale ±1) to integer PCM, clamping what would clip.

    Returns the container array for soundfile, the number of clamped samples and the peak.
    Rounded to nearest ourselves: libsndfile's own float->int conversion does not round.
    """
    scale, container, shift = PCM[subtype]
    peak = float(np.max(np.abs(frames))) if frames.size else 0.0
    scaled = np.rint(frames * scale)
    low, high = -scale, scale - 1
    clipped = int(np.count_nonzero((scaled < low) | (scaled > high)))
    np.clip(scaled, low, high, out=scaled)
    ints = scaled.astype(container)
    if shift:
        ints <<= shift
    return ints, clipped, peak


def to_file_layout(data: np.ndarray, layout: str) -> np.ndarray:
    """``[B, C, T]`` back to the NPY layout the input had (1-D, (C,T), (T,C) or 3-D)."""
    batch, channels, _ = data.shape
    if layout == "bct" or batch > 1:
        return data
    if layout == "t" and channels == 1:
        return data[0, 0]
    if layout == "tc":
        return data[0].T
    return data[0]


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[BinaryIO]:
    """A binary file that becomes ``path`` only when the block ends without error.

    ``-`` buffers in memory and goes to stdout at the end. Otherwise a temporary file in the
    target directory is renamed over ``path``; on any failure it is removed.
    """
    if path == "-":
        buffer = io.BytesIO()
        yield buffer
        write_stdout(buffer.getvalue())
        return
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise OutputError(f"output directory {directory} does not exist", "create it first")
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".part")
    except OSError as exc:
        raise OutputError(f"cannot write in {directory}: {exc.strerror}", "check permissions") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_stdout(data: bytes) -> None:
    """Write to stdout; a closed pipe (``| head``) is the reader's choice, not an error."""
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        # stop Python from complaining again when it flushes stdout at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise


def encode(
    data: np.ndarray,
    *,
    out_format: str,
    rate: float | None,
    subtype: str | None,
    layout: str = "ct",
) -> tuple[Callable[[BinaryIO], None], WriteReport]:
    """Prepare ``data[B, C, T]`` for writing: returns a writer and its report (clipping)."""
    report = WriteReport(path="", format=out_format, subtype=subtype)
    if out_format == "npy":
        array = to_file_layout(data, layout)
        return (lambda handle: np.save(handle, array, allow_pickle=False)), report
    import soundfile as sf

    batch, channels, _ = data.shape
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
    frames = np.ascontiguousarray(data[0].T)
    if subtype in PCM:
        frames, report.clipped, report.peak = to_pcm(frames, subtype)
    else:
        report.peak = float(np.max(np.abs(frames))) if frames.size else 0.0
    major = SOUNDFILE_FORMATS[out_format]

    def write(handle: BinaryIO) -> None:
        try:
            sf.write(handle, frames, int(rate), subtype=subtype, format=major)
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            raise OutputError(f"cannot encode {channels}-channel {major}/{subtype}: {exc}") from None

    return write, report
