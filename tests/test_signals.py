"""Signal I/O: formats, layouts, round trips that keep rate and subtype, PCM rounding."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from convcli.errors import InputError, UsageError
from convcli.io.atomic import atomic_output
from convcli.io.formats import choose_subtype, sniff_format, to_pcm
from convcli.io.npy import to_file_layout
from convcli.io.signals import encode, find_nonfinite, read_signal


def roundtrip(data, tmp_path, **encode_args):
    writer, report = encode(data, **encode_args)
    out = tmp_path / f"out.{encode_args['out_format']}"
    with atomic_output(str(out)) as handle:
        writer(handle)
    return out, report


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "PCM_U8"])
def test_wav_roundtrip_keeps_rate_subtype_and_samples(subtype, tmp_path, rng):
    frames = np.clip(rng.standard_normal((1000, 3)) * 0.3, -1, 0.99)
    src = tmp_path / "in.wav"
    sf.write(src, frames, 22050, subtype=subtype)
    expected, _ = sf.read(src, dtype="float64", always_2d=True)
    signal = read_signal(str(src))
    assert signal.shape == (1, 3, 1000) and signal.rate == 22050 and signal.subtype == subtype
    out, report = roundtrip(signal.data, tmp_path, out_format="wav", rate=signal.rate,
                            subtype=choose_subtype("wav", source_format=signal.format, source_subtype=signal.subtype), layout=signal.layout)
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.subtype) == (22050, 3, subtype)
    back, _ = sf.read(out, dtype="float64", always_2d=True)
    np.testing.assert_array_equal(back, expected)  # identity is exact: no truncation anywhere
    assert report.clipped == 0


def test_pcm_rounds_to_nearest_and_clamps():
    lsb = 1 / 32768
    ints, clipped, peak = to_pcm(np.array([[0.7 * lsb], [-0.3 * lsb], [-0.7 * lsb], [1.5], [-2.0]]),
                                 "PCM_16")
    assert ints.ravel().tolist() == [1, 0, -1, 32767, -32768]
    assert clipped == 2 and peak == 2.0
    ints, clipped, _ = to_pcm(np.array([[1.0 - 0.6 / 2**23]]), "PCM_24")
    assert ints.ravel().tolist() == [(2**23 - 1) << 8] and clipped == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pcm_32_clamps_full_scale_float32_without_wrapping(dtype):
    """float32 cannot hold 2**31 - 1: clamped there, it rounded up to 2**31 and the cast
    wrapped it to -2**31. The reference is float64 numpy arithmetic."""
    x = np.array([1.0, 1.5, -1.0, -3.0, 0.99999994, 0.5 / 2**31], dtype)
    ints, clipped, peak = to_pcm(x, "PCM_32")
    expected = np.clip(np.round(x.astype(np.float64) * 2**31), -(2**31), 2**31 - 1)
    assert ints.dtype == np.int32
    assert ints.tolist() == expected.astype(np.int64).tolist()
    assert ints[0] == 2**31 - 1 and clipped == 3 and peak == 3.0


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24"])
def test_pcm_into_a_strided_column(subtype):
    """``out=`` (a channel of interleaved frames) gets what a fresh array would."""
    rng = np.random.default_rng(4)
    bits = 16 if subtype == "PCM_16" else 24
    row = np.concatenate([rng.uniform(-0.9, 0.9, 1000), [0.5 / 2 ** (bits - 1), 1.2, -1.5]])
    frames = np.full((row.size, 2), 7, np.int16 if bits == 16 else np.int32)
    ints, clipped, peak = to_pcm(row.astype(np.float32), subtype, out=frames[:, 1])
    lsb = 2.0 ** (bits - 1)
    expected = np.clip(np.round(row.astype(np.float32) * lsb), -lsb, lsb - 1)  # half to even
    np.testing.assert_array_equal(frames[:, 1] >> (32 - bits if bits == 24 else 0), expected)
    assert (frames[:, 0] == 7).all() and ints.base is not None
    assert clipped == 2 and peak == 1.5
    _, clipped, peak = to_pcm(row[:1000], subtype)  # nothing near full scale: nothing clipped
    assert clipped == 0 and peak == np.abs(row[:1000]).max()


def npy_file(tmp_path, array, name="x.npy"):
    path = tmp_path / name
    np.save(path, array)
    return str(path)


def test_npy_layouts(tmp_path):
    one = read_signal(npy_file(tmp_path, np.arange(5.0)))
    assert one.shape == (1, 1, 5) and one.layout == "t" and one.data.dtype == np.float64
    two = read_signal(npy_file(tmp_path, np.ones((2, 50), np.float32)))
    assert two.shape == (1, 2, 50) and two.data.dtype == np.float32
    tc = np.arange(100.0).reshape(50, 2)
    with pytest.raises(InputError, match="--layout tc"):
        read_signal(npy_file(tmp_path, tc))
    got = read_signal(npy_file(tmp_path, tc), layout="tc")
    np.testing.assert_array_equal(got.data[0], tc.T)
    np.testing.assert_array_equal(to_file_layout(got.data, "tc"), tc)
    assert read_signal(npy_file(tmp_path, tc), layout="ct").shape == (1, 50, 2)  # insisted
    three = read_signal(npy_file(tmp_path, np.zeros((4, 2, 10))))
    assert three.shape == (4, 2, 10) and three.layout == "bct"
    assert to_file_layout(one.data, "t").shape == (5,)
    assert read_signal(npy_file(tmp_path, np.arange(5.0)), dtype="float32").data.dtype == np.float32


@pytest.mark.parametrize("array,match", [
    (np.ones((2, 2, 2, 2)), "4 dimensions"), (np.zeros(0), "empty"), (np.ones(3) * 1j, "dtype"),
])
def test_npy_refusals(array, match, tmp_path):
    with pytest.raises(InputError, match=match):
        read_signal(npy_file(tmp_path, array))


def test_sniffing():
    assert sniff_format(b"RIFF\x00\x00\x00\x00WAVEfmt ") == "wav"
    assert sniff_format(b"RF64\xff\xff\xff\xffWAVE") == "wav"
    assert sniff_format(b"fLaC\x00") == "flac"
    assert sniff_format(b"OggS\x00") == "ogg"
    assert sniff_format(b"\x93NUMPY\x01\x00") == "npy"
    assert sniff_format(b"hello world!") is None


def test_stdin_is_sniffed(tmp_path):
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros((10, 2)), 8000, format="FLAC", subtype="PCM_16")
    signal = read_signal("-", stdin=io.BytesIO(buffer.getvalue()))
    assert signal.format == "flac" and signal.shape == (1, 2, 10)
    with pytest.raises(InputError, match="empty"):
        read_signal("-", stdin=io.BytesIO(b""))


def test_nonfinite_is_located():
    data = np.zeros((2, 3, 10))
    data[1, 2, 4] = np.nan
    data[1, 0, 7] = np.inf
    assert find_nonfinite(data) == (1, 2, 4)
    assert find_nonfinite(np.zeros((1, 1, 3))) is None


def test_output_needs_rate_and_one_signal(tmp_path):
    with pytest.raises(UsageError, match="--rate"):
        encode(np.zeros((1, 1, 4)), out_format="wav", rate=None, subtype="FLOAT")
    with pytest.raises(Exception, match="batch"):
        encode(np.zeros((2, 1, 4)), out_format="wav", rate=8000, subtype="FLOAT")


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.npy"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_output(str(target)) as handle:
        handle.write(b"partial")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.npy"]
