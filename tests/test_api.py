"""The public API against independent references: ``convcli.conv1d`` with numpy inputs against
numpy/scipy (tests/reference.py), with torch inputs against ``torch.nn.functional.conv1d`` after
``F.pad`` (values and gradients), on random options; ``convcli.filter_file`` against scipy."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import torch
import torch.nn.functional as F
from conftest import cli_env
from reference import reference_conv, spec_pads

import convcli

MODES = ("same", "valid", "full", "causal")
PADDINGS = ("zeros", "reflect", "replicate", "circular")
TORCH_PAD = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate",
             "circular": "circular"}


def random_case(rng):
    """Options, a signal [B, C, T] and a kernel in one of its three shapes (with its [O, C/G, k])."""
    stride, dilation = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    correlate = bool(rng.integers(2))
    mode, padding = MODES[rng.integers(4)], PADDINGS[rng.integers(4)]
    batch, channels, k = int(rng.integers(1, 4)), int(rng.choice([1, 2, 4])), int(rng.integers(1, 8))
    n = int(rng.integers(3 * dilation * k + 5, 120))
    shape = int(rng.integers(3))
    groups = 1
    if shape == 0:
        kernel = rng.standard_normal(k)
        full = np.broadcast_to(kernel, (channels, 1, k))
        groups_run = channels
    elif shape == 1:
        kernel = rng.standard_normal((channels, k))
        full = kernel[:, None, :]
        groups_run = channels
    else:
        groups = int(rng.choice([g for g in (1, 2, 4) if channels % g == 0]))
        out_channels = groups * int(rng.integers(1, 3))
        kernel = rng.standard_normal((out_channels, channels // groups, k))
        full = kernel
        groups_run = groups
    options = {"mode": mode, "padding": padding, "stride": stride, "dilation": dilation,
               "correlate": correlate}
    x = rng.standard_normal((batch, channels, n))
    return options, groups, x, kernel, np.ascontiguousarray(full), groups_run


def torch_reference(x, weight_full, groups_run, options):
    """F.conv1d of the explicitly padded signal: what PyTorch users would write by hand."""
    k = weight_full.shape[-1]
    span = options["dilation"] * (k - 1) + 1
    left, right = spec_pads(options["mode"], span, options["correlate"])
    w = weight_full if options["correlate"] else weight_full.flip(-1)
    padded = F.pad(x, (left, right), mode=TORCH_PAD[options["padding"]])
    return F.conv1d(padded, w, stride=options["stride"], dilation=options["dilation"],
                    groups=groups_run)


@pytest.mark.parametrize("seed", range(40))
def test_numpy_inputs_equal_the_scipy_reference(seed):
    rng = np.random.default_rng(seed)
    options, groups, x, kernel, full, groups_run = random_case(rng)
    expected = reference_conv(x, full, groups_run, **options)
    for dtype, tol in ((np.float64, 1e-10), (np.float32, 2e-4)):
        for method in ("auto", "direct", "fft"):
            got = convcli.conv1d(x.astype(dtype), kernel, groups=groups, method=method, **options)
            assert isinstance(got, np.ndarray) and got.dtype == dtype
            np.testing.assert_allclose(got, expected, atol=tol * max(1, np.abs(expected).max()),
                                       err_msg=f"{options} groups={groups} {method} {dtype}")


@pytest.mark.parametrize("seed", range(40))
def test_torch_inputs_equal_fconv1d_and_their_gradients(seed):
    rng = np.random.default_rng(1000 + seed)
    options, groups, x_np, kernel_np, _, groups_run = random_case(rng)
    x = torch.tensor(x_np, requires_grad=True)
    kernel = torch.tensor(kernel_np, requires_grad=True)
    method = ("auto", "direct", "fft")[seed % 3]
    got = convcli.conv1d(x, kernel, groups=groups, method=method, **options)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    x_ref = x.detach().clone().requires_grad_()
    kernel_ref = kernel.detach().clone().requires_grad_()
    if kernel_ref.ndim == 1:
        full = kernel_ref.expand(x_np.shape[1], 1, -1)
    elif kernel_ref.ndim == 2:
        full = kernel_ref[:, None, :]
    else:
        full = kernel_ref
    expected = torch_reference(x_ref, full, groups_run, options)
    case = f"{options} groups={groups} {method}"
    torch.testing.assert_close(got, expected, atol=1e-9, rtol=1e-9, msg=case)
    upstream = torch.randn_like(expected)
    (got * upstream).sum().backward()
    (expected * upstream).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-9, rtol=1e-9, msg=case)
    torch.testing.assert_close(kernel.grad, kernel_ref.grad, atol=1e-9, rtol=1e-9, msg=case)


def test_shapes_follow_the_input():
    """[T] -> [T_out], [C, T] -> [O, T_out], [B, C, T] -> [B, O, T_out]; float32 stays."""
    x = np.random.default_rng(0).standard_normal(50)
    w = np.hanning(7)
    assert convcli.conv1d(x, w).shape == (50,)
    np.testing.assert_allclose(convcli.conv1d(x, w, mode="full"), np.convolve(x, w), atol=1e-12)
    np.testing.assert_allclose(convcli.conv1d(x, w, mode="causal"),
                               scipy.signal.lfilter(w, 1, x), atol=1e-12)
    stereo = np.stack([x, -x]).astype(np.float32)
    y = convcli.conv1d(stereo, w, mode="valid")
    assert y.shape == (2, 44) and y.dtype == np.float32
    np.testing.assert_allclose(y[1], -np.convolve(x, w, "valid"), atol=1e-5)
    bank = np.random.default_rng(1).standard_normal((16, 2, 3))  # Conv1d(2, 16, 3) on 64 samples
    assert convcli.conv1d(np.zeros((1, 2, 64)), bank, mode="valid", correlate=True).shape == (1, 16, 62)
    xt = torch.from_numpy(x)
    assert convcli.conv1d(xt, torch.from_numpy(w)).shape == (50,)
    assert convcli.conv1d(xt[None], w).shape == (1, 50)  # a numpy kernel with a tensor signal


def test_a_batch_convolved_with_a_hann_window_keeps_its_graph():
    """The question behind the API: a differentiable signal * window convolution."""
    x = torch.randn(8, 2, 400, dtype=torch.float64, requires_grad=True)
    window = torch.hann_window(31, periodic=False, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, b: convcli.conv1d(a, b, padding="reflect"), (x[:2, :, :64], window))
    y = convcli.conv1d(x, window / window.sum())
    assert y.grad_fn is not None
    y.square().sum().backward()
    assert x.grad.shape == x.shape and window.grad.shape == window.shape


def test_bad_arguments_are_value_errors():
    x = np.zeros(10)
    for kwargs, match in (({"mode": "vaild"}, "--mode"), ({"stride": 0}, "--stride"),
                          ({"groups": 2}, "--groups")):
        with pytest.raises(ValueError, match=match):
            convcli.conv1d(x, np.ones(3), **kwargs)
    with pytest.raises(ValueError, match="longer than the signal"):
        convcli.conv1d(x, np.ones(11), mode="valid")
    with pytest.raises(ValueError, match="dimensions"):
        convcli.conv1d(np.zeros((1, 1, 1, 10)), np.ones(3))


def test_filter_file_equals_scipy(tmp_path):
    rng = np.random.default_rng(2)
    data = rng.uniform(-0.4, 0.4, (8000, 2))
    wav = tmp_path / "in.wav"
    sf.write(wav, data, 16_000, subtype="FLOAT")
    result = convcli.filter_file(wav, tmp_path / "out.wav", window="blackman", size=25)
    got, rate = sf.read(tmp_path / "out.wav", dtype="float64")
    w = scipy.signal.get_window("blackman", 25, fftbins=False)
    expected = scipy.signal.convolve(data.astype(np.float32).astype(np.float64), w[:, None] / w.sum(),
                                     mode="same")
    assert rate == 16_000 and got.shape == (8000, 2)
    np.testing.assert_allclose(got, expected, atol=2e-6)
    summary = result.summary()
    assert summary["kernel"] == {"source": "blackman", "taps": 25, "shape": [25]}
    assert summary["files"][0]["output"] == str(tmp_path / "out.wav")
    taps = np.array([0.25, 0.5, 0.25])
    convcli.filter_file(wav, tmp_path / "k.npy", kernel=taps, mode="causal")
    np.testing.assert_allclose(np.load(tmp_path / "k.npy")[:, :],
                               scipy.signal.lfilter(taps, 1, data.astype(np.float32), axis=0).T,
                               atol=1e-6)
    convcli.filter_file(wav, tmp_path / "lp.wav", lowpass=2000.0, size=63)
    lp = sf.read(tmp_path / "lp.wav", dtype="float64")[0]
    h = scipy.signal.firwin(63, 2000.0, window="hann", fs=16_000)
    np.testing.assert_allclose(lp, scipy.signal.convolve(data.astype(np.float32), h[:, None],
                                                         mode="same"), atol=2e-6)


def test_importing_convcli_imports_neither_torch_nor_typer():
    code = ("import sys, convcli; convcli.conv1d([1.0, 2.0, 3.0], [1.0]);"
            "assert 'torch' not in sys.modules and 'typer' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, env=cli_env(), timeout=120)


@pytest.mark.parametrize("method", ["auto", "direct", "fft"])
def test_a_zero_batch_gives_the_torch_shape_and_gradients(method):
    """torch's own zero_batch case (common_nn's Conv1d(4, 5, 3) on (0, 4, 10) -> (0, 5, 8)),
    with numpy arrays and tensors, mixing and depthwise kernels, every method."""
    x = torch.zeros(0, 4, 10, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 4, 3, dtype=torch.float64, requires_grad=True)
    expected = F.conv1d(x, w)
    got = convcli.conv1d(x, w, mode="valid", correlate=True, method=method)
    assert got.shape == expected.shape == (0, 5, 8)
    assert convcli.conv1d(x.detach().numpy(), w.detach().numpy(), mode="valid", correlate=True,
                          method=method).shape == (0, 5, 8)
    depthwise = F.conv1d(F.pad(x, (2, 2)), w[:4, :1], groups=4)
    assert convcli.conv1d(x.detach().numpy(), np.ones(3), mode="full", method=method).shape \
        == tuple(depthwise.shape) == (0, 4, 12)
    assert convcli.conv1d(x, torch.ones(3, dtype=torch.float64), mode="full",
                          method=method).shape == depthwise.shape
    got.sum().backward()  # differentiable like F.conv1d's: zero gradients, the right shapes
    w_ref = w.detach().clone().requires_grad_()
    F.conv1d(x.detach(), w_ref).sum().backward()
    assert x.grad.shape == x.shape
    torch.testing.assert_close(w.grad, w_ref.grad)
