"""CUDA as a user gets it: the torch engine on the GPU equals the numpy reference, in IEEE float32.

Every test here needs a GPU and skips without one. The CPU suite covers the same semantics;
these check what only a GPU can show: device-agnostic code really stays on the device, cuDNN's
TF32 default is off (float32 means float32), and the CLI's ``--device cuda`` / ``auto`` paths
(whole signal, streaming, jacobian, grad) give the CPU's numbers.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import SAMPLES
from reference import reference_conv

from convcli.core.spec import ConvSpec
from convcli.engines.torch_backend import conv1d

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
CUDA = torch.device("cuda")


def scale(x: np.ndarray, w: np.ndarray) -> float:
    """The size of an output sample: max|x| · Σ|w| over output channels."""
    return float(np.abs(x).max() * np.abs(w).reshape(w.shape[0], -1).sum(-1).max())


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_mixing_kernel_float32_is_ieee_not_tf32(method):
    """A channel-mixing kernel runs through cuDNN: with TF32 on it errs ~1e-3, float32 ~1e-7."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 8, 4096))
    w = rng.standard_normal((16, 8, 31))
    spec = ConvSpec(mode="same")
    got = conv1d(torch.tensor(x, dtype=torch.float32, device=CUDA),
                 torch.tensor(w, dtype=torch.float32, device=CUDA), spec, method)
    assert got.device.type == "cuda"
    expected = reference_conv(x, w, groups=1, mode="same")
    error = np.abs(got.cpu().double().numpy() - expected).max() / scale(x, w)
    assert error < 2e-6, error


@pytest.mark.parametrize("seed", range(6))
def test_long_signals_every_method_match_reference(seed):
    """Long signals take the chunked paths (GEMM blocks, overlap-save frames) on the GPU."""
    rng = np.random.default_rng(seed)
    channels = int(rng.integers(1, 4))
    k = int(rng.choice([1, 4, 31, 257, 2048]))
    options = {"mode": str(rng.choice(["same", "valid", "full", "causal"])),
               "padding": str(rng.choice(["zeros", "reflect", "replicate", "circular"])),
               "stride": int(rng.integers(1, 4)), "dilation": int(rng.integers(1, 3)),
               "correlate": bool(rng.integers(0, 2))}
    x = rng.standard_normal((2, channels, 300_000))
    w = rng.standard_normal((channels, 1, k))
    spec = ConvSpec(groups=channels, **options)
    expected = reference_conv(x, w, groups=channels, **options)
    for method in ("auto", "direct", "fft"):
        for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 2e-6)):
            got = conv1d(torch.tensor(x, dtype=dtype, device=CUDA),
                         torch.tensor(w, dtype=dtype, device=CUDA), spec, method)
            assert got.device.type == "cuda" and got.dtype == dtype
            error = np.abs(got.cpu().double().numpy() - expected).max() / scale(x, w)
            assert error < tol * np.log2(max(k, 2)), (options, k, method, dtype, error)


def test_gradients_stay_on_the_device_and_match_float64_cpu():
    rng = np.random.default_rng(2)
    spec = ConvSpec(mode="same", padding="reflect", stride=2, groups=2)
    x64 = torch.tensor(rng.standard_normal((1, 2, 5000)), requires_grad=True)
    w64 = torch.tensor(rng.standard_normal((2, 1, 63)), requires_grad=True)
    xg = x64.detach().to(CUDA).requires_grad_()
    wg = w64.detach().to(CUDA).requires_grad_()
    for method in ("direct", "fft"):
        (conv1d(x64, w64, spec, method) ** 2).sum().backward()
        (conv1d(xg, wg, spec, method) ** 2).sum().backward()
        assert xg.grad.device.type == wg.grad.device.type == "cuda"
        np.testing.assert_allclose(xg.grad.cpu().numpy(), x64.grad.numpy(), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(wg.grad.cpu().numpy(), w64.grad.numpy(), rtol=1e-9, atol=1e-9)
        for t in (x64, w64, xg, wg):
            t.grad = None


def test_cli_filter_on_cuda_equals_cpu_within_one_lsb(cli_fast, tmp_path):
    for device in ("cuda", "cpu"):
        proc = cli_fast("filter", SAMPLES / "chord.wav", "-o", tmp_path / f"{device}.wav",
                        "--window", "hann", "--size", "255", "--device", device, "--json")
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        assert report["device"].startswith(device)
    gpu, _ = sf.read(tmp_path / "cuda.wav", dtype="int16")
    cpu, _ = sf.read(tmp_path / "cpu.wav", dtype="int16")
    assert gpu.shape == cpu.shape
    assert np.abs(gpu.astype(int) - cpu.astype(int)).max() <= 1


def test_cli_auto_device_picks_cuda(cli_fast, tmp_path):
    proc = cli_fast("filter", SAMPLES / "batch.npy", "-o", tmp_path / "y.npy", "--size", "31",
                    "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["device"].startswith("cuda") and report["engine"] == "torch"


@pytest.mark.parametrize("padding", ["zeros", "reflect", "circular"])
def test_cli_streaming_on_cuda_equals_whole_signal_on_cpu(cli_fast, tmp_path, padding):
    common = ["--kernel", str(tmp_path / "k.npy"), "--padding", padding, "--stride", "3",
              "--subtype", "FLOAT"]
    rng = np.random.default_rng(9)
    np.save(tmp_path / "k.npy", rng.standard_normal(1001) / 30)
    sf.write(tmp_path / "x.wav", rng.standard_normal((200_000, 2)) * 0.1, 48_000, "FLOAT")
    streamed = cli_fast("filter", tmp_path / "x.wav", "-o", tmp_path / "s.wav", *common,
                        "--block", "7777", "--device", "cuda")
    whole = cli_fast("filter", tmp_path / "x.wav", "-o", tmp_path / "w.wav", *common,
                     "--device", "cpu", "--dtype", "float64")
    assert streamed.returncode == 0 and whole.returncode == 0, streamed.stderr + whole.stderr
    a, _ = sf.read(tmp_path / "s.wav")
    b, _ = sf.read(tmp_path / "w.wav")
    assert a.shape == b.shape
    assert np.abs(a - b).max() < 1e-5


@pytest.mark.parametrize("wrt", ["input", "kernel"])
def test_cli_jacobian_and_grad_check_on_cuda(cli_fast, tmp_path, wrt):
    proc = cli_fast("jacobian", "--length", "64", "--size", "5", "--mode", "causal", "--wrt", wrt,
                    "--check", "--device", "cuda", "--json", "-o", tmp_path / "J.npy")
    assert proc.returncode == 0, proc.stderr
    matrix = np.load(tmp_path / "J.npy")
    assert matrix.shape[0] == 64
    grads = {}
    for device in ("cuda", "cpu"):
        out = tmp_path / f"g_{wrt}_{device}.npy"
        proc = cli_fast("grad", SAMPLES / "chord.wav", "--wrt", wrt, "--device", device,
                        "--dtype", "float64", "--loss", "energy", "-o", out, "--size", "9", "-q")
        assert proc.returncode == 0, proc.stderr
        grads[device] = np.load(out)
    np.testing.assert_allclose(grads["cuda"], grads["cpu"], rtol=1e-9, atol=1e-12)


def test_stream_blocks_pinned_copied_asynchronously_and_back():
    """The torch engine's host side of a stream on a GPU: blocks read into pinned memory go to
    the device without a synchronous copy, outputs come back through pinned memory."""
    from convcli.engines.torch_backend import ENGINE

    rows = ENGINE.host_buffer((1, 2, 1000), "float32", "cuda")
    rows[...] = np.arange(2000, dtype=np.float32).reshape(1, 2, 1000)
    assert ENGINE._pinned[rows.ctypes.data].is_pinned()
    x = ENGINE.upload(rows, "cuda")
    assert x.is_cuda and rows.ctypes.data not in ENGINE._pinned
    back = ENGINE.host(ENGINE.download(x * 2))
    np.testing.assert_array_equal(back, rows * 2)


@pytest.mark.parametrize("padding", ["zeros", "reflect", "circular"])
def test_cli_stdin_to_stdout_on_cuda_equals_the_cpu(cli_fast, tmp_path, padding):
    """A pipe of unknown length (a placeholder header) streamed on the GPU."""
    rng = np.random.default_rng(11)
    np.save(tmp_path / "k.npy", rng.standard_normal(4001) / 60)
    buffer = io.BytesIO()
    sf.write(buffer, rng.standard_normal((150_000, 2)) * 0.1, 48_000, "FLOAT", format="WAV")
    data = bytearray(buffer.getvalue())
    at = data.find(b"data")
    data[at + 4 : at + 8] = (0xFFFFFFFF).to_bytes(4, "little")
    common = ["-", "-o", "-", "--kernel", str(tmp_path / "k.npy"), "--padding", padding,
              "--mode", "full", "--block", "20000", "-q"]
    gpu = cli_fast("filter", *common, "--device", "cuda", input=bytes(data), check=True).stdout
    cpu = cli_fast("filter", *common, "--device", "cpu", "--dtype", "float64",
                   input=bytes(data), check=True).stdout
    a = sf.read(io.BytesIO(gpu))[0]
    b = sf.read(io.BytesIO(cpu))[0]
    assert a.shape == b.shape == (154_000, 2)
    assert np.abs(a - b).max() < 1e-5


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_explicit_pads_bias_and_a_zero_batch_on_the_device(method):
    """--pad/--bias on the GPU equal F.conv1d there; a zero batch gives torch's shape."""
    import torch.nn.functional as F

    import convcli

    rng = np.random.default_rng(8)
    x = torch.tensor(rng.standard_normal((2, 4, 5000)), device=CUDA)
    w = torch.tensor(rng.standard_normal((6, 2, 9)), device=CUDA, requires_grad=True)
    b = torch.tensor(rng.standard_normal(6), device=CUDA, requires_grad=True)
    got = convcli.conv1d(x, w, pad=(3, 7), padding="reflect", groups=2, correlate=True,
                         dilation=2, bias=b, method=method)
    expected = F.conv1d(F.pad(x, (3, 7), mode="reflect"), w, b, groups=2, dilation=2)
    assert got.device.type == "cuda"
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)
    got.sum().backward()
    assert b.grad.device.type == "cuda"
    torch.testing.assert_close(b.grad, torch.full_like(b, expected.shape[0] * expected.shape[-1]))
    empty = convcli.conv1d(x[:0], w.detach(), mode="valid", groups=2, correlate=True, method=method)
    assert empty.shape == (0, 6, 4992) and empty.device.type == "cuda"
