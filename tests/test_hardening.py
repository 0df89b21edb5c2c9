"""The hardening classes, through the installed CLI in real processes: every bad number, size,
file or fault ends in exactly one ``error:`` line with a hint and the right exit code, no
traceback, nothing written (not even a ``.part``), inputs untouched; the absurd sizes are
refused before they are allocated, which the child's peak RSS (``os.wait4``) shows.

All cases run concurrently in one module fixture, each in its own copy of a directory of
inputs; each case is then its own test.
"""

from __future__ import annotations

import concurrent.futures
import io
import os
import shutil
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import SAMPLES, cli_env
from test_errors import snapshot

#: the console script pip installed beside this interpreter (else python -m convcli)
_SCRIPT = Path(sys.executable).with_name("convcli")
CONVCLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "convcli"]
#: peak RSS of a process that refuses before allocating: the interpreter, numpy, soundfile and
#: typer take about 50-60 MB; what was refused is gigabytes
SMALL_RSS_KB = 200_000


@dataclass
class Case:
    id: str
    args: list[str]
    code: int
    says: str  # a fragment of the one stderr line
    env: dict[str, str] = field(default_factory=dict)
    rss_kb: int | None = None  # the child's peak RSS must stay under this
    stdin: bytes | None = None
    setup: Callable[[Path], None] | None = None  # makes this case's own inputs


def many_taps(root: Path) -> None:
    (root / "k2m.txt").write_text("0.5\n" * 2_000_000)  # 2 million taps, 8 MB of text


def many_channels(root: Path) -> None:
    np.save(root / "k70k.npy", np.ones((70_000, 2, 3), np.float32))


def make_inputs(root: Path) -> None:
    """The inputs every case may use, in ``root``."""
    for name in ("chord.wav", "batch.npy", "smooth5.txt"):
        shutil.copy(SAMPLES / name, root / name)
    np.save(root / "short.npy", np.ones(5))
    (root / "huge.txt").write_text("1e308\n1\n")  # finite, beyond float32
    (root / "big38.txt").write_text("3e38\n3e38\n3e38\n")  # each fits float32, their sum not
    np.save(root / "k300.npy", np.ones((300, 2, 3), np.float32))
    flac = root / "chord.flac"
    sf.write(flac, sf.read(SAMPLES / "chord.wav")[0], 44100, format="FLAC")
    data = bytearray(flac.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)  # the decoder loses sync
    (root / "corrupt.flac").write_bytes(bytes(data))


F = ["filter"]
CASES = [
    # --- numbers and sizes: one range each, refused while parsing (exit 2); every numeric
    # flag of every command is checked in-process by tests/test_help.py -----------------------
    Case("rate-beyond-int", F + ["batch.npy", "--rate", "2147483648", "-o", "o.npy"], 2,
         "--rate 2147483648 is out of range"),
    Case("gain-huge", F + ["chord.wav", "--gain", "1e9", "-o", "o.wav"], 2,
         "--gain 1e9 is out of range"),
    Case("size-float", F + ["chord.wav", "--size", "1.5"], 2, "not a whole number"),
    Case("stride-huge", F + ["chord.wav", "--stride", str(10**20)], 2, "--stride"),
    Case("attenuation-huge", F + ["chord.wav", "--lowpass", "1000", "--transition", "100",
                                  "--attenuation", "1e6"], 2, "from 8 to 300"),
    Case("kaiser-beta-huge", F + ["chord.wav", "--window", "kaiser:1000"], 2, "beta 1000"),
    Case("gaussian-tiny", F + ["chord.wav", "--window", "gaussian:1e-200"], 2, "non-finite"),
    Case("seed-negative", ["jacobian", "--length", "8", "--seed", "-1"], 2, "--seed -1"),
    Case("rows-empty", ["jacobian", "--length", "10", "--rows", "5:2"], 2, "selects none"),
    # --- numbers in the data (exit 1) ----------------------------------------------------------
    Case("kernel-beyond-float32", F + ["chord.wav", "--kernel", "huge.txt", "-o", "o.wav"], 1,
         "beyond the range of float32"),
    Case("result-overflows-npy", F + ["chord.wav", "--kernel", "big38.txt", "-o", "o.npy"], 1,
         "overflowed"),
    Case("result-overflows-pcm", F + ["chord.wav", "--kernel", "big38.txt", "-o", "o.wav"], 1,
         "cannot store"),
    Case("result-overflows-pcm-streamed", F + ["chord.wav", "--kernel", "big38.txt", "--block",
                                               "4096", "-o", "o.wav"], 1, "cannot store"),
    # --- memory: refused before it is used, the process stays small ----------------------------
    Case("grad-huge-dilation", ["grad", "chord.wav", "--loss", "sum", "--dilation", "1000000000"],
         1, "needs about", rss_kb=SMALL_RSS_KB),
    Case("jacobian-banded-huge", ["jacobian", "--length", "300000000", "--format", "banded",
                                  "-o", "J.npz"], 1, "needs about", rss_kb=SMALL_RSS_KB),
    Case("jacobian-dense-huge", ["jacobian", "--length", "1000000"], 1, "needs about",
         rss_kb=SMALL_RSS_KB),
    Case("wav-70000-channels", F + ["chord.wav", "--kernel", "k70k.npy", "-o", "o.wav"], 1,
         "holds at most 1,024", rss_kb=SMALL_RSS_KB, setup=many_channels),
    Case("ogg-300-channels-streamed", F + ["chord.wav", "--kernel", "k300.npy", "--block", "4096",
                                           "-o", "o.ogg"], 1, "holds at most 255"),
    Case("text-kernel-2m-taps", F + ["short.npy", "--kernel", "k2m.txt", "--mode", "valid",
                                     "-o", "o.npy"], 1, "longer than the signal",
         rss_kb=SMALL_RSS_KB, setup=many_taps),
    Case("window-response-huge", ["window", "hann", "--size", "50000000", "--response"], 1,
         "needs about", env={"CONVCLI_MEMORY_LIMIT": "100M"}, rss_kb=SMALL_RSS_KB),
    Case("block-huge", F + ["long.wav", "--block", "2000000000", "-o", "o.wav"], 1,
         "needs about", env={"CONVCLI_MEMORY_LIMIT": "100M"}, rss_kb=SMALL_RSS_KB,
         setup=lambda root: sparse_wav(root / "long.wav", 40 << 20)),
    Case("kernel-dev-zero", F + ["chord.wav", "--kernel", "/dev/zero", "-o", "o.wav"], 1,
         "is a device", rss_kb=SMALL_RSS_KB),
    Case("input-dev-zero", ["info", "/dev/zero"], 1, "is a device", rss_kb=SMALL_RSS_KB),
    # a signal on stdin streams (its first bytes are sniffed, nothing is held); a kernel on
    # stdin is read whole, and refused once it outgrows the memory there is
    Case("stdin-flood", F + ["-", "-o", "o.wav"], 1, "stdin is not a WAV",
         env={"CONVCLI_MEMORY_LIMIT": "40M"}, stdin=bytes(64 << 20), rss_kb=SMALL_RSS_KB),
    Case("kernel-stdin-flood", F + ["chord.wav", "--kernel", "-", "-o", "o.wav"], 1,
         "needs about", env={"CONVCLI_MEMORY_LIMIT": "40M"}, stdin=b"0.5\n" * (16 << 20),
         rss_kb=SMALL_RSS_KB),
    # --- libsndfile's errors in words ----------------------------------------------------------
    Case("flac-corrupt", F + ["corrupt.flac", "-o", "o.wav"], 1, "corrupt.flac"),
    Case("opus-rate", F + ["chord.wav", "-o", "o.ogg", "--subtype", "OPUS"], 1,
         "Opus takes only the rates"),
    # --- mistyped choices ----------------------------------------------------------------------
    Case("mode-typo", F + ["chord.wav", "--mode", "vaild"], 2,
         "--mode 'vaild' is not one of same, valid, full, causal (hint: did you mean 'valid'?)"),
    # --- --no-clobber --------------------------------------------------------------------------
    Case("no-clobber-filter", F + ["chord.wav", "-o", "smooth5.txt", "--format", "npy",
                                   "--no-clobber"], 1, "exists and --no-clobber keeps it"),
    Case("no-clobber-window", ["window", "hann", "-o", "smooth5.txt", "--no-clobber"], 1,
         "--no-clobber"),
    Case("no-clobber-jacobian", ["jacobian", "--length", "8", "-o", "short.npy", "--no-clobber"],
         1, "--no-clobber"),
    Case("no-clobber-grad", ["grad", "chord.wav", "--loss", "sum", "-o", "short.npy",
                             "--no-clobber"], 1, "--no-clobber"),
]


#: runs its arguments as a child and writes the child's peak RSS (KB) to the file $RSS_FILE.
#: A process forked from pytest would report pytest's own peak (Linux records the mm a
#: process had before exec), so the child is forked from this small interpreter instead.
_LAUNCHER = ("import os, subprocess, sys\n"
             "child = subprocess.Popen(sys.argv[1:])\n"
             "_, status, usage = os.wait4(child.pid, 0)\n"
             "open(os.environ['RSS_FILE'], 'w').write(str(usage.ru_maxrss))\n"
             "code = os.waitstatus_to_exitcode(status)\n"
             "sys.exit(code if code >= 0 else 128 - code)\n")


def run_measured(args: list[str], cwd: Path, env: dict[str, str],
                 stdin: bytes | None = None) -> tuple[int, bytes, bytes, int]:
    """``(exit code, stdout, stderr, peak RSS in KB)`` of one real convcli process."""
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".rss", delete=False) as handle:
        rss_file = handle.name
    proc = subprocess.Popen([sys.executable, "-c", _LAUNCHER, *CONVCLI, *args], cwd=cwd,
                            env={**env, "RSS_FILE": rss_file}, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out: dict[str, bytes] = {}

    def drain(name: str, stream) -> None:
        out[name] = stream.read()

    readers = [threading.Thread(target=drain, args=(name, stream))
               for name, stream in (("out", proc.stdout), ("err", proc.stderr))]
    for reader in readers:
        reader.start()
    try:
        proc.stdin.write(stdin or b"")
    except BrokenPipeError:  # it refused before reading everything: that is the point
        pass
    proc.stdin.close()
    proc.wait()
    for reader in readers:
        reader.join()
    rss = int(Path(rss_file).read_text() or 0)
    os.unlink(rss_file)
    return proc.returncode, out["out"], out["err"], rss


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    template = tmp_path_factory.mktemp("inputs")
    make_inputs(template)
    prepared = {}
    for case in CASES:
        where = tmp_path_factory.mktemp(case.id)
        shutil.copytree(template, where, symlinks=True, dirs_exist_ok=True)
        if case.setup is not None:
            case.setup(where)
        prepared[case.id] = (where, snapshot(where))

    def run(case: Case):
        where, _ = prepared[case.id]
        return run_measured(case.args, where, {**cli_env(), **case.env}, case.stdin)

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = {case.id: pool.submit(run, case) for case in CASES}
        done = {cid: future.result(timeout=300) for cid, future in futures.items()}
    return {cid: (done[cid], prepared[cid][1], snapshot(prepared[cid][0])) for cid in done}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_one_clear_error_nothing_written_memory_bounded(case: Case, results):
    (code, out, err, rss), before, after = results[case.id]
    stderr = err.decode(errors="replace")
    lines = stderr.splitlines()
    context = f"convcli {' '.join(case.args)} -> {code}, {rss:,} KB\n{stderr}"
    assert code == case.code, context
    assert "Traceback" not in stderr and "internal error" not in stderr, context
    assert len(lines) == 1 and lines[0].startswith("error: "), context
    assert case.says in lines[0] and "(hint: " in lines[0], context
    assert out == b"", context
    assert after == before, f"files changed: {set(after.items()) ^ set(before.items())}"
    if case.rss_kb is not None:
        assert rss < case.rss_kb, f"peak RSS {rss:,} KB ≥ {case.rss_kb:,} KB: {context}"


# --- what must work, in bounded memory ------------------------------------------------------------
def sparse_wav(path: Path, data_bytes: int, channels: int = 2, rate: int = 44100) -> None:
    """A PCM_16 WAV of ``data_bytes`` bytes of silence that occupies a few KB on disk."""
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, channels, rate, rate * channels * 2,
                      channels * 2, 16)
    with open(path, "wb") as handle:
        handle.write(b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE" + fmt + b"data"
                     + struct.pack("<I", data_bytes))
        handle.truncate(44 + data_bytes)


def test_info_measures_a_large_file_in_bounded_memory(tmp_path):
    """400 MB of samples: decoded whole in float64 they would take 1.6 GB; block by block the
    process stays near its start-up size."""
    sparse_wav(tmp_path / "big.wav", 400 << 20)
    code, out, err, rss = run_measured(["info", "big.wav", "--json"], tmp_path, cli_env())
    assert code == 0, err.decode()
    import json

    (described,) = json.loads(out)["files"]
    assert described["frames"] == (400 << 20) // 4 and described["peak"] == 0.0
    assert rss < SMALL_RSS_KB, f"{rss:,} KB"


def test_a_fifo_is_streamed_like_stdin(tmp_path):
    """A FIFO (bash's ``<(...)`` too) is opened once and read in order, as stdin is: sniffing
    its first bytes must not eat them. Its result is stdin's, byte for byte, and the file's
    within 1 LSB (scipy below)."""
    fifo = tmp_path / "in.wav"
    os.mkfifo(fifo)
    wav = (SAMPLES / "chord.wav").read_bytes()
    writer = threading.Thread(target=lambda: fifo.write_bytes(wav))
    writer.start()
    code, _, err, _ = run_measured(["filter", "in.wav", "-o", "out.wav", "--quiet"], tmp_path,
                                   cli_env())
    writer.join()
    assert code == 0, err.decode()
    x, _ = sf.read(SAMPLES / "chord.wav")
    y, _ = sf.read(tmp_path / "out.wav")
    assert y.shape == x.shape
    piped = subprocess.run([sys.executable, "-m", "convcli", "filter", "-", "-o", "-", "-q"],
                           input=wav, capture_output=True, env=cli_env(), check=True).stdout
    assert piped == (tmp_path / "out.wav").read_bytes()
    w = np.hanning(31)  # scipy.signal.get_window("hann", 31, fftbins=False)
    expected = np.stack([np.convolve(c, w / w.sum(), "same") for c in x.T], axis=1)
    assert np.abs(y - expected).max() <= 1.01 / 32768


def test_without_no_clobber_an_output_is_replaced_whole(tmp_path):
    (tmp_path / "o.wav").write_bytes(b"old")
    code, _, err, _ = run_measured(["filter", str(SAMPLES / "chord.wav"), "-o", "o.wav",
                                    "--quiet"], tmp_path, cli_env())
    assert code == 0, err.decode()
    assert sf.info(tmp_path / "o.wav").frames == sf.info(SAMPLES / "chord.wav").frames
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.wav"]


@pytest.mark.parametrize("args", [["filter", "chord.wav", "-o", "-"],
                                  ["filter", "chord.wav", "--format", "npy", "-o", "-"],
                                  ["grad", "chord.wav", "--loss", "sum", "-o", "-"],
                                  ["window", "hann", "--plot", "-"]])
def test_binary_output_is_refused_on_a_terminal(args):
    """stdout a terminal (a pty here): one error line, nothing on the terminal, exit 2."""
    import pty

    leader, follower = pty.openpty()
    try:
        proc = subprocess.run([*CONVCLI, *args], cwd=SAMPLES, env=cli_env(), stdout=follower,
                              stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=120,
                              check=False)
        os.set_blocking(leader, False)
        try:
            shown = os.read(leader, 1 << 16)
        except (BlockingIOError, OSError):
            shown = b""
    finally:
        os.close(leader)
        os.close(follower)
    lines = proc.stderr.decode().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "standard output is a terminal" in lines[0] and "-o FILE" in lines[0]
    assert shown == b""


def test_a_terminal_on_stdin_is_refused():
    import pty

    leader, follower = pty.openpty()
    try:
        proc = subprocess.run([*CONVCLI, "filter", "-", "-o", "x.wav"], cwd=SAMPLES,
                              env=cli_env(), stdin=follower, capture_output=True, timeout=120,
                              check=False)
    finally:
        os.close(leader)
        os.close(follower)
    assert proc.returncode == 1 and b"standard input is a terminal" in proc.stderr
    assert proc.stderr.count(b"\n") == 1


def test_doctor_reports_without_importing_torch_where_there_is_no_driver():
    from convcli.engines.devices import has_nvidia

    code = ("import json, sys\n"
            "from convcli.cli import main\n"
            "try:\n    main(['doctor', '--json'])\n"
            "except SystemExit as exit:\n    assert not exit.code, exit.code\n"
            "print('torch' in sys.modules, file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, env=cli_env(),
                          timeout=120, check=True)
    import json

    facts = json.loads(proc.stdout)
    assert facts["convcli"] and facts["packages"]["numpy"] == np.__version__
    assert facts["libsndfile"] == sf.__libsndfile_version__
    assert [e["name"] for e in facts["engines"]] == ["numpy", "torch"]
    assert facts["calibration"]["devices"][0]["device"] == "cpu"
    imported = proc.stderr.decode().split()[-1] == "True"
    assert imported == has_nvidia() == facts["cuda"]["torch_imported"]
    if not has_nvidia():
        assert "not imported" in facts["cuda"]["note"]


def test_a_device_or_fifo_output_is_written_in_place_not_replaced(tmp_path):
    """``-o /dev/null`` must never rename a regular file over the device (as root it would
    replace /dev/null itself); a FIFO output gets the bytes, and stays a FIFO."""
    import stat

    null = tmp_path / "null"
    try:
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a private /dev/null
    except PermissionError:
        pytest.skip("making a device node needs root")
    code, _, err, _ = run_measured(["filter", str(SAMPLES / "chord.wav"), "-o", "null",
                                    "--format", "wav", "--quiet"], tmp_path, cli_env())
    assert code == 0, err.decode()
    assert stat.S_ISCHR(null.stat().st_mode)
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    received = {}
    reader = threading.Thread(target=lambda: received.setdefault("bytes", fifo.read_bytes()))
    reader.start()
    code, _, err, _ = run_measured(["filter", str(SAMPLES / "chord.wav"), "-o", "out.fifo",
                                    "--format", "wav", "--quiet"], tmp_path, cli_env())
    reader.join(timeout=60)
    assert code == 0, err.decode()
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    y, rate = sf.read(io.BytesIO(received["bytes"]))
    assert rate == 44100 and y.shape == sf.read(SAMPLES / "chord.wav")[0].shape
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null", "out.fifo"]
