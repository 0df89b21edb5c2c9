"""Signals in blocks: every input a stream reads, as ``[B, C, t]`` rows of floats.

``open_source(path)`` opens a file or standard input and says what it knows before a sample
is read (a ``BlockSource``: format, rate, channels, frames or None where only the end will
tell); ``source.blocks(n)`` then reads it in blocks of ``n`` frames, in the precision of
``formats.audio_dtype``. What each input is read with:

| input | read by | length |
|---|---|---|
| WAV (PCM, float), file or pipe | ``wav.read_header`` and ``wav.decode_samples`` (``WavSource``) | the header's; a placeholder: the file's size, or a pipe's end |
| any other format libsndfile reads, a file | libsndfile (``SoundFileSource``) | the header's |
| FLAC on a pipe | libsndfile through ``pipes.ReplayPipe`` | its STREAMINFO, or its end |
| OGG (Vorbis, Opus), AIFF, AU on a pipe | libsndfile's pipe mode (``pipes.feed_pipe``) | its end (OGG), the header's |
| NPY, a file | a memory map (``NpySource``) | the header's |
| NPY on a pipe, stored time step by time step (``npy.time_major``) | its bytes in order (``NpyStream``) | the header's |
| anything else on a pipe, and any pipe that must be read twice | ``pipes.spool`` to a temporary file, then as a file | |

Blocks read ahead on a thread (``read_ahead``); NaN/Inf are found block by block with the
whole-file message (``check_block_finite``). A source that ends before its header said is
truncated: one ``InputError`` at the end.
"""

from __future__ import annotations

import contextlib
import math
import os
import stat
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from convcli.errors import InputError, UsageError
from convcli.io import npy, pipes, wav
from convcli.io.formats import PCM, audio_dtype, format_name, libsndfile_message, sniff, to_pcm
from convcli.io.signals import (
    UNKNOWN_FRAMES,
    find_nonfinite,
    nonfinite_error,
    refuse_terminal_stdin,
)

#: formats libsndfile reads from a pipe without seeking (checked equal to a file's read in
#: tests/test_stream_io.py); the rest are spooled
PIPE_MODE = ("ogg", "opus", "aiff", "au")


class BlockSource:
    """An input read in blocks. ``frames`` None: the length shows only at the end (a pipe
    with a placeholder length). ``seekable``: ``tail`` and ``rewind`` work (a file).
    ``alloc(shape, dtype)`` gives the memory a block is read into (pinned for a GPU)."""

    name: str = "<signal>"
    format: str = "wav"
    subtype: str | None = None
    rate: float | None = None
    batch: int = 1
    channels: int = 1
    frames: int | None = None
    layout: str = "ct"
    channel_mask: int | None = None
    dtype: str = "float32"
    seekable: bool = False
    alloc: Callable = staticmethod(np.empty)

    def read(self, n: int) -> np.ndarray:
        """Up to ``n`` frames as ``[B, C, t]`` (fewer only at the end, 0 after it)."""
        raise NotImplementedError

    def tail(self, h: int) -> np.ndarray:
        """The last ``h`` frames, then back to the start (``seekable`` sources)."""
        raise NotImplementedError

    def rewind(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def blocks(self, block: int) -> Iterator[np.ndarray]:
        """The whole input in blocks of ``block`` frames; ``InputError`` if it ends before its
        header said."""
        done = 0
        while self.frames is None or done < self.frames:
            want = block if self.frames is None else min(block, self.frames - done)
            rows = self.read(want)
            if not rows.shape[-1]:
                break
            done += rows.shape[-1]
            yield rows
        self.check_end(done)
        if self.frames is not None and done < self.frames:
            raise InputError(f"{self.name} is truncated: it ends after {done:,} of its "
                             f"{self.frames:,} frames",
                             "convcli refuses a partial recording; re-encode what is there "
                             "first if you want it (sox in.wav fixed.wav)")
        if done == 0:
            raise InputError(f"{self.name} has no samples (0 frames)",
                             "check the file was written completely")

    def _rows(self, frames: int) -> np.ndarray:
        return self.alloc((self.batch, self.channels, frames), self.dtype)

    def check_end(self, done: int) -> None:
        """Refuse an input whose end shows it was cut short (after its last block)."""


def _decode_error(name: str, done: int, frames: int | None, exc: Exception) -> InputError:
    of = "" if frames is None else f" of its {frames:,}"
    return InputError(f"cannot decode {name} after {done:,}{of} frames: "
                      f"{libsndfile_message(exc)}",
                      "the file is truncated or corrupt; check it with `soxi` or `ffprobe`")


# --- WAV, by convcli ---------------------------------------------------------------------------
class WavSource(BlockSource):
    """PCM or float WAV read by ``convcli.io.wav`` from a byte stream (a file or a pipe)."""

    def __init__(self, read: Callable[[int], bytes], header: wav.WavHeader, name: str,
                 dtype: str, handle=None) -> None:
        fmt = header.format
        self._read, self.header, self.name, self.handle = read, header, name, handle
        self.format, self.subtype, self.channels = "wav", fmt.subtype, fmt.channels
        self.rate, self.channel_mask = float(fmt.rate), fmt.channel_mask
        self.dtype = audio_dtype(fmt.subtype, dtype)
        self.seekable = handle is not None
        self.frames = header.frames
        if handle is not None:  # a file: its size says what a placeholder does not
            available = (os.fstat(handle.fileno()).st_size - header.data_offset) // fmt.block_align
            if header.frames is not None and header.frames > available:
                raise InputError(
                    f"{name} is truncated: its header announces {header.data_bytes:,} bytes of "
                    f"samples but only {available * fmt.block_align:,} are there",
                    "convcli refuses a partial recording; to use what is there, rewrite it "
                    "first: sox in.wav fixed.wav")
            self.frames = available if header.frames is None else header.frames

    def read(self, n: int) -> np.ndarray:
        raw = self._read(n * self.header.format.block_align)
        frames = len(raw) // self.header.format.block_align
        return wav.decode_samples(raw, self.subtype, self.channels, self.dtype,
                                  out=self._rows(frames))

    def tail(self, h: int) -> np.ndarray:
        align = self.header.format.block_align
        self.handle.seek(self.header.data_offset + (self.frames - h) * align)
        rows = self.read(h)
        self.rewind()
        return rows

    def rewind(self) -> None:
        self.handle.seek(self.header.data_offset)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


# --- everything libsndfile reads ---------------------------------------------------------------
class SoundFileSource(BlockSource):
    """An audio file (or pipe) that libsndfile reads: any of ``soundfile.available_formats()``.

    Integer PCM is read as the integers and scaled here, in the same pass that de-interleaves
    the channels: 3× less time than libsndfile's own conversion to float, and the same numbers
    (libsndfile also scales by 2^−(bits−1), and that power of two is exact)."""

    def __init__(self, source, name: str, dtype: str, *, seekable: bool, closefd: bool = True,
                 keep: object = None) -> None:
        import soundfile as sf

        self.name, self.keep = name, keep  # keep: what must live as long as the file
        try:
            self.file = sf.SoundFile(source, closefd=closefd) if isinstance(source, int) else \
                sf.SoundFile(source)
        except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, OverflowError) as exc:
            raise InputError(f"cannot decode {name}: {libsndfile_message(exc)}",
                             "the file may be truncated or corrupt, or not audio libsndfile "
                             "reads; check it with `soxi` or `ffprobe`") from None
        f = self.file
        self.format, self.subtype = format_name(f.format, f.subtype), f.subtype
        self.channels, self.rate = f.channels, float(f.samplerate)
        self.frames = f.frames if 0 < f.frames < UNKNOWN_FRAMES else None
        if seekable and f.frames == 0:
            self.frames = 0
        self.seekable = seekable and f.seekable()
        # soundfile seeks before and after each read of a file libsndfile calls seekable: on a
        # FLAC pipe that is a binary search over the (pretended) length, in a cut FLAC it fails
        # with a message about seeking; the blocks are read in order, and seek() still works
        f._info.seekable = 0
        self.dtype = audio_dtype(f.subtype, dtype)
        self.done = 0

    def read(self, n: int) -> np.ndarray:
        import soundfile as sf

        container = PCM[self.subtype][1] if self.subtype in PCM else None
        try:
            frames = self.file.read(n, dtype=np.dtype(container or self.dtype).name,
                                    always_2d=True)
        except (sf.LibsndfileError, RuntimeError, ValueError, AssertionError) as exc:
            raise _decode_error(self.name, self.done, self.frames, exc) from None
        self.done += frames.shape[0]
        rows = self._rows(frames.shape[0])
        unit = None if container is None else np.array(
            2.0 ** (1 - 8 * np.dtype(container).itemsize), self.dtype)
        for c in range(self.channels):  # a channel at a time: see rows_to_pcm
            if unit is None:
                rows[0, c] = frames[:, c]
            else:
                np.multiply(frames[:, c], unit, out=rows[0, c], dtype=self.dtype)
        return rows

    def check_end(self, done: int) -> None:
        log = self.file.extra_info if self.format in ("ogg", "opus") else ""
        if "ended unexpectedly" in log or "lacks an end-of-stream" in log:
            raise InputError(f"{self.name} is truncated: the {self.format.upper()} stream ends "
                             f"without its end-of-stream mark (after {done:,} frames)",
                             "convcli refuses a partial recording; re-encode what is there "
                             "first if you want it (sox in.ogg fixed.ogg)")

    def tail(self, h: int) -> np.ndarray:
        import soundfile as sf

        try:
            self.file.seek(self.frames - h)
            rows = self.read(h)
            self.file.seek(0)
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:  # GSM 6.10: no seeking
            raise _NoSeek(libsndfile_message(exc)) from None
        self.done = 0
        return rows

    def rewind(self) -> None:
        self.file.seek(0)
        self.done = 0

    def close(self) -> None:
        self.file.close()


class _NoSeek(Exception):
    """libsndfile cannot seek in this file (GSM 6.10 WAV): read it through instead."""


def tail_by_reading(source: BlockSource, h: int, block: int) -> np.ndarray:
    """The last ``h`` frames of a file libsndfile cannot seek in: one pass through it,
    keeping only them, then back to the start (``rewind`` reopens it)."""
    try:
        return source.tail(h)
    except _NoSeek:
        pass
    kept = None
    for rows in source.blocks(block):
        kept = rows if kept is None else np.concatenate([kept, rows], -1)
        kept = kept[..., max(0, kept.shape[-1] - h):].copy()
    source.rewind()
    assert kept is not None
    return kept


class _Reopen(SoundFileSource):
    """A ``SoundFileSource`` whose ``rewind`` reopens the file (libsndfile cannot seek in it)."""

    def __init__(self, path: str, name: str, dtype: str) -> None:
        self.path, self.requested = path, dtype
        super().__init__(path, name, dtype, seekable=True)
        self.seekable = True

    spool: str | None = None  # a temporary copy of standard input, removed at close

    def rewind(self) -> None:
        import soundfile as sf

        try:
            self.file.seek(0)
        except (sf.LibsndfileError, RuntimeError, ValueError):
            self.file.close()
            self.file = sf.SoundFile(self.path)
        self.done = 0

    def close(self) -> None:
        super().close()
        if self.spool is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.spool)


# --- NPY -----------------------------------------------------------------------------------------
class NpySource(BlockSource):
    """An NPY file read through a memory map: any layout streams, a block of every row at a
    time (the map reads only those pages)."""

    def __init__(self, path: str, name: str, layout: str | None, rate: float | None,
                 dtype: str) -> None:
        with open(path, "rb") as handle:
            head = handle.read(1 << 16)
        shape, fortran, stored, offset = npy.header_info(head, name)
        npy.check_npy(shape, stored, name)
        expected = math.prod(shape) * stored.itemsize
        present = os.path.getsize(path) - offset
        if present < expected:  # refuse before the map would
            raise InputError(f"{name} is truncated: its header announces {shape} {stored} "
                             f"({expected:,} bytes) but only {present:,} bytes follow",
                             "the file was cut short; save it again")
        self.layout = npy.signal_layout(shape, layout, name)
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        self.view = {"t": lambda a: a[None, None, :], "ct": lambda a: a[None],
                     "tc": lambda a: a.T[None], "bct": lambda a: a}[self.layout](array)
        self.name, self.format, self.rate, self.seekable = name, "npy", rate, True
        self.batch, self.channels, self.frames = self.view.shape
        self.dtype = dtype if dtype != "auto" else (
            "float64" if stored == np.float64 else "float32")
        self.position = 0
        del fortran

    def read(self, n: int) -> np.ndarray:
        part = self.view[..., self.position : self.position + n]
        self.position += part.shape[-1]
        rows = self._rows(part.shape[-1])
        np.copyto(rows, part, casting="unsafe")
        return rows

    def tail(self, h: int) -> np.ndarray:
        rows = self._rows(h)
        np.copyto(rows, self.view[..., self.frames - h :], casting="unsafe")
        return rows

    def rewind(self) -> None:
        self.position = 0

    def close(self) -> None:
        self.view = None


class NpyStream(BlockSource):
    """An NPY on a pipe stored time step by time step (``npy.time_major``), read in order."""

    def __init__(self, reader: pipes.StreamReader, header: bytes, name: str,
                 layout: str | None, rate: float | None, dtype: str) -> None:
        shape, fortran, stored, offset = npy.header_info(header, name)
        npy.check_npy(shape, stored, name)
        self.layout = npy.signal_layout(shape, layout, name)
        self.shape, self.fortran, self.stored = shape, fortran, stored
        reader.read(offset)
        self.reader, self.name, self.format, self.rate = reader, name, "npy", rate
        self.batch, self.channels, self.frames = npy.bct_shape(shape, self.layout)
        self.dtype = dtype if dtype != "auto" else (
            "float64" if stored == np.float64 else "float32")
        self.step = self.batch * self.channels * stored.itemsize  # bytes per time step

    def read(self, n: int) -> np.ndarray:
        raw = self.reader.read_ready(n * self.step, self.step)
        raw = raw[: len(raw) - len(raw) % self.step]
        part = npy.block_from_bytes(raw, self.stored, self.shape, self.layout, self.fortran)
        rows = self._rows(part.shape[-1])
        np.copyto(rows, part, casting="unsafe")
        return rows


# --- opening ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Facts:
    """What a file says of itself in its header: enough to decide whether to stream it."""

    format: str
    frames: int
    channels: int
    batch: int
    rate: float | None


def probe(path: str, layout: str | None = None) -> Facts | None:
    """The header's facts of a file, or None where there are none to tell (stdin, a file that
    cannot be read: the reader then says why)."""
    if path == "-" or is_pipe(path):  # opening a pipe would consume what it sniffs
        return None
    try:
        with open_source(path, layout=layout) as source:
            frames = source.frames
            return Facts(source.format, -1 if frames is None else frames, source.channels,
                         source.batch, source.rate)
    except (InputError, UsageError, OSError):
        return None


def open_source(path: str, *, layout: str | None = None, rate: float | None = None,
                dtype: str = "auto", seekable: bool = False) -> BlockSource:
    """The input at ``path`` (``-``: standard input) as a ``BlockSource`` (see the module doc).

    ``seekable``: the source must be readable twice and give its tail first (circular padding,
    ``--normalize-output``): standard input is then spooled to a temporary file. ``rate`` is
    NPY's sample rate; given with audio (which has its own) it is a ``UsageError``.
    """
    if path == "-":
        refuse_terminal_stdin()
        source = _open_stream(pipes.stdin_reader(), "stdin", layout, rate, dtype, seekable)
    elif is_pipe(path):  # a FIFO, bash's <(...): read once, in order, like stdin
        handle = _open_input(path)
        source = _open_stream(pipes.StreamReader(None, handle.fileno()), path, layout, rate,
                              dtype, seekable)
        # the descriptor lives as long as the source (its readers do not own what they read)
        weakref.finalize(source, handle.close)
    else:
        source = _open_file(path, path, layout, rate, dtype)
    if source.format != "npy" and (rate is not None or layout is not None):
        source.close()
        if layout is not None:
            raise UsageError("--layout applies to NPY input only")
        raise UsageError(f"--rate gives NPY input its sample rate; {source.name} is "
                         f"{source.format.upper()} at {source.rate:g} Hz and keeps its own",
                         "drop --rate (to change the rate, resample first: "
                         "sox in.wav -r 16000 out.wav)")
    if rate is not None and not (rate > 0 and math.isfinite(rate)):
        source.close()
        raise UsageError(f"--rate must be a positive number of Hz, got {rate:g}")
    return source


def is_pipe(path: str) -> bool:
    """``path`` names a FIFO or a socket (``/dev/fd/63`` of bash's ``<(...)`` too): bytes that
    can be read once, in order, and whose length shows only at their end."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _open_input(path: str, buffering: int = 0) -> BinaryIO:
    try:
        return open(path, "rb", buffering=buffering)
    except FileNotFoundError:
        raise InputError(f"no such input file: {path}", "check the path") from None
    except IsADirectoryError:
        raise InputError(f"input {path} is a directory, not a file", "give a file path, or "
                         f"filter every file in it with `convcli corpus {path} --out-dir OUT`"
                         ) from None
    except OSError as exc:
        raise InputError(f"cannot read input {path}: {exc.strerror or exc}",
                         "check the file's permissions") from None


def _open_file(path: str, name: str, layout: str | None, rate: float | None,
               dtype: str) -> BlockSource:
    handle = _open_input(path, buffering=-1)
    try:
        head = handle.read(12)
        if not head:
            raise InputError(f"input {name} is empty (0 bytes)",
                             "check the file was written completely")
        if head[:6] == b"\x93NUMPY":
            return NpySource(path, name, layout, rate, dtype)
        if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
            handle.seek(0)
            header = wav.read_header(handle.read, name)
            if header.format.subtype is not None:
                source = WavSource(handle.read, header, name, dtype, handle)
                handle = None  # the source owns it now
                return source
    except BaseException:
        if handle is not None:
            handle.close()
        raise
    handle.close()
    if not _libsndfile_reads(path):
        raise _not_audio(name, head)
    source = _Reopen(path, name, dtype)
    return source


def _libsndfile_reads(path: str) -> bool:
    import soundfile as sf

    try:
        sf.info(path)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, OverflowError):
        return False
    return True


def _not_audio(name: str, head: bytes) -> InputError:
    return InputError(f"{name} is not a WAV, FLAC, OGG, MP3, AIFF or other file libsndfile "
                      f"reads, nor NPY (unrecognised first bytes {head[:4]!r})",
                      "convert it with sox or ffmpeg first")


def _open_stream(reader: pipes.StreamReader, name: str, layout: str | None, rate: float | None,
                 dtype: str, seekable: bool) -> BlockSource:
    """A source over bytes read in order (standard input, a FIFO), named ``name``."""
    head = reader.peek(12)
    if not head:
        if name == "stdin":
            raise InputError("standard input is empty (the input was to come from it)",
                             "pipe a WAV/FLAC/OGG/NPY stream into convcli, or give a file")
        raise InputError(f"input {name} is a pipe that ended before any byte",
                         "check the command that writes into it")
    kind = "npy" if head[:6] == b"\x93NUMPY" else None
    if kind == "npy" and not seekable:
        length = npy.header_length(head) or 0
        header = reader.peek(length)
        shape, fortran, _, _ = npy.header_info(header, name)
        used = npy.signal_layout(shape, layout, name)
        if npy.time_major(shape, fortran, used):
            return NpyStream(reader, header, name, layout, rate, dtype)
    elif head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE" and not seekable:
        header = wav.read_header(_Replay(reader).read, name)
        if header.format.subtype is not None:
            reader.read(header.data_offset)
            align = header.format.block_align
            return WavSource(lambda n: reader.read_ready(n, align), header, name, dtype)
    elif not seekable and kind is None:
        found = sniff(reader.peek(1 << 16))
        if found == "flac":
            replay = pipes.ReplayPipe(reader)
            return SoundFileSource(replay, name, dtype, seekable=False, keep=replay)
        if found in PIPE_MODE:
            return SoundFileSource(pipes.feed_pipe(reader), name, dtype, seekable=False)
        if found is None and len(reader.peek(1 << 16)) < (1 << 16):
            raise _not_audio(name, head)
    return _spooled(reader, name, layout, rate, dtype)


class _Replay:
    """Reads from a ``StreamReader``'s peeked bytes without consuming them (a header parsed
    before the stream is handed on)."""

    def __init__(self, reader: pipes.StreamReader) -> None:
        self.reader, self.offset = reader, 0

    def read(self, n: int) -> bytes:
        data = self.reader.peek(self.offset + n)[self.offset :]
        self.offset += len(data)
        return data


def _spooled(reader: pipes.StreamReader, name: str, layout, rate, dtype) -> BlockSource:
    """A stream kept in a temporary file, then read as that file (removed at once: the open
    source keeps it until it is closed)."""
    path = pipes.spool(reader)
    try:
        source = _open_file(path, name, layout, rate, dtype)
    except BaseException:
        os.unlink(path)
        raise
    if isinstance(source, _Reopen):  # its rewind may reopen it by name: removed at close
        source.spool = path
    else:
        os.unlink(path)
    return source


def read_ahead(blocks, reader: pipes.Worker):
    """The items (never None) of the iterator ``blocks``, each next one fetched on ``reader``
    while the caller works on the current one.

    >>> with pipes.Worker("doctest") as worker:
    ...     list(read_ahead(iter("abc"), worker))
    ['a', 'b', 'c']
    """
    pending = reader.submit(next, blocks, None)
    try:
        while (item := pending.result()) is not None:
            pending = reader.submit(next, blocks, None)
            yield item
    finally:  # stopped early (an error): let the read in flight end before the source closes
        settle(pending)


def settle(future, timeout: float = 10.0) -> None:
    """Wait for ``future`` to end, its outcome ignored: a thread still reading or writing must
    not race the file being closed (a read stalled on a pipe is given up after ``timeout``)."""
    import concurrent.futures

    concurrent.futures.wait([future], timeout=timeout)


def rows_to_pcm(rows: np.ndarray, subtype: str) -> tuple[np.ndarray, int, float]:
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


def check_block_finite(rows: np.ndarray, offset: int, name: str) -> None:
    """Refuse NaN/Inf in a block ``[B, C, t]`` that starts at sample ``offset``, as the
    whole-file check words it (first in time, then channel)."""
    where = find_nonfinite(rows)
    if where is not None:
        b, c, t = where
        raise nonfinite_error(name, rows[b, c, t], c, offset + t,
                              b if rows.shape[0] > 1 else None)
