"""The one error family the CLI catches and prints as a single ``error:`` line.

Core modules raise these (never print, never exit); ``convcli.cli`` turns them into
``error: MESSAGE (hint: HINT)`` on stderr and the exit code below.
"""

from __future__ import annotations


class ConvcliError(Exception):
    """A problem the user can fix. Exit code 1 (data, file or runtime)."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.line()

    def line(self) -> str:
        """The one line the CLI prints (without the ``error: `` prefix)."""
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class UsageError(ConvcliError, ValueError):
    """Flags that contradict each other or a value outside what is allowed. Exit code 2.

    A ``ValueError`` too, as Python callers of the API expect of a bad argument."""

    exit_code = 2


class FlagError(ConvcliError):
    """A flag's value the command line refuses while parsing it (a choice misspelt, a number
    out of range). Exit code 2.

    Not a ``ValueError``, on purpose: typer runs value parsers inside pydantic validators,
    which would wrap a ``ValueError`` in words of their own ("Value error, ..."); this passes
    through them unchanged to the one ``error:`` line."""

    exit_code = 2


class InputError(ConvcliError, ValueError):
    """An input file, stream or kernel that cannot be used as given (a ``ValueError`` too)."""


class OutputError(ConvcliError):
    """An output that cannot be written where or how it was asked."""


class ResourceError(ConvcliError):
    """An operation that would need more memory (or another resource) than there is."""


class ConvcliWarning(UserWarning):
    """Something the user should know that does not stop the command (``warnings.warn``);
    the CLI prints it as one ``warning: ...`` line on stderr, silenced by ``--quiet``."""


class Interrupted(BaseException):
    """SIGTERM/SIGINT/SIGHUP arrived; raised by the CLI's handlers so cleanups run.

    A ``BaseException`` (like ``KeyboardInterrupt``) so that no ``except Exception`` swallows
    it on the way up; ``with`` blocks such as ``io.atomic.atomic_output`` remove their temporary
    files as it passes. The exit code is the shell's convention, 128 + the signal number.
    """

    def __init__(self, signum: int, name: str) -> None:
        super().__init__(name)
        self.signum = signum
        self.name = name
        self.exit_code = 128 + signum
