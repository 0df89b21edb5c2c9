"""Property tests of the loaders: random and mutated WAV/FLAC/NPY bytes give a Signal or a
ConvcliError (the CLI's one clean ``error:`` line), never any other exception.

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
    for fmt, subtype in (("WAV", "PCM_16"), ("WAV", "FLOAT"), ("WAV", "PCM_24"), ("FLAC", "PCM_16")):
        buffer = io.BytesIO()
        sf.write(buffer, stereo, 8000, format=fmt, subtype=subtype)
        seeds.append(buffer.getvalue())
    for array in (stereo[:, 0].astype(np.float32), stereo.T.copy(), stereo.T[None].astype("<f4"),
                  np.arange(50, dtype=np.int16)):
        buffer = io.BytesIO()
        np.save(buffer, array)
        seeds.append(buffer.getvalue())
    return seeds


SEEDS = _seeds()
MAGICS = [b"RIFF" + struct.pack("<I", 1000) + b"WAVE", b"RF64\xff\xff\xff\xffWAVE", b"fLaC",
          b"OggS", b"\x93NUMPY\x01\x00", b"\x93NUMPY\x02\x00", b""]


@st.composite
def mutated(draw) -> bytes:
    """A valid file, then a few truncations, overwrites, insertions or deletions."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
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
