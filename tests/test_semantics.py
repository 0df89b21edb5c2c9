"""conv1d semantics against numpy/scipy/torch on a seeded grid of every option (docs/semantics.md)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.signal
import torch
import torch.nn.functional as F
from reference import reference_conv, reference_conv1

from convcli.core.spec import ConvSpec
from convcli.engines.torch_backend import conv1d
from convcli.errors import InputError

MODES = ["same", "valid", "full", "causal"]
PADDINGS = ["zeros", "reflect", "replicate", "circular"]
TOL = {torch.float32: 2e-5, torch.float64: 1e-12}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("padding", PADDINGS)
def test_grid_matches_numpy_reference(mode, padding, device):
    """kernel size × stride × dilation × convolve/correlate × dtype × method, multi-channel, batched."""
    rng = np.random.default_rng(hash((mode, padding)) % 2**32)
    x = rng.standard_normal((2, 3, 23))
    for k, stride, dilation, correlate, dtype, method in itertools.product(
        [1, 2, 5, 8], [1, 3], [1, 2], [False, True], [torch.float32, torch.float64],
        ["direct", "fft"],
    ):
        w = rng.standard_normal(k)
        weight = np.broadcast_to(w, (3, 1, k))
        options = {"mode": mode, "padding": padding, "stride": stride, "dilation": dilation,
                   "correlate": correlate}
        spec = ConvSpec(groups=3, **options)
        y = conv1d(torch.tensor(x, dtype=dtype, device=device),
                   torch.tensor(weight.copy(), dtype=dtype, device=device), spec, method)
        expected = reference_conv(x, weight, groups=3, **options)
        case = f"k={k} {options} {dtype} {method}"
        assert y.shape == expected.shape, case
        assert y.device.type == device.type, case
        np.testing.assert_allclose(y.cpu().double().numpy(), expected, atol=TOL[dtype] * 10,
                                   rtol=TOL[dtype], err_msg=case)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 7, 10])
def test_default_is_scipy_convolve_and_causal_is_lfilter(k, rng):
    x, w = rng.standard_normal(40), rng.standard_normal(k)
    t = lambda a: torch.tensor(a)[None, None]
    for mode in ["same", "valid", "full"]:
        y = conv1d(t(x), t(w), ConvSpec(mode=mode))[0, 0].numpy()
        np.testing.assert_allclose(y, scipy.signal.convolve(x, w, mode=mode), atol=1e-12,
                                   err_msg=f"{mode} k={k}")
    np.testing.assert_allclose(conv1d(t(x), t(w), ConvSpec(mode="full"))[0, 0].numpy(),
                               np.convolve(x, w), atol=1e-12)
    y = conv1d(t(x), t(w), ConvSpec(mode="causal"))[0, 0].numpy()
    np.testing.assert_allclose(y, scipy.signal.lfilter(w, 1, x), atol=1e-12)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("k,dilation", [(3, 1), (4, 1), (4, 2), (5, 3)])
def test_correlate_is_torch_conv1d(k, dilation, rng):
    """--correlate is exactly F.conv1d: valid = padding 0, same = padding='same'."""
    x = torch.tensor(rng.standard_normal((2, 4, 30)))
    w = torch.tensor(rng.standard_normal((6, 2, k)))
    valid = conv1d(x, w, ConvSpec(mode="valid", correlate=True, dilation=dilation, groups=2))
    torch.testing.assert_close(valid, F.conv1d(x, w, dilation=dilation, groups=2))
    same = conv1d(x, w, ConvSpec(mode="same", correlate=True, dilation=dilation, groups=2))
    torch.testing.assert_close(same, F.conv1d(x, w, padding="same", dilation=dilation, groups=2))
    strided = conv1d(x, w, ConvSpec(mode="valid", correlate=True, stride=3, groups=2))
    torch.testing.assert_close(strided, F.conv1d(x, w, stride=3, groups=2))


@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("correlate", [False, True])
def test_mixing_and_grouped_weights(method, correlate, rng):
    x = rng.standard_normal((2, 4, 50))
    for out_channels, groups in [(16, 1), (6, 2), (4, 4), (8, 4)]:
        weight = rng.standard_normal((out_channels, 4 // groups, 5))
        spec = ConvSpec(mode="same", correlate=correlate, groups=groups)
        y = conv1d(torch.tensor(x), torch.tensor(weight), spec, method).numpy()
        expected = reference_conv(x, weight, groups, mode="same", correlate=correlate)
        np.testing.assert_allclose(y, expected, atol=1e-10, err_msg=f"O={out_channels} G={groups}")


def test_classic_conv1d_2_16_3_length():
    """Conv1d(2, 16, 3) on a stereo signal of 64 samples gives 62: ⌊(64 + 0 − 2 − 1)/1⌋ + 1."""
    spec = ConvSpec(mode="valid", correlate=True)
    assert spec.output_length(64, 3) == 62
    y = conv1d(torch.randn(1, 2, 64), torch.randn(16, 2, 3), spec)
    assert y.shape == (1, 16, 62)


@pytest.mark.parametrize("n,k,s,d", [(64, 3, 1, 1), (100, 8, 3, 2), (17, 17, 2, 1), (9, 4, 5, 3)])
def test_output_length_is_the_torch_formula(n, k, s, d):
    for mode in MODES:
        spec = ConvSpec(mode=mode, stride=s, dilation=d)
        left, right = spec.pads(k)
        torch_len = (n + left + right - d * (k - 1) - 1) // s + 1
        assert spec.output_length(n, k) == max(torch_len, 0)
        if n + left + right < d * (k - 1) + 1:
            continue  # no output: numpy's 'valid' would swap its arguments here
        ref = reference_conv1(np.ones(n), np.ones(k), mode=mode, stride=s, dilation=d)
        assert spec.output_length(n, k) == len(ref), (mode, n, k, s, d)


def test_pad_table_for_even_spans():
    assert ConvSpec(mode="same").pads(4) == (2, 1)
    assert ConvSpec(mode="same", correlate=True).pads(4) == (1, 2)
    assert ConvSpec(mode="same", dilation=3).pads(2) == (2, 1)  # K = 4
    assert ConvSpec(mode="causal").pads(5) == (4, 0)
    assert ConvSpec(mode="full").pads(5) == (4, 4)


def test_invalid_geometry_is_a_clear_error():
    with pytest.raises(InputError, match="longer than the signal"):
        ConvSpec(mode="valid").check(5, 6)
    with pytest.raises(InputError, match="reflect padding"):
        ConvSpec(mode="full", padding="reflect").check(5, 6)
    with pytest.raises(InputError, match="circular padding"):
        ConvSpec(mode="full", padding="circular").check(3, 6)
    ConvSpec(mode="full", padding="circular").check(5, 6)  # pad 5 ≤ N = 5 is fine


@pytest.mark.parametrize("n, k, dilation", [(3, 4, 1), (10, 6, 2), (8, 9, 1), (16, 17, 1),
                                            (9, 4, 3), (3, 6, 1)])
@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_span_longer_than_the_signal_is_refused_before_any_pricing(n, k, dilation, engine):
    """K = N + 1 in valid mode (scipy's convolve([3, 4, 5], [1, 2, 3, 4], 'valid')) once reached
    the cost model before the spec's check and divided by a frame that kept no output."""
    from convcli.plan.geometry import fft_candidates
    from convcli.plan.selection import choose_method, costs_for

    spec = ConvSpec(mode="valid", dilation=dilation)
    span = spec.span(k)
    assert min(fft_candidates(n, span)) >= span
    for price in (costs_for, choose_method):
        with pytest.raises(InputError, match=f"kernel span {span} .* longer than the signal "
                                             f"\\({n} samples\\) in valid mode"):
            price(n, k, spec, engine=engine, channels=2, out_channels=1 if engine == "torch" else 2)


@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("padding", PADDINGS)
def test_gradcheck_end_to_end(method, padding):
    """The computation stays differentiable in both the signal and the kernel (float64)."""
    torch.manual_seed(0)
    x = torch.randn(1, 2, 9, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 1, 4, dtype=torch.float64, requires_grad=True)
    spec = ConvSpec(mode="same", padding=padding, stride=2, dilation=2, groups=2)
    assert torch.autograd.gradcheck(lambda a, b: conv1d(a, b, spec, method), (x, w))


def test_stride_subsamples_the_stride1_result(rng):
    x, w = torch.tensor(rng.standard_normal((1, 1, 40))), torch.tensor(rng.standard_normal((1, 1, 6)))
    for mode in MODES:
        full = conv1d(x, w, ConvSpec(mode=mode))
        torch.testing.assert_close(conv1d(x, w, ConvSpec(mode=mode, stride=4)), full[..., ::4])
