"""Streaming equals the whole-signal result: the Streamer on random blocks (shorter than the
kernel too) against scipy, and stream_filter on real files against the whole path."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from convcli.core.spec import PADDINGS, ConvSpec
from convcli.engines.torch_backend import streamer as Streamer
from convcli.errors import InputError, UsageError
from convcli.io.blocks import open_source
from convcli.io.formats import to_pcm
from convcli.io.signals import read_signal
from convcli.pipeline import (
    DEFAULT_BLOCK,
    PIPE_BLOCK,
    FilterJob,
    filter_arrays,
    plan_outputs,
    stream_block,
)
from convcli.pipeline import stream_file as stream_filter
from convcli.plan.geometry import edge_extent
from convcli.plan.selection import MethodChoice
from tests.test_engine import reference


def stream(x: torch.Tensor, w: torch.Tensor, spec: ConvSpec, method, rng, largest: int) -> torch.Tensor:
    n = x.shape[-1]
    h = edge_extent(n, spec, w.shape[-1])
    streamer = Streamer(w, spec, n, x[..., :h], x[..., n - h :], method)
    outputs, position = [], 0
    while position < n:
        size = int(rng.integers(1, largest))
        outputs.append(streamer.push(x[..., position : position + size]))
        position += size
    outputs.append(streamer.finish())
    return torch.cat(outputs, -1)


@pytest.mark.parametrize("mode", ["same", "valid", "full", "causal"])
@pytest.mark.parametrize("padding", list(PADDINGS))
def test_streamer_equals_scipy_for_random_blocks(mode, padding):
    rng = np.random.default_rng(hash((mode, padding, "stream")) % 2**32)
    grid = list(itertools.product([1, 2, 5], [1, 3], [False, True], [4, 9]))
    for i in rng.choice(len(grid), size=6, replace=False):
        stride, dilation, correlate, k = grid[i]
        spec = ConvSpec(mode=mode, padding=padding, stride=stride, dilation=dilation,
                        correlate=correlate, groups=2)
        n = int(rng.integers(60, 300))
        x = rng.standard_normal((1, 2, n))
        w = rng.standard_normal((2, 1, k))
        expected = reference(x, w, spec)
        span = spec.span(k)
        for method in (MethodChoice("direct", "", "gemm"), MethodChoice("fft", "", "overlap-save", 64)):
            # blocks from 1 sample to a few spans: many shorter than the kernel
            got = stream(torch.from_numpy(x), torch.from_numpy(w), spec, method, rng, 3 * span)
            case = f"{spec} n={n} k={k} {method.algorithm}"
            assert tuple(got.shape) == expected.shape, case
            np.testing.assert_allclose(got.numpy(), expected, atol=1e-11, err_msg=case)


@pytest.mark.parametrize("mode", ["same", "valid", "full", "causal"])
@pytest.mark.parametrize("padding", list(PADDINGS))
@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_streamer_of_a_length_known_only_at_its_end_equals_scipy(mode, padding, engine):
    """A pipe's stream: no length and no ends given; the pads come from held-back samples
    (circular, whose left pad is the tail, is given the length and the tail). Signals as
    short as one sample, shorter than the samples held back, and long ones."""
    from convcli import engines

    eng = engines.load(engine)
    conv = torch.from_numpy if engine == "torch" else (lambda a: a)
    rng = np.random.default_rng(hash((mode, padding, engine, "unknown")) % 2**32)
    methods = (MethodChoice("direct", "", "gemm"), MethodChoice("fft", "", "overlap-save", 64))
    for stride, dilation, correlate, k in itertools.islice(
            rng.permutation(list(itertools.product([1, 3], [1, 2], [False, True], [1, 4, 9]))),
            8):
        spec = ConvSpec(mode=mode, padding=padding, stride=int(stride), dilation=int(dilation),
                        correlate=bool(correlate), groups=2)
        for n in (1, 5, 40, 301):
            try:
                spec.check(n, int(k))
            except InputError:
                continue
            x, w = rng.standard_normal((1, 2, n)), rng.standard_normal((2, 1, int(k)))
            expected = reference(x, w, spec)
            tail = None
            if padding == "circular":
                tail = conv(x[..., n - edge_extent(n, spec, int(k)) :])
            for method in methods:
                streamer = eng.streamer(conv(w), spec, n if tail is not None else None, None,
                                        tail, method)
                parts, position = [], 0
                while position < n:
                    size = int(rng.integers(1, 3 * spec.span(int(k)) + 2))
                    parts.append(streamer.push(conv(x[..., position : position + size])))
                    position += size
                parts.append(streamer.finish())
                got = np.concatenate([np.asarray(part) for part in parts], -1)
                case = f"{spec} n={n} k={k} {method.algorithm}"
                assert got.shape == expected.shape, case
                np.testing.assert_allclose(got, expected, atol=1e-10, err_msg=case)


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_a_streams_samples_do_not_depend_on_its_blocks(engine):
    """Bit for bit: outputs run in pieces counted from the first output, so random blocks, a
    length known or not, and one block for everything give the same float32 sums."""
    from convcli import engines
    from convcli.engines.driver import STREAM_PIECE

    eng = engines.load(engine)
    conv = torch.from_numpy if engine == "torch" else (lambda a: a)
    rng = np.random.default_rng(21)
    n = 3 * STREAM_PIECE + 777
    x = rng.standard_normal((1, 2, n)).astype(np.float32)
    for k, method in ((31, MethodChoice("direct", "", "gemm")),
                      (2000, MethodChoice("fft", "", "overlap-save", 8192))):
        w = rng.standard_normal((2, 1, k)).astype(np.float32)
        spec = ConvSpec(mode="full", padding="reflect", stride=2, groups=2)
        runs = []
        for sizes, known in (([n], True), (None, True), (None, False)):
            streamer = eng.streamer(conv(w), spec, n if known else None, None, None, method)
            parts, position = [], 0
            while position < n:
                size = sizes[0] if sizes else int(rng.integers(1, 40_000))
                parts.append(streamer.push(conv(x[..., position : position + size])))
                position += size
            parts.append(streamer.finish())
            runs.append(np.concatenate([np.asarray(part) for part in parts], -1))
        for run in runs[1:]:
            np.testing.assert_array_equal(run, runs[0], err_msg=f"{engine} k={k}")


def test_streamer_of_unknown_length_checks_the_spec_at_its_end():
    streamer = Streamer(torch.ones(1, 1, 9), ConvSpec(mode="valid"), None, None, None,
                        MethodChoice("direct", "", "gemm"))
    assert streamer.push(torch.zeros(1, 1, 5)).shape[-1] == 0
    with pytest.raises(InputError, match="longer than the signal"):
        streamer.finish()
    with pytest.raises(ValueError, match="circular"):
        Streamer(torch.ones(1, 1, 3), ConvSpec(padding="circular"), None, None, None, "direct")


def test_streamer_refuses_wrong_lengths():
    x = torch.zeros(1, 1, 10)
    streamer = Streamer(torch.ones(1, 1, 3), ConvSpec(), 10, x[..., :2], x[..., -2:], "direct")
    streamer.push(x[..., :5])
    with pytest.raises(ValueError, match="ended after 5 of 10"):
        streamer.finish()
    with pytest.raises(ValueError, match="pushed 15"):
        streamer.push(torch.zeros(1, 1, 10))


def whole(path, coefficients, spec, subtype):
    """The whole-signal path as filter runs it: read, filter, round to PCM."""
    signal = read_signal(str(path))
    (y,), _ = filter_arrays([signal.data], coefficients, spec, method="direct", device="cpu")
    frames = np.ascontiguousarray(y[0].T)
    return to_pcm(frames, subtype)[0] if subtype.startswith("PCM") else frames


@pytest.mark.parametrize("options", [
    {"mode": "same", "padding": "zeros"},
    {"mode": "full", "padding": "reflect", "stride": 3},
    {"mode": "causal", "padding": "circular", "dilation": 2, "correlate": True},
    {"mode": "valid", "padding": "replicate", "stride": 2},
])
def test_stream_filter_equals_whole_file(tmp_path, options):
    rng = np.random.default_rng(5)
    wav = tmp_path / "in.wav"
    sf.write(wav, rng.uniform(-0.5, 0.5, (5000, 2)), 8000, subtype="DOUBLE")
    coefficients = np.hanning(33)[1:-1] / np.hanning(33).sum()
    spec = ConvSpec(**options)
    out = tmp_path / "out.wav"
    for block in (7, 100, 4096):  # shorter than the kernel, a few spans, most of the file
        with open(out, "wb") as handle:
            result = stream_filter(str(wav), handle, coefficients=coefficients, spec=spec,
                                   out_format="wav", subtype=None, block=block, method="direct",
                                   device="cpu")
        got = sf.read(out, dtype="float64")[0]
        expected = whole(wav, coefficients, spec, "DOUBLE")
        assert got.shape == expected.shape == (spec.output_length(5000, 31), 2)
        np.testing.assert_allclose(got, expected, atol=1e-12, err_msg=f"block {block}")
        assert result.blocks == -(-5000 // block)


def test_stream_pcm16_rounds_and_clips_like_the_whole_path(tmp_path):
    rng = np.random.default_rng(6)
    wav = tmp_path / "loud.wav"
    sf.write(wav, np.clip(rng.standard_normal((20_000, 2)) * 0.6, -1, 1), 44_100, subtype="PCM_16")
    coefficients = np.ones(9) / 4  # gain up to 2.25: some samples clip
    out = tmp_path / "out.wav"
    with open(out, "wb") as handle:
        result = stream_filter(str(wav), handle, coefficients=coefficients, spec=ConvSpec(),
                               out_format="wav", subtype=None, block=3000, device="cpu")
    got = sf.read(out, dtype="int16")[0].astype(int)
    expected = whole(wav, coefficients, ConvSpec(), "PCM_16").astype(int)
    assert sf.info(out).subtype == "PCM_16"
    assert np.abs(got - expected).max() <= 1  # float32 sums in another order: ties may differ
    assert result.wrote.clipped > 0 and result.wrote.peak > 1


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_U8", "PCM_32", "FLOAT"])
@pytest.mark.parametrize("fmt", ["WAV", "W64"])
def test_blocks_read_as_libsndfile_reads_floats(tmp_path, subtype, fmt):
    """Integer PCM read as integers and scaled here (by convcli for WAV, through libsndfile's
    integer read for W64): the numbers of soundfile's float read."""
    rng = np.random.default_rng(8)
    path = tmp_path / "in.audio"
    data = np.clip(rng.standard_normal((3001, 3)) * 0.5, -1, 1)
    data[0] = [-1.0, 1.0, 0.0]
    sf.write(path, data, 8000, subtype=subtype, format=fmt)
    for dtype in ("float32", "float64"):
        expected = sf.read(path, dtype=dtype, always_2d=True)[0].T
        with open_source(str(path), dtype=dtype) as source:
            blocks = list(source.blocks(1000))
        assert [b.shape for b in blocks] == [(1, 3, 1000)] * 3 + [(1, 3, 1)]
        assert all(b.dtype == dtype and b.flags.c_contiguous for b in blocks)
        np.testing.assert_array_equal(np.concatenate(blocks, -1)[0], expected)


def test_stream_refuses_nonfinite_with_its_position(tmp_path):
    data = np.zeros((3000, 1))
    data[2345, 0] = np.nan
    wav = tmp_path / "nan.wav"
    sf.write(wav, data, 8000, subtype="FLOAT")
    with open(tmp_path / "o.wav", "wb") as handle, pytest.raises(InputError, match="sample 2345"):
        stream_filter(str(wav), handle, coefficients=np.ones(3), spec=ConvSpec(), out_format="wav",
                      subtype=None, block=1000, device="cpu")


def test_stream_or_whole_is_decided_in_one_place(tmp_path):
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros((100, 2)), 8000)
    npy = tmp_path / "a.npy"
    np.save(npy, np.zeros(100))
    long_npy = tmp_path / "long.npy"
    np.lib.format.open_memmap(long_npy, "w+", np.float32, (2, (1 << 23) + 1))  # 2^24 + 2 samples
    (tmp_path / "out").mkdir()

    def job(inputs, block, output=None, **options):
        out_dir = None if len(inputs) == 1 else str(tmp_path / "out")
        return FilterJob(inputs, plan_outputs(inputs, output, out_dir, None), block=block,
                         **options)

    assert stream_block(job([str(wav)], None)) is None  # short: whole
    assert stream_block(job([str(wav)], 64)) == 64
    assert stream_block(job([str(npy)], 64)) == 64  # NPY streams too
    assert stream_block(job([str(wav)], None, str(tmp_path / "o.npy"))) is None
    assert stream_block(job(["-"], None)) == PIPE_BLOCK  # stdin always streams
    assert stream_block(job(["-"], 64)) == 64
    assert stream_block(job([str(long_npy)], None, str(tmp_path / "o.npy"))) == DEFAULT_BLOCK
    # one long engine call on a short file streams too, so that it shows its progress
    np.save(tmp_path / "mid.npy", np.zeros(200_000, np.float32))
    direct = job([str(tmp_path / "mid.npy")], None, method="direct")
    assert stream_block(direct, np.ones(31)) is None
    assert stream_block(direct, np.ones(1 << 16)) == DEFAULT_BLOCK
    for args, options in ((([str(wav), str(tmp_path / "b.wav")], 64), {}),
                          ((["-"], None), {"normalize_output": -1.0})):
        with pytest.raises(UsageError):
            stream_block(job(*args, **options))


def test_cli_block_streams_and_reports(cli, tmp_path):
    rng = np.random.default_rng(8)
    wav = tmp_path / "in.wav"
    sf.write(wav, rng.uniform(-0.5, 0.5, (30_000, 2)), 16_000, subtype="PCM_16")
    streamed, plain = tmp_path / "s.wav", tmp_path / "p.wav"
    proc = cli("filter", wav, "-o", streamed, "--block", "4000", "--size", "63", "--mode", "full",
               "--gain", "-6", "--json", check=True)
    summary = json.loads(proc.stdout)
    assert summary["streamed"] == {"block": 4000, "blocks": 8} and summary["method"] == "direct"
    assert summary["files"][0]["shape_out"] == [1, 2, 30_062]
    cli("filter", wav, "-o", plain, "--size", "63", "--mode", "full", "--gain", "-6", "-q", check=True)
    a = sf.read(streamed, dtype="int16")[0].astype(int)
    b = sf.read(plain, dtype="int16")[0].astype(int)
    assert a.shape == b.shape and np.abs(a - b).max() <= 1
    (tmp_path / "d").mkdir()
    bad = cli("filter", wav, "sample_data/chord.wav", "--out-dir", tmp_path / "d", "--block", "10")
    assert bad.returncode == 2 and b"--block" in bad.stderr
