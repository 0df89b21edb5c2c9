"""Shared fixtures: the CLI as a user runs it, seeded data, the device under test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# The cost model prices with the built-in rates in tests, never with a developer's cached
# calibration (~/.cache/convcli): results must not depend on the machine's cache. A test that
# exercises the cache opts in with monkeypatch (CONVCLI_CALIBRATION=PATH, or delenv).
os.environ["CONVCLI_CALIBRATION"] = "off"

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/reference.py


def pytest_configure(config):
    # Tests use tiny tensors: one intra-op thread avoids spin-waiting workers, which made each
    # small conv 50x slower on a busy 2-core machine (benchmarks, not tests, measure speed).
    import torch

    torch.set_num_threads(1)

SAMPLES = ROOT / "sample_data"


def cli_env() -> dict[str, str]:
    """Environment for a subprocess that imports *this* checkout's convcli."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("COLUMNS", None)
    return env


def run_cli(*args: str, input: bytes | None = None, cwd: Path | str | None = None,
            check: bool = False, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m convcli ARGS`` in a subprocess, bytes in, bytes out (``env``: variables
    to set on top of this process's)."""
    proc = subprocess.run(
        [sys.executable, "-m", "convcli", *map(str, args)],
        input=input, capture_output=True, cwd=cwd, env={**cli_env(), **(env or {})},
        timeout=300, check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"convcli {' '.join(map(str, args))} exited {proc.returncode}:\n"
            f"{proc.stderr.decode(errors='replace')}"
        )
    return proc


def run_inprocess(*args: str, input: bytes | None = None,
                  check: bool = False) -> subprocess.CompletedProcess:
    """``convcli ARGS`` inside this process: the same ``main()``, without paying for a fresh
    ``import torch`` (2+ s) per call. Subprocess tests (``run_cli``) cover the real process."""
    import contextlib
    import io

    from convcli.cli import main

    class Std(io.TextIOWrapper):
        def isatty(self) -> bool:
            return False

    out, err = io.BytesIO(), io.BytesIO()
    stdout, stderr = Std(out, write_through=True), Std(err, write_through=True)
    stdin = Std(io.BytesIO(input or b""))
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin, sys.stdout, sys.stderr = stdin, stdout, stderr
    code = 0
    try:
        with contextlib.suppress(SystemExit):
            try:
                main([str(a) for a in args])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                raise
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
    if check and code != 0:
        raise AssertionError(f"convcli {' '.join(map(str, args))} exited {code}:\n"
                             f"{err.getvalue().decode(errors='replace')}")
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli():
    """The CLI in a real subprocess, exactly as a user runs it (slow: use for a few checks)."""
    return run_cli


@pytest.fixture
def cli_fast():
    """The CLI's ``main()`` in-process, for the many checks that do not need a fresh process."""
    return run_inprocess


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request):
    import torch

    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA not available on this machine")
    return torch.device(request.param)
