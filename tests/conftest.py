"""Shared fixtures: the CLI as a user runs it, seeded data, the device under test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

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
            check: bool = False) -> subprocess.CompletedProcess:
    """Run ``python -m convcli ARGS`` in a subprocess, bytes in, bytes out."""
    proc = subprocess.run(
        [sys.executable, "-m", "convcli", *map(str, args)],
        input=input, capture_output=True, cwd=cwd, env=cli_env(), timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"convcli {' '.join(map(str, args))} exited {proc.returncode}:\n"
            f"{proc.stderr.decode(errors='replace')}"
        )
    return proc


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request):
    import torch

    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA not available on this machine")
    return torch.device(request.param)
