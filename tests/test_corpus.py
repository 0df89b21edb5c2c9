"""``convcli corpus``: inputs of every kind, mirrored outputs, failures reported while the rest
goes on, the report, shards, kernel picking; numbers against scipy (within 1 LSB of PCM_16)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import run_inprocess
from scipy.signal import convolve, get_window

from convcli.corpus import inputs as inputs_
from convcli.corpus.kernels import pick


def hann(taps: int = 31) -> np.ndarray:
    w = get_window("hann", taps, fftbins=False)
    return w / w.sum()


def pcm16(y: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(y * 32768), -32768, 32767).astype(np.int16)


def write_clip(path: Path, frames: int, seed: int, channels: int = 1, rate: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(seed).integers(-9000, 9000, (frames, channels)).astype(np.int16)
    sf.write(path, x, rate, subtype="PCM_16")


def check_filtered(src: Path, out: Path, kernel: np.ndarray | None = None) -> None:
    """``out`` is ``src`` convolved (mode same) with ``kernel`` (31-tap Hann), as scipy says."""
    x, rate = sf.read(src, dtype="float64", always_2d=True)
    y, out_rate = sf.read(out, dtype="int16", always_2d=True)
    w = hann() if kernel is None else kernel
    want = pcm16(np.stack([convolve(x[:, c], w, mode="same") for c in range(x.shape[1])], 1))
    assert out_rate == rate and y.shape == want.shape, (out, y.shape, want.shape)
    assert np.max(np.abs(y.astype(np.int32) - want)) <= 1, out


def lines(report: Path) -> list[dict]:
    return [json.loads(line) for line in report.read_text().splitlines()]


@pytest.fixture
def tree(tmp_path) -> Path:
    """in/: clips of several lengths (one stereo, one float, one NPY), in a subfolder too."""
    root = tmp_path / "in"
    for i, frames in enumerate([16000, 16000, 12000, 15000, 16001, 3000]):
        write_clip(root / f"c{i}.wav", frames, i)
    write_clip(root / "sub" / "deep" / "s.wav", 8000, 9, channels=2, rate=48000)
    sf.write(root / "sub" / "f.wav", np.random.default_rng(3).uniform(-0.5, 0.5, 5000), 22050,
             subtype="FLOAT")
    return root


def corpus(*args) -> tuple[int, str]:
    proc = run_inprocess("corpus", *map(str, args))
    return proc.returncode, proc.stderr.decode()


def test_a_directory_is_filtered_into_a_mirrored_tree_equal_to_scipy(tree, tmp_path):
    out, report = tmp_path / "out", tmp_path / "r.jsonl"
    code, err = corpus(tree, "-r", "--out-dir", out, "--report", report)
    assert code == 0, err
    assert "8 files: 8 done, 0 failed, 0 skipped" in err
    for src in tree.rglob("*.wav"):
        rel = src.relative_to(tree)
        if src.name == "f.wav":
            y, _ = sf.read(out / rel, dtype="float64")
            x, _ = sf.read(src, dtype="float64")
            assert sf.info(out / rel).subtype == "FLOAT"
            np.testing.assert_allclose(y, convolve(x, hann(), mode="same"), atol=1e-6)
        else:
            check_filtered(src, out / rel)
    got = lines(report)
    assert len(got) == 8 and {line["status"] for line in got} == {"done"}
    assert set(got[0]) == {"input", "output", "status", "error", "kernel", "frames", "seconds",
                           "clipped", "peak"}
    by_input = {Path(line["input"]).name: line for line in got}
    assert by_input["c5.wav"]["frames"] == 3000 and by_input["c5.wav"]["kernel"] == "hann(31)"


def test_without_recursive_only_the_top_level_is_taken(tree, tmp_path):
    code, err = corpus(tree, "--out-dir", tmp_path / "out", "-q")
    assert code == 0, err
    assert not (tmp_path / "out" / "sub").exists()
    assert len(list((tmp_path / "out").glob("*.wav"))) == 6


def test_globs_lists_and_manifests_name_the_inputs(tree, tmp_path):
    code, err = corpus(f"{tree}/c[01].wav", "--out-dir", tmp_path / "g", "-q")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["c0.wav", "c1.wav"]
    listing = tmp_path / "list.txt"
    listing.write_text(f"# two files\n{tree}/c2.wav\n\n{tree}/sub/deep/s.wav\n")
    code, err = corpus("--files-from", listing, "--out-dir", tmp_path / "l", "-q")
    assert code == 0, err
    assert (tmp_path / "l" / "c2.wav").exists() and (tmp_path / "l" / "sub/deep/s.wav").exists()
    check_filtered(tree / "sub/deep/s.wav", tmp_path / "l" / "sub/deep/s.wav")
    manifest = tree / "train.jsonl"  # NeMo: paths relative to the manifest
    manifest.write_text('{"audio_filepath": "c3.wav", "duration": 0.9}\n'
                        '{"audio_filepath": "sub/f.wav", "duration": 0.2}\n')
    code, err = corpus("--manifest", manifest, "--out-dir", tmp_path / "m", "-q")
    assert code == 0, err
    assert (tmp_path / "m" / "c3.wav").exists() and (tmp_path / "m" / "sub/f.wav").exists()
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"wav": str(tree / "c4.wav")}) + "\n")
    code, err = corpus("--manifest", other, "--path-key", "wav", "--out-dir", tmp_path / "o",
                       "-q")
    assert code == 0, err
    check_filtered(tree / "c4.wav", tmp_path / "o" / "c4.wav")
    code, err = corpus("--manifest", other, "--out-dir", tmp_path / "o")
    assert code == 1 and "has no 'audio_filepath' path" in err and "--path-key" in err


def test_files_from_stdin(tree, tmp_path):
    proc = run_inprocess("corpus", "--files-from", "-", "--out-dir", str(tmp_path / "s"),
                         input=f"{tree}/c0.wav\n{tree}/c1.wav\n".encode())
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "s").iterdir())) == 2


def test_bad_files_are_reported_and_the_rest_is_done(tree, tmp_path):
    (tree / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt junk")
    (tree / "noise.wav").write_bytes(b"this is not audio")
    listing = tmp_path / "list.txt"
    names = ["c0.wav", "corrupt.wav", "missing.wav", "noise.wav", "c1.wav", "c2.wav"]
    listing.write_text("".join(f"{tree}/{n}\n" for n in names))
    out, report = tmp_path / "out", tmp_path / "r.jsonl"
    out.mkdir()
    (out / "c1.wav").mkdir()  # an output that cannot be written: a directory is in its place
    code, err = corpus("--files-from", listing, "--out-dir", out, "--report", report)
    assert code == 1, err
    assert "6 files: 2 done, 4 failed, 0 skipped" in err
    assert err.splitlines()[-1].startswith("error: 4 of 6 files failed; the others were done")
    assert "Traceback" not in err
    status = {Path(line["input"]).name: line for line in lines(report)}
    assert {n: status[n]["status"] for n in names} == {
        "c0.wav": "done", "corrupt.wav": "failed", "missing.wav": "failed",
        "noise.wav": "failed", "c1.wav": "failed", "c2.wav": "done"}
    assert "does not exist" in status["missing.wav"]["error"] or \
        "No such file" in status["missing.wav"]["error"]
    assert status["c1.wav"]["error"]
    check_filtered(tree / "c0.wav", out / "c0.wav")
    check_filtered(tree / "c2.wav", out / "c2.wav")
    assert not list(out.rglob("*.part")) and not (out / "noise.wav").exists()


def test_an_output_dir_that_is_the_input_dir_is_refused(tree):
    before = (tree / "c0.wav").read_bytes()
    code, err = corpus(tree, "--out-dir", tree)
    assert code == 2 and "would replace the input" in err, err
    assert (tree / "c0.wav").read_bytes() == before
    code, err = corpus(tree, "--out-dir", tree, "--format", "flac", "-q")  # beside, not over
    assert code == 0, err
    assert (tree / "c0.flac").exists() and (tree / "c0.wav").read_bytes() == before


def test_an_out_dir_inside_the_input_tree_is_not_read_back(tree):
    assert corpus(tree, "-r", "--out-dir", tree / "filtered", "-q")[0] == 0
    code, err = corpus(tree, "-r", "--out-dir", tree / "filtered")
    assert code == 0 and "8 files: 8 done" in err, err


def test_usage_errors_are_one_line(tmp_path):
    for args, code, words in [
        ((), 2, "--out-dir DIR is required"),
        (("--out-dir", tmp_path / "o"), 2, "no inputs"),
        ((tmp_path, "--out-dir", tmp_path / "o"), 1, "no audio or NPY files in"),
        ((f"{tmp_path}/*.wav", "--out-dir", tmp_path / "o"), 1, "no files match"),
        ((tmp_path, "--out-dir", tmp_path / "o", "--shard", "3/3"), 2, "0..N-1"),
        ((tmp_path, "--out-dir", tmp_path / "o", "--shard", "x"), 2, "is not I/N"),
        (("-", "--out-dir", tmp_path / "o"), 2, "--files-from -"),
        ((tmp_path, "--out-dir", "o", "--workers", "2", "--scheduler", "tcp://h:1"), 2, "both"),
    ]:
        got, err = corpus(*args)
        assert got == code and err.startswith("error: ") and words in err, (args, err)
        assert err.count("\n") == 1, err


def test_skip_existing_writes_only_what_is_missing(tree, tmp_path):
    out, report = tmp_path / "out", tmp_path / "r.jsonl"
    assert corpus(tree, "--out-dir", out, "-q")[0] == 0
    (out / "c2.wav").unlink()
    stamp = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    code, err = corpus(tree, "--out-dir", out, "--skip-existing", "--report", report)
    assert code == 0 and "6 files: 1 done, 0 failed, 5 skipped" in err, err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != "c2.wav"} == stamp
    check_filtered(tree / "c2.wav", out / "c2.wav")
    assert sorted(line["status"] for line in lines(report)) == ["done"] + ["skipped"] * 5


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5])
def test_shards_partition_the_corpus_exactly(tree, tmp_path, count):
    seen: list[str] = []
    for index in range(count):
        report = tmp_path / f"r{index}.jsonl"
        code, err = corpus(tree, "-r", "--out-dir", tmp_path / "out", "--shard",
                           f"{index}/{count}", "--report", report, "-q")
        assert code == 0, err
        seen += [line["input"] for line in lines(report)]
    assert sorted(seen) == sorted(str(p) for p in tree.rglob("*.wav"))


def test_the_shard_defaults_from_a_slurm_array():
    env = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "4", "SLURM_ARRAY_TASK_COUNT": "3"}
    assert inputs_.parse_shard(None, env) == (1, 3)
    assert inputs_.parse_shard(None, {}) == (0, 1)
    assert inputs_.parse_shard("2/4", env) == (2, 4)
    items = [inputs_.Item(f"{i}.wav", f"d/{i}.wav") for i in range(200)]
    shares = [inputs_.take_shard(items, i, 4) for i in range(4)]
    joined = [item for share in shares for item in share]
    assert sorted(joined, key=lambda i: i.path) == sorted(items, key=lambda i: i.path)
    assert all(30 < len(share) < 70 for share in shares)  # a hash spreads them


@pytest.fixture
def bank(tmp_path) -> Path:
    """kernels/: three kernel files (a text, an NPY, a comma list)."""
    folder = tmp_path / "kernels"
    folder.mkdir()
    (folder / "a.txt").write_text("0.25\n0.5\n0.25\n")
    np.save(folder / "b.npy", np.array([1.0, -1.0]))
    (folder / "c.txt").write_text("0.1, 0.2, 0.4, 0.2, 0.1\n")
    return folder


KERNELS = {"a": np.array([0.25, 0.5, 0.25]), "b": np.array([1.0, -1.0]),
           "c": np.array([0.1, 0.2, 0.4, 0.2, 0.1])}


def test_pick_random_is_reproducible_and_recorded(tree, tmp_path, bank):
    runs = []
    for name, shard in (("one", "0/1"), ("two", "0/2"), ("three", "1/2")):
        report = tmp_path / f"{name}.jsonl"
        code, err = corpus(tree, "-r", "--out-dir", tmp_path / name, "--kernel", bank, "--seed",
                           "7", "--shard", shard, "--report", report, "-q")
        assert code == 0, err
        runs.append({Path(line["input"]).name: line["kernel"] for line in lines(report)})
    assert runs[0] == {**runs[1], **runs[2]}  # the same kernel whatever the shard
    assert len(set(runs[0].values())) > 1
    for name, kernel in runs[0].items():
        if name.startswith("c"):
            check_filtered(tree / name, tmp_path / "one" / name, KERNELS[kernel])
    report = tmp_path / "seed8.jsonl"
    assert corpus(tree, "-r", "--out-dir", tmp_path / "s8", "--kernel", bank, "--seed", "8",
                  "--report", report, "-q")[0] == 0
    assert {Path(line["input"]).name: line["kernel"] for line in lines(report)} != runs[0]


def test_pick_all_writes_one_output_per_kernel(tree, tmp_path, bank):
    listing = tmp_path / "kernels.list"
    listing.write_text("kernels/a.txt\nkernels/c.txt\n")
    code, err = corpus(tree / "c0.wav", tree / "c5.wav", "--out-dir", tmp_path / "out",
                       "--kernel", listing, "--pick", "all")
    assert code == 0 and "4 files: 4 done" in err, err
    for clip in ("c0", "c5"):
        for kernel in ("a", "c"):
            check_filtered(tree / f"{clip}.wav", tmp_path / "out" / f"{clip}.{kernel}.wav",
                           KERNELS[kernel])


def test_pick_helpers():
    assert pick("cycle", 3, "x", 7, 0) == [1]
    draws = {pick("random", 3, f"f{i}.wav", 0, 1)[0] for i in range(50)}
    assert draws == {0, 1, 2}
    assert inputs_.output_name("a/b.wav", "flac") == "a/b.flac"
    assert inputs_.output_name("a/b.xyz", None) == "a/b.wav"


def test_other_lengths_are_bucketed_and_exact_in_every_mode(tmp_path):
    """Lengths within a bucket run padded with zeros in one call: each file still equals its
    own convolution, in every mode (valid, full and causal change the length)."""
    root = tmp_path / "in"
    for i, frames in enumerate([1000, 1100, 1200, 999, 1234]):
        write_clip(root / f"{i}.wav", frames, 40 + i)
    w = hann(31)
    for mode, scipy_mode in (("valid", "valid"), ("full", "full"), ("causal", None)):
        out = tmp_path / mode
        code, err = corpus(root, "--out-dir", out, "--mode", mode, "-q")
        assert code == 0, err
        for src in root.iterdir():
            x, _ = sf.read(src, dtype="float64")
            y, _ = sf.read(out / src.name, dtype="int16")
            full = convolve(x, w, mode="full")
            want = pcm16(full[: len(x)] if scipy_mode is None else convolve(x, w, scipy_mode))
            assert y.shape == want.shape and np.max(np.abs(y.astype(int) - want)) <= 1, mode


def test_dask_without_the_extra_says_how_to_get_it(tree, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    code, err = corpus(tree, "--out-dir", tmp_path / "o", "--workers", "2")
    assert code == 1 and "pip install 'convcli[dask]'" in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_the_help_is_fast_and_does_not_import_dask():
    import subprocess
    import sys

    from conftest import cli_env

    code = ("import sys; from convcli.cli import main\n"
            "try: main(['corpus', '--help'])\nexcept SystemExit: pass\n"
            "assert 'distributed' not in sys.modules and 'torch' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, env=cli_env(),
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert b"--skip-existing" in proc.stdout and os.linesep.encode() in proc.stdout


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_U8", "FLOAT"])
def test_outputs_are_byte_for_byte_those_of_filter(tmp_path, subtype):
    """The corpus's own WAV reader and encoder give what ``convcli filter`` writes."""
    src = tmp_path / "in" / "x.wav"
    src.parent.mkdir()
    x = np.random.default_rng(2).uniform(-0.9, 0.9, (5000, 2))
    sf.write(src, x, 44100, subtype=subtype)
    for extra in ([], ["--gain", "-1"]):  # the corpus's encoder, and encode_output's
        assert run_inprocess("filter", str(src), "-o", str(tmp_path / "f.wav"),
                             *extra).returncode == 0
        code, err = corpus(tmp_path / "in", "--out-dir", tmp_path / "c", *extra, "-q")
        assert code == 0, err
        assert (tmp_path / "c" / "x.wav").read_bytes() == (tmp_path / "f.wav").read_bytes()


def test_a_fir_design_is_made_for_each_files_rate(tmp_path):
    for name, rate in (("a.wav", 16000), ("b.wav", 48000)):
        write_clip(tmp_path / "in" / name, 6000, rate, rate=rate)
    code, err = corpus(tmp_path / "in", "--out-dir", tmp_path / "out", "--lowpass", "3000",
                       "--report", tmp_path / "r.jsonl")
    assert code == 0, err
    for name in ("a.wav", "b.wav"):
        assert run_inprocess("filter", str(tmp_path / "in" / name), "--lowpass", "3000", "-o",
                             str(tmp_path / name)).returncode == 0
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / name).read_bytes()
    assert {line["kernel"] for line in lines(tmp_path / "r.jsonl")} == {"lowpass 3000 Hz"}


def test_filter_on_a_directory_points_to_corpus(tree):
    proc = run_inprocess("filter", str(tree), "-o", str(tree / "x.wav"))
    assert proc.returncode == 1 and b"convcli corpus" in proc.stderr, proc.stderr


def test_a_redone_task_does_not_write_an_output_again(tmp_path):
    """Dask redoes a lost worker's task: what it put in place this run stays as it is."""
    import time

    from convcli.corpus.files import write_atomic

    out = tmp_path / "o.wav"
    started = time.time() - 1
    write_atomic(str(out), lambda h: h.write(b"first"), since=started)
    write_atomic(str(out), lambda h: h.write(b"again"), since=started)
    assert out.read_bytes() == b"first"
    write_atomic(str(out), lambda h: h.write(b"new run"), since=time.time() + 1)
    assert out.read_bytes() == b"new run" and not list(tmp_path.glob(".*.part"))


def test_leftover_temporaries_of_this_runs_outputs_are_swept(tree, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".c0.wav.1f-2.part").write_bytes(b"half")  # a process killed mid-write
    (out / ".other.wav.3-1.part").write_bytes(b"another shard's, in flight")
    code, err = corpus(tree, "--out-dir", out, "-q")
    assert code == 0, err
    assert sorted(p.name for p in out.glob(".*")) == [".other.wav.3-1.part"]


def test_pick_cycle_counts_places_in_the_whole_corpus_whatever_the_shard(tree, tmp_path, bank):
    def kernels(*extra) -> dict:
        report = tmp_path / "r.jsonl"
        code, err = corpus(tree, "-r", "--out-dir", tmp_path / "o", "--kernel", bank, "--pick",
                           "cycle", "--report", report, "-q", *extra)
        assert code == 0, err
        return {line["input"]: line["kernel"] for line in lines(report)}

    whole = kernels()
    assert [whole[k] for k in sorted(whole)][:4] == ["a", "b", "c", "a"]
    assert {**kernels("--shard", "0/2"), **kernels("--shard", "1/2")} == whole


def test_a_large_file_streams_on_its_own_with_the_same_result(tree, tmp_path, monkeypatch):
    from convcli.corpus import batch

    monkeypatch.setattr(batch, "STREAM_BYTES", 20_000)  # the 16 000-frame clips stream
    report = tmp_path / "r.jsonl"
    code, err = corpus(tree, "--out-dir", tmp_path / "out", "--report", report)
    assert code == 0, err
    for src in tree.glob("*.wav"):
        check_filtered(src, tmp_path / "out" / src.name)
    assert {line["frames"] for line in lines(report)} >= {16000, 16001, 3000}
    (tree / "c0.wav").write_bytes((tree / "c0.wav").read_bytes()[:30_000])  # cut short
    code, err = corpus(tree, "--out-dir", tmp_path / "o2")
    assert code == 1 and "c0.wav" in err and not (tmp_path / "o2" / "c0.wav").exists(), err


def test_calls_are_sized_to_the_device_memory_free(tmp_path, monkeypatch):
    """With little memory free on the device (as ``torch.cuda.mem_get_info`` would say), a
    batch's files run in several engine calls, each priced (``conv_bytes``, FFT) within
    ``DEVICE_SHARE`` of it; every file is still its own convolution."""
    from convcli import pipeline
    from convcli.core.spec import ConvSpec
    from convcli.corpus import batch
    from convcli.plan.memory import conv_bytes

    root = tmp_path / "in"
    for i in range(12):
        write_clip(root / f"{i:02d}.wav", 16000 + 50 * i, 60 + i)
    free = 3 << 20
    monkeypatch.setattr(batch, "device_free", lambda device: free)
    calls = []
    real = pipeline.filter_arrays

    def counted(arrays, *args, **kwargs):
        calls.append(arrays[0].shape)
        return real(arrays, *args, **kwargs)

    monkeypatch.setattr(pipeline, "filter_arrays", counted)
    code, err = corpus(root, "--out-dir", tmp_path / "out", "-q")
    assert code == 0, err
    assert len(calls) >= 4, calls  # 12 files of ~64 KB of samples: not one call
    assert sum(shape[0] for shape in calls) == 12
    for b, c, t in calls:
        assert conv_bytes(b, c, t, c, 31, ConvSpec(), "fft", 4) <= free * batch.DEVICE_SHARE
    for src in root.iterdir():
        check_filtered(src, tmp_path / "out" / src.name)


def test_a_call_out_of_device_memory_is_split_and_a_file_too_large_fails_alone(tmp_path,
                                                                               monkeypatch):
    """An engine call that raises torch's out-of-memory error is retried in halves: the
    outputs are still exact; a file that alone does not fit is one ``failed`` line."""
    import torch

    from convcli import pipeline

    root = tmp_path / "in"
    for i in range(6):
        write_clip(root / f"{i}.wav", 8000, 80 + i)
    write_clip(root / "long.wav", 12000, 99)  # a bucket of its own (more than 25 % longer)
    real = pipeline.filter_arrays
    seen = []

    def tight(arrays, *args, **kwargs):
        b, _, t = arrays[0].shape
        seen.append(b)
        if b > 2 or t == 12000:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(arrays, *args, **kwargs)

    monkeypatch.setattr(pipeline, "filter_arrays", tight)
    report = tmp_path / "r.jsonl"
    code, err = corpus(root, "--out-dir", tmp_path / "out", "--report", report, "-q")
    assert code == 1, err
    assert seen.count(6) == 1 and max(b for b in seen if b <= 2) == 2, seen
    by_name = {Path(line["input"]).name: line for line in lines(report)}
    assert by_name["long.wav"]["status"] == "failed"
    assert "out of memory" in by_name["long.wav"]["error"]
    assert not (tmp_path / "out" / "long.wav").exists()
    for i in range(6):
        assert by_name[f"{i}.wav"]["status"] == "done"
        check_filtered(root / f"{i}.wav", tmp_path / "out" / f"{i}.wav")


def test_overlapping_runs_share_the_switch_interval_and_put_it_back():
    """Two runs at once (Dask tasks on a worker of two threads): the first in ends first and
    leaves the longer interval to the other; the last one out puts Python's back, not the
    interval it found on entering."""
    import sys
    import threading

    from convcli.corpus.local import SWITCH_INTERVAL, calm_switching

    before = sys.getswitchinterval()
    inside, leave = threading.Event(), threading.Event()

    def first() -> None:
        with calm_switching():
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert inside.wait(10)
        with calm_switching():
            leave.set()
            thread.join(10)
            assert sys.getswitchinterval() == max(before, SWITCH_INTERVAL)  # the first left
    finally:
        leave.set()
        thread.join()
    assert sys.getswitchinterval() == before
