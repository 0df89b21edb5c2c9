"""Every command's --help reads cleanly and its examples run; every choice flag of every command
suggests the nearest value when mistyped; every numeric flag is checked by its range.

The commands are taken from the app itself (``cli.app.COMMANDS`` and their parameters), so a
new command or flag is covered without a line here.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SAMPLES, cli_env, run_inprocess

from convcli.cli.app import COMMANDS, app
from convcli.core import limits


def _click_command(name: str):
    import typer

    return typer.main.get_command(app).commands[name]


def _params(name: str):
    import click  # noqa: F401  (typer's own click is vendored; the parameters are its objects)

    command = _click_command(name)
    return [p for p in command.params if getattr(p, "opts", None)]


def _parser_of(param):
    info = getattr(param, "type_descriptor", None)
    parser = getattr(getattr(info, "parameter_info", None), "parser", None)
    return parser


def _choice_flags():
    for name in COMMANDS:
        for param in _params(name):
            choices = getattr(param.type_descriptor, "choices", None)
            if choices and param.opts[0].startswith("--"):
                yield name, param.opts[0], tuple(str(c) for c in choices)


def _number_flags():
    for name in COMMANDS:
        for param in _params(name):
            parser = _parser_of(param)
            if parser is not None and parser.__name__.startswith("parse_") and \
                    parser.__name__[6:].replace("_", "-") in limits.LIMITS:
                yield name, param.opts[0], parser.__name__[6:].replace("_", "-")


CHOICES = list(_choice_flags())
NUMBERS = list(_number_flags())


def test_every_choice_and_number_flag_is_found():
    flags = {flag for _, flag, _ in CHOICES}
    assert {"--mode", "--padding", "--method", "--device", "--dtype", "--normalize", "--format",
            "--layout", "--clip", "--wrt", "--loss", "--via"} <= flags
    numbers = {flag for _, flag, _ in NUMBERS}
    assert {"--size", "--stride", "--dilation", "--groups", "--rate", "--gain", "--block",
            "--length", "--seed", "--lowpass", "--transition", "--attenuation"} <= numbers


def _typo(value: str) -> str:
    return value[:-2] + value[-1] + value[-2] if len(value) > 2 else value + "x"


@pytest.mark.parametrize("command, flag, choices", CHOICES,
                         ids=[f"{c}{f}" for c, f, _ in CHOICES])
def test_a_mistyped_choice_suggests_the_nearest(command, flag, choices):
    wanted = max(choices, key=len)
    proc = run_inprocess(command, *(["x"] if command in ("filter", "grad", "info") else []),
                         flag, _typo(wanted), *(["--loss", "sum"] if command == "grad" and
                                                flag != "--loss" else []))
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert err == (f"error: {flag} {_typo(wanted)!r} is not one of {', '.join(choices)} "
                   f"(hint: did you mean {wanted!r}?)\n")


@pytest.mark.parametrize("command, flag, limit", NUMBERS, ids=[f"{c}{f}" for c, f, _ in NUMBERS])
def test_every_numeric_flag_refuses_what_is_out_of_its_range(command, flag, limit):
    bound = limits.LIMITS[limit]
    args = [command, *(["x"] if command in ("filter", "grad", "info") else [])]
    # (a word after --normalize-output is the next argument: its value may be left out)
    word = "-inf" if flag == "--normalize-output" else "many"
    for value in ("nan", str(bound.high * 10 + 10), str(bound.low - 1), word):
        proc = run_inprocess(*args, flag, value)
        err = proc.stderr.decode()
        assert proc.returncode == 2, (value, err)
        assert err.startswith(f"error: {flag} ") and err.count("\n") == 1, (value, err)
        assert bound.describe() in err and "(hint: " in err


@pytest.mark.parametrize("command", [*COMMANDS, None])
def test_help_reads_cleanly(command):
    proc = run_inprocess(*([command] if command else []), "--help")
    text = proc.stdout.decode()
    assert proc.returncode == 0
    assert "<bool>" not in text and "<str>" not in text and "<list" not in text
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert "{" not in usage and "[[" not in usage, usage  # typer's {INPUT}..., [[INPUT]]
    if command is not None:
        assert "Examples" in text
        for line, _ in COMMANDS[command].EXAMPLES:
            assert line in text.replace("\n", " ") or line[:60] in text


def test_usage_lines_say_what_to_type():
    assert "Usage: convcli filter [OPTIONS] INPUT..." in run_inprocess("filter", "--help").stdout.decode()
    assert "Usage: convcli jacobian [OPTIONS] [INPUT]" in run_inprocess("jacobian", "--help").stdout.decode()
    assert "Usage: convcli window [OPTIONS] [NAME[:PARAM]]" in run_inprocess("window", "--help").stdout.decode()


def _prose(command: str) -> str:
    """The help of ``command`` as one line of words (the table's frame and wrapping removed)."""
    text = run_inprocess(command, "--help").stdout.decode()
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def test_brackets_in_help_are_text_not_markup():
    assert "pip install 'convcli[plot]'" in _prose("window")
    assert "(y[::s])" in _prose("filter")
    jacobian = _prose("jacobian")
    assert "J[i, j] = ∂y[i]/∂x[j]" in jacobian and "dense [L_out, N]" in jacobian


EXAMPLES = [(name, line) for name, module in COMMANDS.items() for line, _ in module.EXAMPLES]
#: examples that take long by design: calibrate times the machine for seconds
SLOW = {"convcli calibrate"}


@pytest.mark.parametrize("command, line", EXAMPLES, ids=[line for _, line in EXAMPLES])
def test_every_help_example_runs(command, line, tmp_path):
    """In a copy of sample_data/, exactly as printed (a pipe runs in bash)."""
    if line in SLOW:
        pytest.skip("saves a calibration for this machine; its --quick --no-save sibling runs")
    if "plot" in line or ".png" in line:
        pytest.importorskip("matplotlib", reason="pictures need the [plot] extra")
    for sample in SAMPLES.iterdir():
        if sample.is_file():
            shutil.copy(sample, tmp_path / sample.name)
    (tmp_path / "causal.wav").write_bytes(b"kept")  # the --no-clobber example keeps it
    if "|" in line:
        bindir = Path(sys.executable).parent
        proc = subprocess.run(["bash", "-o", "pipefail", "-c", line], cwd=tmp_path,
                              env={**cli_env(), "PATH": f"{bindir}:{cli_env()['PATH']}"},
                              capture_output=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr.decode()
        return
    args = shlex.split(line)[1:]
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        proc = run_inprocess(*args)
    finally:
        os.chdir(cwd)
    expected = 1 if "--no-clobber" in line else 0
    assert proc.returncode == expected, proc.stderr.decode()
    if expected:
        assert re.search(r"exists and --no-clobber keeps it", proc.stderr.decode())
        assert (tmp_path / "causal.wav").read_bytes() == b"kept"
