"""``convcli filter - -o -`` streams: stdin to stdout equals the file-to-file run sample for sample
(the same method: a stream's sums do not depend on its blocks) and scipy within float
tolerance, for every mode, padding and stride, a 48 000-tap kernel, WAV with honest and
placeholder headers, NPY, FLAC.

The matrix runs ``main()`` in this process (stdin and stdout swapped for buffers); the shell
pipelines (a reader that stops early, SoX and ffmpeg on both ends, ``fir`` through the same
pipe, circular padding through a pipe, signals mid-stream) run as real processes.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import SAMPLES, cli_env
from scipy import signal as sps

from convcli.core.spec import PADDINGS, ConvSpec
from convcli.io import wav
from tests.test_engine import reference

SOX = shutil.which("sox")
FFMPEG = shutil.which("ffmpeg")
needs_sox = pytest.mark.skipif(SOX is None, reason="sox is not installed (apt-get install sox)")


def wav_bytes(x: np.ndarray, rate: int, subtype: str = "FLOAT", placeholder: int | None = None
              ) -> bytes:
    """``x [T, C]`` as WAV bytes; ``placeholder``: the data size a pipe writer leaves."""
    buffer = io.BytesIO()
    sf.write(buffer, x, rate, subtype=subtype, format="WAV")
    data = bytearray(buffer.getvalue())
    if placeholder is not None:
        at = data.find(b"data")
        data[4:8] = struct.pack("<I", 0xFFFFFFFF)
        data[at + 4 : at + 8] = struct.pack("<I", placeholder)
    return bytes(data)


def decoded(data: bytes) -> np.ndarray:
    return sf.read(io.BytesIO(data), dtype="float64", always_2d=True)[0]


def hann(k: int) -> np.ndarray:
    w = sps.get_window("hann", k, fftbins=False)
    return w / w.sum()


# --- stdin -> stdout equals file -> file, in-process ------------------------------------------
@pytest.mark.parametrize("mode", ["same", "valid", "full", "causal"])
@pytest.mark.parametrize("padding", list(PADDINGS))
@pytest.mark.parametrize("stride", [1, 3])
def test_stdin_to_stdout_equals_file_to_file_and_scipy(cli_fast, tmp_path, rng, mode, padding,
                                                       stride):
    x = rng.uniform(-0.5, 0.5, (9000, 2))
    data = wav_bytes(x, 8000, placeholder=0 if stride == 3 else None)
    path = tmp_path / "in.wav"
    path.write_bytes(wav_bytes(x, 8000))
    options = ["--size", "33", "--mode", mode, "--padding", padding, "--stride", str(stride),
               "--method", "direct", "-q"]
    piped = cli_fast("filter", "-", "-o", "-", *options, "--block", "2000", input=data,
                     check=True).stdout
    cli_fast("filter", path, "-o", tmp_path / "out.wav", *options, "--block", "3333",
             check=True)  # other blocks: a stream's sums do not depend on them
    filed = (tmp_path / "out.wav").read_bytes()
    got = decoded(piped)
    np.testing.assert_array_equal(got, decoded(filed))
    spec = ConvSpec(mode=mode, padding=padding, stride=stride, groups=2)
    expected = reference(x.T[None], np.broadcast_to(hann(33), (2, 1, 33)), spec)[0].T
    np.testing.assert_allclose(got, expected, atol=2e-6)
    assert sf.info(io.BytesIO(piped)).samplerate == (8000 if stride == 1 else 2667)


@pytest.mark.parametrize("padding", ["zeros", "reflect", "circular"])
def test_explicit_pads_and_a_bias_through_a_pipe(cli_fast, tmp_path, rng, padding):
    """--pad and --bias (torch's padding= and bias) on a stream of unknown length."""
    x = rng.uniform(-0.5, 0.5, (7000, 2))
    (tmp_path / "bias.txt").write_text("0.25\n-0.125\n")
    options = ["--size", "9", "--pad", "6:2", "--padding", padding, "--correlate", "--bias",
               tmp_path / "bias.txt", "--method", "fft", "--block", "1000", "-q"]
    piped = cli_fast("filter", "-", "-o", "-", *options, input=wav_bytes(x, 8000, placeholder=0),
                     check=True).stdout
    xp = np.pad(x, ((6, 2), (0, 0)), mode={"zeros": "constant", "reflect": "reflect",
                                           "circular": "wrap"}[padding])
    w = hann(9)
    expected = np.stack([np.correlate(xp[:, c], w, "valid") for c in range(2)], 1)
    np.testing.assert_allclose(decoded(piped), expected + [0.25, -0.125], atol=1e-6)


@pytest.mark.parametrize("header", ["honest", 0, 0xFFFFFFFF, 0x7FFFF000])
def test_long_kernel_through_a_pipe_equals_the_file_run(cli_fast, tmp_path, rng, header):
    """A 48 000-tap kernel (an FFT of 2^17 frames) over blocks shorter than the kernel."""
    x = rng.uniform(-0.5, 0.5, (120_000, 2))
    kernel = rng.standard_normal(48_000) * np.exp(-np.arange(48_000) / 8000) * 0.01
    np.save(tmp_path / "ir.npy", kernel)
    data = wav_bytes(x, 48_000, placeholder=None if header == "honest" else header)
    (tmp_path / "in.wav").write_bytes(wav_bytes(x, 48_000))
    options = ["--kernel", tmp_path / "ir.npy", "--method", "fft", "--block", "30000", "-q"]
    piped = cli_fast("filter", "-", "-o", "-", *options, input=data, check=True).stdout
    cli_fast("filter", tmp_path / "in.wav", "-o", tmp_path / "o.wav", *options, check=True)
    got = decoded(piped)
    np.testing.assert_array_equal(got, decoded((tmp_path / "o.wav").read_bytes()))
    expected = np.stack([sps.oaconvolve(x[:, c], kernel, mode="same") for c in range(2)], 1)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    frames = wav.read_header(io.BytesIO(piped).read, "out").frames
    assert frames == (120_000 if header == "honest" else None)  # exact when the input was


def test_npy_and_flac_through_a_pipe_equal_the_file_runs(cli_fast, tmp_path, rng):
    x = rng.standard_normal((3, 7000))
    np.save(tmp_path / "x.npy", x)  # (channels, time), C order: spooled, then a memory map
    np.save(tmp_path / "xf.npy", np.asfortranarray(x))  # time-major: straight from the pipe
    options = ["--size", "15", "--method", "fft", "--block", "1500", "-q"]
    for name in ("x.npy", "xf.npy"):
        piped = cli_fast("filter", "-", "-o", "-", "--format", "npy", *options,
                         input=(tmp_path / name).read_bytes(), check=True).stdout
        cli_fast("filter", tmp_path / name, "-o", tmp_path / "o.npy", *options, check=True)
        got = np.load(io.BytesIO(piped))
        np.testing.assert_array_equal(got, np.load(tmp_path / "o.npy"))
        expected = np.stack([np.convolve(row, hann(15), "same") for row in x])
        np.testing.assert_allclose(got, expected, atol=1e-12)
    y = np.clip(rng.standard_normal((30_000, 2)) * 0.3, -1, 1)
    sf.write(tmp_path / "y.flac", y, 44_100, subtype="PCM_16")
    piped = cli_fast("filter", "-", "-o", "-", *options, input=(tmp_path / "y.flac").read_bytes(),
                     check=True).stdout  # FLAC to a pipe: written whole at the end
    cli_fast("filter", tmp_path / "y.flac", "-o", tmp_path / "o.flac", *options, check=True)
    assert sf.info(io.BytesIO(piped)).format == "FLAC"
    np.testing.assert_array_equal(decoded(piped), decoded((tmp_path / "o.flac").read_bytes()))


def test_an_empty_batch_streams_to_torchs_shape(cli_fast, tmp_path):
    np.save(tmp_path / "none.npy", np.zeros((0, 2, 100)))
    for args in (["-"], [tmp_path / "none.npy", "--block", "10"]):
        proc = cli_fast("filter", *args, "--format", "npy", "--mode", "valid", "--size", "5",
                        "-o", "-", input=(tmp_path / "none.npy").read_bytes(), check=True)
        assert np.load(io.BytesIO(proc.stdout)).shape == (0, 2, 96)


def test_designs_and_normalize_output_stream_a_file(cli_fast, tmp_path, rng):
    x = rng.uniform(-0.5, 0.5, (40_000, 2))
    sf.write(tmp_path / "in.wav", x, 16_000, subtype="FLOAT")
    proc = cli_fast("filter", tmp_path / "in.wav", "--lowpass", "2000", "--size", "101",
                    "--block", "5000", "--normalize-output", "-3", "--json", "-o",
                    tmp_path / "o.wav", check=True)
    summary = json.loads(proc.stdout)
    assert summary["streamed"]["blocks"] == 8
    taps = sps.firwin(101, 2000, window="hann", fs=16_000)  # --window defaults to hann
    y = np.stack([np.convolve(x[:, c], taps, "same") for c in range(2)], 1)
    y *= 10 ** (-3 / 20) / np.abs(y).max()
    np.testing.assert_allclose(sf.read(tmp_path / "o.wav")[0], y, atol=1e-6)
    refused = cli_fast("filter", "-", "--normalize-output", "-o", "-",
                       input=wav_bytes(x, 16_000))
    assert refused.returncode == 2 and b"--gain" in refused.stderr


def test_rate_with_audio_is_a_usage_error(cli_fast, tmp_path):
    proc = cli_fast("filter", SAMPLES / "chord.wav", "--rate", "8000", "-o", tmp_path / "o.wav")
    assert proc.returncode == 2 and b"keeps its own" in proc.stderr
    proc = cli_fast("filter", "-", "--rate", "8000", "-o", "-",
                    input=(SAMPLES / "chord.wav").read_bytes())
    assert proc.returncode == 2 and b"keeps its own" in proc.stderr


def test_any_format_libsndfile_reads_and_a_default_name_convcli_can_write(cli_fast, tmp_path,
                                                                          rng):
    x = rng.uniform(-0.5, 0.5, (8000, 2))
    for fmt, name in (("AIFF", "a.aiff"), ("MP3", "a.mp3"), ("CAF", "a.caf"), ("W64", "a.w64")):
        sf.write(tmp_path / name, x, 48_000, format=fmt)
        proc = cli_fast("filter", tmp_path / name, "--json", check=True)
        out = Path(json.loads(proc.stdout)["files"][0]["output"])
        assert out.name == name.replace(".", ".filtered.") and sf.info(out).format == fmt
    sf.write(tmp_path / "tone.mat", x, 48_000, format="MAT5")  # read, but not written
    proc = cli_fast("filter", tmp_path / "tone.mat", check=True)
    assert (tmp_path / "tone.filtered.wav").exists()
    assert b"so the result is WAV" in proc.stderr
    expected = np.stack([np.convolve(x[:, c], hann(31), "same") for c in range(2)], 1)
    np.testing.assert_allclose(sf.read(tmp_path / "tone.filtered.wav")[0], expected, atol=1e-6)


# --- real pipes --------------------------------------------------------------------------------
def bash(script: str, cwd: Path) -> subprocess.CompletedProcess:
    """``script`` in bash, with ``convcli`` meaning this checkout's ``python -m convcli``."""
    bindir = cwd / "_bin"
    bindir.mkdir(exist_ok=True)
    (bindir / "convcli").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m convcli "$@"\n')
    (bindir / "convcli").chmod(0o755)
    env = cli_env()
    env["PATH"] = f"{bindir}{os.pathsep}{env['PATH']}"
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True,
                          check=False, timeout=300)


@pytest.fixture(scope="module")
def pipes(tmp_path_factory):
    """Run the shell pipelines once (independent ones side by side); tests read what is left."""
    if SOX is None:
        pytest.skip("sox is not installed (apt-get install sox)")
    work = tmp_path_factory.mktemp("streams")
    rng = np.random.default_rng(13)
    sf.write(work / "long.wav", np.clip(rng.standard_normal((480_000, 2)) * 0.2, -1, 1),
             48_000, subtype="PCM_16")
    sf.write(work / "six.wav", np.clip(rng.standard_normal((20_000, 6)) * 0.2, -1, 1), 48_000,
             subtype="PCM_24", format="WAVEX")
    script = """
set -u
convcli window hann --size 31 -o h31.txt
# 1. readers that stop early: exit 0, nothing on stderr (a file and a pipe as the source)
cat long.wav | convcli filter - -o - 2> head1.err | head -c 1000 > head1.out; echo "${PIPESTATUS[*]}" > head1.rc &
convcli filter long.wav -o - 2> head2.err | head -c 1000 > head2.out; echo "${PIPESTATUS[*]}" > head2.rc &
# 2. SoX fir through the same pipe as convcli (a placeholder length on the way in)
sox long.wav -t raw - | sox -t raw -r 48000 -e signed -b 16 -c 2 - -t wav - 2>/dev/null \\
    | tee placeholder.wav | convcli filter - -o - 2> ours.err | sox -t wav - ours.wav 2> ours.sox.err &
wait
cat placeholder.wav | sox -D -t wav - -t wav - fir h31.txt 2>/dev/null | sox -t wav - theirs.wav &
# 3. convcli's stdout WAV (placeholder lengths) read back whole by SoX, ffmpeg and convcli
cat placeholder.wav | convcli filter - -o - -q > piped.wav &
# 4. circular padding through a pipe (spooled to a temporary file first)
cat long.wav | convcli filter - --padding circular --mode full -o - -q --method direct \\
    > circular.piped.wav &
convcli filter long.wav --padding circular --mode full -o circular.file.wav -q --method direct &
# 5. 5.1 and float: ffprobe names the layout, soxi reads them without a warning
convcli filter six.wav -o six.out.wav -q && cat six.wav | convcli filter - -o - -q > six.piped.wav &
convcli filter long.wav --subtype FLOAT -o float.out.wav -q &
cat long.wav | convcli filter - --subtype FLOAT -o - -q > float.piped.wav &
wait
sox -t wav - -n stat < piped.wav 2> piped.sox.txt
if command -v ffmpeg > /dev/null; then
  ffmpeg -v error -f wav -i - -f s16le - < piped.wav 2> piped.ff.err | wc -c > piped.ff.bytes
  for f in six.out six.piped; do
    ffprobe -v error -show_entries stream=channel_layout -of csv=p=0 $f.wav > $f.layout
  done
fi
convcli info - --json < piped.wav > piped.info.json
for f in six.out six.piped float.out float.piped; do soxi $f.wav > /dev/null 2> $f.soxi.err; done
exit 0
"""
    proc = bash(script, work)
    assert proc.returncode == 0, proc.stderr.decode()
    return work


def text(work: Path, name: str) -> str:
    return (work / name).read_text(errors="replace")


def test_readers_that_stop_early_end_the_writer_quietly(pipes):
    for n in (1, 2):
        assert text(pipes, f"head{n}.rc").split()[-2:] == ["0", "0"], text(pipes, f"head{n}.err")
        assert (pipes / f"head{n}.out").stat().st_size == 1000
        assert text(pipes, f"head{n}.err") == ""


def test_sox_fir_through_the_same_pipe_within_one_lsb(pipes):
    ours = sf.read(pipes / "ours.wav", dtype="int16")[0].astype(int)
    theirs = sf.read(pipes / "theirs.wav", dtype="int16")[0].astype(int)
    assert ours.shape == theirs.shape == (480_000, 2), text(pipes, "ours.err")
    assert np.abs(ours - theirs).max() <= 1
    assert text(pipes, "ours.sox.err") == ""  # SoX reads convcli's pipe WAV without a word


def test_stdout_wav_of_unknown_length_read_whole_by_sox_ffmpeg_and_convcli(pipes):
    read = [line for line in text(pipes, "piped.sox.txt").splitlines() if "Samples read" in line]
    assert read and read[0].split()[-1] == "960000"  # both channels of every frame
    assert json.loads(text(pipes, "piped.info.json"))["files"][0]["frames"] == 480_000
    if FFMPEG is None:
        pytest.skip("ffmpeg is not installed")
    assert int(text(pipes, "piped.ff.bytes")) == 480_000 * 4


def test_circular_padding_through_a_pipe_equals_the_file_and_numpy(pipes):
    piped = sf.read(pipes / "circular.piped.wav", dtype="int16")[0]
    filed = sf.read(pipes / "circular.file.wav", dtype="int16")[0]
    assert piped.shape == filed.shape == (480_030, 2)
    x = sf.read(pipes / "long.wav", dtype="float64")[0]
    xp = np.pad(x, ((30, 30), (0, 0)), mode="wrap")
    y = np.stack([np.convolve(xp[:, c], hann(31), "valid") for c in range(2)], 1)
    expected = np.clip(np.rint(y * 32768), -32768, 32767)
    assert np.abs(piped - expected).max() <= 1 and np.abs(filed - expected).max() <= 1


def test_surround_and_float_wavs_for_ffprobe_and_soxi(pipes):
    for name in ("six.out", "six.piped", "float.out", "float.piped"):
        assert text(pipes, f"{name}.soxi.err") == "", name
    if FFMPEG is None:
        pytest.skip("ffmpeg is not installed")
    assert text(pipes, "six.out.layout").strip() == text(pipes, "six.piped.layout").strip() \
        == "5.1"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_stream_leaves_nothing_partial(tmp_path, signum):
    """A long streamed job (a sparse 1 GiB WAV, 4096-frame blocks) killed while it writes."""
    from convcli.io import wav

    frames = (1 << 30) // 4
    head = wav.header_bytes(2, 48_000, "PCM_16", frames)
    with open(tmp_path / "sparse.wav", "wb") as handle:
        handle.write(head)
        handle.truncate(len(head) + frames * 4)
    proc = subprocess.Popen([sys.executable, "-m", "convcli", "filter", "sparse.wav", "--block",
                             "4096", "-o", "out.wav"], cwd=tmp_path, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".out.wav.*.part")) and time.monotonic() < deadline:
        time.sleep(0.05)  # the stream has begun writing its temporary output
    time.sleep(0.3)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    lines = err.decode().splitlines()
    assert proc.returncode == 128 + signum, err.decode()
    assert out == b""
    assert len(lines) == 1 and f"interrupted by {signal.Signals(signum).name}" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sparse.wav"]


def test_gsm_wav_streams_without_seeking(cli_fast, tmp_path, rng):
    """libsndfile cannot seek in GSM 6.10: the pads come from held-back samples, and circular
    padding reads the file through once for its tail."""
    sf.write(tmp_path / "gsm.wav", rng.uniform(-0.5, 0.5, 16_000), 8000, subtype="GSM610")
    x = sf.read(tmp_path / "gsm.wav", dtype="float64")[0]
    for padding, mode in (("reflect", "same"), ("circular", "full")):
        cli_fast("filter", tmp_path / "gsm.wav", "--block", "4096", "--padding", padding,
                 "--mode", mode, "--subtype", "FLOAT", "-o", tmp_path / "o.wav", check=True)
        left, right = ConvSpec(mode=mode).pads(31)
        xp = np.pad(x, (left, right), mode={"reflect": "reflect", "circular": "wrap"}[padding])
        expected = np.convolve(xp, hann(31), "valid")
        np.testing.assert_allclose(sf.read(tmp_path / "o.wav")[0], expected, atol=1e-6)


@pytest.mark.parametrize("source", ["file", "stdin"])
def test_a_stream_shows_percentage_rate_and_time_left_on_a_terminal(tmp_path, rng, monkeypatch,
                                                                     source):
    """The bar on a terminal (rich, forced here): percentage and time left where the header
    gives the length, frames done and their rate always."""
    from rich.console import Console

    from convcli import pipeline
    from convcli.render.reporter import Reporter

    data = wav_bytes(rng.uniform(-0.5, 0.5, (50_000, 2)), 8000,
                     placeholder=0 if source == "stdin" else None)
    (tmp_path / "in.wav").write_bytes(data)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    console = Console(file=io.StringIO(), force_terminal=True, width=100, color_system=None)
    report = Reporter(_console=console)

    def progress(total, description, **options):
        return report.progress(total, description, delay=0, **options)

    path = str(tmp_path / "in.wav") if source == "file" else "-"
    job = pipeline.FilterJob([path], [str(tmp_path / "out.wav")], block=500)
    pipeline.run_filter(job, progress)
    drawn = console.file.getvalue()
    assert "k frames" in drawn and "/s" in drawn, drawn
    assert ("%" in drawn and "50.0k frames" in drawn) == (source == "file"), drawn


# --- several inputs: the long ones stream one after another --------------------------------
def test_several_inputs_stream_the_long_ones_and_batch_the_rest(cli_fast, tmp_path, rng,
                                                                monkeypatch):
    """``filter a b c --out-dir d``: an input longer than ``STREAM_SAMPLES`` is never read
    whole (it streams on its own), the short ones are read whole and batched, a design is made
    once from the headers' rate; every output equals scipy's firwin + convolve."""
    from convcli import pipeline

    monkeypatch.setattr(pipeline, "STREAM_SAMPLES", 20_000)
    read_whole = []
    original = pipeline.read_signal
    monkeypatch.setattr(pipeline, "read_signal", lambda path, **kw: read_whole.append(
        Path(path).name) or original(path, **kw))
    signals = {name: rng.uniform(-0.4, 0.4, (frames, 2))
               for name, frames in [("a.wav", 5000), ("long.wav", 40_000), ("c.wav", 5000)]}
    for name, x in signals.items():
        sf.write(tmp_path / name, x, 8000, subtype="DOUBLE")
    (tmp_path / "d").mkdir()
    proc = cli_fast("filter", *(tmp_path / n for n in signals), "--out-dir", tmp_path / "d",
                    "--lowpass", "1000", "--size", "31", "--subtype", "DOUBLE", "--json",
                    check=True)
    summary = json.loads(proc.stdout)
    assert [Path(f["input"]).name for f in summary["files"]] == list(signals)
    assert summary["streamed"]["blocks"] >= 1 and summary["kernel"]["taps"] == 31
    assert sorted(read_whole) == ["a.wav", "c.wav"]
    taps = sps.firwin(31, 1000, fs=8000, window="hann")
    for name, x in signals.items():
        y = sf.read(tmp_path / "d" / name, dtype="float64", always_2d=True)[0]
        expected = np.stack([np.convolve(c, taps, "same") for c in x.T], axis=1)
        np.testing.assert_allclose(y, expected, atol=1e-6)
