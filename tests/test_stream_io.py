"""The stream's sources and sinks against libsndfile and numpy: WAV headers and samples, NPY
layouts, every format read from a file and from a pipe, and the outputs read back by
soundfile, SoX and ffmpeg.

The references are the libraries' own whole reads (``soundfile.read``, ``numpy.load``) and the
closed form of rounding to integer PCM; nothing is compared with convcli itself.
"""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from convcli.errors import InputError, UsageError
from convcli.io import blocks, npy, sinks, wav
from convcli.io.atomic import StreamTarget
from convcli.io.formats import sniff, writable

SOX = shutil.which("sox")
FFMPEG = shutil.which("ffmpeg")


@pytest.fixture
def stdin(monkeypatch):
    """Make standard input these bytes (a binary buffer, as a captured stdin has)."""

    def feed(data: bytes) -> None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))

    return feed


def encoded(frames: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, frames, rate, subtype=subtype, format=fmt)
    return buffer.getvalue()


def read_all(source: blocks.BlockSource, block: int) -> np.ndarray:
    with source:
        return np.concatenate(list(source.blocks(block)), -1)


# --- WAV headers and samples -------------------------------------------------------------------
@pytest.mark.parametrize("subtype", list(wav.CODECS))
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_wav_samples_decode_as_libsndfile_reads_them(rng, subtype, channels):
    x = np.clip(rng.standard_normal((1001, channels)) * 0.5, -1, 1)
    x[0] = 1.0
    x[1] = -1.0
    data = encoded(x, 8000, "WAV", subtype)
    header = wav.read_header(io.BytesIO(data).read, "x.wav")
    assert (header.format.channels, header.format.rate, header.format.subtype) == (
        channels, 8000, subtype)
    raw = data[header.data_offset : header.data_offset + header.data_bytes]
    for dtype in ("float32", "float64"):
        expected = sf.read(io.BytesIO(data), dtype=dtype, always_2d=True)[0].T
        np.testing.assert_array_equal(wav.decode_samples(raw, subtype, channels, dtype)[0],
                                      expected, err_msg=f"{subtype} {dtype}")


@pytest.mark.parametrize("subtype", list(wav.CODECS))
def test_wav_written_by_convcli_reads_back_in_libsndfile(rng, subtype):
    x = rng.uniform(-1.2, 1.2, (2, 999))  # some samples clip
    raw, clipped, peak = wav.encode_samples(x, subtype)
    data = wav.header_bytes(2, 44100, subtype, 999) + bytes(raw) + b"\0" * (len(raw) & 1)
    back, rate = sf.read(io.BytesIO(data), dtype="float64", always_2d=True)
    assert rate == 44100 and back.shape == (999, 2)
    assert peak == pytest.approx(np.abs(x).max())
    if subtype in ("FLOAT", "DOUBLE"):
        np.testing.assert_allclose(back.T, x, rtol=1e-7 if subtype == "FLOAT" else 0)
        assert clipped == 0
        return
    bits = wav.CODECS[subtype][1]
    scale = 2.0 ** (bits - 1)
    ints = np.clip(np.rint(x * scale), -scale, scale - 1)  # round to nearest, then clamp
    np.testing.assert_array_equal(back.T * scale, ints)
    assert clipped == int(np.count_nonzero(np.rint(x * scale) != ints))


def test_wav_header_lengths_placeholders_and_rf64():
    plain = wav.header_bytes(2, 48000, "PCM_16", 100)
    assert len(plain) == 44 and plain[:4] == b"RIFF"
    unknown = wav.read_header(io.BytesIO(wav.header_bytes(2, 48000, "PCM_16", None)).read, "x")
    assert unknown.data_bytes is None and unknown.frames is None
    # SoX rounds its placeholder down to whole frames: 0x7FFFEFF0 for 6-channel float
    assert wav.is_placeholder(0x7FFFEFF0, 24) and wav.is_placeholder(0, 4)
    assert wav.is_placeholder(0xFFFFFFFF, 4) and not wav.is_placeholder(1 << 30, 4)
    # an exact length past 4 GiB needs RF64; a header reserved before the length was known
    # has the same size either way, so it is rewritten in place
    huge = (1 << 31) // 2  # frames of 2-channel 16-bit: 8 GiB
    for frames in (100, huge):
        assert len(wav.header_bytes(2, 48000, "PCM_16", frames, reserve=True)) == len(
            wav.header_bytes(2, 48000, "PCM_16", None, reserve=True))
    rf64 = wav.header_bytes(2, 48000, "PCM_16", huge * 2)
    parsed = wav.read_header(io.BytesIO(rf64).read, "x")
    assert rf64[:4] == b"RF64" and parsed.data_bytes == huge * 2 * 4


@pytest.mark.skipif(SOX is None, reason="sox is not installed")
def test_sox_pipe_header_for_six_float_channels_reads_to_its_end(rng):
    """SoX's own placeholder for 24-byte frames (0x7FFFEFF0) is a length not known."""
    x = rng.uniform(-0.5, 0.5, (3000, 6)).astype(np.float32)
    proc = subprocess.run([SOX, "-t", "raw", "-r", "8000", "-e", "floating-point", "-b", "32",
                           "-c", "6", "-", "-t", "wav", "-"], input=x.tobytes(),
                          capture_output=True, check=True)
    header = wav.read_header(io.BytesIO(proc.stdout).read, "stdin")
    assert header.frames is None and header.format.block_align == 24
    rows = wav.decode_samples(proc.stdout[header.data_offset :], "FLOAT", 6, "float32")
    back = subprocess.run([SOX, "-t", "wav", "-", "-t", "raw", "-e", "floating-point", "-b",
                           "32", "-"], input=proc.stdout, capture_output=True, check=True)
    np.testing.assert_array_equal(rows[0].T, np.frombuffer(back.stdout, "<f4").reshape(-1, 6))


# --- NPY layouts --------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,layout", [((500,), "t"), ((3, 500), "ct"), ((500, 3), "tc"),
                                          ((1, 500), "ct"), ((4, 2, 500), "bct")])
@pytest.mark.parametrize("fortran", [False, True])
def test_npy_time_major_layouts_read_block_by_block_as_numpy_loads(rng, shape, layout, fortran):
    array = rng.standard_normal(shape).astype(np.float32)
    array = np.asfortranarray(array) if fortran else np.ascontiguousarray(array)
    buffer = io.BytesIO()
    np.save(buffer, array)
    data = buffer.getvalue()
    stored, order, dtype, offset = npy.header_info(data, "x.npy")
    assert order == (fortran and len(shape) > 1 and array.flags.f_contiguous
                     and not array.flags.c_contiguous)
    bct = {"t": array[None, None], "ct": array[None], "tc": array.T[None], "bct": array}[layout]
    if not npy.time_major(stored, order, layout):
        assert bct.shape[0] * bct.shape[1] > 1  # only several rows stored one after another
        return
    step = bct.shape[0] * bct.shape[1] * dtype.itemsize
    got = [npy.block_from_bytes(data[offset + a * step : offset + b * step], dtype, stored,
                                layout, order) for a, b in ((0, 7), (7, 300), (300, 500))]
    np.testing.assert_array_equal(np.concatenate(got, -1), bct)


@pytest.mark.parametrize("frames", [123, None])
@pytest.mark.parametrize("batch,channels,layout", [(1, 1, "t"), (1, 3, "ct"), (1, 3, "tc"),
                                                   (4, 2, "bct")])
def test_npy_sink_writes_what_numpy_loads(rng, tmp_path, frames, batch, channels, layout):
    y = rng.standard_normal((batch, channels, 123)).astype(np.float32)
    path = tmp_path / "y.npy"
    with open(path, "w+b") as handle:
        sink = sinks.open_sink(StreamTarget(handle, True), out_format="npy", subtype=None,
                               rate=None, batch=batch, channels=channels, frames=frames,
                               layout=layout, dtype="float32")
        for a, b in ((0, 50), (50, 51), (51, 123)):
            sink.write(y[..., a:b])
        sink.close()
    expected = {"t": y[0, 0], "ct": y[0], "tc": y[0].T, "bct": y}[layout]
    np.testing.assert_array_equal(np.load(path), expected)


# --- every format, from a file and from a pipe ------------------------------------------------
FORMATS = [("WAV", "PCM_16"), ("WAV", "PCM_24"), ("WAV", "FLOAT"), ("WAV", "PCM_U8"),
           ("WAV", "GSM610"), ("WAV", "IMA_ADPCM"), ("WAV", "ULAW"), ("RF64", "PCM_16"),
           ("WAVEX", "PCM_24"), ("FLAC", "PCM_16"), ("FLAC", "PCM_24"), ("OGG", "VORBIS"),
           ("OGG", "OPUS"), ("MP3", "MPEG_LAYER_III"), ("AIFF", "PCM_16"), ("AIFF", "FLOAT"),
           ("AU", "PCM_16"), ("CAF", "PCM_16"), ("W64", "PCM_16"), ("MAT5", "DOUBLE")]


@pytest.mark.parametrize("fmt,subtype", FORMATS, ids=[f"{f}-{s}" for f, s in FORMATS])
def test_every_format_reads_in_blocks_as_libsndfile_reads_it_whole(rng, tmp_path, stdin, fmt,
                                                                   subtype):
    channels = 1 if subtype == "GSM610" else 2
    x = np.clip(rng.standard_normal((20_000, channels)) * 0.3, -1, 1)
    data = encoded(x, 48_000, fmt, subtype)
    path = tmp_path / "in.bin"  # no telling extension: the format comes from the content
    path.write_bytes(data)
    dtype = "float64" if subtype in ("DOUBLE", "PCM_32") else "float32"  # formats.audio_dtype
    expected = sf.read(path, dtype=dtype, always_2d=True)[0].T
    got = read_all(blocks.open_source(str(path)), 3000)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got[0], expected, err_msg="file")
    stdin(data)
    with blocks.open_source("-") as source:
        assert source.name == "stdin" and source.channels == channels
        got = np.concatenate(list(source.blocks(3000)), -1)
    np.testing.assert_array_equal(got[0], expected, err_msg="pipe")
    assert sniff(data) is not None


@pytest.mark.parametrize("shape,layout", [((3, 4000), None), ((4000, 3), "tc"),
                                          ((4, 2, 1000), None), ((4000,), None)])
def test_npy_reads_in_blocks_from_a_file_and_a_pipe(rng, tmp_path, stdin, shape, layout):
    array = rng.standard_normal(shape)
    path = tmp_path / "x.npy"
    np.save(path, array)
    bct = {1: array[None, None], 2: (array.T if layout else array)[None], 3: array}[len(shape)]
    for name in (str(path), "-"):
        stdin(path.read_bytes())
        with blocks.open_source(name, layout=layout, rate=8000.0) as source:
            assert (source.batch, source.channels, source.frames) == bct.shape
            assert source.rate == 8000.0 and source.dtype == "float64"
            np.testing.assert_array_equal(np.concatenate(list(source.blocks(333)), -1), bct)


@pytest.mark.parametrize("size", [0, 0xFFFFFFFF, 0x7FFFF000])
def test_wav_pipe_with_a_placeholder_length_reads_to_its_end(rng, stdin, size):
    x = rng.uniform(-0.5, 0.5, (5001, 2))
    good = encoded(x, 8000, "WAV", "PCM_16")
    bad = bytearray(good)
    bad[4:8] = struct.pack("<I", 0xFFFFFFFF)
    bad[40:44] = struct.pack("<I", size)
    stdin(bytes(bad))
    with blocks.open_source("-") as source:
        assert source.frames is None
        got = np.concatenate(list(source.blocks(1000)), -1)
    np.testing.assert_array_equal(got[0], sf.read(io.BytesIO(good), dtype="float32")[0].T)


def test_truncated_inputs_end_in_one_clear_error(rng, tmp_path, stdin):
    x = rng.uniform(-0.5, 0.5, (20_000, 2))
    for fmt, subtype in (("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS")):
        whole = encoded(x, 8000, fmt, subtype)
        data = whole[: len(whole) // 2]
        stdin(data)
        with blocks.open_source("-") as source, pytest.raises(InputError, match="truncated"):
            list(source.blocks(4096))
        (tmp_path / "cut").write_bytes(data)
        with pytest.raises(InputError, match="truncated"):
            read_all(blocks.open_source(str(tmp_path / "cut")), 4096)


def test_rate_and_layout_are_npy_options(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, np.zeros((100, 2)), 8000)
    with pytest.raises(UsageError, match="keeps its own"):
        blocks.open_source(str(path), rate=16000.0)
    with pytest.raises(UsageError, match="--layout"):
        blocks.open_source(str(path), layout="tc")


def test_opus_is_written_only_at_its_rates():
    assert writable("opus", "OPUS", 48_000, 2) is None
    assert writable("opus", "OPUS", 44_100, 2) is not None  # libsndfile refuses, and says so
    assert writable("wav", "PCM_16", 44_100, 2) is None


# --- outputs read back by the other tools --------------------------------------------------------
@pytest.mark.parametrize("frames", [4000, None])
def test_wav_sink_lengths_exact_when_known_fixed_in_files_placeholder_in_pipes(rng, tmp_path,
                                                                               frames):
    y = rng.uniform(-0.5, 0.5, (1, 2, 4000))
    for seekable in (True, False):
        buffer = io.BytesIO()
        target = StreamTarget(buffer, seekable)
        sink = sinks.open_sink(target, out_format="wav", subtype="PCM_16", rate=8000, batch=1,
                               channels=2, frames=frames)
        for a in range(0, 4000, 1500):
            sink.write(y[..., a : a + 1500])
        sink.close()
        data = buffer.getvalue()
        header = wav.read_header(io.BytesIO(data).read, "out")
        assert header.frames == (4000 if seekable or frames else None)
        expected = np.clip(np.rint(y[0].T * 32768), -32768, 32767) / 32768
        back = sf.read(io.BytesIO(wav.fix_wav_lengths(data)), always_2d=True)[0]
        np.testing.assert_array_equal(back, expected)
