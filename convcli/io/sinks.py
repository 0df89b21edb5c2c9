"""Outputs written block by block: WAV and NPY by convcli, every other format by libsndfile.

``open_sink(target, ...)`` starts an output on an ``atomic.StreamTarget`` (a temporary file
beside the output, or standard output) and returns a ``Sink``: ``write(rows)`` encodes and
writes each block as it comes (integer PCM rounded to nearest and clamped, counted in
``report``), ``close()`` finishes it.

- **WAV** (``WavSink``): the header first, with the exact lengths when the output's length is
  known before the first sample (the input's header was honest: the output length follows
  from the spec), else SoX's placeholder; a file's header is rewritten with the true lengths
  at the end (``wav.header_bytes(reserve=True)`` leaves room for RF64 past 4 GiB).
  WAVE_FORMAT_EXTENSIBLE with the input's speaker mask for more than 2 channels or 16 bits.
- **NPY** (``NpySink``): the header, then the samples time step by time step
  (``npy.stream_order``); a header written before the length was known is rewritten at the
  end, so an NPY of unknown length goes to standard output only through a temporary file.
- **Everything else** (``SoundFileSink``): libsndfile, through a file object that keeps the
  ``OSError`` of a full disk (libsndfile's callbacks would swallow it and report nonsense), or
  straight to a pipe for the formats it can write to one (OGG, AU: ``PIPE_WRITABLE``).
"""

from __future__ import annotations

import numpy as np

from convcli.errors import OutputError
from convcli.io import npy, wav
from convcli.io.atomic import StreamTarget
from convcli.io.blocks import rows_to_pcm
from convcli.io.formats import AUDIO_FORMATS, PCM, WriteReport, libsndfile_message

#: formats libsndfile writes to a pipe as they come (the rest go through a temporary file:
#: its FLAC encoder, like its AIFF, CAF and W64 writers, goes back to the header at the end,
#: and on a pipe writes those bytes after the samples instead)
PIPE_WRITABLE = ("ogg", "opus", "au")


class Sink:
    """An output being written: ``write`` blocks ``[B, O, t]``, then ``close``."""

    report: WriteReport
    frames: int = 0  # time steps written

    def write(self, rows: np.ndarray) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def abandon(self) -> None:
        """Stop without finishing (an error on the way): the output is being removed."""


def flows_to_pipe(out_format: str, subtype: str | None, length_known: bool,
                  fd: int | None) -> bool:
    """Whether an output of ``out_format`` can go to a pipe block by block: WAV of the subtypes
    convcli writes always (its placeholder lengths are the convention), NPY when its length is
    known first, OGG and AU where stdout is a real descriptor (libsndfile writes them to a
    pipe); else it is written to a temporary file first."""
    if out_format == "wav" and subtype in wav.CODECS:
        return True
    if out_format == "npy":
        return length_known
    return out_format in PIPE_WRITABLE and fd is not None


def open_sink(target: StreamTarget, *, out_format: str, subtype: str | None, rate: float | None,
              batch: int, channels: int, frames: int | None, layout: str = "ct",
              mask: int | None = None, dtype: str = "float32", name: str = "") -> Sink:
    """The sink for an output of ``frames`` time steps (None: known at the end)."""
    report = WriteReport(path=name, format=out_format, subtype=subtype)
    if out_format == "npy":
        sink: Sink = NpySink(target, batch, channels, frames, layout, dtype)
    else:
        if batch != 1:
            raise OutputError(f"{out_format.upper()} holds one signal, but the result is a "
                              f"batch of {batch}", "write .npy for batched results")
        if out_format == "wav" and subtype in wav.CODECS:
            sink = WavSink(target, channels, int(rate or 0), subtype, frames, mask)
        else:
            sink = SoundFileSink(target, out_format, subtype, int(rate or 0), channels, name)
    sink.report = report
    return sink


class WavSink(Sink):
    """WAV by convcli (``wav.header_bytes``, ``wav.encode_samples``); see the module doc."""

    def __init__(self, target: StreamTarget, channels: int, rate: int, subtype: str,
                 frames: int | None, mask: int | None) -> None:
        self.target, self.channels, self.rate, self.subtype = target, channels, rate, subtype
        self.expected, self.mask = frames, mask
        self.reserve = frames is None and target.seekable
        target.handle.write(wav.header_bytes(channels, rate, subtype, frames, mask, self.reserve))

    def write(self, rows: np.ndarray) -> None:
        data, clipped, peak = wav.encode_samples(rows[0], self.subtype)
        self.target.handle.write(data)
        self.frames += rows.shape[-1]
        self.report.clipped += clipped
        self.report.peak = max(self.report.peak, peak)

    def close(self) -> None:
        handle = self.target.handle
        if self.frames * self.channels * wav.CODECS[self.subtype][1] // 8 & 1:
            handle.write(b"\0")  # RIFF chunks are padded to an even length
        if self.target.seekable and self.expected != self.frames:
            handle.seek(0)
            handle.write(wav.header_bytes(self.channels, self.rate, self.subtype, self.frames,
                                          self.mask, self.reserve))
            handle.seek(0, 2)


class NpySink(Sink):
    """NPY by convcli (``npy.header_bytes``); see the module doc."""

    def __init__(self, target: StreamTarget, batch: int, channels: int, frames: int | None,
                 layout: str, dtype: str) -> None:
        self.target, self.batch, self.channels, self.layout = target, batch, channels, layout
        self.dtype = np.dtype(dtype)
        self.expected = frames
        shape = npy.file_shape(batch, channels, frames or 0, layout)
        self.fortran = npy.stream_order(shape, layout)
        if frames is None and not target.seekable:
            raise OutputError("an NPY of unknown length cannot be written to a pipe as it comes")
        length = None if frames is not None else npy.RESERVED_HEADER
        target.handle.write(npy.header_bytes(shape, self.dtype, self.fortran, length))

    def write(self, rows: np.ndarray) -> None:
        steps = np.ascontiguousarray(rows.transpose(2, 1, 0), dtype=self.dtype)  # time-major
        if steps.size:  # a batch of no signals (0, O, T) has no bytes
            self.target.handle.write(memoryview(steps).cast("B"))
        self.frames += rows.shape[-1]

    def close(self) -> None:
        if self.expected is None:
            shape = npy.file_shape(self.batch, self.channels, self.frames, self.layout)
            handle = self.target.handle
            handle.seek(0)
            handle.write(npy.header_bytes(shape, self.dtype, self.fortran, npy.RESERVED_HEADER))
            handle.seek(0, 2)


class GuardedFile:
    """A binary file for libsndfile's virtual I/O that never raises into its callbacks: the
    first ``OSError`` (ENOSPC...) is kept in ``error`` and the call reports nothing done."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.error: OSError | None = None

    def _guard(self, call, default):
        if self.error is not None:
            return default
        try:
            return call()
        except OSError as exc:
            self.error = exc
            return default
        except ValueError:  # the file was closed under it (an abandoned output)
            return default

    def write(self, data) -> int:
        return self._guard(lambda: self.handle.write(data), 0)

    def read(self, n: int = -1) -> bytes:
        return self._guard(lambda: self.handle.read(n), b"")

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._guard(lambda: self.handle.seek(offset, whence), -1)

    def tell(self) -> int:
        return self._guard(self.handle.tell, -1)

    def flush(self) -> None:
        self._guard(self.handle.flush, None)


class SoundFileSink(Sink):
    """Any format libsndfile writes; see the module doc."""

    def __init__(self, target: StreamTarget, out_format: str, subtype: str | None, rate: int,
                 channels: int, name: str) -> None:
        import soundfile as sf

        self.target, self.subtype, self.name = target, subtype, name
        major = AUDIO_FORMATS[out_format][0]
        self.guard = GuardedFile(target.handle) if target.seekable else None
        try:
            if self.guard is not None:
                self.file = sf.SoundFile(self.guard, "w", rate, channels, subtype, format=major)
            else:
                self.file = sf.SoundFile(target.fd, "w", rate, channels, subtype, format=major,
                                         closefd=False)
        except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
            self._raise_kept()
            raise OutputError(f"cannot encode {channels}-channel {major}/{subtype}: "
                              f"{libsndfile_message(exc)}") from None

    def write(self, rows: np.ndarray) -> None:
        import soundfile as sf

        if self.subtype in PCM:
            frames, clipped, peak = rows_to_pcm(rows[0], self.subtype)
            self.report.clipped += clipped
        else:
            frames = np.ascontiguousarray(rows[0].T)
            peak = float(np.max(np.abs(frames))) if frames.size else 0.0
        self.report.peak = max(self.report.peak, peak)
        try:
            self.file.write(frames)
        except (sf.LibsndfileError, RuntimeError, ValueError, AssertionError) as exc:
            self._raise_kept()
            raise OutputError(f"cannot write {self.name}: {libsndfile_message(exc)}") from None
        self._raise_kept()
        self.frames += rows.shape[-1]

    def close(self) -> None:
        import soundfile as sf

        try:
            self.file.close()
        except (sf.LibsndfileError, RuntimeError, ValueError, AssertionError) as exc:
            self._raise_kept()
            raise OutputError(f"cannot finish {self.name}: {libsndfile_message(exc)}") from None
        self._raise_kept()

    def abandon(self) -> None:
        import contextlib

        if self.guard is not None and self.guard.error is None:
            self.guard.error = OSError("abandoned")  # nothing more reaches the file
        with contextlib.suppress(Exception):
            self.file.close()

    def _raise_kept(self) -> None:
        """The OSError libsndfile's callbacks met (a full disk), or a pipe's reader gone."""
        if self.guard is not None and self.guard.error is not None:
            raise self.guard.error
        if self.guard is None and getattr(self.target.handle, "reader_gone", lambda: False)():
            raise BrokenPipeError("the reader of standard output has gone")
