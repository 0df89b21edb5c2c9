"""Every convcli command line of README.md and docs/*.md runs, and exits 0, against sample_data/.

The convention (also stated in a comment near the top of README.md), the same for every file:

- Only fenced blocks opened with ```sh are run. Use ```text (or ```console, or a bare ```)
  for examples with placeholder files such as in.wav or taps.txt.
- In a ```sh block, a line runs when it calls convcli as a command: it starts with `convcli `
  (or `$ convcli `), or `convcli ` follows `|`, `;`, `&&`, `||` or `(`. So
  `sox sample_data/chord.wav -t wav - | convcli filter - -o - | sox -t wav - out.wav` runs, and
  the Quick start's `.venv/bin/convcli ...` (which would build a virtual environment) does not.
  A line ending in a backslash continues on the next one.
- Each line runs on its own in a fresh temporary directory that holds a copy of sample_data/
  (so `sample_data/chord.wav` resolves and outputs land in that directory), so a line cannot
  use another line's output: chain dependent steps with `&&` on one line. A plain
  `convcli ARGS` line runs in this process through `convcli.cli.main` (no `import torch` per
  line); a line with shell syntax (pipes, `&&`, redirections) runs in bash with
  `set -o pipefail`, in parallel, where `convcli` is this checkout's `python -m convcli`.
- Lines that call `sox` or `ffmpeg` are left out, with the reason in the test's output, where
  that program is not installed.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import ROOT, SAMPLES, cli_env, run_inprocess

README = ROOT / "README.md"
#: The files whose ```sh blocks run: README.md and every page under docs/.
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]
CALLS_CONVCLI = re.compile(r"(^|[|;(]|&&|\|\|)\s*(\$\s+)?convcli\s")


def readme_commands(text: str) -> list[tuple[int, str]]:
    """(line number, command) for every line of a ```sh block that calls convcli."""
    commands: list[tuple[int, str]] = []
    in_sh = False
    pending, start = "", 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            in_sh = not in_sh and stripped[3:].strip() == "sh"
            continue
        if not in_sh:
            continue
        if pending:
            line = pending + " " + stripped
        else:
            start = number
        if line.rstrip().endswith("\\"):
            pending = line.rstrip()[:-1].rstrip()
            continue
        pending = ""
        command = re.sub(r"^\s*\$\s+", "", line).strip()
        if CALLS_CONVCLI.search(command):
            commands.append((start, command))
    return commands


def test_convention_picks_the_right_lines():
    text = "\n".join([  # noqa: FLY002 (one README line per item)
        "```sh", "convcli info a.wav", "$ convcli window hann", "sox a.wav -t wav - | convcli filter -",
        "python3 -m venv .venv && .venv/bin/convcli filter x.wav", "# convcli commented",
        "convcli filter a.wav \\", "  --size 3", "```", "```text", "convcli filter in.wav", "```",
        "```", "convcli filter bare.wav", "```",
    ])
    assert [c for _, c in readme_commands(text)] == [
        "convcli info a.wav", "convcli window hann", "sox a.wav -t wav - | convcli filter -",
        "convcli filter a.wav --size 3"]


def _run_line(command: str, workdir: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    shutil.copytree(SAMPLES, workdir / "sample_data")
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=workdir, env=env,
                          capture_output=True, check=False, timeout=600)


SHELL_SYNTAX = re.compile(r"[|;&<>()$`*?]")


def _plain_args(command: str) -> list[str] | None:
    """The arguments of a plain ``convcli ARGS`` line, or None when it needs a shell."""
    if SHELL_SYNTAX.search(command):
        return None
    words = shlex.split(command)
    return words[1:] if words and words[0] == "convcli" else None


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_readme_commands_run(document, tmp_path, monkeypatch):
    name = document.relative_to(ROOT).as_posix()
    commands = readme_commands(document.read_text())
    if document == README:
        assert commands, "README.md has no ```sh lines that call convcli"
    elif not commands:
        pytest.skip(f"{name} has no ```sh lines that call convcli")
    bindir = tmp_path / "_bin"
    bindir.mkdir()
    (bindir / "convcli").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m convcli "$@"\n')
    (bindir / "convcli").chmod(0o755)
    env = cli_env()
    env["PATH"] = f"{bindir}{os.pathsep}{env['PATH']}"
    skipped, jobs, plain = [], {}, []
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        for number, command in commands:
            missing = [tool for tool in ("sox", "ffmpeg")
                       if re.search(rf"(^|[|;&(]\s*){tool}\s", command) and not shutil.which(tool)]
            if missing:
                skipped.append(f"{name}:{number} needs {', '.join(missing)}: {command}")
                continue
            workdir = tmp_path / f"line{number}"
            workdir.mkdir()
            if _plain_args(command) is None:
                jobs[(number, command)] = pool.submit(_run_line, command, workdir, env)
            else:
                plain.append((number, command, workdir))
        failures = []
        for number, command, workdir in plain:  # meanwhile, the plain lines run here, in turn
            shutil.copytree(SAMPLES, workdir / "sample_data")
            monkeypatch.chdir(workdir)
            proc = run_inprocess(*_plain_args(command))
            if proc.returncode != 0:
                err = proc.stderr.decode(errors="replace").strip()[-800:]
                failures.append(f"{name}:{number} exit {proc.returncode}: {command}\n    {err}")
    for (number, command), job in jobs.items():
        proc = job.result()
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()[-800:]
            failures.append(f"{name}:{number} exit {proc.returncode}: {command}\n    {err}")
    assert not failures, f"{name} commands failed:\n" + "\n".join(failures)
    if skipped:
        pytest.skip(f"{len(skipped)} {name} lines need tools not installed: "
                    + "; ".join(shlex.quote(s) for s in skipped))


def test_ci_runs_the_second_quick_start_command():
    """The Quick start block holds exactly two commands, and .ci/run runs the second as written."""
    text = README.read_text()
    block = text.split("## Quick start", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line for line in block.splitlines() if line.strip()]
    assert len(commands) == 2, commands
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[1] in ci, ".ci/run does not run the README's second Quick start command"


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, code) of every ```python block."""
    blocks, code, start = [], None, 0
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip() == "```python":
            code, start = [], number + 1
        elif line.strip() == "```" and code is not None:
            blocks.append((start, "\n".join(code)))
            code = None
        elif code is not None:
            code.append(line)
    return blocks


@pytest.mark.parametrize("page", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_python_blocks_run(page, tmp_path, monkeypatch):
    """Every ```python block of README.md and docs/ runs, in a directory holding sample_data/."""
    blocks = python_blocks(page.read_text())
    if not blocks:
        pytest.skip(f"{page.name} has no python blocks")
    shutil.copytree(SAMPLES, tmp_path / "sample_data")
    bindir = tmp_path / "_bin"  # `convcli` for blocks that call the command (subprocess)
    bindir.mkdir()
    (bindir / "convcli").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m convcli "$@"\n')
    (bindir / "convcli").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", cli_env()["PYTHONPATH"])
    monkeypatch.chdir(tmp_path)
    for number, code in blocks:
        try:
            exec(compile(code, f"{page.name}:{number}", "exec"), {"__name__": "__readme__"})  # noqa: S102 (the documented example itself)
        except Exception as exc:
            raise AssertionError(f"{page.name}:{number} failed: {exc!r}") from exc
