"""Corpus runs as a user makes them, in real processes: SIGTERM mid-run and a resume that
writes only what was missing; a Dask LocalCluster; a ``dask scheduler`` and two ``dask worker``
processes on 127.0.0.1, one killed mid-run, the corpus still complete and equal to a
single-process run."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import cli_env, run_inprocess
from scipy.signal import convolve, get_window

#: a slow kernel (direct, 801 taps) so that a run lasts long enough to be stopped midway
SLOW = ["--window", "hann", "--size", "801", "--method", "direct"]


def make_clips(root: Path, count: int, frames: int = 4000) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    paths = []
    for i in range(count):
        path = root / f"{i // 100:02d}" / f"{i:04d}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, rng.integers(-9000, 9000, frames).astype(np.int16), 16000, subtype="PCM_16")
        paths.append(path)
    return paths


def scipy_filtered(src: Path, taps: int) -> np.ndarray:
    x, _ = sf.read(src, dtype="float64")
    w = get_window("hann", taps, fftbins=False)
    return np.clip(np.rint(convolve(x, w / w.sum(), mode="same") * 32768), -32768, 32767)


def report_lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def start(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "convcli", "corpus", *map(str, args)],
                            env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def wait_for_lines(report: Path, proc: subprocess.Popen, count: int = 1, limit: float = 60):
    deadline = time.monotonic() + limit
    while len(report_lines(report)) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no report lines"
        time.sleep(0.02)


def test_sigterm_then_skip_existing_writes_only_what_was_missing(tmp_path):
    sources = make_clips(tmp_path / "in", 1024)
    out, first = tmp_path / "out", tmp_path / "first.jsonl"
    proc = start(tmp_path / "in", "-r", "--out-dir", out, "--report", first, *SLOW)
    wait_for_lines(first, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and b"interrupted by SIGTERM" in err, err
    assert not list(out.rglob("*.part")), "a temporary file was left"
    present = sorted(out.rglob("*.wav"))
    assert 0 < len(present) < len(sources), len(present)
    for path in present:  # every output there is whole
        assert sf.info(path).frames == 4000, path
    stamps = {p: p.stat().st_mtime_ns for p in present}
    second = tmp_path / "second.jsonl"
    proc = start(tmp_path / "in", "-r", "--out-dir", out, "--report", second, "--skip-existing",
                 *SLOW)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    lines = report_lines(second)
    assert sum(line["status"] == "skipped" for line in lines) == len(present)
    assert sum(line["status"] == "done" for line in lines) == len(sources) - len(present)
    assert {p: p.stat().st_mtime_ns for p in present} == stamps, "an existing output was redone"
    assert len(list(out.rglob("*.wav"))) == len(sources) and not list(out.rglob("*.part"))
    for src in sources[::97]:
        got, _ = sf.read(out / src.relative_to(tmp_path / "in"), dtype="int16")
        assert np.max(np.abs(got - scipy_filtered(src, 801))) <= 1, src


distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")


def outputs_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.wav"))}


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    """200 clips of several lengths and their single-process outputs (31-tap Hann)."""
    root = tmp_path_factory.mktemp("dask")
    rng = np.random.default_rng(8)
    for i in range(200):
        frames = int(rng.integers(3000, 9000))
        (root / "in" / f"{i % 7}").mkdir(parents=True, exist_ok=True)
        sf.write(root / "in" / f"{i % 7}" / f"{i:03d}.wav",
                 rng.integers(-9000, 9000, frames).astype(np.int16), 16000, subtype="PCM_16")
    proc = run_inprocess("corpus", str(root / "in"), "-r", "--out-dir", str(root / "single"))
    assert proc.returncode == 0, proc.stderr
    return root, outputs_of(root / "single")


def test_a_local_cluster_run_equals_the_single_process_run(small_corpus, tmp_path):
    root, single = small_corpus
    report = tmp_path / "r.jsonl"
    proc = subprocess.run([sys.executable, "-m", "convcli", "corpus", str(root / "in"), "-r",
                           "--out-dir", str(tmp_path / "out"), "--workers", "2", "--report",
                           str(report)], env=cli_env(), capture_output=True, timeout=180,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert b"200 files: 200 done, 0 failed" in proc.stderr
    assert outputs_of(tmp_path / "out") == single
    assert len(report_lines(report)) == 200
    src = next((root / "in").rglob("*.wav"))
    got, _ = sf.read(tmp_path / "out" / src.relative_to(root / "in"), dtype="int16")
    assert np.max(np.abs(got - scipy_filtered(src, 31))) <= 1


def test_a_corpus_refused_while_its_cluster_starts_stops_it_and_says_why(small_corpus):
    """The LocalCluster starts while the corpus is listed: a corpus refused then (its outputs
    would replace its inputs) is one error line, exit 2, and the cluster is closed, not left
    running (the command returns)."""
    root, _ = small_corpus
    proc = subprocess.run([sys.executable, "-m", "convcli", "corpus", str(root / "in"), "-r",
                           "--out-dir", str(root / "in"), "--format", "wav", "--workers", "2"],
                          env=cli_env(), capture_output=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(b"error: the output of ") and proc.stderr.count(b"\n") == 1, \
        proc.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_cluster_started_by_hand_survives_a_killed_worker(tmp_path):
    sources = make_clips(tmp_path / "in", 480)
    single = tmp_path / "single"
    small = ["--batch-files", "16"]  # 30 batches: both workers busy when one is killed
    assert run_inprocess("corpus", str(tmp_path / "in"), "-r", "--out-dir", str(single),
                         *SLOW, *small).returncode == 0
    dask = Path(sys.executable).with_name("dask")
    command = [str(dask)] if dask.exists() else [sys.executable, "-m", "distributed.cli.dask"]
    address = f"tcp://127.0.0.1:{free_port()}"
    # the workers run elsewhere (as on a cluster): the client's relative paths still hold
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": cli_env(),
             "cwd": "/"}
    procs = [subprocess.Popen([*command, "scheduler", "--host", "127.0.0.1", "--port",
                               address.rsplit(":", 1)[1], "--no-dashboard"], **quiet)]
    try:
        workers = [subprocess.Popen([*command, "worker", address, "--nthreads", "1",
                                     "--no-nanny", "--no-dashboard"], **quiet) for _ in range(2)]
        procs += workers
        report = tmp_path / "r.jsonl"
        run = start("in", "-r", "--out-dir", "out", "--scheduler", address, "--report", report,
                    *SLOW, *small, cwd=tmp_path)
        wait_for_lines(report, run, limit=120)
        workers[0].send_signal(signal.SIGKILL)  # mid-run: its batch in flight is redone
        assert len(report_lines(report)) < len(sources), "the run ended before the kill"
        _, err = run.communicate(timeout=240)
        assert run.returncode == 0, err
        assert workers[0].wait(10) == -signal.SIGKILL
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(30)
    lines = report_lines(report)
    assert len(lines) == len(sources) and {line["status"] for line in lines} == {"done"}
    assert len({line["output"] for line in lines}) == len(sources)  # each output once
    assert outputs_of(tmp_path / "out") == outputs_of(single)
    assert not list((tmp_path / "out").rglob("*.part"))


def test_a_batch_the_cluster_lost_is_reported_in_words():
    """Every worker killed mid-run: the batches still waiting are cancelled (the settings
    scattered to the workers are gone) and each of their files is a ``failed`` line saying so,
    with the way to finish, never an ``internal error``."""
    from distributed.client import FutureCancelledError
    from distributed.scheduler import KilledWorker

    from convcli.corpus.cluster import task_failure

    lost = task_failure(FutureCancelledError("convcli-batch-3", "already forgotten"))
    assert "lost every worker" in lost and "--skip-existing" in lost
    killed = task_failure(KilledWorker("convcli-batch-4", "tcp://127.0.0.1:1", 3))
    assert "died again and again" in killed and "--skip-existing" in killed
    assert "internal error" not in lost + killed
