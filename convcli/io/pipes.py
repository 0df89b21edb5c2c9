"""Byte streams for the block readers: standard input read in order, and the three ways
libsndfile is given a pipe it cannot seek in.

- ``StreamReader``: bytes read in order with ``read(n)``, after a ``peek`` at the first ones
  (the format is sniffed from them, then they are read again as part of the stream).
- ``ReplayPipe``: a file-like object for libsndfile's virtual I/O over a pipe, which keeps the
  last few MiB read so the short backward seeks of its FLAC decoder are served from memory.
- ``feed_pipe``: an OS pipe fed from a ``StreamReader`` on a thread, for the formats whose pipe
  mode libsndfile has (OGG, AIFF, AU: it reads them from a descriptor without seeking).
- ``spool``: a stream copied to a temporary file, for what needs seeking (circular padding's
  tail, formats libsndfile cannot read from a pipe, NPY stored a channel at a time): bounded
  memory, and the output starts once the input has ended.
- ``Worker``: one daemon thread running calls in order (the stream's reader and writer): a read
  blocked on a stalled pipe never keeps the process from exiting.
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
from concurrent.futures import Future
from typing import BinaryIO

from convcli.errors import InputError

#: what ``ReplayPipe`` keeps of the bytes already read, for backward seeks
REPLAY_WINDOW = 1 << 22
#: the length ``ReplayPipe`` tells libsndfile (a pipe has none): large, so nothing ends early
PIPE_LENGTH = 1 << 62


class StreamReader:
    """A binary stream read in order: ``peek(n)`` looks at the first bytes without consuming
    them, ``read(n)`` returns ``n`` bytes (fewer only at the end), ``position`` counts them.

    ``fd``: read the descriptor itself (``os.read``), not ``raw``: a reader thread left
    blocked in a buffered file's read at exit would hold its lock while the interpreter
    shuts down (which aborts it); one blocked in ``os.read`` holds nothing."""

    def __init__(self, raw: BinaryIO | None, fd: int | None = None) -> None:
        self.raw, self.fd = raw, fd
        self.pending = b""
        self.position = 0

    def _more(self, n: int) -> bytes:
        chunks, size = [], 0
        while size < n:
            if self.fd is not None:
                chunk = os.read(self.fd, min(n - size, 1 << 20))
            else:
                chunk = self.raw.read(n - size)  # type: ignore[union-attr]
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)

    def peek(self, n: int) -> bytes:
        if len(self.pending) < n:
            self.pending += self._more(n - len(self.pending))
        return self.pending[:n]

    def read_ready(self, n: int, unit: int = 1) -> bytes:
        """Up to ``n`` bytes in whole ``unit``s (a frame): at least a sixteenth of ``n`` (fewer
        only at the end), then only what has already arrived. A fast producer (``cat``) fills
        every block, a slow one (a recorder) is not waited for: its output follows it."""
        if self.fd is None:
            return self.read(n)
        import select

        data = bytearray(self.pending[:n])
        self.pending = self.pending[n:]
        least = max(unit, n // 16 // unit * unit)
        while len(data) < n:
            if len(data) >= least and not select.select([self.fd], [], [], 0)[0]:
                break
            chunk = os.read(self.fd, min(n - len(data), 1 << 20))
            if not chunk:
                break
            data += chunk
        whole = len(data) // unit * unit
        if whole and whole < len(data):  # a partial frame waits for the next read
            self.pending = bytes(data[whole:]) + self.pending
            del data[whole:]
        self.position += len(data)
        return bytes(data)

    def read(self, n: int) -> bytes:
        if self.pending:
            data, self.pending = self.pending[:n], self.pending[n:]
            if len(data) < n:
                data += self._more(n - len(data))
        else:
            data = self._more(n)
        self.position += len(data)
        return data


def stdin_reader() -> StreamReader:
    """Standard input as a ``StreamReader``: its descriptor, or its binary buffer where it has
    none (a captured stdin in tests). Nothing is read through ``sys.stdin`` before this."""
    import sys

    try:
        fd = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):
        return StreamReader(sys.stdin.buffer)
    return StreamReader(None, fd)


class ReplayPipe:
    """A pipe as libsndfile's virtual I/O sees a file: ``read``/``readinto``, ``tell``, and a
    ``seek`` that goes forward by reading and back within the last ``REPLAY_WINDOW`` bytes.
    Its length is ``PIPE_LENGTH`` (a pipe has none). A seek it cannot serve leaves the
    position where it was and is remembered in ``failed`` (libsndfile then reports an error);
    nothing here raises into libsndfile's callbacks."""

    def __init__(self, reader: StreamReader) -> None:
        self.reader = reader
        self.window = bytearray()
        self.window_start = 0  # stream offset of window[0]
        self.pos = 0
        self.at_end = False  # the last seek was to the (pretended) end
        self.failed = False

    def _fill_to(self, offset: int) -> None:
        end = self.window_start + len(self.window)
        if offset > end:
            self.window += self.reader.read(offset - end)
            # keep REPLAY_WINDOW bytes behind the position, never the bytes not yet read
            drop = min(len(self.window) - 2 * REPLAY_WINDOW, self.pos - self.window_start
                       - REPLAY_WINDOW)
            if drop > 0:
                del self.window[:drop]
                self.window_start += drop

    def read(self, n: int = -1) -> bytes:
        n = 1 << 20 if n < 0 else n
        self._fill_to(self.pos + n)
        lo = self.pos - self.window_start
        data = bytes(self.window[lo : lo + n])
        self.pos += len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def tell(self) -> int:
        return PIPE_LENGTH if self.at_end else self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.tell(), 2: PIPE_LENGTH}.get(whence, 0)
        target = base + offset
        self.at_end = whence == 2
        if self.at_end:
            return PIPE_LENGTH
        if target < self.window_start or target > PIPE_LENGTH // 2:
            self.failed = True
            return self.pos
        self._fill_to(target)
        self.pos = min(target, self.window_start + len(self.window))
        return self.pos

    def write(self, data) -> int:
        return 0


def feed_pipe(reader: StreamReader) -> int:
    """An OS pipe whose read end (returned) gives ``reader``'s bytes, copied on a daemon
    thread; the thread stops at the end of the stream or when the read end is closed."""
    read_end, write_end = os.pipe()

    def copy() -> None:
        try:
            while chunk := reader.read(1 << 16):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(write_end, view) :]
        except OSError:  # the reader closed its end (an error, or it has read enough)
            pass
        finally:
            os.close(write_end)

    threading.Thread(target=copy, name="convcli-feed", daemon=True).start()
    return read_end


def spool(reader: StreamReader, suffix: str = "") -> str:
    """Copy the rest of ``reader`` to a new temporary file (in ``TMPDIR``) and return its
    path; the caller removes it. Memory holds one MiB at a time."""
    fd, path = tempfile.mkstemp(prefix="convcli-stdin-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := reader.read(1 << 20):
                out.write(chunk)
    except OSError as exc:
        os.unlink(path)
        raise InputError(f"cannot keep standard input in a temporary file in "
                         f"{tempfile.gettempdir()}: {exc.strerror or exc}",
                         "set TMPDIR to a directory with room") from None
    except BaseException:
        os.unlink(path)
        raise
    return path


class Worker:
    """One daemon thread that runs the calls given to ``submit`` in order; each returns a
    ``Future``. ``close`` lets the thread end after the calls already given."""

    def __init__(self, name: str) -> None:
        self.calls: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        self.calls.put((future, fn, args))
        return future

    def _run(self) -> None:
        while (call := self.calls.get()) is not None:
            future, fn, args = call
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 (handed to the caller through the future)
                future.set_exception(exc)

    def close(self) -> None:
        self.calls.put(None)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
