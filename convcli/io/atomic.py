"""Outputs that are complete or absent: a temporary file beside the target, renamed at the end.

Every write goes through ``AtomicFile`` (``atomic_output``, ``atomic_outputs``), so a failure,
a full disk or a signal never leaves a partial output and never touches the file it would
replace; ``-`` buffers and goes to stdout at the end, where a closed pipe ends quietly.
"""

from __future__ import annotations

import contextlib
import io
import os
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
