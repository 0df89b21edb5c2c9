"""Every bad input ends in one clear ``error:`` line, the right exit code, no traceback, no new
file (not even a ``.part`` temporary) and the inputs untouched: through the CLI.

Each case runs in its own copy of a directory of good and bad inputs. Cases marked ``real``
run ``python -m convcli`` in a subprocess (concurrently: a subprocess costs 0.5 s of CPU, or
2.5 s once torch is imported); the others call ``convcli.cli.main(argv)`` in this process with
stdin/stdout/stderr swapped for buffers: the same code path from argv to exit code, minus the
interpreter start. All run in one module fixture; each case is then its own test.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import SAMPLES, cli_env

HAS_NVIDIA = Path("/dev/nvidiactl").exists()


class Payload:
    """Unpickling this creates the file PWNED: proof that code from a file ran."""

    def __reduce__(self):
        return (open, ("PWNED", "w"))


def truncated_flac() -> bytes:
    """chord.wav as FLAC, cut in half."""
    flac = io.BytesIO()
    sf.write(flac, sf.read(SAMPLES / "chord.wav")[0], 44100, format="FLAC")
    return flac.getvalue()[: len(flac.getvalue()) // 2]


def make_inputs(root: Path) -> None:
    """Good samples and every kind of bad file, in ``root``."""
    rng = np.random.default_rng(6)
    for name in ("chord.wav", "tc.npy", "batch.npy", "smooth5.txt"):
        shutil.copy(SAMPLES / name, root / name)
    chord = (SAMPLES / "chord.wav").read_bytes()
    (root / "empty.wav").write_bytes(b"")
    (root / "text.wav").write_text("this is a text file, not audio\n")
    (root / "garbage.wav").write_bytes(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    (root / "trunc_header.wav").write_bytes(chord[:30])
    (root / "trunc_data.wav").write_bytes(chord[:20000])
    (root / "trunc.flac").write_bytes(truncated_flac())
    (root / "trunc.npy").write_bytes((SAMPLES / "tc.npy").read_bytes()[:1000])
    np.save(root / "complex.npy", np.ones(100, complex))
    np.save(root / "object.npy", np.array([Payload(), 1.0], dtype=object), allow_pickle=True)
    np.save(root / "4d.npy", np.ones((2, 2, 2, 50)))
    np.save(root / "zero.npy", np.ones((2, 0)))
    np.save(root / "zero_batch.npy", np.ones((0, 2, 8)))  # a batch of no signals: filter runs it
    sf.write(root / "zero.wav", np.zeros((0, 2)), 44100, subtype="PCM_16")
    x = rng.standard_normal((2, 1000))
    x[1, 7] = np.nan
    np.save(root / "nan.npy", x)
    x = rng.standard_normal(1000)
    x[500] = -np.inf
    np.save(root / "inf.npy", x)
    np.save(root / "short.npy", rng.standard_normal(5))
    np.save(root / "loud.npy", np.array([0.5, 1.5, -2.0, 0.25] * 250, dtype=np.float32))
    (root / "garbage_kernel.txt").write_text("1.0\nabc\n")
    (root / "empty_kernel.txt").write_text("")
    (root / "nan_kernel.txt").write_text("0.25\nnan\n0.25\n")
    np.save(root / "nan_kernel.npy", np.array([0.5, np.nan]))
    (root / "k3.txt").write_text("1 2 1\n1 2 1\n1 2 1\n")
    # a kernel span exactly one longer than the signal (scipy: convolve([3,4,5],[1,2,3,4],'valid'))
    np.save(root / "three.npy", np.array([3.0, 4.0, 5.0]))
    (root / "k4.txt").write_text("1\n2\n3\n4\n")
    np.save(root / "eight.npy", rng.standard_normal(8))
    np.save(root / "stereo3.npy", rng.standard_normal((2, 3)))
    np.save(root / "stereo10.npy", rng.standard_normal((2, 10)))
    np.save(root / "mix4.npy", rng.standard_normal((1, 2, 4)))  # mixing: the torch engine
    np.save(root / "mix6.npy", rng.standard_normal((1, 2, 6)))
    os.symlink("chord.wav", root / "link.wav")


@dataclass
class Case:
    id: str
    args: list[str]
    code: int
    says: str  # a fragment the error line must contain (what is wrong)
    stdin: bytes | None = None
    env: dict[str, str] = field(default_factory=dict)
    needs: str | None = None  # "ro" (read-only dir) or "tiny" (full disk): mount in setup
    skip: str | None = None
    real: bool = False  # run as a subprocess (python -m convcli) rather than main(argv)


F = ["filter"]
CASES = [
    # (these import torch: submitted first, so the pool overlaps them)
    Case("valid-kernel-longer", F + ["short.npy", "--mode", "valid"], 1, "longer than the signal"),
    Case("kernel-channels", F + ["chord.wav", "--kernel", "k3.txt"], 1, "3 rows"),
    # K = N + 1 in valid mode: the spec's error, never the cost model's (it has no frame to price)
    Case("valid-span-one-longer", F + ["three.npy", "--kernel", "k4.txt", "--mode", "valid"], 1,
         "kernel span 4 (k=4, dilation=1) is longer than the signal (3 samples) in valid mode"),
    Case("valid-span-one-longer-pow2", F + ["eight.npy", "--size", "9", "--mode", "valid"], 1,
         "kernel span 9 (k=9, dilation=1) is longer than the signal (8 samples)"),
    Case("valid-span-one-longer-mixing", F + ["stereo3.npy", "--kernel", "mix4.npy", "--mode",
                                              "valid"], 1,
         "kernel span 4 (k=4, dilation=1) is longer than the signal (3 samples)"),
    Case("valid-span-k6-d2-mixing", F + ["stereo10.npy", "--kernel", "mix6.npy", "--mode", "valid",
                                         "--dilation", "2"], 1,
         "kernel span 11 (k=6, dilation=2) is longer than the signal (10 samples)"),
    Case("valid-span-k6-d2-fft", F + ["stereo10.npy", "--kernel", "mix6.npy", "--mode", "valid",
                                      "--dilation", "2", "--method", "fft"], 1,
         "kernel span 11 (k=6, dilation=2)"),
    Case("reflect-too-long", F + ["short.npy", "--padding", "reflect", "--size", "31"], 1,
         "reflect padding"),
    Case("circular-too-long", F + ["short.npy", "--padding", "circular", "--size", "31"], 1,
         "circular padding"),
    Case("cuda-without-cuda", F + ["chord.wav", "--device", "cuda"], 1, "CUDA",
         skip="this machine has an NVIDIA driver" if HAS_NVIDIA else None),
    Case("clip-error", F + ["loud.npy", "--rate", "8000", "--size", "1", "-o", "l.wav",
                            "--subtype", "PCM_16", "--clip", "error"], 1, "would clip", real=True),
    Case("memory", F + ["chord.wav"], 1, "needs about", env={"CONVCLI_MEMORY_LIMIT": "1M"}),
    Case("disk-full", F + ["chord.wav", "-o", "tiny/out.wav"], 1, "No space left",
         needs="tiny", real=True),
    Case("disk-full-streamed-wav", F + ["chord.wav", "--block", "4096", "-o", "tiny/out.wav"],
         1, "No space left", needs="tiny", real=True),
    Case("disk-full-streamed-flac", F + ["chord.wav", "--block", "4096", "-o", "tiny/o.flac"],
         1, "No space left", needs="tiny", real=True),
    Case("disk-full-streamed-stdin", F + ["-", "-o", "tiny/out.wav"], 1, "No space left",
         stdin=(SAMPLES / "chord.wav").read_bytes(), needs="tiny", real=True),
    # (these fail before torch is imported)
    Case("missing-file", F + ["missing.wav"], 1, "no such input file", real=True),
    Case("empty-file", F + ["empty.wav"], 1, "empty"),
    Case("text-named-wav", F + ["text.wav"], 1, "not a WAV"),
    Case("garbage-named-wav", F + ["garbage.wav"], 1, "not a WAV"),
    Case("truncated-header", F + ["trunc_header.wav"], 1, "cannot decode"),
    Case("truncated-data-wav", F + ["trunc_data.wav"], 1, "truncated"),
    Case("truncated-flac", F + ["trunc.flac"], 1, "FLAC"),
    Case("truncated-flac-blocks", F + ["trunc.flac", "--block", "4096"], 1,
         "of its 88,200 frames"),
    Case("truncated-wav-stdin", F + ["-", "-o", "o.wav"], 1, "truncated",
         stdin=(SAMPLES / "chord.wav").read_bytes()[:20000]),
    Case("truncated-flac-stdin", F + ["-", "-o", "o.wav"], 1, "truncated",
         stdin=truncated_flac()),
    Case("rate-with-audio", F + ["chord.wav", "--rate", "8000"], 2, "keeps its own"),
    Case("normalize-output-stdin", F + ["-", "--normalize-output", "-o", "o.wav"], 2,
         "read only once", stdin=(SAMPLES / "chord.wav").read_bytes()),
    Case("truncated-npy", F + ["trunc.npy"], 1, "truncated"),
    Case("complex-npy", F + ["complex.npy"], 1, "complex128"),
    Case("object-npy-pickle", F + ["object.npy"], 1, "never unpickles", real=True),
    Case("object-npy-kernel", F + ["chord.wav", "--kernel", "object.npy"], 1, "never unpickles"),
    Case("4d-npy", F + ["4d.npy"], 1, "4 dimensions"),
    Case("zero-length-npy", F + ["zero.npy"], 1, "empty array"),
    Case("zero-length-wav", F + ["zero.wav"], 1, "no samples"),
    Case("zero-batch-to-wav", F + ["zero_batch.npy", "--rate", "8000", "-o", "z.wav"], 1,
         "batch of 0"),
    Case("jacobian-zero-batch", ["jacobian", "zero_batch.npy", "--size", "3"], 1,
         "batch of no signals"),
    Case("tc-without-layout", F + ["tc.npy"], 1, "--layout tc"),
    Case("nan-sample", F + ["nan.npy"], 1, "channel 1, sample 7", real=True),
    Case("inf-sample", F + ["inf.npy"], 1, "channel 0, sample 500"),
    Case("size-zero", F + ["chord.wav", "--size", "0"], 2, "--size"),
    Case("pad-with-mode", F + ["chord.wav", "--pad", "2", "--mode", "valid"], 2,
         "--mode valid sets them too"),
    Case("pad-negative", F + ["chord.wav", "--pad", "-1"], 2, "whole numbers ≥ 0"),
    Case("pad-negative-right", F + ["chord.wav", "--pad", "1:-2"], 2, "whole numbers ≥ 0"),
    Case("pad-malformed", F + ["chord.wav", "--pad", "1:x"], 2, "--pad takes P or L:R"),
    Case("pad-reflect-too-long", F + ["short.npy", "--size", "3", "--pad", "5", "--padding",
                                      "reflect"], 1,
         "reflect padding needs 5 samples"),
    Case("pad-circular-too-long", F + ["short.npy", "--size", "3", "--pad", "0:6", "--padding",
                                       "circular"], 1,
         "circular padding needs 6 samples"),
    Case("pad-span-longer", F + ["short.npy", "--size", "9", "--pad", "1:2"], 1,
         "longer than the padded signal (5 + 1 + 2 = 8 samples) with --pad 1:2"),
    Case("bias-length", F + ["chord.wav", "--bias", "k4.txt"], 1, "2 output channels"),
    Case("bias-missing", F + ["chord.wav", "--bias", "nope.txt"], 1, "no such bias file"),
    Case("bias-garbage", F + ["chord.wav", "--bias", "garbage_kernel.txt"], 1, "not a number"),
    Case("bias-nan", F + ["chord.wav", "--bias", "nan"], 1, "--bias nan is not finite"),
    Case("bias-stdin", F + ["chord.wav", "--bias", "-"], 2, "not standard input"),
    Case("size-negative", F + ["chord.wav", "--size", "-3"], 2, "--size"),
    Case("stride-zero", F + ["chord.wav", "--stride", "0"], 2, "--stride"),
    Case("dilation-negative", F + ["chord.wav", "--dilation", "-1"], 2, "--dilation"),
    Case("size-absurd", F + ["chord.wav", "--size", str(10**12)], 2, "out of range"),
    Case("window-unknown", F + ["chord.wav", "--window", "hamm"], 2, "did you mean"),
    Case("window-bad-param", F + ["chord.wav", "--window", "kaiser:abc"], 2, "must be a number"),
    Case("window-param-range", F + ["chord.wav", "--window", "gaussian:0"], 2, "must be > 0"),
    Case("kernel-garbage", F + ["chord.wav", "--kernel", "garbage_kernel.txt"], 1, "not a number"),
    Case("kernel-empty", F + ["chord.wav", "--kernel", "empty_kernel.txt"], 1, "empty"),
    Case("kernel-nan-text", F + ["chord.wav", "--kernel", "nan_kernel.txt"], 1, "non-finite"),
    Case("kernel-nan-npy", F + ["chord.wav", "--kernel", "nan_kernel.npy"], 1, "non-finite"),
    Case("npy-to-wav-no-rate", F + ["tc.npy", "--layout", "tc", "-o", "o.wav"], 2, "--rate"),
    Case("outdir-missing", F + ["chord.wav", "-o", "nowhere/o.wav"], 1, "does not exist"),
    Case("out-dir-missing", F + ["chord.wav", "tc.npy", "--out-dir", "nowhere"], 1,
         "does not exist"),
    Case("outdir-read-only", F + ["chord.wav", "-o", "ro/o.wav"], 1, "cannot write", needs="ro"),
    Case("output-is-directory", F + ["chord.wav", "-o", "."], 1, "is a directory"),
    Case("empty-stdin", F + ["-", "-o", "o.wav"], 1, "standard input is empty", stdin=b"",
         real=True),
    Case("stdout-nothing-partial", F + ["loud.npy", "--rate", "8000", "--size", "1", "-o", "-",
                                        "--format", "wav", "--subtype", "PCM_16",
                                        "--clip", "error"],
         1, "would clip"),
    Case("output-is-input", F + ["chord.wav", "-o", "chord.wav"], 2, "also an input"),
    Case("output-is-input-dot", F + ["chord.wav", "-o", "./chord.wav"], 2, "also an input"),
    Case("output-is-input-symlink", F + ["link.wav", "-o", "chord.wav"], 2, "also an input"),
    Case("output-is-symlink-to-input", F + ["chord.wav", "-o", "link.wav"], 2, "also an input"),
]


def snapshot(root: Path) -> dict[str, str]:
    """relative path -> sha256 (or the link target) of everything under ``root``."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out


def _mount(target: Path, options: str) -> bool:
    target.mkdir()
    if os.geteuid() != 0:
        if "ro" in options.split(","):
            target.chmod(0o555)
            return True
        return False
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                            capture_output=True, check=False)
    return result.returncode == 0


class _Kept(io.BytesIO):
    """A buffer that keeps its bytes when the TextIOWrapper around it is closed."""

    def close(self) -> None:
        pass


def run_main(args: list[str], cwd: Path, stdin: bytes | None = None,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``convcli.cli.main(args)`` in this process, in ``cwd``: (exit code, stdout, stderr)."""
    from convcli.cli import main

    saved = os.getcwd(), sys.stdin, sys.stdout, sys.stderr, dict(os.environ)
    out, err = _Kept(), _Kept()
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin or b""))
    sys.stdout = io.TextIOWrapper(out, write_through=True)
    sys.stderr = io.TextIOWrapper(err, write_through=True)
    os.chdir(cwd)
    os.environ.update(env or {})
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.chdir(saved[0])
        sys.stdin, sys.stdout, sys.stderr = saved[1:4]
        os.environ.clear()
        os.environ.update(saved[4])
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    template = tmp_path_factory.mktemp("inputs")
    make_inputs(template)
    mounts: list[Path] = []
    try:
        yield from _run_cases(tmp_path_factory, template, mounts)
    finally:
        for mount in mounts:
            if os.geteuid() == 0:
                subprocess.run(["umount", str(mount)], capture_output=True, check=False)
            else:
                mount.chmod(0o755)


def _run_cases(tmp_path_factory, template: Path, mounts: list[Path]):
    prepared = {}
    for case in CASES:
        if case.skip:
            continue
        where = tmp_path_factory.mktemp(case.id)
        shutil.copytree(template, where, symlinks=True, dirs_exist_ok=True)
        if case.needs == "ro":
            if not _mount(where / "ro", "ro,size=64k"):
                case.skip = "cannot make a read-only directory here (mount tmpfs failed)"
                continue
            mounts.append(where / "ro")
        if case.needs == "tiny":
            if not _mount(where / "tiny", "size=64k"):
                case.skip = "cannot mount a tiny tmpfs to fill (not root, or mount refused)"
                continue
            mounts.append(where / "tiny")
        prepared[case.id] = (where, snapshot(where))

    def run(case: Case):
        where, _ = prepared[case.id]
        return subprocess.run([sys.executable, "-m", "convcli", *case.args], input=case.stdin,
                              capture_output=True, cwd=where, env={**cli_env(), **case.env},
                              timeout=120, check=False)

    real = [c for c in CASES if c.id in prepared and c.real]
    done = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = {c.id: pool.submit(run, c) for c in real}
        for case in CASES:  # meanwhile, the in-process cases, one after the other
            if case.id in prepared and not case.real:
                done[case.id] = run_main(case.args, prepared[case.id][0], case.stdin, case.env)
        done.update({cid: future.result() for cid, future in futures.items()})
    after = {cid: snapshot(prepared[cid][0]) for cid in done}
    yield {cid: (done[cid], prepared[cid][1], after[cid]) for cid in done}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_one_clear_error(case: Case, results):
    if case.skip:
        pytest.skip(case.skip)
    proc, before, after = results[case.id]
    stderr = proc.stderr.decode(errors="replace")
    lines = stderr.splitlines()
    context = f"convcli {' '.join(case.args)} -> {proc.returncode}\n{stderr}"
    assert proc.returncode == case.code, context
    assert "Traceback" not in stderr, context
    assert len(lines) == 1 and lines[0].startswith("error: "), context
    assert case.says in lines[0], context
    assert "(hint: " in lines[0], f"no hint: {context}"
    assert proc.stdout == b"", context
    assert after == before, f"files changed: {set(after.items()) ^ set(before.items())}"
    assert not any(name.endswith(".part") for name in after)


# --- what does work, and where the policies show ------------------------------------------
@pytest.fixture
def workdir(tmp_path):
    make_inputs(tmp_path)
    return tmp_path


def test_allow_nonfinite_propagates(workdir):
    proc = run_main(["filter", "nan.npy", "--window", "rect", "--size", "3", "--normalize", "none",
                     "--method", "direct", "--allow-nonfinite", "-o", "y.npy"], workdir)
    assert proc.returncode == 0, proc.stderr
    x, y = np.load(workdir / "nan.npy"), np.load(workdir / "y.npy")
    expected = np.stack([np.convolve(row, np.ones(3), "same") for row in x])
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
    assert np.isnan(y[1, 6:9]).all() and not np.isnan(y[0]).any()
    np.testing.assert_allclose(y[~np.isnan(y)], expected[~np.isnan(expected)], atol=1e-12)


@pytest.mark.parametrize("policy", ["warn", "clamp"])
def test_clip_policy_clamps_and_reports(workdir, policy):
    proc = run_main(["filter", "loud.npy", "--rate", "8000", "--size", "1", "-o", "l.wav",
                     "--subtype", "PCM_16", "--clip", policy, "--json"], workdir)
    assert proc.returncode == 0, proc.stderr
    import json

    summary = json.loads(proc.stdout)
    x = np.load(workdir / "loud.npy").astype(np.float64)
    clipped = int(np.count_nonzero(np.abs(np.rint(x * 32768)) > 32767))  # 1.5 and -2.0
    entry = summary["files"][0]
    assert summary["clip"] == policy
    assert entry["clipped"] == clipped == 500 and entry["peak"] == 2.0
    gain = 10 ** (entry["safe_gain_db"] / 20)
    assert np.abs(np.rint(x * gain * 32768)).max() <= 32767 < np.abs(np.rint(x * 32768)).max()
    louder = 10 ** ((entry["safe_gain_db"] + 0.1) / 20)  # the advice is tight (to 0.1 dB)
    assert np.abs(np.rint(x * louder * 32768)).max() > 32767
    written, _ = sf.read(workdir / "l.wav", dtype="int16")
    np.testing.assert_array_equal(written, np.clip(np.rint(x * 32768), -32768, 32767))
    warned = "500 samples clipped" in proc.stderr.decode()
    assert warned == (policy == "warn")


def test_existing_output_replaced_whole_keeping_its_mode(workdir):
    target = workdir / "out.wav"
    target.write_bytes(b"old")
    target.chmod(0o640)
    proc = run_main(["filter", "chord.wav", "-o", "out.wav", "--quiet"], workdir)
    assert proc.returncode == 0, proc.stderr
    assert sf.info(target).frames == sf.info(workdir / "chord.wav").frames
    assert target.stat().st_mode & 0o777 == 0o640
    proc = run_main(["filter", "chord.wav", "-o", "new.wav", "--quiet"], workdir)
    mask = os.umask(0)
    os.umask(mask)
    assert (workdir / "new.wav").stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600


class _Failing:
    """A file handle that writes ``budget`` bytes, then fails like a full disk, or sends a signal."""

    def __init__(self, handle, budget: int, signum: int | None = None):
        self.handle, self.budget, self.signum = handle, budget, signum

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) > self.budget:
            self.handle.write(data[: self.budget])
            self.handle.flush()
            if self.signum is None:
                import errno

                raise OSError(errno.ENOSPC, "No space left on device")
            os.kill(os.getpid(), self.signum)  # the CLI's handler raises at the next bytecode
        self.budget -= len(data)
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)


@pytest.fixture
def failing_writes(monkeypatch):
    """Make every AtomicFile's handle fail after 1000 bytes (ENOSPC or a signal)."""
    from convcli.io import atomic

    def install(signum: int | None = None):
        original = atomic.AtomicFile.__init__

        def init(self, path):
            original(self, path)
            self.handle = _Failing(self.handle, 1000, signum)

        monkeypatch.setattr(atomic.AtomicFile, "__init__", init)

    return install


@pytest.mark.parametrize("fault", ["ENOSPC", "SIGTERM", "SIGINT"])
@pytest.mark.parametrize("output", ["out.wav", "out.npy"])
def test_fault_mid_write_leaves_old_output_and_no_temporary(workdir, failing_writes, fault, output):
    import signal

    source = "chord.wav" if output.endswith(".wav") else "batch.npy"
    (workdir / output).write_bytes(b"the previous result")
    before = snapshot(workdir)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    failing_writes(None if fault == "ENOSPC" else getattr(signal, fault))
    proc = run_main(["filter", source, "-o", output], workdir)
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    if fault == "ENOSPC":
        assert proc.returncode == 1 and "No space left on device" in lines[0]
    else:
        assert proc.returncode == 128 + getattr(signal, fault)
        assert f"interrupted by {fault}" in lines[0]
    assert snapshot(workdir) == before  # old output intact, no .part left
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # defaults restored


def test_several_outputs_appear_together_or_not_at_all(tmp_path):
    from convcli.io.atomic import atomic_outputs

    (tmp_path / "b.npy").write_bytes(b"old b")
    paths = [str(tmp_path / "a.npy"), str(tmp_path / "b.npy")]
    with pytest.raises(RuntimeError), atomic_outputs(paths) as (a, b):
        a.write(b"complete a")
        b.write(b"half of b")
        raise RuntimeError("the second encoder failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.npy"]
    assert (tmp_path / "b.npy").read_bytes() == b"old b"


def test_every_np_load_refuses_pickles():
    import re

    root = Path(__file__).resolve().parents[1] / "convcli"
    calls = []
    for path in root.rglob("*.py"):
        for match in re.finditer(r"np\.load\(([^)]*)\)", path.read_text()):
            calls.append((path.name, match[1]))
    assert calls, "expected at least one np.load"
    for name, args in calls:
        assert "allow_pickle=False" in args, f"{name}: np.load({args}) may unpickle"


def test_sigterm_during_a_long_run_real_process(tmp_path):
    """SIGTERM to a real convcli filtering for seconds: exit 143, one line, nothing written."""
    import signal
    import time

    np.save(tmp_path / "long.npy", np.random.default_rng(0).standard_normal(16_000_000)
            .astype(np.float32))  # 16M × 8001 taps ≈ 256 GFLOP: seconds of work even on a quiet 2-core CI machine
    before = snapshot(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "convcli", "filter", "long.npy", "--window", "hann", "--size",
         "8001", "--method", "direct", "-o", "out.npy"],
        cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def ready() -> bool:  # main() has installed its handlers (SigCgt) and numpy is loaded
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            maps = Path(f"/proc/{proc.pid}/maps").read_text()
        except OSError:
            return False
        caught = int(status.split("SigCgt:")[1].split()[0], 16)
        return bool(caught >> (signal.SIGTERM - 1) & 1) and "_multiarray_umath" in maps

    deadline = time.monotonic() + 60
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    lines = err.decode().splitlines()
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()
    assert len(lines) == 1 and "interrupted by SIGTERM" in lines[0] and out == b""
    assert snapshot(tmp_path) == before
