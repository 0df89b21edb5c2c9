"""The engine against an independent reference (numpy.pad + scipy.signal.correlate, direct).

Every method and algorithm (banded GEMM, F.conv1d, overlap-save FFT at several frame sizes, the
chunked whole-signal loop) on a seeded grid of modes x paddings x stride x dilation x
convolve/correlate x dtypes x groups, batched multi-channel, odd and even kernels; gradients
through the fast paths; the precision rule of ``auto``.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.signal as ss
import torch

from convcli.core.kernels import depthwise
from convcli.core.spec import PADDINGS, ConvSpec
from convcli.engines.torch_backend import choose_method, conv1d
from convcli.errors import InputError
from convcli.pipeline import filter_arrays
from convcli.plan import geometry
from convcli.plan.selection import MethodChoice, fft_error_bound

#: (batch, channels, out_channels, groups): depthwise stereo, mono batch, 9 rows, general groups
LAYOUTS = [(1, 2, 2, 2), (2, 1, 1, 1), (9, 2, 2, 2), (2, 4, 6, 2)]
TOL = {torch.float32: 2e-5, torch.float64: 1e-11}


def reference(x: np.ndarray, w: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """The semantics by hand: numpy.pad, flip unless correlating, dilate, scipy direct correlate, y[::s]."""
    k = w.shape[-1]
    left, right = spec.pads(k)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (left, right)), mode=PADDINGS[spec.padding][0])
    oriented = w if spec.correlate else w[..., ::-1]
    span = spec.span(k)
    wd = np.zeros(w.shape[:2] + (span,))
    wd[..., :: spec.dilation] = oriented
    batch, _channels, padded = xp.shape
    out_channels, per_group = w.shape[:2]
    per_out = out_channels // spec.groups
    y = np.zeros((batch, out_channels, padded - span + 1))
    for b, o in itertools.product(range(batch), range(out_channels)):
        g = o // per_out
        for c in range(per_group):
            y[b, o] += ss.correlate(xp[b, g * per_group + c], wd[o, c], mode="valid", method="direct")
    return y[..., :: spec.stride]


def refused(spec: ConvSpec, n: int, k: int) -> bool:
    try:
        spec.check(n, k)
    except InputError:
        return True
    return False


def choices(n: int, k: int, spec: ConvSpec, batch: int, channels: int, out_channels: int, rng):
    """Every way the engine can run this case: auto, GEMM (if depthwise), F.conv1d, FFT x nfft."""
    found = [("auto", "auto"), ("conv1d", MethodChoice("direct", "test", "conv1d"))]
    if depthwise(out_channels, channels // spec.groups, spec.groups):
        found.append(("gemm", MethodChoice("direct", "test", "gemm")))
    nfft = int(rng.choice([16, 64, 1024])) if spec.span(k) <= 16 else 1024
    found.append((f"fft{nfft}", MethodChoice("fft", "test", "overlap-save", nfft)))
    return found


def check_grid(mode: str, padding: str, rng, lengths=(20, 90), chunk=None, monkeypatch=None):
    if chunk is not None:
        monkeypatch.setattr(geometry, "CHUNK_ELEMENTS", chunk)
    grid = list(itertools.product([1, 3], [1, 2], [False, True], [1, 4, 7]))
    picked = rng.choice(len(grid), size=len(grid) // 2, replace=False)  # a seeded half per case
    for stride, dilation, correlate, k in (grid[i] for i in sorted(picked)):
        batch, channels, out_channels, groups = LAYOUTS[int(rng.integers(len(LAYOUTS)))]
        n = int(rng.integers(*lengths))
        spec = ConvSpec(mode=mode, padding=padding, stride=stride, dilation=dilation,
                        correlate=correlate, groups=groups)
        if refused(spec, n, k):
            continue  # a case the spec refuses with a clear error (tested elsewhere)
        x = rng.standard_normal((batch, channels, n))
        w = rng.standard_normal((out_channels, channels // groups, k))
        if rng.random() < 0.5 and channels // groups == 1:
            w[:] = w[0]  # one shared kernel: the GEMM's single-matrix path
        expected = reference(x, w, spec)
        for dtype in (torch.float64, torch.float32):
            xt, wt = torch.from_numpy(x).to(dtype), torch.from_numpy(w).to(dtype)
            for name, method in choices(n, k, spec, batch, channels, out_channels, rng):
                got = conv1d(xt, wt, spec, method)
                case = f"{spec} n={n} k={k} {tuple(x.shape)}->{tuple(w.shape)} {name} {dtype}"
                assert got.dtype == dtype, case
                assert tuple(got.shape) == expected.shape, case
                scale = 1 + np.abs(expected).max()
                np.testing.assert_allclose(got.numpy(), expected, atol=TOL[dtype] * scale, err_msg=case)


@pytest.mark.parametrize("mode", ["same", "valid", "full", "causal"])
@pytest.mark.parametrize("padding", list(PADDINGS))
def test_every_method_equals_scipy(mode, padding):
    check_grid(mode, padding, np.random.default_rng(hash((mode, padding)) % 2**32))


@pytest.mark.parametrize("mode, padding", [("same", "circular"), ("full", "reflect"),
                                           ("causal", "replicate")])
def test_chunked_whole_signal_loop_equals_scipy(mode, padding, monkeypatch):
    """Tiny chunks force the edge/middle/edge split and many chunks per region."""
    check_grid(mode, padding, np.random.default_rng(7), lengths=(150, 300), chunk=600,
               monkeypatch=monkeypatch)


@pytest.mark.parametrize("k", [30, 31, 64, 200])
def test_gemm_long_signal_odd_even_kernels(k, rng):
    spec = ConvSpec(groups=2)
    x = rng.standard_normal((1, 2, 20_000))
    w = rng.standard_normal((2, 1, k))
    got = conv1d(torch.from_numpy(x), torch.from_numpy(w), spec, MethodChoice("direct", "", "gemm"))
    np.testing.assert_allclose(got.numpy(), reference(x, w, spec), atol=1e-10)


def test_fft_many_frames_and_whole_signal_frame(rng):
    spec = ConvSpec(mode="full", groups=1)
    x = rng.standard_normal((1, 1, 5000))
    w = rng.standard_normal((1, 1, 300))
    expected = reference(x, w, spec)
    for nfft in (512, 1024, 8192):  # many frames ... one frame for everything
        got = conv1d(torch.from_numpy(x), torch.from_numpy(w), spec, MethodChoice("fft", "", "overlap-save", nfft))
        np.testing.assert_allclose(got.numpy(), expected, atol=1e-9, err_msg=f"nfft {nfft}")


@pytest.mark.parametrize("algorithm", ["gemm", "conv1d", "fft"])
def test_gradcheck_through_fast_paths(algorithm):
    torch.manual_seed(0)
    spec = ConvSpec(mode="same", padding="reflect", stride=2, dilation=2, groups=2)
    x = torch.randn(1, 2, 24, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 1, 5, dtype=torch.float64, requires_grad=True)
    method = (MethodChoice("fft", "", "overlap-save", 32) if algorithm == "fft"
              else MethodChoice("direct", "", algorithm))
    assert torch.autograd.gradcheck(lambda a, b: conv1d(a, b, spec, method), (x, w))


def test_gradient_matches_torch_conv1d(rng, monkeypatch):
    """d(sum y²)/dx and /dw through the chunked GEMM equal those through F.conv1d."""
    monkeypatch.setattr(geometry, "CHUNK_ELEMENTS", 1000)  # the edge/middle/edge chunked loop
    spec = ConvSpec(mode="same", correlate=True, groups=2)
    x0 = torch.from_numpy(rng.standard_normal((1, 2, 3000)))
    w0 = torch.from_numpy(rng.standard_normal((2, 1, 31)))
    grads = []
    for run in ("ours", "torch"):
        x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
        if run == "ours":
            y = conv1d(x, w, spec, MethodChoice("direct", "", "gemm"))
        else:
            y = torch.nn.functional.conv1d(torch.nn.functional.pad(x, (15, 15)), w, groups=2)
        (y**2).sum().backward()
        grads.append((x.grad, w.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])


def test_auto_picks_by_cost():
    stereo = ConvSpec(groups=2)
    assert choose_method(28_800_000, 31, stereo, channels=2).algorithm == "gemm"
    long_kernel = choose_method(28_800_000, 48_000, stereo, channels=2)
    assert long_kernel.method == "fft" and long_kernel.nfft >= 65_536
    assert choose_method(100, 4095, ConvSpec(mode="full")).method in ("direct", "fft")
    assert "cost model" in long_kernel.reason
    assert choose_method(1000, 3, stereo, "fft", channels=2).reason == "asked for with --method"
    with pytest.raises(Exception, match="--method"):
        choose_method(1000, 3, stereo, "fastest")


def test_auto_keeps_quiet_samples_precise():
    """scipy issue 22390: quiet samples next to huge ones. Up to 220 dB auto runs the FFT in
    float64, beyond that direct; both keep the quiet samples' precision."""
    rng = np.random.default_rng(0)
    spec = ConvSpec(mode="full")
    w = np.hanning(1001)[None, None]
    for top, expected in ((8, "float64"), (36, "direct")):
        x = np.zeros(20_000)
        x[:1000] = rng.standard_normal(1000)
        x[-10:] = np.logspace(0, top, 10)
        xt = torch.from_numpy(x.astype(np.float32))[None, None]
        x = xt[0, 0].double().numpy()
        choice = choose_method(x.size, w.shape[-1], spec, x=xt)
        assert (choice.fft_dtype if choice.method == "fft" else "direct") == expected, choice
        got = conv1d(xt, torch.from_numpy(w.astype(np.float32)), spec, choice)[0, 0, :1000]
        exact = np.convolve(x, w[0, 0])[:1000]
        np.testing.assert_allclose(got.double().numpy(), exact, rtol=1e-3, atol=1e-4)
    plain = choose_method(20_000, 1001, spec, x=torch.randn(1, 1, 20_000))
    assert plain.method == "fft" and plain.fft_dtype is None


def test_float32_fft_error_within_reported_bound(rng):
    x = rng.standard_normal((1, 2, 200_000)).astype(np.float32)
    w = rng.standard_normal((2, 1, 2000)).astype(np.float32)
    spec = ConvSpec(groups=2)
    for nfft in (4096, 65536):
        got = conv1d(torch.from_numpy(x), torch.from_numpy(w), spec, MethodChoice("fft", "", "overlap-save", nfft))
        exact = conv1d(torch.from_numpy(x).double(), torch.from_numpy(w).double(), spec,
                       MethodChoice("fft", "", "overlap-save", nfft))
        error = float((got.double() - exact).abs().max())
        bound = fft_error_bound(nfft, torch.float32) * np.abs(x).max() * np.abs(w).sum(-1).max()
        assert error <= bound, (nfft, error, bound)


def test_device_agnostic(device, rng):
    spec = ConvSpec(mode="full", padding="reflect", groups=2)
    x = rng.standard_normal((1, 2, 3000))
    w = rng.standard_normal((2, 1, 33))
    expected = reference(x, w, spec)
    for method in ("direct", "fft"):
        got = conv1d(torch.from_numpy(x).to(device), torch.from_numpy(w).to(device), spec, method)
        assert got.device.type == device.type
        np.testing.assert_allclose(got.cpu().numpy(), expected, atol=1e-9)


def test_filter_batches_reports_what_ran(rng):
    x = rng.standard_normal((1, 2, 50_000)).astype(np.float32)
    results, run = filter_arrays([x], np.hanning(2049), ConvSpec(), method="auto", device="cpu")
    assert run["method"] == "fft" and run["algorithm"] == "overlap-save" and run["nfft"] >= 4096
    relative = fft_error_bound(run["nfft"], torch.float32)
    assert relative < 1e-5 and "cost model" in run["reason"]
    bound = relative * np.abs(x).max() * np.hanning(2049).sum()
    assert run["fft_error_bound"] == pytest.approx(bound, rel=1e-5)
    assert results[0].shape == (1, 2, 50_000)


@pytest.mark.parametrize("algorithm", ["gemm", "overlap-save", "tap"])
@pytest.mark.parametrize("engine_name", ["numpy", "torch"])
def test_a_zero_batch_gives_torch_shape_by_every_algorithm(engine_name, algorithm):
    """x (0, C, T) -> (0, O, T_out), as F.conv1d gives it, by every plan each engine builds
    (MKL's FFT once refused an empty batch: "Inconsistent configuration parameters")."""
    from convcli.engines import load
    from convcli.plan.selection import FACTS

    engine = load(engine_name)
    tap = FACTS[engine_name].tap_algorithm
    choice = MethodChoice("fft" if algorithm == "overlap-save" else "direct", "",
                          tap if algorithm == "tap" else algorithm, 64)
    spec = ConvSpec(mode="valid", groups=4, correlate=True)
    x, w = np.zeros((0, 4, 10)), np.ones((4, 1, 3))
    expected = torch.nn.functional.conv1d(torch.from_numpy(x), torch.from_numpy(w), groups=4)
    for method in (choice, "auto", "direct", "fft"):
        y = engine.conv1d(engine.asarray(x), engine.asarray(w), spec, method)
        assert tuple(y.shape) == tuple(expected.shape) == (0, 4, 8), (method, y.shape)
