"""Jacobians and gradients of conv1d against independent references.

The reference is numpy alone: pad with ``numpy.pad`` (pads from the semantics table, written out
here again, not asked of ConvSpec), dilate the kernel by inserting zeros, run
``numpy.convolve``/``numpy.correlate`` in valid mode, subsample ``[::s]``, and apply that to
unit vectors, one column at a time. scipy's ``lfilter`` and torch's own ``F.conv1d`` Jacobian
check the causal and the mixing cases from a second side.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import SAMPLES
from reference import reference_conv1

from convcli.autodiff import jacobian as autodiff
from convcli.autodiff.banded import Banded
from convcli.autodiff.closed import input_jacobian, input_jacobian_banded, kernel_jacobian
from convcli.autodiff.grad import LOSSES, grad
from convcli.autodiff.jacobian import channel_pair, compare, jacobian
from convcli.core.spec import ConvSpec
from convcli.engines.torch_backend import conv1d
from convcli.errors import ConvcliError, InputError, UsageError

#: torch.func.vjp imports torch._dynamo, whose import warns that torch.jit.script is deprecated
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

MODES = ("same", "valid", "full", "causal")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Hundreds of tiny convs: with 2 threads each op waits on the other core (30 ms instead of
    40 µs when the machine is busy). One thread for this module, restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


PADDINGS = ("zeros", "reflect", "replicate", "circular")
# the reference: numpy only, from the semantics table (tests/reference.py), for one channel
reference_conv = reference_conv1


def reference_input_jacobian(w, n, **options):
    return np.stack([reference_conv(e, w, **options) for e in np.eye(n)], axis=1)


def reference_kernel_jacobian(x, k, **options):
    return np.stack([reference_conv(x, e, **options) for e in np.eye(k)], axis=1)


def single(x: np.ndarray, w: np.ndarray, spec: ConvSpec, dtype=torch.float64):
    """The channel pair of a one-channel conv."""
    return channel_pair(torch.tensor(x, dtype=dtype)[None], torch.tensor(w, dtype=dtype)[None, None],
                        spec, 0, 0)


# --- every option combination ---------------------------------------------------------------------
GRID = list(itertools.product(MODES, PADDINGS, (1, 2, 3), (1, 2), (False, True), (3, 4)))


@pytest.mark.parametrize("mode,padding,stride,dilation,correlate,k", GRID,
                         ids=["-".join(map(str, case)) for case in GRID])
def test_jacobians_match_numpy_reference(mode, padding, stride, dilation, correlate, k):
    rng = np.random.default_rng(hash((mode, padding, stride, dilation, correlate, k)) % 2**32)
    n = 11
    options = {"mode": mode, "padding": padding, "stride": stride, "dilation": dilation,
               "correlate": correlate}
    spec = ConvSpec(**options)
    x, w = rng.standard_normal(n), rng.standard_normal(k)
    case = f"{options} k={k}"
    pair = single(x, w, spec)

    want_input = reference_input_jacobian(w, n, **options)
    closed = input_jacobian(pair.w, n, spec).numpy()
    np.testing.assert_allclose(closed, want_input, atol=1e-12, err_msg=case)
    by_autograd = jacobian(pair, "input", via="autograd").matrix.numpy()
    np.testing.assert_allclose(by_autograd, want_input, atol=1e-12, err_msg=case)
    banded = input_jacobian_banded(pair.w, n, spec)
    np.testing.assert_array_equal(banded.to_dense().numpy(), closed, err_msg=case)
    banded_auto = jacobian(pair, "input", banded=True, via="autograd").matrix
    np.testing.assert_allclose(banded_auto.to_dense().numpy(), want_input, atol=1e-12, err_msg=case)

    want_kernel = reference_kernel_jacobian(x, k, **options)
    np.testing.assert_allclose(kernel_jacobian(pair.row, k, spec).numpy(), want_kernel,
                               atol=1e-12, err_msg=case)
    result = jacobian(pair, "kernel", check=True)
    assert result.check.ok, case
    np.testing.assert_allclose(result.matrix.numpy(), want_kernel, atol=1e-12, err_msg=case)


# --- the classic patterns ----------------------------------------------------------------------------
@pytest.mark.parametrize("correlate", [False, True])
def test_kernel_of_ones_gives_the_classic_zero_one_patterns(correlate):
    k, n = 3, 10
    i, j = np.indices((n - k + 1, n))
    valid = input_jacobian(torch.ones(k), n, ConvSpec(mode="valid", correlate=correlate)).numpy()
    np.testing.assert_array_equal(valid, ((0 <= i + k - 1 - j) & (i + k - 1 - j <= k - 1)).astype(float))
    i, j = np.indices((n, n))
    causal = input_jacobian(torch.ones(k), n, ConvSpec(mode="causal", correlate=correlate)).numpy()
    np.testing.assert_array_equal(causal, ((0 <= i - j) & (i - j <= k - 1)).astype(float))


def test_causal_input_jacobian_is_lfilter_applied_to_unit_vectors():
    signal = pytest.importorskip("scipy.signal")
    w = np.array([0.5, -1.0, 2.0, 0.25])
    want = np.stack([signal.lfilter(w, 1, e) for e in np.eye(9)], axis=1)
    np.testing.assert_allclose(input_jacobian(torch.tensor(w), 9, ConvSpec(mode="causal")).numpy(),
                               want, atol=1e-14)


def test_formula_words_match_the_matrix():
    """What the summary says (w[i − j + 2] for valid convolve, k = 3) is what J holds."""
    w = torch.tensor([1.0, 10.0, 100.0])
    for spec, entry in [(ConvSpec(mode="valid"), lambda i, j: i - j + 2),
                        (ConvSpec(mode="valid", correlate=True), lambda i, j: j - i),
                        (ConvSpec(mode="causal"), lambda i, j: i - j)]:
        J = input_jacobian(w, 8, spec).numpy()
        for (i, j), value in np.ndenumerate(J):
            t = entry(i, j)
            assert value == (w[t].item() if 0 <= t < 3 else 0.0), (spec, i, j)
    assert "w[i − j + 2]" in autodiff.jacobian_formula(ConvSpec(mode="valid"), 3)[0]
    assert "w[j − i]" in autodiff.jacobian_formula(ConvSpec(mode="valid", correlate=True), 3)[0]
    assert "w[i − j]" in autodiff.jacobian_formula(ConvSpec(mode="causal"), 3)[0]


# --- mixing kernels, slices, channels ------------------------------------------------------------------
def test_mixing_kernel_pair_matches_torch_conv1d_jacobian():
    rng = np.random.default_rng(7)
    x = torch.tensor(rng.standard_normal((4, 9)))
    weight = torch.tensor(rng.standard_normal((6, 2, 3)))
    spec = ConvSpec(mode="valid", correlate=True, groups=2)  # exactly F.conv1d
    full = torch.autograd.functional.jacobian(lambda v: F.conv1d(v[None], weight, groups=2)[0], x)
    full_w = torch.autograd.functional.jacobian(lambda v: F.conv1d(x[None], v, groups=2)[0], weight)
    for o, c in [(0, 0), (0, 1), (4, 2), (5, 3)]:
        pair = channel_pair(x, weight, spec, o, c)
        for via in ("closed", "autograd"):
            got = jacobian(pair, "input", via=via).matrix
            torch.testing.assert_close(got, full[o, :, c, :], atol=1e-12, rtol=0)
            got_w = jacobian(pair, "kernel", via=via).matrix
            torch.testing.assert_close(got_w, full_w[o, :, o, c - (o // 3) * 2, :], atol=1e-12, rtol=0)
    with pytest.raises(UsageError, match="reads input channels 2…3 only"):
        channel_pair(x, weight, spec, 4, 0)


def test_rows_and_cols_slice_the_same_matrix():
    pair = single(np.arange(20.0), np.array([1.0, 2.0, 3.0, 4.0, 5.0]), ConvSpec(padding="reflect"))
    whole = jacobian(pair, "input").matrix
    for rows, cols in [(slice(3, 9), slice(0, 7)), (slice(-4, None), slice(15, None)), (slice(0, 1), None)]:
        for via in ("closed", "autograd"):
            block = jacobian(pair, "input", rows=rows, cols=cols, via=via).matrix
            torch.testing.assert_close(block, whole[rows, cols or slice(None)], atol=1e-12, rtol=0)
    block = jacobian(pair, "kernel", rows=slice(2, 5), cols=slice(1, 3), check=True)
    assert block.check.ok
    torch.testing.assert_close(block.matrix, jacobian(pair, "kernel").matrix[2:5, 1:3])


# --- autograd in three ways (gradcheck, J^T, batched) ---------------------------------------------------
@pytest.mark.parametrize("spec", [
    ConvSpec(), ConvSpec(mode="valid", correlate=True, stride=2), ConvSpec(mode="full", dilation=2),
    ConvSpec(mode="causal", padding="reflect"), ConvSpec(padding="circular", stride=3),
    ConvSpec(padding="replicate", groups=2),
])
@pytest.mark.parametrize("method", ["direct", "fft"])
def test_gradcheck_float64(spec, method):
    rng = np.random.default_rng(3)
    x = torch.tensor(rng.standard_normal((2, 2, 12)), requires_grad=True)
    w = torch.tensor(rng.standard_normal((2, 2 // spec.groups, 3)), requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: conv1d(a, b, spec, method), (x, w))


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("options", [
    {"mode": "same"}, {"mode": "valid", "correlate": True, "stride": 2},
    {"mode": "causal", "padding": "reflect", "dilation": 2}, {"mode": "full", "padding": "circular"},
])
def test_grad_is_jacobian_transpose_times_loss_gradient(loss, options):
    rng = np.random.default_rng(11)
    n, k = 16, 4
    x, w = rng.standard_normal(n), rng.standard_normal(k)
    y = reference_conv(x, w, **options)
    target = rng.standard_normal(y.shape)
    dloss_dy = {"sum": np.ones_like(y), "mean": np.ones_like(y) / y.size, "energy": 2 * y,
                "mse": 2 * (y - target) / y.size}[loss]
    value, grads = grad(torch.tensor(x)[None, None], torch.tensor(w), ConvSpec(**options), loss,
                        ("input", "kernel"), torch.tensor(target)[None, None])
    want_value = {"sum": y.sum(), "mean": y.mean(), "energy": (y**2).sum(),
                  "mse": ((y - target) ** 2).mean()}[loss]
    assert float(value) == pytest.approx(want_value, rel=1e-12)
    np.testing.assert_allclose(grads["input"][0, 0].numpy(),
                               reference_input_jacobian(w, n, **options).T @ dloss_dy, atol=1e-12)
    np.testing.assert_allclose(grads["kernel"].numpy(),
                               reference_kernel_jacobian(x, k, **options).T @ dloss_dy, atol=1e-12)


def test_batched_grad_equals_per_item_and_shared_kernel_sums_channels():
    rng = np.random.default_rng(5)
    x = torch.tensor(rng.standard_normal((3, 2, 20)))
    w = torch.tensor(rng.standard_normal(5))  # (k,): the same kernel on both channels
    spec = ConvSpec(mode="same", padding="replicate", stride=2)
    _, batched = grad(x, w, spec, "energy", ("input", "kernel"))
    kernel_sum = torch.zeros(5, dtype=torch.float64)
    for b in range(3):
        for c in range(2):
            _, one = grad(x[b : b + 1, c : c + 1], w, spec, "energy", ("input", "kernel"))
            torch.testing.assert_close(batched["input"][b, c], one["input"][0, 0])
            kernel_sum += one["kernel"]
    torch.testing.assert_close(batched["kernel"], kernel_sum)
    # a (C, k) kernel gets one gradient row per channel, a mixing kernel its own shape
    _, per_channel = grad(x, torch.stack([w, 2 * w]), spec, "sum", ("kernel",))
    assert per_channel["kernel"].shape == (2, 5)
    _, mixing = grad(x, torch.tensor(rng.standard_normal((3, 2, 5))), spec, "sum", ("kernel",))
    assert mixing["kernel"].shape == (3, 2, 5)


def test_mse_needs_a_target_of_the_output_shape():
    x, w = torch.ones(1, 1, 8), torch.ones(3)
    with pytest.raises(UsageError, match="--target"):
        grad(x, w, ConvSpec(), "mse")
    with pytest.raises(InputError, match=r"target has shape \(1, 1, 7\)"):
        grad(x, w, ConvSpec(), "mse", target=torch.zeros(1, 1, 7))


# --- banded storage at scale, memory refusal ---------------------------------------------------------
@pytest.mark.parametrize("padding", PADDINGS)
def test_banded_closed_form_and_autograd_agree_on_a_long_signal(padding):
    n, k = 50_000, 31
    spec = ConvSpec(mode="same", padding=padding, stride=2, dilation=2)
    rng = np.random.default_rng(1)
    pair = single(rng.standard_normal(n), rng.standard_normal(k), spec, dtype=torch.float32)
    result = jacobian(pair, "input", banded=True, check=True)
    assert isinstance(result.matrix, Banded) and result.check.ok, result.check
    assert result.matrix.bands.shape == (k, spec.output_length(n, k))
    # a few rows at both ends and the middle against the dense closed form
    for rows in (slice(0, 40), slice(n // 4, n // 4 + 5), slice(-40, None)):
        r0, r1, _ = rows.indices(spec.output_length(n, k))
        dense = input_jacobian(pair.w, n, spec, rows=rows)
        torch.testing.assert_close(result.matrix.block((r0, r1), (0, n)), dense)
    if padding == "zeros":
        assert result.matrix.edge_vals.numel() == 0


def test_banded_npz_loads_and_densifies_with_numpy_alone(tmp_path):
    """The README's snippet, verbatim in spirit: numpy only, then compare with the closed form."""
    w = torch.tensor([1.0, -2.0, 3.0, 0.5])
    spec = ConvSpec(mode="same", padding="circular", stride=2)
    banded = input_jacobian_banded(w, 13, spec)
    np.savez(tmp_path / "J.npz", **banded.arrays())
    z = np.load(tmp_path / "J.npz")
    (L, N), s = z["shape"], int(z["stride"])
    J = np.zeros((L, N), z["bands"].dtype)
    i = np.arange(L)
    for off, band in zip(z["offsets"], z["bands"]):
        c = s * i + off; ok = (c >= 0) & (c < N); J[i[ok], c[ok]] = band[ok]
    J[z["edge_rows"], z["edge_cols"]] = z["edge_vals"]
    np.testing.assert_array_equal(J, input_jacobian(w, 13, spec).numpy())


def test_dense_that_cannot_fit_is_refused_before_allocating():
    pair = single(np.zeros(1_000_000), np.ones(31), ConvSpec(), dtype=torch.float32)
    # 10¹² entries × (float32 result + its copy + 16 bytes of int64 source index and mask)
    with pytest.raises(ConvcliError, match="1,000,000 × 1,000,000 Jacobian needs about 21.8 TiB") as info:
        jacobian(pair, "input")
    assert "--format banded" in info.value.hint
    with pytest.raises(ConvcliError, match="dense 10 × 20 Jacobian needs about 6.2 KiB"):
        jacobian(single(np.zeros(20), np.ones(3), ConvSpec()), "input", rows=slice(0, 10),
                 memory_limit=100)
    # a block of the same big matrix is fine
    block = jacobian(pair, "input", rows=slice(0, 4), cols=slice(0, 40)).matrix
    assert block.shape == (4, 40)


def test_compare_reports_the_largest_difference():
    a = torch.eye(3, dtype=torch.float64)
    b = a.clone()
    b[1, 2] = 1e-3
    result = compare(a, b)
    assert not result.ok and result.max_abs_diff == pytest.approx(1e-3)


# --- the CLI, a handful of calls ------------------------------------------------------------------------
def test_cli_jacobian_ones_pattern_json_and_npy(cli_fast, tmp_path):
    import json

    out = tmp_path / "J.npy"
    proc = cli_fast("jacobian", "--length", "10", "--window", "rect", "--size", "3", "--normalize", "none",
               "--mode", "valid", "--check", "--json", "-o", out, check=True)
    summary = json.loads(proc.stdout)
    assert summary["method"] == "closed form" and summary["check"]["ok"] is True
    assert summary["shape"] == [8, 10]
    i, j = np.indices((8, 10))
    np.testing.assert_array_equal(np.load(out), ((0 <= i + 2 - j) & (i + 2 - j <= 2)).astype(np.float32))


def test_cli_jacobian_summary_kernel_wrt_and_csv(cli_fast, tmp_path):
    proc = cli_fast("jacobian", SAMPLES / "speech.wav", "--wrt", "kernel", "--kernel",
               SAMPLES / "smooth5.txt", "--mode", "causal", "--rows", "20000:20010", check=True)
    text = proc.stdout.decode()
    assert "J = ∂y/∂w: [20000:20010, 0:5] of" in text and "J[i, j] = ∂y[i]/∂w[j] = x[i − j]" in text
    assert "top-left corner" in text
    out = tmp_path / "J.csv"
    cli_fast("jacobian", "--kernel", SAMPLES / "conv1d_2x16x3.npy", "--channel", "3:1", "--length", "32",
        "--correlate", "--mode", "valid", "-o", out, check=True)
    weight = np.load(SAMPLES / "conv1d_2x16x3.npy")
    J = np.loadtxt(out, delimiter=",")
    np.testing.assert_allclose(J[0, :3], weight[3, 1], rtol=1e-6)


def test_cli_banded_million_and_dense_refusal(cli, cli_fast, tmp_path):
    proc = cli("jacobian", "--length", "1000000")  # a real process: refused before torch loads
    assert proc.returncode == 1 and b"--format banded" in proc.stderr, proc.stderr
    assert proc.stderr.count(b"\n") == 1 and b"Jacobian needs about 21.8 TiB" in proc.stderr
    out = tmp_path / "J.npz"
    cli_fast("jacobian", "--length", "1000000", "-o", out, check=True)  # .npz implies banded
    z = np.load(out)
    assert z["bands"].shape == (31, 1_000_000) and tuple(z["shape"]) == (1_000_000, 1_000_000)


def test_cli_grad_writes_wav_and_npz(cli, cli_fast, tmp_path):
    import soundfile as sf

    proc = cli("grad", SAMPLES / "speech.wav", "--loss", "energy", "--wrt", "input",
               "--window", "hann", "--size", "5", "-o", tmp_path / "dx.wav", check=True)
    assert b"loss (energy) =" in proc.stderr and "‖∂loss/∂x‖₂".encode() in proc.stderr
    dx, rate = sf.read(tmp_path / "dx.wav")
    x, _ = sf.read(SAMPLES / "speech.wav", dtype="float32")
    assert rate == 22050 and dx.shape == x.shape
    cli_fast("grad", SAMPLES / "batch.npy", "--loss", "sum", "--wrt", "both", "--kernel",
        SAMPLES / "smooth5.txt", "-o", tmp_path / "g.npz", check=True)
    g = np.load(tmp_path / "g.npz")
    assert g["input"].shape == (4, 2, 8000) and g["kernel"].shape == (5,)


def test_cli_check_mismatch_exits_1_and_png_needs_the_plot_extra(cli_fast, tmp_path, monkeypatch):
    import json

    from convcli.render import plots as report

    monkeypatch.setitem(autodiff.TOLERANCE, torch.float32, -1.0)  # no difference can pass
    proc = cli_fast("jacobian", "--length", "16", "--size", "5", "--check", "--json")
    assert proc.returncode == 1 and json.loads(proc.stdout)["check"]["ok"] is False
    assert proc.stderr.decode().startswith("error: --check: autograd and the closed form differ")
    monkeypatch.undo()
    out = tmp_path / "J.png"
    proc = cli_fast("jacobian", "--length", "16", "--size", "5", "-o", out)
    if hasattr(report, "plot_matrix"):
        assert proc.returncode == 0 and out.exists()
    else:
        assert proc.returncode == 1 and b"convcli[plot]" in proc.stderr and not out.exists()


def test_cli_refuses_outputs_that_cannot_hold_the_result(cli_fast, tmp_path):
    cases = [
        (["jacobian", "--length", "16", "-o", tmp_path / "J.npy", "--format", "banded"], b"use -o J.npz"),
        (["jacobian", "--length", "16", "--wrt", "kernel", "-o", tmp_path / "J.npz"], b"--wrt input"),
        (["jacobian", "--length", "16", "--channel", "1:0"], b"only pairs C:C"),
        (["grad", SAMPLES / "speech.wav", "--loss", "sum", "--wrt", "both", "-o", tmp_path / "g.npy"],
         b"use -o grads.npz"),
        (["grad", SAMPLES / "batch.npy", "--loss", "sum", "-o", tmp_path / "dx.wav"], b"--rate"),
        (["grad", SAMPLES / "batch.npy", "--loss", "mse"], b"--target FILE"),
    ]
    for args, hint in cases:
        proc = cli_fast(*args)
        assert proc.returncode == 2 and hint in proc.stderr, (args, proc.stderr)
    assert not list(tmp_path.iterdir())


def test_jacobian_runs_on_the_device(device):
    """Closed form, autograd and banded stay on the device of their inputs."""
    spec = ConvSpec(mode="same", padding="circular", stride=2)
    x = torch.randn(2, 40, dtype=torch.float64, device=device)
    weight = torch.randn(2, 1, 5, dtype=torch.float64, device=device)
    pair = channel_pair(x, weight, replace_groups(spec, 2), 1, 1)
    dense = jacobian(pair, "input", check=True)
    banded = jacobian(pair, "input", banded=True, check=True)
    kernel = jacobian(pair, "kernel", check=True)
    assert dense.check.ok and banded.check.ok and kernel.check.ok
    assert dense.matrix.device == banded.matrix.bands.device == kernel.matrix.device == x.device
    want = reference_input_jacobian(weight[1, 0].cpu().numpy(), 40, mode="same", padding="circular",
                                    stride=2)
    np.testing.assert_allclose(banded.matrix.to_dense().cpu().numpy(), want, atol=1e-12)


def replace_groups(spec: ConvSpec, groups: int) -> ConvSpec:
    from dataclasses import replace

    return replace(spec, groups=groups)
