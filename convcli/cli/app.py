"""convcli's command line: the Typer app, its commands, and the one place that exits.

Each command lives in its own module (``filter``, ``window``, ``info``, ``explain``,
``jacobian``, ``grad``, ``calibrate``, ``doctor``): it parses its flags, builds what the core needs, calls
it and renders the result. torch is imported inside the commands that compute, so ``--help``
and ``info`` start fast. Every error ends as one ``error: ...`` line on stderr (``--debug``
shows the traceback).
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Annotated

import typer

from convcli.about import __version__
from convcli.cli import calibrate, corpus, doctor, explain, grad, info, jacobian, window
from convcli.cli import filter as filter_
from convcli.cli.help import Command, Group, epilog
from convcli.errors import ConvcliError, Interrupted

app = typer.Typer(
    name="convcli",
    help="Filter signals with exact 1-D convolution semantics, and see what conv1d does to them, "
    "down to its derivatives.",
    no_args_is_help=True,
    cls=Group,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
COMMANDS = {"filter": filter_, "corpus": corpus, "window": window, "info": info, "explain": explain,
            "jacobian": jacobian, "grad": grad, "calibrate": calibrate, "doctor": doctor}
for _name, _module in COMMANDS.items():
    app.command(_name, cls=Command, epilog=epilog(_module.EXAMPLES))(_module.command)


def _version(value: bool) -> None:
    if value:
        print(f"convcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, metavar="",
                           help="Show the version.")
    ] = False,
) -> None:
    """Filter signals with exact 1-D convolution semantics, and see what conv1d does to them."""


# --- entry point ------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    """Run the CLI; map every failure to one ``error:`` line and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:
        args = [a for a in args if a != "--debug"]
    args = _optional_values(args)
    command = typer.main.get_command(app)
    quiet = "--quiet" in args or "-q" in args
    try:
        with _signals_raise(), _warnings_one_line(quiet, debug):
            try:
                code = command.main(args=args, prog_name="convcli", standalone_mode=False)
            except SystemExit as exc:
                # Typer catches EPIPE itself, wraps stdout in PacifyFlushWrapper and exits 1;
                # a reader that stops reading (| head) is not our failure: exit 0, quietly.
                if exc.code == 1 and type(sys.stdout).__name__ == "PacifyFlushWrapper":
                    raise BrokenPipeError from None
                raise
    except Interrupted as exc:  # SIGTERM/SIGINT/SIGHUP: cleanups (temporary files) have run
        if debug:
            raise
        _fail(f"interrupted by {exc.name}; unfinished outputs were removed", exc.exit_code,
              "existing outputs were left as they were; rerun to produce them")
    except ConvcliError as exc:
        if debug:
            raise
        _fail(exc.message, exc.exit_code, exc.hint or _fallback_hint(exc.exit_code, args))
    except typer.TyperException as exc:  # typer's parsing errors: bad flags and values
        if type(exc).__name__ == "NoArgsIsHelpError":
            sys.exit(0)
        if debug:
            raise
        message = " ".join(exc.format_message().split())  # typer's tabs and line breaks
        _fail(f"{message} (hint: see 'convcli {_command_name(args)}--help')",
              getattr(exc, "exit_code", 2))
    except BrokenPipeError:
        _quiet_pipe()
        sys.exit(0)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except MemoryError:
        if debug:
            raise
        _fail("out of memory", 1, "use a smaller input, --block, or --format banded")
    except Exception as exc:  # a bug: still one line, with the way to learn more
        if debug:
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc}", 1,
              "rerun with --debug for the traceback, and please report it")
    sys.exit(code or 0)


#: options whose value may be left out (click cannot express it): option -> value when omitted
OPTIONAL_VALUES = {"--normalize-output": "-1"}


def _optional_values(args: list[str]) -> list[str]:
    """``--normalize-output`` with no number after it gets its default value (−1 dBFS)."""
    out: list[str] = []
    for i, arg in enumerate(args):
        out.append(arg)
        if arg == "--":
            return out + args[i + 1 :]
        if arg in OPTIONAL_VALUES:
            following = args[i + 1] if i + 1 < len(args) else None
            try:
                float(following)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                out.append(OPTIONAL_VALUES[arg])
    return out


#: signals that end a run; each is turned into an ``Interrupted`` exception while main() runs
_STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP")


@contextlib.contextmanager
def _signals_raise():
    """While a command runs, SIGTERM/SIGINT/SIGHUP raise ``Interrupted`` in the main thread, so
    every ``with`` block on the way up runs (``atomic_output`` removes its temporary file);
    the previous handlers come back afterwards. Python runs handlers between bytecodes: a
    signal that arrives inside one long torch call takes effect when that call returns, and
    no output file exists before the write phase. Outside the main thread nothing is changed.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Interrupted(signum, signal.Signals(signum).name)

    previous = {}
    for name in _STOP_SIGNALS:
        number = getattr(signal, name, None)
        if number is not None:
            previous[number] = signal.signal(number, handler)
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


@contextlib.contextmanager
def _warnings_one_line(quiet: bool, debug: bool = False):
    """While a command runs, a ``ConvcliWarning`` from the core (e.g. an unusable calibration
    file) prints as one ``warning: ...`` line on stderr (none with ``--quiet``). Other
    warnings (numpy's overflow RuntimeWarnings, a library's deprecations) are the libraries'
    words about their internals: convcli checks what matters itself and says it in its own
    line, so they are shown only with ``--debug``, as Python shows them."""
    import warnings

    from convcli.errors import ConvcliWarning

    with warnings.catch_warnings():
        warnings.simplefilter("always", ConvcliWarning)
        previous = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if not issubclass(category, ConvcliWarning):
                if debug:
                    previous(message, category, filename, lineno, file, line)
            elif not quiet:
                with contextlib.suppress(BrokenPipeError, ValueError):
                    sys.stderr.write(f"warning: {str(message).replace(chr(10), ' ')}\n")
                    sys.stderr.flush()

        warnings.showwarning = show
        yield


def _command_name(args: list[str]) -> str:
    names = set(COMMANDS)
    for a in args:
        if a in names:
            return f"{a} "
    return ""


def _fallback_hint(code: int, args: list[str]) -> str:
    """The hint of an error raised without one: where the command's options are explained."""
    if code == 2:
        return f"see 'convcli {_command_name(args)}--help'"
    return "rerun with --debug to see where it failed"


def _fail(message: str, code: int, hint: str | None = None) -> None:
    line = f"error: {message}" + (f" (hint: {hint})" if hint else "")
    try:
        sys.stderr.write(line.replace("\n", " ") + "\n")
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    sys.exit(code)


def _quiet_pipe() -> None:
    """After EPIPE, point stdout at /dev/null so the interpreter's final flush stays silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
