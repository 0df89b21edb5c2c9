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
import re
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


def read_bytes(path: str, stdin: BinaryIO | None = None, what: str = "input") -> bytes:
    """All bytes of ``path`` (``-`` = stdin), with a clear error for missing/empty inputs.

    ``what`` names the role in messages ("input", "kernel").
    """
    if path == "-":
        try:
            data = (stdin or sys.stdin.buffer).read()
        except OSError as exc:
            raise InputError(f"cannot read the {what} from standard input: {exc.strerror or exc}") from None
        if not data:
            raise InputError(f"standard input is empty (the {what} was to come from it)",
                             "pipe a WAV/FLAC/OGG/NPY stream into convcli, or give a file")
        return data
    p = Path(path)
    if not p.exists():
        raise InputError(f"no such {what} file: {path}", "check the path")
    if p.is_dir():
        raise InputError(f"{what} {path} is a directory, not a file", "give a file path")
    try:
        from convcli.plan.memory import check_allocation

        check_allocation(p.stat().st_size, f"reading {what} {path}",
                         "split the file, or filter it in pieces with --block (streaming)")
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror or exc}",
                         "check the file's permissions") from None
    if not data:
        raise InputError(f"{what} {path} is empty (0 bytes)", "check the file was written completely")
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
    data = read_bytes(path, stdin)
    return decode_signal(data, "stdin" if path == "-" else path, layout=layout, rate=rate,
                         dtype=dtype)


def decode_signal(
    data: bytes, name: str, *, layout: str | None = None, rate: float | None = None,
    dtype: str = "auto",
) -> Signal:
    """``read_signal`` for bytes already in memory; ``name`` is used in messages."""
    if rate is not None and not (rate > 0 and math.isfinite(rate)):
        raise UsageError(f"--rate must be a positive number of Hz, got {rate:g}")
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


def fix_wav_lengths(data: bytes) -> bytes:
    """Fill in the lengths of a WAV written to a pipe, so it is read to the end of the stream.

    A writer that cannot seek back (``sox ... -t wav -``, ``ffmpeg ... -f wav -``) leaves a
    placeholder where the sizes belong: 0, 0xFFFFFFFF, or a guess such as 0x7FFFF000.
    libsndfile reads 0 frames for a ``data`` size of 0, so when the ``data`` chunk's size is 0,
    0xFFFFFFFF or more than the bytes present, it is set (in memory) to the whole frames that
    are there, and the RIFF size to the bytes present. Honest headers come back untouched.
    ``_read_audio`` refuses a truncated file (``wav_data_shortfall``) before calling this, so
    only the unknown-length markers (0, 0xFFFFFFFF, ≥ 0x7FFFF000) reach the repair there.

    >>> import struct
    >>> fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, 8000, 16000, 2, 16)
    >>> head = b"RIFF" + struct.pack("<I", 0) + b"WAVE" + fmt + b"data" + struct.pack("<I", 0)
    >>> fixed = fix_wav_lengths(head + bytes(7))       # 3 whole 2-byte frames and one odd byte
    >>> struct.unpack("<I", fixed[40:44])[0], struct.unpack("<I", fixed[4:8])[0]
    (6, 43)
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return data
    pos, align = 12, 1
    while pos + 8 <= len(data):
        chunk = data[pos : pos + 4]
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = pos + 8
        if chunk == b"fmt " and size >= 14 and body + 14 <= len(data):
            align = max(1, int.from_bytes(data[body + 12 : body + 14], "little"))
        if chunk == b"data":
            available = len(data) - body
            if size == 0 and _looks_like_chunk(data, body):
                return data  # an honest empty data chunk followed by another chunk
            if 0 < size <= available and size != 0xFFFFFFFF:
                return data  # honest
            whole = min(available - available % align, 0xFFFFFFFF - 36)
            if whole <= 0:
                return data
            fixed = bytearray(data)
            fixed[pos + 4 : pos + 8] = whole.to_bytes(4, "little")
            fixed[4:8] = min(len(data) - 8, 0xFFFFFFFF).to_bytes(4, "little")
            return bytes(fixed)
        pos = body + size + (size & 1)
    return data


def _looks_like_chunk(data: bytes, pos: int) -> bool:
    """True when ``data[pos:]`` starts with a plausible RIFF chunk header that fits."""
    if pos + 8 > len(data):
        return False
    chunk = data[pos : pos + 4]
    size = int.from_bytes(data[pos + 4 : pos + 8], "little")
    return all(48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c == 32 for c in chunk) and (
        pos + 8 + size <= len(data)
    )


def _decode_message(exc: Exception) -> str:
    """libsndfile's message without the ``Error opening <_io.BytesIO object at 0x...>:`` noise."""
    text = re.sub(r"Error opening <[^>]*>:\s*", "", str(exc)).strip()
    return re.sub(r"^Error\s*:\s*", "", text) or type(exc).__name__


#: a WAV ``data`` size meaning "unknown length" (streaming writers put these before they know)
_UNKNOWN_WAV_SIZES = (0, 0xFFFFFFFF)


def wav_data_shortfall(data: bytes) -> tuple[int, int] | None:
    """``(declared, present)`` bytes of the ``data`` chunk when the file holds fewer than its
    header says (a truncated WAV), else None. Streams that do not know their length
    (size 0 or 0xFFFFFFFF, or ≥ 0x7FFFF000 as some pipe writers use) are not truncated.

    >>> import struct
    >>> head = b"RIFF" + struct.pack("<I", 0) + b"WAVE" + b"data" + struct.pack("<I", 8)
    >>> wav_data_shortfall(head + bytes(8)), wav_data_shortfall(head + bytes(3))
    (None, (8, 3))
    """
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RF64") or data[8:12] != b"WAVE":
        return None
    ds64_data_size = None
    offset = 12
    while offset + 8 <= len(data):
        chunk, size = data[offset : offset + 4], int.from_bytes(data[offset + 4 : offset + 8], "little")
        if chunk == b"ds64" and offset + 8 + 24 <= len(data):
            ds64_data_size = int.from_bytes(data[offset + 16 : offset + 24], "little")
        if chunk == b"data":
            if size == 0xFFFFFFFF and ds64_data_size is not None:
                size = ds64_data_size
            elif size in _UNKNOWN_WAV_SIZES or size >= 0x7FFFF000:
                return None
            present = len(data) - offset - 8
            return (size, present) if present < size else None
        offset += 8 + size + (size & 1)
    return None


def _read_audio(data: bytes, name: str, fmt: str, *, dtype: str) -> Signal:
    import soundfile as sf

    from convcli.plan.memory import check_allocation

    if fmt == "wav" and (short := wav_data_shortfall(data)) is not None:
        declared, present = short
        raise InputError(
            f"{name} is truncated: its header announces {declared:,} bytes of samples but only "
            f"{present:,} are there",
            "convcli refuses a partial recording; to use what is there, rewrite it first: "
            "sox in.wav fixed.wav",
        )
    if fmt == "wav":  # after the truncation check: only "unknown length" markers are left
        data = fix_wav_lengths(data)
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            subtype, rate, declared = f.subtype, f.samplerate, f.frames
            if dtype == "auto":
                dtype = "float64" if subtype in ("PCM_32", "DOUBLE") else "float32"
            check_allocation(max(declared, 0) * f.channels * np.dtype(dtype).itemsize,
                             f"decoding {name}", "split the file, or use --dtype float32")
            frames = f.read(dtype=dtype, always_2d=True)
            log = f.extra_info if fmt == "ogg" else ""
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, OverflowError) as exc:
        raise InputError(
            f"cannot decode {name} as {fmt.upper()}: {_decode_message(exc)}",
            "the file may be truncated or corrupt; check it with `soxi` or `ffprobe`",
        ) from None
    if 0 < frames.shape[0] < declared:
        what = f"the {fmt.upper()} stream ends after {frames.shape[0]:,} of {declared:,} frames"
    elif "ended unexpectedly" in log or "lacks an end-of-stream" in log:
        what = f"the {fmt.upper()} stream ends without its end-of-stream mark"
    else:
        what = None
    if what:
        raise InputError(f"{name} is truncated: {what}",
                         "convcli refuses a partial recording; re-encode what is there first "
                         "if you want it (sox in.ogg fixed.ogg)")
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


def load_npy(data: bytes, name: str) -> np.ndarray:
    """An array from NPY bytes, pickles refused: a crafted object array never runs code.

    The one place convcli calls ``np.load`` (signals and kernels both come here). Truncated
    or corrupt files, and object arrays, become an ``InputError``.
    """
    import warnings

    stream = io.BytesIO(data)
    try:
        with warnings.catch_warnings():  # a crafted header can make Python warn while parsing it
            warnings.simplefilter("ignore")
            return _load_npy(stream, data, name)
    except InputError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InputError(
                f"{name} holds Python objects, which convcli never unpickles",
                "save a plain float array with numpy.save",
            ) from None
        raise InputError(f"cannot read {name} as NPY: {exc}",
                         "the file may be truncated or corrupt; save it again") from None
    except Exception as exc:  # noqa: BLE001 (numpy raises OSError, EOFError, SyntaxError, ...)
        raise InputError(f"cannot read {name} as NPY: {type(exc).__name__}: {exc}",
                         "the file may be truncated or corrupt; save it again") from None


def _load_npy(stream: io.BytesIO, data: bytes, name: str) -> np.ndarray:
    fmt = np.lib.format
    version = fmt.read_magic(stream)
    read_header = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
    header = read_header[version](stream) if version in read_header else None
    if header is not None and not header[2].hasobject:
        shape, _, dtype = header
        expected = math.prod(shape) * dtype.itemsize
        present = len(data) - stream.tell()
        if present < expected:  # refuse before numpy allocates what the header claims
            raise InputError(
                f"{name} is truncated: its header announces {shape} {dtype} "
                f"({expected:,} bytes) but only {present:,} bytes follow",
                "the file was cut short; save it again",
            )
    stream.seek(0)
    return np.load(stream, allow_pickle=False)


def _read_npy(data: bytes, name: str, *, layout: str | None, rate: float | None, dtype: str) -> Signal:
    array = load_npy(data, name)
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

    @property
    def safe_gain_db(self) -> float | None:
        """The gain (dB, ≤ 0, rounded down to 0.1 dB) that would avoid the clipping; None if
        nothing clipped.

        >>> WriteReport("o.wav", "wav", "PCM_16", clipped=3, peak=1.2).safe_gain_db
        -1.6
        """
        if not self.clipped or self.subtype not in PCM or not self.peak > 0:
            return None
        scale = PCM[self.subtype][0]
        return math.floor(200 * math.log10((scale - 1) / (scale * self.peak))) / 10


#: ``--clip``: what to do when integer PCM output would clip
CLIP_POLICIES = ("warn", "error", "clamp")


def clip_verdict(report: WriteReport, policy: str = "warn") -> str | None:
    """Apply the ``--clip`` policy to an encoded output, before anything is written.

    Every policy clamps (that is what ``encode`` did); ``warn`` returns the warning to show
    (count, peak, the gain that avoids it), ``clamp`` returns None (silent), ``error`` raises
    ``OutputError`` so nothing is written. Nothing clipped: None under every policy.

    >>> r = WriteReport("o.wav", "wav", "PCM_16", clipped=12, peak=1.5)
    >>> clip_verdict(r, "warn")
    'o.wav: 12 samples clipped to the PCM_16 range (peak 1.500, +3.5 dBFS); --gain -3.6 would avoid it'
    >>> clip_verdict(r, "clamp") is None
    True
    """
    if policy not in CLIP_POLICIES:
        raise UsageError(f"--clip must be one of {', '.join(CLIP_POLICIES)}, got {policy!r}")
    if not report.clipped or policy == "clamp":
        return None
    peak = f"peak {report.peak:.3f}, {20 * math.log10(report.peak):+.1f} dBFS"
    gain = report.safe_gain_db
    if policy == "error":
        raise OutputError(
            f"{report.path}: {report.clipped:,} samples would clip to the {report.subtype} range "
            f"({peak}); nothing written (--clip error)",
            f"lower the level with --gain {gain:.1f}, write --subtype FLOAT, or allow it with "
            "--clip warn",
        )
    return (f"{report.path}: {report.clipped:,} samples clipped to the {report.subtype} range "
            f"({peak}); --gain {gain:.1f} would avoid it")


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


def to_pcm(frames: np.ndarray, subtype: str,
           out: np.ndarray | None = None) -> tuple[np.ndarray, int, float]:
    """Round float frames (full scale ±1) to integer PCM, clamping what would clip.

    Returns the container array for soundfile, the number of clamped samples and the peak.
    Rounded to nearest ourselves: libsndfile's own float->int conversion does not round.
    ``out``: an integer array of the container type and of ``frames``' shape to write into (a
    channel's column of interleaved frames, so that converting also interleaves); it is what
    comes back.
    """
    scale, container, shift = PCM[subtype]
    peak = 0.0
    low, high = -scale, scale - 1
    maybe_clipped = True
    if frames.size:  # min and max: no |x| copy (NaN/Inf: as np.max(np.abs(...)) says)
        low_x, high_x = float(frames.min()), float(frames.max())
        finite = math.isfinite(low_x + high_x)
        peak = max(-low_x, high_x) if finite else float(np.max(np.abs(frames)))
        maybe_clipped = not (finite and low <= low_x * scale and high_x * scale <= high)
    scaled = frames * scale
    np.rint(scaled, out=scaled)
    clipped = 0
    if maybe_clipped:  # else the extremes show there is nothing to count or clamp
        clipped = int(np.count_nonzero(scaled < low)) + int(np.count_nonzero(scaled > high))
        np.clip(scaled, low, high, out=scaled)
    if out is None:
        ints = scaled.astype(container)
    else:
        ints = out
        np.copyto(ints, scaled, casting="unsafe")
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


def _new_file_mode(target: Path) -> int:
    """Permissions for a new output: the replaced file's, else 0o666 minus the umask
    (``mkstemp`` creates 0o600, which is right for a temporary file but not for a result)."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def _write_failure(path: str, exc: OSError) -> OutputError:
    """An ``OutputError`` for an OSError while writing ``path``, with the fix for the cause."""
    import errno

    hints = {
        errno.ENOSPC: "the disk is full: free some space or write elsewhere with -o",
        errno.EDQUOT: "the disk quota is used up: free some space or write elsewhere with -o",
        errno.EROFS: "the file system is read-only: write elsewhere with -o",
        errno.EACCES: "no permission: write elsewhere with -o",
        errno.EPERM: "no permission: write elsewhere with -o",
    }
    reason = exc.strerror or str(exc) or type(exc).__name__
    return OutputError(f"cannot write {path}: {reason}; nothing was written",
                       hints.get(exc.errno or 0, "check the disk and the path"))


def check_output_path(path: str) -> None:
    """Refuse, before any work, an output that cannot be written: its directory missing or
    not writable, or the path a directory. ``-`` (stdout) is always fine."""
    if path == "-":
        return
    target = Path(path)
    directory = target.parent
    if not directory.is_dir():
        raise OutputError(f"output directory {directory} does not exist", f"mkdir -p {directory}")
    if target.is_dir():
        raise OutputError(f"output {path} is a directory", "give a file name, e.g. -o out.wav")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write in {directory}: permission denied or read-only",
                          "write elsewhere with -o (or --out-dir)")


class AtomicFile:
    """A temporary file beside ``path`` that becomes ``path`` only on ``commit()``.

    The building block of ``atomic_output`` and ``atomic_outputs``, and of any writer that
    streams its output block by block: write to ``handle``; ``commit()`` flushes, fsyncs and
    renames over ``path`` (an existing file is replaced only now, whole, keeping its
    permissions); ``discard()`` (on any failure, also SIGTERM/SIGINT raised as exceptions by
    the CLI) removes the temporary file. OSErrors (ENOSPC, EROFS...) become ``OutputError``.
    The temporary is named ``.NAME.XXXX.part`` in the target directory.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.target = Path(path)
        check_output_path(path)
        try:
            fd, self.tmp = tempfile.mkstemp(dir=self.target.parent,
                                            prefix=f".{self.target.name}.", suffix=".part")
        except OSError as exc:
            raise _write_failure(path, exc) from None
        self.handle: BinaryIO = os.fdopen(fd, "wb")
        self.done = False

    def commit(self) -> None:
        try:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            os.chmod(self.tmp, _new_file_mode(self.target))
            os.replace(self.tmp, self.target)
        except OSError as exc:
            self.discard()
            raise _write_failure(self.path, exc) from None
        self.done = True
        with contextlib.suppress(OSError):  # make the rename itself durable (best effort)
            dirfd = os.open(self.target.parent, os.O_RDONLY)
            try:
                os.fsync(dirfd)
            finally:
                os.close(dirfd)

    def discard(self) -> None:
        if self.done:
            return
        with contextlib.suppress(OSError):
            self.handle.close()
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)
        self.done = True


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[BinaryIO]:
    """A binary file that becomes ``path`` only when the block ends without error.

    ``-`` buffers in memory and goes to stdout at the end (so an error writes nothing there
    either). Otherwise an ``AtomicFile``: a temporary file in the target directory, renamed
    over ``path`` at the end and removed on any failure or interruption.
    """
    with atomic_outputs([path]) as (handle,):
        yield handle


@contextlib.contextmanager
def atomic_outputs(paths: list[str]) -> Iterator[list[BinaryIO]]:
    """Several outputs that appear together: all are written to temporaries first and renamed
    only when every one is complete, so a failure on the third leaves none of them (and the
    files they would replace untouched). ``-`` entries buffer and go to stdout last.
    """
    files: list[AtomicFile | None] = []
    handles: list[BinaryIO] = []
    try:
        for path in paths:
            if path == "-":
                files.append(None)
                handles.append(io.BytesIO())
            else:
                files.append(AtomicFile(path))
                handles.append(files[-1].handle)  # type: ignore[union-attr]
        try:
            yield handles
        except OSError as exc:
            named = [f.path for f in files if f is not None]
            where = named[0] if len(named) == 1 else f"the {len(named)} outputs in " + ", ".join(
                sorted({str(Path(p).parent) for p in named}))
            raise _write_failure(where, exc) from None
        for file in files:
            if file is not None:
                file.commit()
        for file, handle in zip(files, handles):
            if file is None:
                write_stdout(handle.getvalue())  # type: ignore[attr-defined]
    finally:
        for file in files:
            if file is not None:
                file.discard()


def write_stdout(data: bytes) -> None:
    """Write to stdout; a closed pipe (``| head``) is the reader's choice, not an error."""
    try:
        # os.write, not sys.stdout.buffer.write: when the reader goes away mid-write, the
        # buffered writer returns a short count instead of raising, and the loss goes unseen.
        sys.stdout.flush()
        try:
            fd = sys.stdout.fileno()
        except (AttributeError, OSError, ValueError):  # a captured stdout (tests) has no fd
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            return
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
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
        return (lambda handle: np.save(_Chunks(handle), array, allow_pickle=False)), report
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
        # encode in memory, then one plain write: libsndfile writing through a Python file
        # swallows OSErrors (ENOSPC) inside its cffi callback and reports nonsense
        buffer = io.BytesIO()
        try:
            sf.write(buffer, frames, int(rate), subtype=subtype, format=major)
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            raise OutputError(f"cannot encode {channels}-channel {major}/{subtype}: "
                              f"{_decode_message(exc)}") from None
        handle.write(buffer.getbuffer())

    return write, report


class _Chunks:
    """Hide a real file from ``np.save`` so it writes in 16 MiB ``write()`` calls (whose
    OSError carries errno, e.g. ENOSPC) instead of ``ndarray.tofile`` (whose does not)."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle

    def write(self, data: bytes) -> int:
        return self.handle.write(data)
