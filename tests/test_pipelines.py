"""convcli in real shell pipelines: stdin/stdout, SoX on both ends, closed pipes, window | filter.

Every pipeline runs for real through ``bash -c`` (one script, commands in parallel where they
are independent, since each filter pays the torch import). Results are checked against the
file-based run and against scipy. SoX is needed for the SoX legs (skipped with a reason
without it); ffmpeg is tried too where installed.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import ROOT, SAMPLES, cli_env
from scipy import signal as sps

from convcli.io.wav import fix_wav_lengths

SOX = shutil.which("sox")
FFMPEG = shutil.which("ffmpeg")
needs_sox = pytest.mark.skipif(SOX is None, reason="sox is not installed (apt-get install sox)")


def bash(script: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``script`` in bash with ``convcli`` meaning this checkout's ``python -m convcli``."""
    bindir = cwd / "_bin"
    bindir.mkdir(exist_ok=True)
    wrapper = bindir / "convcli"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m convcli "$@"\n')
    wrapper.chmod(0o755)
    env = cli_env()
    env["PATH"] = f"{bindir}{os.pathsep}{env['PATH']}"
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, check=False,
                          timeout=300)


def read_pcm16(path: Path) -> tuple[np.ndarray, int]:
    data, rate = sf.read(path, dtype="int16", always_2d=True)
    return data, rate


def scipy_same(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Reference: zero-padded 'same' convolution along time of x[T, C], rounded to int16."""
    y = np.stack([sps.convolve(x[:, c], w, mode="same") for c in range(x.shape[1])], axis=1)
    return np.clip(np.rint(y * 32768), -32768, 32767).astype(np.int16)


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory):
    """Run every pipeline once; tests below inspect the files and stderr it left."""
    if SOX is None:
        pytest.skip("sox is not installed (apt-get install sox)")
    work = tmp_path_factory.mktemp("pipes")
    for name in ("chord.wav", "speech.wav", "batch.npy"):
        shutil.copy(SAMPLES / name, work / name)
    win = "--window kaiser:6 --size 21 --method direct"
    script = f"""
set -u
# 1. SoX -> convcli -> SoX. The raw leg makes SoX write a WAV header of unknown length
#    (it cannot seek back in a pipe), which convcli must read to the end of the stream.
sox chord.wav -t raw - | sox -t raw -r 44100 -e signed -b 16 -c 2 - -t wav - 2> sox_in.err \\
    | convcli filter - -o - {win} 2> p1.err | sox -t wav - p1.wav 2> sox_out.err &
# 2. the same filter on the file (streamed in the blocks stdin is read in: the same sums),
#    with the window's coefficients piped in as the kernel
( convcli window kaiser:6 --size 21 | convcli filter chord.wav --kernel - --method direct --block 65536 -o k1.wav ) 2> k1.err &
# 4. NPY through stdin/stdout, JSON summary on stderr since stdout carries the data
convcli filter - --format npy -o - --json < batch.npy > y.npy 2> y.json &
# 5. a closed pipe: the reader takes 100 bytes and leaves
convcli filter chord.wav -o - 2> head.err | head -c 100 > head.out; echo "${{PIPESTATUS[*]}}" > head.rc &
wait
# 6. ffmpeg where installed: its pipe WAV into convcli, convcli's pipe WAV into ffmpeg
if command -v ffmpeg > /dev/null; then
  ffmpeg -loglevel error -i speech.wav -f wav - | convcli info - --json > ff.json
  cat k1.wav | ffmpeg -loglevel error -f wav -i - -f wav - | convcli info - --json > ff2.json
fi
exit 0
"""
    proc = bash(script, work)
    assert proc.returncode == 0, proc.stderr.decode()
    return work


def _err(work: Path, name: str) -> str:
    return (work / name).read_text(errors="replace")


@needs_sox
def test_sox_stream_with_unknown_length_equals_file_run_and_scipy(pipelines):
    work = pipelines
    assert (work / "p1.wav").exists(), _err(work, "p1.err") + _err(work, "sox_out.err")
    assert "header will be wrong" in _err(work, "sox_in.err")  # the bogus length is really there
    piped, rate = read_pcm16(work / "p1.wav")
    filed, rate2 = read_pcm16(work / "k1.wav")  # file in, file out
    assert rate == rate2 == 44100
    assert piped.shape == filed.shape == (88200, 2)  # read to the end: every frame came through
    np.testing.assert_array_equal(piped, filed)
    x, _ = sf.read(SAMPLES / "chord.wav", dtype="float64", always_2d=True)
    w = sps.get_window(("kaiser", 6.0), 21, fftbins=False)
    expected = scipy_same(x, w / w.sum())
    assert np.max(np.abs(filed.astype(int) - expected)) <= 1  # float32 compute, 1 LSB
    assert "\x1b" not in _err(work, "p1.err")  # no escape codes when stderr is not a terminal


@needs_sox
def test_window_piped_as_kernel_equals_window_option(pipelines):
    """k1 (``window | filter --kernel -``) equals p1 (``--window``) sample for sample; p1 went
    through SoX on both sides, so the two runs share nothing but the coefficients' values."""
    work = pipelines
    assert (work / "k1.wav").exists(), _err(work, "k1.err")
    np.testing.assert_array_equal(read_pcm16(work / "k1.wav")[0], read_pcm16(work / "p1.wav")[0])


@needs_sox
def test_npy_through_stdin_and_stdout_with_json_on_stderr(pipelines):
    work = pipelines
    y = np.load(work / "y.npy")
    x = np.load(SAMPLES / "batch.npy").astype(np.float64)
    w = sps.get_window("hann", 31, fftbins=False)
    ref = np.apply_along_axis(lambda r: sps.convolve(r, w / w.sum(), mode="same"), -1, x)
    np.testing.assert_allclose(y, ref, atol=1e-5)
    summary = json.loads(_err(work, "y.json"))
    assert summary["command"] == "filter"
    for key in ("method", "reason", "device", "dtype", "seconds", "timings", "clipped", "spec"):
        assert key in summary, key
    assert summary["spec"]["pads"] == [15, 15]
    assert summary["files"][0]["shape_in"] == summary["files"][0]["shape_out"] == [4, 2, 8000]
    assert set(summary["timings"]) == {"read", "compute", "write"}


@needs_sox
def test_closed_pipe_ends_quietly(pipelines):
    work = pipelines
    assert (work / "head.rc").read_text().split() == ["0", "0"]
    assert (work / "head.out").stat().st_size == 100
    assert _err(work, "head.err") == ""


@needs_sox
def test_wav_written_to_a_pipe_reads_back_in_sox(pipelines):
    """convcli's stdout WAV went straight into ``sox -t wav -`` in pipeline 1: no complaint."""
    assert _err(pipelines, "sox_out.err") == ""


@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed")
def test_ffmpeg_legs(pipelines):
    work = pipelines
    assert json.loads((work / "ff.json").read_text())["files"][0]["frames"] == 78000
    assert json.loads((work / "ff2.json").read_text())["files"][0]["frames"] == 88200


# --- the header repair itself, on the bogus lengths pipe writers leave ------------------------
def _stream_wav(frames: np.ndarray, rate: int, subtype: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, frames, rate, subtype=subtype, format="WAV")
    return buf.getvalue()


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
@pytest.mark.parametrize("riff", [0, 0xFFFFFFFF])
@pytest.mark.parametrize("data_size", [0, 0xFFFFFFFF, 0x7FFFF000])
def test_bogus_wav_lengths_read_to_the_end(rng, subtype, riff, data_size):
    frames = rng.uniform(-0.5, 0.5, size=(1234, 2))
    good = _stream_wav(frames, 8000, subtype)
    pos = good.find(b"data")
    bad = bytearray(good)
    bad[4:8] = struct.pack("<I", riff)
    bad[pos + 4 : pos + 8] = struct.pack("<I", data_size)
    fixed = fix_wav_lengths(bytes(bad))
    back, _ = sf.read(io.BytesIO(fixed), always_2d=True)
    assert back.shape == frames.shape
    np.testing.assert_array_equal(back, sf.read(io.BytesIO(good), always_2d=True)[0])


def test_honest_wav_headers_are_untouched(rng):
    good = _stream_wav(rng.uniform(-0.5, 0.5, size=(100, 1)), 8000, "PCM_16")
    assert fix_wav_lengths(good) is good
    empty_then_list = (b"RIFF" + struct.pack("<I", 4 + 24 + 8 + 8 + 4) + b"WAVE"
                       + good[12:36] + b"data" + struct.pack("<I", 0)
                       + b"LIST" + struct.pack("<I", 4) + b"INFO")
    assert fix_wav_lengths(empty_then_list) == empty_then_list


def test_sox_written_pipe_header_is_what_we_repair():
    """Guard the premise: SoX really writes a placeholder length when it cannot seek."""
    if SOX is None:
        pytest.skip("sox is not installed")
    raw = np.zeros(800, dtype="<i2").tobytes()
    proc = subprocess.run(
        f"{SOX} -t raw -r 8000 -e signed -b 16 -c 1 - -t wav - 2>/dev/null | cat",
        shell=True, input=raw, capture_output=True, cwd=ROOT, check=False, timeout=60)
    head = proc.stdout
    size = struct.unpack("<I", head[head.find(b"data") + 4 : head.find(b"data") + 8])[0]
    assert size > len(head)  # a bogus length, not the 1600 bytes that are there
    assert sf.read(io.BytesIO(fix_wav_lengths(head)))[0].shape == (800,)
