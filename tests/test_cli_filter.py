"""`convcli filter` as a user runs it, checked against scipy and SoX."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
from conftest import SAMPLES
from reference import reference_conv

HANN31 = scipy.signal.get_window("hann", 31, fftbins=False)
HANN31 /= HANN31.sum()


def test_default_filter_writes_beside_input_keeping_rate_and_subtype(cli, tmp_path):
    src = tmp_path / "chord.wav"
    shutil.copy(SAMPLES / "chord.wav", src)
    before = src.read_bytes()
    proc = cli("filter", src, "--window", "hann", "--size", "31", check=True)
    out = tmp_path / "chord.filtered.wav"
    assert out.exists() and src.read_bytes() == before
    assert b"wrote" in proc.stderr and proc.stdout == b""
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.subtype) == (44100, 2, "PCM_16")
    x, _ = sf.read(src, dtype="float64", always_2d=True)
    y, _ = sf.read(out, dtype="int32", always_2d=True)
    exact = np.stack([scipy.signal.convolve(x[:, c], HANN31, mode="same") for c in range(2)], 1)
    # rounded to nearest (not truncated): within 1 LSB, and equal almost everywhere
    diff = np.abs(y // 65536 - np.rint(exact * 32768))
    assert diff.max() <= 1 and np.mean(diff == 0) > 0.999


def test_npy_every_option_against_reference(cli_fast, tmp_path, rng):
    x = rng.standard_normal((3, 2, 200))
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "k.txt").write_text("0.5\n-1\n2\n0.25\n")
    k = np.array([0.5, -1, 2, 0.25])
    proc = cli_fast("filter", tmp_path / "x.npy", "--kernel", tmp_path / "k.txt", "--mode", "full",
               "--padding", "reflect", "--stride", "3", "--dilation", "2", "--correlate",
               "--method", "fft", "-o", tmp_path / "y.npy", "--json", check=True)
    summary = json.loads(proc.stdout)
    assert summary["method"] == "fft" and summary["dtype"] == "float64"
    assert summary["spec"]["pads"] == [6, 6]
    y = np.load(tmp_path / "y.npy")
    expected = reference_conv(x, np.broadcast_to(k, (2, 1, 4)), groups=2, mode="full",
                              padding="reflect", stride=3, dilation=2, correlate=True)
    assert y.dtype == np.float64 and y.shape == expected.shape
    np.testing.assert_allclose(y, expected, atol=1e-12)


def test_several_inputs_out_dir_batch_and_layout(cli_fast, tmp_path, rng):
    a, b = rng.standard_normal((2, 300)), rng.standard_normal((2, 300))
    c = rng.standard_normal(77).astype(np.float32)
    for name, arr in [("a", a), ("b", b), ("c", c)]:
        np.save(tmp_path / f"{name}.npy", arr)
    (tmp_path / "out").mkdir()
    kernel = np.array([[1.0, 2.0, 3.0], [0.0, 1.0, -1.0]])  # (C, k): one kernel per channel
    np.save(tmp_path / "k.npy", kernel)
    proc = cli_fast("filter", *(tmp_path / f"{n}.npy" for n in "ab"), "--kernel", tmp_path / "k.npy",
               "--mode", "causal", "--out-dir", tmp_path / "out", "--json", check=True)
    summary = json.loads(proc.stdout)
    assert summary["batches"] == 1 and len(summary["files"]) == 2
    for name, arr in [("a", a), ("b", b)]:
        y = np.load(tmp_path / "out" / f"{name}.npy")
        assert y.shape == (2, 300)  # (C, T) in, (C, T) out
        for ch in range(2):
            np.testing.assert_allclose(y[ch], scipy.signal.lfilter(kernel[ch], 1, arr[ch]), atol=1e-12)
    cli_fast("filter", tmp_path / "c.npy", "--window", "kaiser:6", "--size", "9", "--periodic",
        "--normalize", "peak", "-o", tmp_path / "c.out.npy", check=True)
    w = scipy.signal.get_window(("kaiser", 6.0), 9, fftbins=True)
    got = np.load(tmp_path / "c.out.npy")
    assert got.shape == (77,) and got.dtype == np.float32
    np.testing.assert_allclose(got, np.convolve(c, w / w.max(), mode="same"), atol=1e-5)


def test_mixing_kernel_gives_o_channels(cli_fast, tmp_path):
    weight = np.load(SAMPLES / "conv1d_2x16x3.npy")
    cli_fast("filter", SAMPLES / "chord.wav", "--kernel", SAMPLES / "conv1d_2x16x3.npy", "--correlate",
        "--mode", "valid", "-o", tmp_path / "bank.npy", check=True)
    x, _ = sf.read(SAMPLES / "chord.wav", dtype="float32", always_2d=True)
    y = np.load(tmp_path / "bank.npy")
    expected = reference_conv(x.T[None].astype(np.float64), weight.astype(np.float64), groups=1,
                              mode="valid", correlate=True)[0]
    assert y.shape == (16, x.shape[0] - 2)
    np.testing.assert_allclose(y, expected, atol=1e-5)


@pytest.mark.skipif(shutil.which("sox") is None, reason="SoX is not installed")
def test_same_mode_matches_sox_fir(cli, tmp_path):
    """SoX `fir` compensates the delay: it equals zero-padded `same` convolution (odd kernel)."""
    coeffs = scipy.signal.firwin(41, 3000, fs=44100)
    (tmp_path / "c.txt").write_text("\n".join(repr(float(v)) for v in coeffs) + "\n")
    subprocess.run(["sox", "-D", SAMPLES / "chord.wav", tmp_path / "sox.wav", "fir",
                    tmp_path / "c.txt"], check=True)
    cli("filter", SAMPLES / "chord.wav", "--kernel", tmp_path / "c.txt", "-o", tmp_path / "us.wav",
        check=True)
    ours, _ = sf.read(tmp_path / "us.wav", dtype="int16")
    theirs, _ = sf.read(tmp_path / "sox.wav", dtype="int16")
    assert ours.shape == theirs.shape
    assert np.abs(ours.astype(int) - theirs).max() <= 1


def test_refusals(cli_fast, tmp_path):
    np.save(tmp_path / "x.npy", np.ones(10))
    proc = cli_fast("filter", tmp_path / "x.npy", "--mode", "valid", "--size", "31")
    assert proc.returncode == 1 and proc.stderr.startswith(b"error: kernel span 31")
    assert proc.stderr.count(b"\n") == 1 and not (tmp_path / "x.filtered.npy").exists()
    proc = cli_fast("filter", tmp_path / "x.npy", "-o", tmp_path / "x.npy")
    assert proc.returncode == 2 and b"also an input" in proc.stderr
    proc = cli_fast("filter", tmp_path / "x.npy", "--stride", "0")
    assert proc.returncode == 2 and proc.stderr.startswith(b"error:")
    proc = cli_fast("filter", tmp_path / "x.npy", "--device", "cuda")
    import torch

    if not torch.cuda.is_available():
        assert proc.returncode == 1 and b"CUDA" in proc.stderr


def test_stride_divides_the_rate(cli_fast, tmp_path):
    """Keeping every 3rd sample of 44.1 kHz audio is 14.7 kHz audio, and the samples are y[::3]."""
    cli_fast("filter", SAMPLES / "chord.wav", "--stride", "3", "--subtype", "FLOAT",
             "-o", tmp_path / "s3.wav", check=True)
    y, rate = sf.read(tmp_path / "s3.wav", dtype="float64")
    x, _ = sf.read(SAMPLES / "chord.wav", dtype="float64")
    assert rate == 14700
    expected = scipy.signal.convolve(x[:, 0], HANN31, mode="same")[::3]
    np.testing.assert_allclose(y[:, 0], expected, atol=1e-6)


@pytest.mark.parametrize("method", ["auto", "direct", "fft"])
def test_a_zero_batch_npy_gives_the_torch_shape(cli_fast, tmp_path, method):
    """A (0, C, T) NPY is a batch of no signals, not "an empty array": (0, O, T_out) out, as
    torch.nn.Conv1d(4, 5, 3) gives (0, 5, 8) for (0, 4, 10)."""
    import torch

    np.save(tmp_path / "x.npy", np.zeros((0, 4, 10)))
    weight = np.random.default_rng(0).standard_normal((5, 4, 3))
    np.save(tmp_path / "w.npy", weight)
    expected = torch.nn.functional.conv1d(torch.zeros(0, 4, 10, dtype=torch.float64),
                                          torch.from_numpy(weight))
    proc = cli_fast("filter", tmp_path / "x.npy", "--kernel", tmp_path / "w.npy", "--mode",
                    "valid", "--correlate", "--method", method, "-o", tmp_path / "y.npy",
                    "--json", check=True)
    y = np.load(tmp_path / "y.npy")
    assert y.shape == tuple(expected.shape) == (0, 5, 8) and y.dtype == np.float64
    assert json.loads(proc.stdout)["files"][0]["shape_out"] == [0, 5, 8]
    cli_fast("filter", tmp_path / "x.npy", "--size", "5", "-o", tmp_path / "d.npy", check=True)
    assert np.load(tmp_path / "d.npy").shape == (0, 4, 10)
