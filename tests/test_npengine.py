"""The numpy engine (``convcli.engines.numpy_backend``) against the independent reference, and the promise
that a CPU ``filter`` never imports torch."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

from convcli.core.spec import PADDINGS, ConvSpec
from convcli.engines import numpy_backend as npengine
from convcli.errors import ConvcliError
from convcli.pipeline import filter_arrays, prepare
from convcli.plan import costmodel, geometry, selection
from convcli.plan.geometry import edge_extent
from convcli.plan.selection import MethodChoice, costs_for, fft_error_bound
from tests.conftest import SAMPLES, cli_env
from tests.reference import reference_conv

GEMM = MethodChoice("direct", "", "gemm")
CORRELATE = MethodChoice("direct", "", "correlate")
FFT = MethodChoice("fft", "", "overlap-save", 32)
TOL = {np.float32: 2e-5, np.float64: 1e-11}


def reference(x, w, spec):
    return reference_conv(x.astype(np.float64), w.astype(np.float64), spec.groups, mode=spec.mode,
                          padding=spec.padding, stride=spec.stride, dilation=spec.dilation,
                          correlate=spec.correlate)


@pytest.mark.parametrize("mode", ["same", "valid", "full", "causal"])
@pytest.mark.parametrize("padding", list(PADDINGS))
def test_every_option_matches_the_reference(mode, padding):
    """modes × paddings × stride × dilation × correlate × dtype × method, odd and even k, batched."""
    rng = np.random.default_rng(abs(hash((mode, padding))) % 2**32)
    grid = itertools.product([1, 2, 3], [1, 2], [False, True], [np.float32, np.float64], [4, 5])
    for stride, dilation, correlate, dtype, k in grid:
        spec = ConvSpec(mode=mode, padding=padding, stride=stride, dilation=dilation,
                        correlate=correlate, groups=3)
        x = rng.standard_normal((2, 3, int(rng.integers(40, 120)))).astype(dtype)
        w = rng.standard_normal((3, 1, k)).astype(dtype)
        expected = reference(x, w, spec)
        for method in (GEMM, FFT, CORRELATE, "auto", "direct", "fft"):
            got = npengine.conv1d(x, w, spec, method)
            case = f"{spec} k={k} {dtype.__name__} {method}"
            assert got.shape == expected.shape and got.dtype == dtype, case
            scale = np.abs(x).max() * np.abs(w).sum()
            np.testing.assert_allclose(got, expected, atol=TOL[dtype] * scale, err_msg=case)


@pytest.mark.parametrize("mode", ["same", "valid", "full", "causal"])
@pytest.mark.parametrize("padding", list(PADDINGS))
def test_batches_of_short_rows_joined_into_one_match_the_reference(mode, padding, monkeypatch):
    """The direct method's joined path: rows padded, rounded to the stride, end to end.

    Several short rows (odd lengths, lengths not a multiple of the stride, and rows shorter than
    the kernel where the mode and padding allow), a shared window (all rows joined) and one
    kernel per channel (each channel's rows joined), convolve and correlate.
    """
    joined = []
    monkeypatch.setattr(npengine, "conv1d_joined",
                        lambda *a, run=npengine.conv1d_joined: joined.append(1) or run(*a))
    rng = np.random.default_rng(abs(hash(("joined", mode, padding))) % 2**32)
    grid = itertools.product([1, 2, 3, 5], [1, 2], [False, True], [True, False], [3, 6, 9])
    for stride, dilation, correlate, shared, k in grid:
        spec = ConvSpec(mode=mode, padding=padding, stride=stride, dilation=dilation,
                        correlate=correlate, groups=2)
        span = spec.span(k)
        lengths = {span - 2, span + 1, 2 * span + 3, 37, 64}  # shorter than the span, odd, even
        w = rng.standard_normal((1 if shared else 2, 1, k)) * np.ones((2, 1, 1))
        for n in sorted(lengths):
            try:
                spec.check(n, k)
            except ConvcliError:  # valid with K > N, reflect/circular pads too long: refused
                continue
            x = rng.standard_normal((4, 2, n))
            got = npengine.conv1d(x, w, spec, GEMM)
            np.testing.assert_allclose(got, reference(x, w, spec), atol=1e-10,
                                       err_msg=f"{spec} k={k} n={n} shared={shared}")
    assert joined, "the joined path never ran"


@pytest.mark.parametrize("mode", ["same", "valid", "full", "causal"])
@pytest.mark.parametrize("padding", list(PADDINGS))
def test_rows_read_in_place_end_to_end_match_the_reference(mode, padding, monkeypatch):
    """``conv1d_flat``: one kernel for every row and stride 1, the batch as one flat row, the
    outputs that read a pad recomputed from the pads. Rows as short as the span and longer,
    odd lengths, dilation, convolve and correlate, both dtypes, a batch split into many pieces
    on the workers (one of them ragged), and the cases it leaves to the other paths."""
    flat = []
    monkeypatch.setattr(npengine, "conv1d_flat",
                        lambda *a, run=npengine.conv1d_flat: flat.append(1) or run(*a))
    monkeypatch.setattr(npengine, "THREADED_OUTPUTS", 0)  # threads even for these small batches
    monkeypatch.setattr(geometry, "CHUNK_ELEMENTS", 160)  # many pieces
    rng = np.random.default_rng(abs(hash(("flat", mode, padding))) % 2**32)
    grid = itertools.product([1, 2], [False, True], [np.float32, np.float64], [3, 6, 9])
    for dilation, correlate, dtype, k in grid:
        spec = ConvSpec(mode=mode, padding=padding, dilation=dilation, correlate=correlate,
                        groups=2)
        span = spec.span(k)
        for n in sorted({span, span + 1, 2 * span + 3, 37, 101}):
            try:
                spec.check(n, k)
            except ConvcliError:
                continue
            x = rng.standard_normal((3, 2, n)).astype(dtype)
            w = np.tile(rng.standard_normal((1, 1, k)), (2, 1, 1)).astype(dtype)  # one kernel
            expected = reference(x, w, spec)
            for method in (GEMM, "auto", "direct"):
                before = len(flat)
                got = npengine.conv1d(x, w, spec, method)
                case = f"{spec} k={k} n={n} {dtype.__name__} {method}"
                assert got.shape == expected.shape and got.dtype == dtype, case
                scale = np.abs(x).max() * np.abs(w).sum()
                np.testing.assert_allclose(got, expected, atol=TOL[dtype] * scale, err_msg=case)
                ran = len(flat) > before
                if method == GEMM:  # it runs exactly where its conditions hold
                    assert ran == (mode != "full" or span == 1), case
    assert flat or mode == "full", "the in-place path never ran"


def test_in_place_rows_need_one_contiguous_kernel_and_stride_one():
    """Per-channel kernels, stride 2 and a non-contiguous batch go to the joined path (checked
    against the reference all the same)."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((4, 2, 200))
    hann = np.tile(np.hanning(9)[None, None], (2, 1, 1))
    for w, spec, batch in (
            (rng.standard_normal((2, 1, 9)), ConvSpec(groups=2), x),
            (hann, ConvSpec(stride=2, groups=2), x),
            (hann, ConvSpec(groups=2), np.asfortranarray(x))):
        plan = npengine.make_plan(w, spec, GEMM, batch.dtype)
        assert not npengine.reads_rows_in_place(plan, batch, spec.output_length(200, 9))
        np.testing.assert_allclose(npengine.conv1d(batch, w, spec, GEMM), reference(batch, w, spec),
                                   atol=1e-10, err_msg=str(spec))


def test_plans_are_kept_per_kernel_and_options():
    """A kept plan is reused only for the same kernel, spec, method and dtype: two kernels of one
    shape in turns each give their own result."""
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 1, 300))
    kernels = [rng.standard_normal((1, 1, 7)) for _ in range(2)]
    specs = [ConvSpec(groups=1), ConvSpec(groups=1, correlate=True)]
    for _ in range(2):
        for w, spec in itertools.product(kernels, specs):
            np.testing.assert_allclose(npengine.conv1d(x, w, spec, GEMM), reference(x, w, spec),
                                       atol=1e-10)
    assert len(npengine._plans) <= npengine.PLANS_KEPT


def test_joined_rows_in_float32_and_a_mono_batch():
    """A batch of mono float32 clips (the W4 shape, smaller), joined, against the reference."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((16, 1, 1001)).astype(np.float32)
    w = np.hanning(31)[None, None].astype(np.float32)
    for spec in (ConvSpec(groups=1), ConvSpec(mode="full", padding="reflect", stride=4, groups=1)):
        got = npengine.conv1d(x, w, spec, "direct")
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, reference(x, w, spec), atol=2e-6, err_msg=str(spec))


@pytest.mark.parametrize("join", [False, True])
@pytest.mark.parametrize("method", [GEMM, FFT, CORRELATE])
def test_long_signals_chunk_edges_and_middle(method, join, monkeypatch):
    """Small chunks: the edge/middle/edge loop (rows read in place) and the joined rows, a
    shared window and per-channel kernels."""
    monkeypatch.setattr(geometry, "CHUNK_ELEMENTS", 700)
    monkeypatch.setattr(geometry, "JOIN_ROW", 1 << 16 if join else 0)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 2, 5003))
    for w in (np.tile(np.hanning(33)[None, None], (2, 1, 1)), rng.standard_normal((2, 1, 32))):
        for mode, padding, stride in (("same", "reflect", 1), ("full", "circular", 3), ("valid", "zeros", 2)):
            spec = ConvSpec(mode=mode, padding=padding, stride=stride, groups=2)
            np.testing.assert_allclose(npengine.conv1d(x, w, spec, method), reference(x, w, spec),
                                       atol=1e-10, err_msg=f"{spec} {method}")


@pytest.mark.parametrize("dilation", [1, 3])
def test_nonfinite_samples_reach_exactly_the_outputs_whose_taps_touch_them(dilation):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 400)).astype(np.float32)
    x[0, 0, 100], x[0, 1, 250] = np.nan, np.inf
    w = rng.uniform(0.5, 1.0, (2, 1, 7)).astype(np.float32)
    spec = ConvSpec(mode="same", stride=2, dilation=dilation, groups=2)
    got = npengine.conv1d(x, w, spec, "auto")  # auto sees NaN/Inf and runs numpy.correlate
    touched = reference(~np.isfinite(x) * 1.0, np.ones_like(w), spec) > 0  # taps on a bad sample
    assert (~np.isfinite(got) == touched).all()
    clean = reference(np.where(np.isfinite(x), x, 0), w, spec)
    np.testing.assert_allclose(got[~touched], clean[~touched], atol=1e-5)


@pytest.mark.parametrize("where", [0, 3000, 5999])
def test_nonfinite_found_while_the_gemm_reads_runs_numpy_correlate(where):
    """The in-place GEMM checks each piece of the signal as it reads it: a NaN anywhere (first
    sample, middle, last) makes ``auto`` and ``direct`` choose again with the signal read and
    run numpy.correlate, as ``choose_method(x=x)`` says, with no numpy warning on the way."""
    rng = np.random.default_rng(where)
    x = rng.standard_normal((2, 1, 3000)).astype(np.float32)
    x.reshape(-1)[where] = np.nan
    w = np.hanning(9)[None, None].astype(np.float32)
    spec = ConvSpec(groups=1)
    for method in ("auto", "direct"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got, choice = npengine.conv1d_chosen(x, w, spec, method)
        assert choice.algorithm == "correlate", choice
        assert choice == npengine.choose_method(3000, 9, spec, method, batch=2, dtype=x.dtype, x=x)
        touched = reference(np.isnan(x) * 1.0, np.ones_like(w), spec) > 0
        assert (np.isnan(got) == touched).all()
    clean = x.copy()
    clean.reshape(-1)[where] = 0.0
    got, choice = npengine.conv1d_chosen(clean, w, spec, "auto")
    assert choice.algorithm == "gemm"
    assert choice == npengine.choose_method(3000, 9, spec, batch=2, dtype=x.dtype, x=clean)


def test_cost_estimates_follow_the_rates_in_use(monkeypatch):
    """costs_for remembers its answers per rates table: new rates (a calibration) count at once."""
    spec = ConvSpec(groups=1)
    base = costs_for(16_000, 31, spec, batch=64, engine="numpy")
    slower = {**costmodel.NUMPY_COST, "gemm_flop": 10 * costmodel.NUMPY_COST["gemm_flop"]}
    monkeypatch.setattr(selection, "cost_rates", lambda device, engine: slower)
    assert costs_for(16_000, 31, spec, batch=64, engine="numpy")["gemm"][0] > 5 * base["gemm"][0]
    assert costs_for(16_000, 31, spec, batch=64, engine="numpy")["fft"] == base["fft"]


def test_streamer_equals_reference_for_random_blocks():
    rng = np.random.default_rng(11)
    for (mode, padding), method in itertools.product(
            [("same", "reflect"), ("full", "circular"), ("causal", "replicate"), ("valid", "zeros")],
            [GEMM, MethodChoice("fft", "", "overlap-save", 64), CORRELATE]):
        spec = ConvSpec(mode=mode, padding=padding, stride=int(rng.integers(1, 4)),
                        dilation=int(rng.integers(1, 3)), correlate=bool(rng.integers(2)), groups=2)
        n, k = int(rng.integers(80, 300)), int(rng.integers(3, 10))
        x, w = rng.standard_normal((1, 2, n)), rng.standard_normal((2, 1, k))
        h = edge_extent(n, spec, k)
        streamer = npengine.streamer(w, spec, n, x[..., :h], x[..., n - h :], method)
        outputs, position = [], 0
        while position < n:
            size = int(rng.integers(1, 3 * spec.span(k)))
            outputs.append(streamer.push(x[..., position : position + size]))
            position += size
        outputs.append(streamer.finish())
        np.testing.assert_allclose(np.concatenate(outputs, -1), reference(x, w, spec), atol=1e-10,
                                   err_msg=f"{spec} k={k} {method}")


def test_auto_applies_the_torch_engines_rule():
    """Each engine prices with its own rates (and the numpy engine its own frame sizes), but the
    rule is one: direct for short kernels, FFT for long ones, a float64 FFT for 100+ dB."""
    from convcli.engines import torch_backend as engine

    rng = np.random.default_rng(5)
    loud_and_quiet = rng.standard_normal((1, 2, 50_000)) * np.logspace(0, -7, 50_000)
    for k, x in ((31, rng.standard_normal((1, 2, 50_000))), (2001, rng.standard_normal((1, 2, 50_000))),
                 (2001, loud_and_quiet.astype(np.float32)), (2001, rng.standard_normal((3, 2, 20_000)))):
        x = x.astype(np.float32) if x.dtype == np.float64 and x.shape[0] == 1 else x
        spec = ConvSpec(groups=2)
        ours = npengine.choose_method(x.shape[-1], k, spec, batch=x.shape[0], channels=2,
                                      dtype=x.dtype, x=x)
        theirs = engine.choose_method(x.shape[-1], k, spec, batch=x.shape[0], channels=2,
                                      dtype=engine.DTYPES[x.dtype.name], x=engine.torch.from_numpy(x))
        assert (ours.method, ours.fft_dtype) == (theirs.method, theirs.fft_dtype)


def test_mixing_kernels_and_cuda_keep_the_torch_engine():
    x = np.random.default_rng(1).standard_normal((1, 2, 100)).astype(np.float32)
    mixing = np.ones((3, 2, 5), np.float32)
    assert prepare(mixing, 2, ConvSpec(), "cpu")[0].name == "torch"
    assert prepare(np.ones(5), 2, ConvSpec(), "cuda")[0].name == "torch"
    (y,), run = filter_arrays([x], mixing, ConvSpec(), device="cpu")
    assert run["engine"] == "torch" and y.shape == (1, 3, 100)
    (y,), run = filter_arrays([x], np.ones(5, np.float32), ConvSpec(), device="cpu")
    assert run["engine"] == "numpy" and run["device"] == "cpu" and run["dtype"] == "float32"


WRAPPER = """
import sys
from convcli.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    assert not exc.code, exc.code
assert 'torch' not in sys.modules, 'filter imported torch'
"""


@pytest.mark.parametrize("extra", [[], ["--block", "10000", "--method", "fft"]])
def test_cpu_filter_never_imports_torch(tmp_path, extra):
    """Whole and streamed: ``import torch`` alone takes longer than SoX's whole run."""
    out = tmp_path / "out.wav"
    proc = subprocess.run([sys.executable, "-c", WRAPPER, "filter", str(SAMPLES / "chord.wav"),
                           "-o", str(out), "--size", "31", "--device", "cpu", "--json", *extra],
                          check=False, capture_output=True, env=cli_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    run = json.loads(proc.stdout)
    assert run["engine"] == "numpy" and run["device"] == "cpu"
    assert out.stat().st_size > 0


def test_float32_fft_error_within_reported_bound():
    """The float32 FFT runs in float32 (not float64 inside numpy) and stays within its bound."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((1, 2, 100_000)).astype(np.float32)
    w = rng.standard_normal((2, 1, 3000)).astype(np.float32)
    spec = ConvSpec(groups=2)
    exact = reference(x, w, spec)
    for nfft in (8192, 1 << 17):
        got = npengine.conv1d(x, w, spec, MethodChoice("fft", "", "overlap-save", nfft))
        assert got.dtype == np.float32
        error = float(np.abs(got - exact).max())
        bound = fft_error_bound(nfft, "float32") * np.abs(x).max() * np.abs(w).sum(-1).max()
        assert error <= bound, (nfft, error, bound)


def test_streamed_fft_runs_whole_frames_and_equals_the_reference():
    """Blocks longer than four frames' outputs: the stream runs whole frames, in fours."""
    rng = np.random.default_rng(13)
    spec = ConvSpec(mode="same", padding="reflect", groups=2)
    n, k = 300_000, 300
    x, w = rng.standard_normal((1, 2, n)), rng.standard_normal((2, 1, k))
    choice = MethodChoice("fft", "", "overlap-save", 1024)
    h = edge_extent(n, spec, k)
    streamer = npengine.streamer(w, spec, n, x[..., :h], x[..., n - h :], choice)
    granule = streamer.plan.granule  # whole frames, in fours (the FFT's SIMD lanes)
    assert granule % (1024 - k + 1) == 0 and granule < 3000
    assert streamer.piece % granule == 0  # pieces of the stream: whole granules
    outputs = [streamer.push(x[..., i : i + 30_000]) for i in range(0, n, 30_000)]
    assert all(y.shape[-1] % streamer.piece == 0 for y in outputs[:-1])
    assert sum(y.shape[-1] for y in outputs) > n // 2  # most outputs came before the end
    outputs.append(streamer.finish())
    np.testing.assert_allclose(np.concatenate(outputs, -1), reference(x, w, spec), atol=1e-10)


@pytest.mark.parametrize("where", [None, 10, -10])
def test_extremes_of_a_long_signal_in_parts_equal_numpy(where):
    """auto's min/max pass runs in parts on worker threads: the same numbers, NaN included."""
    x = np.random.default_rng(3).standard_normal((2, 3, 400_000)).astype(np.float32)
    if where is not None:
        x.reshape(-1)[where] = np.nan
    low, high = npengine.extremes(x)
    if where is None:
        assert (low, high) == (float(np.min(x)), float(np.max(x)))
    else:
        assert np.isnan(low) and np.isnan(high)
    x.reshape(-1)[7] = -np.inf  # in the first part
    low = npengine.extremes(x)[0]
    assert low == -np.inf if where is None else np.isnan(low)


@pytest.mark.parametrize("stride", [1, 3])
def test_direct_with_a_kernel_too_long_for_the_band_multiplies_the_taps(stride, tmp_path):
    """--method direct with 20 001 taps: the GEMM's band would take gigabytes, so both engines
    multiply the taps (numpy.correlate / F.conv1d), with the reference's numbers."""
    import torch

    from convcli.engines.torch_backend import conv1d as torch_conv1d

    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 2, 30_000))
    w = np.broadcast_to(rng.standard_normal(20_001) / 100, (2, 1, 20_001)).copy()
    spec = ConvSpec(groups=2, stride=stride, padding="reflect")
    assert not geometry.gemm_fits(spec.span(20_001), stride)
    expected = reference_conv(x, w, groups=2, stride=stride, padding="reflect")
    choice = npengine.choose_method(30_000, 20_001, spec, "direct", channels=2, dtype="float64", x=x)
    assert (choice.method, choice.algorithm) == ("direct", "correlate")
    np.testing.assert_allclose(npengine.conv1d(x, w, spec, "direct"), expected, atol=1e-9)
    got = torch_conv1d(torch.from_numpy(x), torch.from_numpy(w), spec, "direct")
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-9)
