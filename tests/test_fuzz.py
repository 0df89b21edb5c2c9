"""Property tests of the loaders: random and mutated WAV/FLAC/NPY bytes give a Signal or a
ConvcliError (the CLI's one clean ``error:`` line), never any other exception: read whole
(``read_signal``), measured by ``info`` (``describe_file``, block by block) and streamed in
blocks through the public paths (``pipeline.stream_file`` and ``convcli filter --block``), so
they hold whatever the block reader inside looks like.

Bounded (a few hundred examples, derandomized) so the module runs in a few seconds.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convcli.errors import ConvcliError
from convcli.io.kernelfile import parse_kernel_bytes
from convcli.io.signals import Signal, read_signal

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def _seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    stereo = rng.uniform(-0.9, 0.9, (300, 2))
    seeds = []
    for fmt, subtype, frames in (("WAV", "PCM_16", stereo), ("WAV", "FLOAT", stereo),
                                 ("WAV", "PCM_24", stereo), ("FLAC", "PCM_16", stereo),
                                 ("FLAC", "PCM_24", stereo[:, :1]), ("FLAC", "PCM_S8", stereo)):
        buffer = io.BytesIO()
        sf.write(buffer, frames, 8000, format=fmt, subtype=subtype)
        seeds.append(buffer.getvalue())
    for array in (stereo[:, 0].astype(np.float32), stereo.T.copy(), stereo.T[None].astype("<f4"),
                  np.arange(50, dtype=np.int16)):
        buffer = io.BytesIO()
        np.save(buffer, array)
        seeds.append(buffer.getvalue())
    return seeds


SEEDS = _seeds()
AUDIO_SEEDS = [seed for seed in SEEDS if seed[:4] in (b"RIFF", b"fLaC")]
FLAC_SEEDS = [seed for seed in SEEDS if seed[:4] == b"fLaC"]
MAGICS = [b"RIFF" + struct.pack("<I", 1000) + b"WAVE", b"RF64\xff\xff\xff\xffWAVE", b"fLaC",
          b"OggS", b"\x93NUMPY\x01\x00", b"\x93NUMPY\x02\x00", b""]


@st.composite
def mutated(draw, seeds=SEEDS) -> bytes:
    """A valid file, then a few truncations, overwrites, insertions or deletions."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "overwrite", "insert", "delete", "int"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "truncate":
            del data[at:]
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[at : at + len(chunk)] = chunk
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        else:  # a header field set to an extreme 32-bit value (sizes, rates, channels)
            value = draw(st.sampled_from([0, 1, 2, 0x7FFFFFFF, 0xFFFFFFFF, 0x80000000]))
            data[at : at + 4] = struct.pack("<I", value)
    return bytes(data)


random_files = st.builds(lambda magic, tail: magic + tail, st.sampled_from(MAGICS),
                         st.binary(max_size=600))


def _load(tmp_path, data: bytes, name: str = "x.wav"):
    path = tmp_path / name
    path.write_bytes(data)
    try:
        signal = read_signal(str(path))
    except ConvcliError as exc:
        assert exc.line() and "\n" not in exc.line()
        return None
    assert isinstance(signal, Signal)
    assert signal.data.ndim == 3 and signal.data.size > 0
    assert signal.data.dtype in (np.float32, np.float64)
    return signal


@FUZZ
@given(data=mutated())
def test_mutated_files_load_or_fail_cleanly(tmp_path, data):
    _load(tmp_path, data)


@FUZZ
@given(data=random_files)
def test_random_bytes_load_or_fail_cleanly(tmp_path, data):
    _load(tmp_path, data, "x.npy")


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(data=st.one_of(st.binary(max_size=200), mutated(),
                      st.text(alphabet="0123456789.,;e-+ \n#nai", max_size=200).map(str.encode)))
def test_kernel_bytes_parse_or_fail_cleanly(data):
    try:
        kernel = parse_kernel_bytes(data, "k")
    except ConvcliError:
        return
    assert kernel.ndim in (1, 2, 3) and kernel.size > 0 and np.isfinite(kernel).all()


@FUZZ
@given(data=mutated(FLAC_SEEDS))
def test_mutated_flac_loads_or_fails_cleanly(tmp_path, data):
    _load(tmp_path, data, "x.flac")


@FUZZ
@given(data=mutated(AUDIO_SEEDS))
def test_mutated_audio_is_measured_by_info_or_fails_cleanly(tmp_path, data):
    from convcli.io.describe import describe_file

    path = tmp_path / "x.wav"
    path.write_bytes(data)
    try:
        facts = describe_file(str(path))
    except ConvcliError as exc:
        assert exc.line() and "\n" not in exc.line()
        return
    assert facts["frames"] > 0 and facts["channels"] > 0


def _stream(path, block: int):
    from convcli.core.spec import ConvSpec
    from convcli.pipeline import stream_file

    out = io.BytesIO()
    try:
        result = stream_file(str(path), out, coefficients=np.ones(3) / 3, spec=ConvSpec(),
                             out_format="wav", block=block)
    except ConvcliError as exc:
        assert exc.line() and "\n" not in exc.line()
        return None
    return result


@FUZZ
@given(data=mutated(AUDIO_SEEDS), block=st.sampled_from([1, 7, 64, 4096]))
def test_mutated_audio_streams_in_blocks_or_fails_cleanly(tmp_path, data, block):
    """``pipeline.stream_file``, the public path of ``filter --block``: a result or one
    ConvcliError, whatever libsndfile makes of the bytes block by block."""
    path = tmp_path / "x.wav"
    path.write_bytes(data)
    result = _stream(path, block)
    if result is not None:
        assert result.shape_out[-1] > 0 and result.wrote.format == "wav"


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=mutated(AUDIO_SEEDS))
def test_mutated_audio_through_filter_block_is_one_line(tmp_path, data):
    """``convcli filter --block`` in-process: exit 0, or 1 with one ``error:`` line that is
    not an internal error, and no output or temporary file left on failure."""
    from conftest import run_inprocess

    (tmp_path / "x.wav").write_bytes(data)
    out = tmp_path / "y.wav"
    out.unlink(missing_ok=True)
    proc = run_inprocess("filter", tmp_path / "x.wav", "--block", "64", "--size", "3", "-o", out,
                         "--quiet")
    lines = proc.stderr.decode().splitlines()
    if proc.returncode == 0:
        assert out.exists() and lines == []
        return
    # 2: bytes that are not audio at all are not streamed (--block is then a usage error)
    assert proc.returncode in (1, 2) and len(lines) == 1 and lines[0].startswith("error: ")
    assert "internal error" not in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.wav"]


@pytest.mark.parametrize("cut", [45, 100, 1000, -1])
def test_truncated_wav_is_refused_not_shortened(tmp_path, cut):
    """The decision: a WAV shorter than its header says is an error (libsndfile would read
    what is there and hand back a silently shorter signal)."""
    with pytest.raises(ConvcliError, match="truncated|cannot decode"):
        read_signal(str(_write(tmp_path, SEEDS[0][:cut])))


def test_streamed_wav_with_unknown_length_is_read(tmp_path):
    """A WAV written to a pipe says 0xFFFFFFFF (unknown) for its sizes: not truncated."""
    data = bytearray(SEEDS[0])
    at = data.index(b"data")
    data[at + 4 : at + 8] = struct.pack("<I", 0xFFFFFFFF)
    data[4:8] = struct.pack("<I", 0xFFFFFFFF)
    signal = read_signal(str(_write(tmp_path, bytes(data))))
    expected, _ = sf.read(io.BytesIO(SEEDS[0]), dtype="float32")
    np.testing.assert_array_equal(signal.data[0].T, expected)


def _write(tmp_path, data: bytes):
    path = tmp_path / "t.wav"
    path.write_bytes(data)
    return path
