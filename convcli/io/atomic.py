"""Outputs that are complete or absent: a temporary file beside the target, renamed at the end.

Every write goes through ``AtomicFile`` (``atomic_output``, ``atomic_outputs``), so a failure,
a full disk or a signal never leaves a partial output and never touches the file it would
replace; ``-`` buffers and goes to stdout at the end, where a closed pipe ends quietly.
Inside ``keep_existing()`` (``--no-clobber``) an output that exists is refused instead, before
any work (``check_output_path``) and again, atomically, when the output is put in place.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import io
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from convcli.errors import OutputError


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

#: set inside ``keep_existing()``: outputs that exist are refused (``--no-clobber``)
_KEEP_EXISTING: contextvars.ContextVar[bool] = contextvars.ContextVar("keep_existing",
                                                                       default=False)


@contextlib.contextmanager
def keep_existing(enabled: bool = True) -> Iterator[None]:
    """While inside (and ``enabled``), every output refuses to replace an existing file: the
    ``--no-clobber`` of every command that writes. Without it outputs are replaced whole."""
    token = _KEEP_EXISTING.set(enabled or _KEEP_EXISTING.get())
    try:
        yield
    finally:
        _KEEP_EXISTING.reset(token)


def _exists_error(path: str) -> OutputError:
    return OutputError(f"output {path} exists and --no-clobber keeps it; nothing was written",
                       "remove it first, choose another -o, or drop --no-clobber")


def is_special(path: str) -> bool:
    """Whether ``path`` exists and is a device, a FIFO or a socket (written in place)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def is_terminal(path: str) -> bool:
    """Whether the output ``path`` is a terminal: ``-`` when stdout is one, or a tty device
    (``-o /dev/tty``), which binary data must not be written to."""
    if path == "-":
        try:
            return sys.stdout.isatty()
        except (AttributeError, ValueError):
            return False
    try:
        if not stat.S_ISCHR(os.stat(path).st_mode):
            return False  # (a FIFO is never opened to ask: its reader would see an end)
        fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        return os.isatty(fd)
    finally:
        os.close(fd)


def check_output_path(path: str) -> None:
    """Refuse, before any work, an output that cannot be written: its directory missing or
    not writable, the path a directory, or (``keep_existing``) a file that exists. ``-``
    (stdout) is always fine."""
    if path == "-":
        return
    if not path:
        raise OutputError("the output path is empty ('')", "give a file name, e.g. -o out.wav")
    target = Path(path)
    if _KEEP_EXISTING.get() and os.path.lexists(path) and not target.is_dir():
        raise _exists_error(path)
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

    A target that is a device or a FIFO (``-o /dev/null``, ``-o >(sox ...)``) is written in
    place: it is not a file a rename could complete, and renaming over it would replace
    ``/dev/null`` itself with a regular file.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.target = Path(path)
        check_output_path(path)
        self.done = False
        self.keep_existing = _KEEP_EXISTING.get()
        self.created = False  # committed where nothing was (so an undo may remove it)
        self.direct = is_special(path)
        try:
            if self.direct:  # (a FIFO waits here for its reader, as `cat > fifo` does)
                self.tmp = None
                self.handle: BinaryIO = open(path, "wb")  # noqa: SIM115 (closed by commit)
                return
            fd, self.tmp = tempfile.mkstemp(dir=self.target.parent,
                                            prefix=f".{self.target.name}.", suffix=".part")
        except OSError as exc:
            raise _write_failure(path, exc) from None
        self.handle = os.fdopen(fd, "wb")

    def commit(self) -> None:
        if self.direct:
            try:
                self.handle.close()
            except OSError as exc:
                raise _write_failure(self.path, exc) from None
            self.done = True
            return
        try:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            os.chmod(self.tmp, _new_file_mode(self.target))
            if self.keep_existing:
                self._link_new()
            else:
                os.replace(self.tmp, self.target)
        except FileExistsError:
            self.discard()
            raise _exists_error(self.path) from None
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

    def _link_new(self) -> None:
        """Put the file in place only where none is: a hard link fails with EEXIST, atomically,
        when another process made the target meanwhile (a rename would replace it)."""
        try:
            os.link(self.tmp, self.target)
        except OSError as exc:
            if exc.errno == errno.EEXIST or exc.errno not in (errno.EPERM, errno.ENOTSUP,
                                                             errno.EXDEV, errno.EMLINK):
                raise
            if os.path.lexists(self.target):  # no hard links here: check, then rename
                raise FileExistsError(errno.EEXIST, "exists", str(self.target)) from None
            os.replace(self.tmp, self.target)
        else:
            os.unlink(self.tmp)
        self.created = True

    def undo(self) -> None:
        """Remove a committed output that did not exist before (a later one of the same set
        failed under ``keep_existing``, and the set appears whole or not at all)."""
        if self.created:
            with contextlib.suppress(OSError):
                os.unlink(self.target)

    def discard(self) -> None:
        if self.done:
            return
        with contextlib.suppress(OSError):
            self.handle.close()
        if self.tmp is not None:
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
        committed: list[AtomicFile] = []
        for file in files:
            if file is not None:
                try:
                    file.commit()
                except OutputError:
                    for done in committed:
                        done.undo()
                    raise
                committed.append(file)
        for file, handle in zip(files, handles):
            if file is None:
                write_stdout(handle.getvalue())  # type: ignore[attr-defined]
    finally:
        for file in files:
            if file is not None:
                file.discard()

class Stdout:
    """Standard output as a binary file that writes through at once (a stream's sink): each
    ``write`` goes out whole with ``os.write``, so the reader gets each block as it is made;
    a reader that has gone (``| head``) raises ``BrokenPipeError`` (``cli.main`` ends quietly).
    ``fd`` is the descriptor, or None where stdout has none (a captured stdout in tests)."""

    def __init__(self) -> None:
        sys.stdout.flush()
        try:
            self.fd: int | None = sys.stdout.fileno()
        except (AttributeError, OSError, ValueError):
            self.fd = None

    def seekable(self) -> bool:
        return False

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        size = len(view)
        try:
            if self.fd is None:
                sys.stdout.buffer.write(view)
                sys.stdout.buffer.flush()
                return size
            # os.write, not sys.stdout.buffer.write: when the reader goes away mid-write, the
            # buffered writer returns a short count instead of raising, and the loss goes unseen
            while view:
                view = view[os.write(self.fd, view) :]
        except BrokenPipeError:
            # stop Python from complaining again when it flushes stdout at exit
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise
        return size

    def flush(self) -> None:
        pass

    def reader_gone(self) -> bool:
        """The pipe's reader has closed it (poll says POLLERR): a failed write was EPIPE."""
        if self.fd is None:
            return False
        import select

        poller = select.poll()
        poller.register(self.fd, select.POLLOUT)
        return any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(0))


def write_stdout(data: bytes) -> None:
    """Write to stdout; a closed pipe (``| head``) is the reader's choice, not an error."""
    Stdout().write(data)


class StreamTarget:
    """Where a stream writes: ``handle`` (a binary file), whether it can seek back (to fix a
    header at the end), and the descriptor of a pipe libsndfile may write itself (``fd``)."""

    def __init__(self, handle, seekable: bool, fd: int | None = None) -> None:
        self.handle, self.seekable, self.fd = handle, seekable, fd


@contextlib.contextmanager
def atomic_stream(path: str, *, spool: bool = False) -> Iterator[StreamTarget]:
    """An output written block by block, complete or absent like ``atomic_output``.

    A file: an ``AtomicFile`` (renamed into place when the block ends without error, removed
    on any failure or signal). ``-``: standard output written through as the blocks come (a
    reader has them at once; after an error it has what came before it), or, with ``spool``,
    a temporary file copied to stdout at the end (for an output whose header needs its length
    and cannot be written to a pipe before it is known: nothing reaches stdout on an error).
    OSErrors (ENOSPC...) become ``OutputError``.
    """
    if path == "-" and not spool:
        out = Stdout()
        yield StreamTarget(out, False, out.fd)
        return
    if path == "-":
        with tempfile.TemporaryFile(prefix="convcli-out-") as temporary:
            try:
                yield StreamTarget(temporary, True)
            except OSError as exc:
                raise _write_failure("a temporary file for stdout", exc) from None
            temporary.seek(0)
            out = Stdout()
            while chunk := temporary.read(1 << 20):
                out.write(chunk)
        return
    file = AtomicFile(path)
    try:
        try:
            yield StreamTarget(file.handle, True)
        except OSError as exc:
            raise _write_failure(path, exc) from None
        file.commit()
    finally:
        file.discard()
