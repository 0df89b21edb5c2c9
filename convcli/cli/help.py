"""How ``--help`` reads: plain usage lines, no types where the name says it, examples that run.

Typer shows every parameter's Python type (``<bool>`` on a flag, ``<list[str]>`` on the
inputs) and writes usage as ``{INPUT}...`` and ``[[INPUT]]``; these classes show what a
shell user types instead: ``convcli filter [OPTIONS] INPUT...``, flags without a type,
values by their metavar. Each command's examples (``EXAMPLES`` in its module) end its help;
tests/test_help.py runs every one of them.
"""

from __future__ import annotations

from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

#: what typer shows for a value without a metavar, replaced by the parameter's name
_BARE_TYPES = ("<str>", "<int>", "<float>")


class _Argument(TyperArgument):
    def display_type_rich(self, ctx):  # the first column already names it (INPUT)
        return None


class _Option(TyperOption):
    def display_type_rich(self, ctx):
        if self.is_flag:
            return None  # a flag takes no value: no <bool>
        shown = super().display_type_rich(ctx)
        return self.name.upper() if shown in _BARE_TYPES else shown


def _plain(params: list) -> list:
    """The parameters with the display rules above (their class swapped), their help as plain
    text: a ``[`` in it is literal (``y[::s]``, ``pip install 'convcli[plot]'``), never markup."""
    for param in params:
        if type(param) is TyperArgument:
            param.__class__ = _Argument
        elif type(param) is TyperOption:
            param.__class__ = _Option
        else:
            continue
        if param.help:
            param.help = escape(param.help)
    return params


def escape(text: str) -> str:
    """Rich markup's escape: a literal ``[`` is written ``\\[``."""
    return text.replace("[", "\\[")


def usage_pieces(command, ctx) -> list[str]:
    """``[OPTIONS] INPUT...``: a required argument by its name, an optional one in brackets."""
    pieces = [command.options_metavar] if command.options_metavar else []
    for param in command.get_params(ctx):
        if isinstance(param, TyperArgument):
            name = param.metavar or param.name.upper()
            name = name if param.required else f"[{name}]"
            pieces.append(name + ("..." if param.nargs != 1 else ""))
    return pieces


class Command(TyperCommand):
    """A convcli command: plain usage and parameter display."""

    def get_params(self, ctx):
        return _plain(super().get_params(ctx))

    def collect_usage_pieces(self, ctx):
        return usage_pieces(self, ctx)


class Group(TyperGroup):
    """The ``convcli`` group itself, displayed the same way."""

    def get_params(self, ctx):
        return _plain(super().get_params(ctx))

    def collect_usage_pieces(self, ctx):
        return [*usage_pieces(self, ctx), self.subcommand_metavar]


def epilog(examples: list[tuple[str, str]]) -> str:
    """The help's closing section: each example command and what it does (rich markup)."""
    lines = ["[b]Examples[/b]"]
    for line, what in examples:
        lines.append(f"  {escape(line)}")
        lines.append(f"      [dim]{escape(what)}[/dim]")
    return "\n".join(lines)
