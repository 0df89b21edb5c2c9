"""WAV for streams: headers read from a pipe and written to one, samples as bytes, placeholders.

A writer that cannot seek back (``sox ... -t wav -``, ``ffmpeg ... -f wav -``, convcli itself)
leaves a placeholder where the sizes belong; a file cut short announces more than it holds.

- ``read_header``: the chunks before the samples, read from a stream (a pipe or a file) with
  no seeking: the format (``WavFormat``, with its channel mask) and the data size, or None
  where the header holds a placeholder (0, 0xFFFFFFFF, SoX's 0x7FFFF000).
- ``header_bytes``: the header convcli writes: exact sizes when the length is known (RF64
  past 4 GiB), SoX's placeholder otherwise; WAVE_FORMAT_EXTENSIBLE with a channel mask for
  more than 2 channels or more than 16 bits, as the format's definition asks.
- ``decode_samples`` / ``encode_samples``: little-endian sample bytes to ``[C, t]`` float rows
  (the numbers libsndfile's float read gives) and back (integer PCM rounded to nearest).
- ``fix_wav_lengths`` / ``wav_data_shortfall``: the whole-file path's repair of placeholder
  lengths, and its refusal of truncated files.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from convcli.errors import InputError
from convcli.io.formats import PCM, to_pcm

#: the data size SoX writes when it cannot seek back (rounded down to whole frames); convcli
#: writes it too, and reads it, like 0 and 0xFFFFFFFF, as "the length is not known"
PIPE_DATA_SIZE = 0x7FFFF000
_UNKNOWN = (0, 0xFFFFFFFF)
_GUID_TAIL = bytes.fromhex("000000001000800000aa00389b71")
WAVE_FORMAT_PCM, WAVE_FORMAT_IEEE_FLOAT, WAVE_FORMAT_EXTENSIBLE = 1, 3, 0xFFFE
#: the subtypes convcli reads and writes itself: (format tag, bits per sample, numpy dtype)
CODECS = {
    "PCM_U8": (WAVE_FORMAT_PCM, 8, "u1"),
    "PCM_16": (WAVE_FORMAT_PCM, 16, "<i2"),
    "PCM_24": (WAVE_FORMAT_PCM, 24, "u1"),
    "PCM_32": (WAVE_FORMAT_PCM, 32, "<i4"),
    "FLOAT": (WAVE_FORMAT_IEEE_FLOAT, 32, "<f4"),
    "DOUBLE": (WAVE_FORMAT_IEEE_FLOAT, 64, "<f8"),
}
_BY_TAG = {(tag, bits): name for name, (tag, bits, _) in CODECS.items()}
#: the speaker mask for a channel count where the input has none: libsndfile's WAVEX defaults
#: (mono FC, stereo, quad, 5.1, 7.1), which ffprobe names; other counts stay unassigned (0)
DEFAULT_MASKS = {1: 0x4, 2: 0x3, 4: 0x33, 6: 0x3F, 8: 0xFF}
#: chunks before ``data`` larger than this are refused (a header, not a file to hold)
MAX_CHUNK = 1 << 24


@dataclass(frozen=True)
class WavFormat:
    """A WAV's ``fmt `` chunk: ``subtype`` is one of ``CODECS`` or None (a codec only
    libsndfile decodes: ADPCM, GSM, µ-law...); ``channel_mask`` None without an extensible one."""

    channels: int
    rate: int
    bits: int
    block_align: int
    subtype: str | None
    channel_mask: int | None = None


@dataclass(frozen=True)
class WavHeader:
    """Everything before the samples: the format, where they start, how many bytes they take
    (None: a placeholder, so the stream runs to its end)."""

    format: WavFormat
    data_offset: int
    data_bytes: int | None

    @property
    def frames(self) -> int | None:
        return None if self.data_bytes is None else self.data_bytes // self.format.block_align


def is_placeholder(size: int, block_align: int) -> bool:
    """A ``data`` size that means "not known": 0, 0xFFFFFFFF, or SoX's 0x7FFFF000 rounded down
    to whole frames (0x7FFFEFF0 for 24-byte frames) and anything above it.

    >>> is_placeholder(0x7FFFEFF0, 24), is_placeholder(1000, 4)
    (True, False)
    """
    return size in _UNKNOWN or size >= PIPE_DATA_SIZE // max(block_align, 1) * max(block_align, 1)


def parse_fmt(body: bytes) -> WavFormat:
    """The ``fmt `` chunk's fields; the subtype where convcli decodes the samples itself."""
    if len(body) < 16:
        raise InputError("its WAV fmt chunk is cut short", "the file is damaged; rewrite it")
    tag, channels, rate, _, align, bits = struct.unpack("<HHIIHH", body[:16])
    mask = None
    if tag == WAVE_FORMAT_EXTENSIBLE and len(body) >= 40 and body[26:40] == _GUID_TAIL:
        mask = struct.unpack("<I", body[20:24])[0]
        tag = struct.unpack("<H", body[24:26])[0]
    subtype = _BY_TAG.get((tag, bits))
    if channels < 1 or align != channels * bits // 8 or bits % 8:
        subtype = None
    return WavFormat(channels, rate, bits, align, subtype, mask)


def read_header(read: Callable[[int], bytes], name: str) -> WavHeader:
    """The header of a RIFF/RF64 WAVE stream, read in order with ``read(n)`` (no seeking), up
    to the first sample: what a pipe allows. Refuses what is not one, with a clear error."""
    first = _exactly(read, 12, name)
    if first[:4] not in (b"RIFF", b"RF64") or first[8:12] != b"WAVE":
        raise InputError(f"{name} is not a RIFF/RF64 WAVE stream", "check what is piped in")
    offset, fmt, ds64 = 12, None, None
    while True:
        chunk_id, size = struct.unpack("<4sI", _exactly(read, 8, name))
        offset += 8
        if chunk_id == b"data":
            if fmt is None:
                raise InputError(f"{name} has samples before its fmt chunk",
                                 "the file is damaged; rewrite it with sox")
            if first[:4] == b"RF64" and size == 0xFFFFFFFF and ds64 is not None:
                data = ds64
            else:
                data = None if is_placeholder(size, fmt.block_align) else size
            return WavHeader(fmt, offset, data)
        if size > MAX_CHUNK:
            raise InputError(f"{name} has a {chunk_id!r} chunk of {size:,} bytes before its "
                             "samples", "the header is damaged; rewrite the file with sox")
        body = _exactly(read, size + (size & 1), name)
        offset += len(body)
        if chunk_id == b"fmt ":
            fmt = parse_fmt(body)
        elif chunk_id == b"ds64" and len(body) >= 16:
            ds64 = struct.unpack("<Q", body[8:16])[0]


def _exactly(read: Callable[[int], bytes], n: int, name: str) -> bytes:
    data = read(n)
    if len(data) < n:
        raise InputError(f"{name} ends inside its WAV header ({len(data)} of {n} bytes)",
                         "the stream was cut short; check the command writing it")
    return data


def channel_mask(channels: int, mask: int | None) -> int:
    """The input's speaker mask where it names as many speakers as there are channels, else
    ``DEFAULT_MASKS``'s (0, unassigned, for counts it lacks)."""
    if mask is not None and mask.bit_count() == channels:
        return mask
    return DEFAULT_MASKS.get(channels, 0)


def header_bytes(channels: int, rate: int, subtype: str, frames: int | None,
                 mask: int | None = None, reserve: bool = False) -> bytes:
    """The WAV header for ``frames`` frames (None: not known, SoX's placeholder).

    Plain PCM for up to 2 channels of up to 16 bits, else WAVE_FORMAT_EXTENSIBLE with the
    speaker mask (``channel_mask``). Float gets a ``fact`` chunk (and, extensible, two bytes
    of padding in its ``fmt `` chunk, for SoX). Past 4 GiB of samples an
    exact length needs RF64 (a ``ds64`` chunk); ``reserve`` puts a ``JUNK`` chunk of that size
    in its place, so that a header written before the length was known can be rewritten in
    place either way (``header_bytes(..., frames=n, reserve=True)`` has the same length).

    >>> len(header_bytes(2, 48000, "PCM_16", 10)), len(header_bytes(6, 48000, "FLOAT", 10))
    (44, 82)
    """
    tag, bits, _ = CODECS[subtype]
    align = channels * bits // 8
    extensible = channels > 2 or bits > 16
    fmt = struct.pack("<HHIIHH", WAVE_FORMAT_EXTENSIBLE if extensible else tag, channels, rate,
                      rate * align, align, bits)
    if extensible:
        fmt += struct.pack("<HHIH", 22, bits, channel_mask(channels, mask), tag) + _GUID_TAIL
        if tag != WAVE_FORMAT_PCM:
            # SoX 14.4 reads a second cbSize after the extension for a non-PCM subformat and
            # warns when the chunk ends there; two zero bytes more (the chunk may be longer
            # than cbSize says) keep it quiet, and libsndfile and ffmpeg skip them
            fmt += b"\0\0"
    data = PIPE_DATA_SIZE // align * align if frames is None else frames * align
    count = data // align
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    if tag != WAVE_FORMAT_PCM:
        chunks += b"fact" + struct.pack("<I", 4) + struct.pack("<I", min(count, 0xFFFFFFFF))
    riff_size = 4 + (36 if reserve else 0) + len(chunks) + 8 + data + (data & 1)
    if riff_size <= 0xFFFFFFFF:
        junk = b"JUNK" + struct.pack("<I", 28) + bytes(28) if reserve else b""
        return (b"RIFF" + struct.pack("<I", riff_size) + b"WAVE" + junk + chunks + b"data"
                + struct.pack("<I", data))
    riff_size = 4 + 36 + len(chunks) + 8 + data + (data & 1)
    ds64 = b"ds64" + struct.pack("<IQQQI", 28, riff_size, data, count, 0)
    return (b"RF64" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE" + ds64 + chunks + b"data"
            + struct.pack("<I", 0xFFFFFFFF))


def decode_samples(raw, subtype: str, channels: int, dtype: str,
                   out: np.ndarray | None = None) -> np.ndarray:
    """Interleaved little-endian samples as ``[1, C, t]`` contiguous rows of ``dtype``: the
    numbers libsndfile's float read gives (integers scaled by 2^−(bits−1), a power of two, so
    exactly; 8-bit WAV is unsigned, offset by 128). A trailing partial frame is dropped.
    ``out``: the ``[1, C, t]`` array to decode into.

    >>> decode_samples(bytes.fromhex("0040 00c0"), "PCM_16", 2, "float32").tolist()
    [[[0.5], [-0.5]]]
    """
    _, bits, stored = CODECS[subtype]
    width = bits // 8
    frames = len(raw) // (width * channels)
    raw = memoryview(raw)[: frames * width * channels]
    rows = np.empty((1, channels, frames), dtype) if out is None else out
    if subtype == "PCM_24":  # three bytes a sample: the top byte signed, shifted into place
        b = np.frombuffer(raw, np.uint8).reshape(frames, channels, 3)
        ints = (b[..., 2].astype(np.int8).astype(np.int32) << 16) | (b[..., 1].astype(np.int32)
                                                                      << 8) | b[..., 0]
        samples, unit = ints, 2.0**-23
    else:
        samples = np.frombuffer(raw, stored).reshape(frames, channels)
        unit = {"PCM_U8": 2.0**-7, "PCM_16": 2.0**-15, "PCM_32": 2.0**-31}.get(subtype)
    for c in range(channels):  # a channel at a time: see blocks.rows_to_pcm
        column = samples[:, c]
        if subtype == "PCM_U8":
            column = column.astype(np.int16) - 128
        if unit is None:
            rows[0, c] = column
        else:
            np.multiply(column, np.array(unit, dtype), out=rows[0, c], dtype=dtype)
    return rows


def encode_samples(rows: np.ndarray, subtype: str) -> tuple[bytes | memoryview, int, float]:
    """``[C, t]`` float rows (full scale ±1) as interleaved little-endian sample bytes, with the
    samples clipped and the peak (``formats.to_pcm``: rounded to nearest, clamped).

    >>> bytes(encode_samples(np.array([[0.5], [-0.5]]), "PCM_16")[0]).hex(" ")
    '00 40 00 c0'
    """
    channels, frames = rows.shape
    if subtype not in PCM:
        out = np.empty((frames, channels), CODECS[subtype][2])
        for c in range(channels):
            out[:, c] = rows[c]
        peak = float(np.max(np.abs(rows))) if rows.size else 0.0
        return memoryview(out).cast("B"), 0, peak
    container = np.empty((frames, channels), PCM[subtype][1])
    clipped, peak = 0, 0.0
    for c in range(channels):
        _, row_clipped, row_peak = to_pcm(rows[c], subtype, out=container[:, c])
        clipped, peak = clipped + row_clipped, max(peak, row_peak)
    if subtype == "PCM_24":  # int32 << 8: the three top bytes
        data = container.astype("<i4", copy=False).view(np.uint8).reshape(-1, 4)[:, 1:]
        return data.tobytes(), clipped, peak
    if subtype == "PCM_U8":  # int16 << 8: the top byte, offset to unsigned
        return ((container >> 8) + 128).astype(np.uint8).tobytes(), clipped, peak
    return memoryview(container.astype(CODECS[subtype][2], copy=False)).cast("B"), clipped, peak


def fix_wav_lengths(data: bytes) -> bytes:
    """Fill in the lengths of a WAV written to a pipe, so it is read to the end of the stream.

    A writer that cannot seek back (``sox ... -t wav -``, ``ffmpeg ... -f wav -``) leaves a
    placeholder where the sizes belong: 0, 0xFFFFFFFF, or a guess such as 0x7FFFF000.
    libsndfile reads 0 frames for a ``data`` size of 0, so when the ``data`` chunk's size is 0,
    0xFFFFFFFF or more than the bytes present, it is set (in memory) to the whole frames that
    are there, and the RIFF size to the bytes present. Honest headers come back untouched.
    ``_read_audio`` refuses a truncated file (``wav_data_shortfall``) before calling this, so
    only the unknown-length markers (0, 0xFFFFFFFF, ≥ 0x7FFFF000) reach the repair there.

    >>> import struct
    >>> fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, 8000, 16000, 2, 16)
    >>> head = b"RIFF" + struct.pack("<I", 0) + b"WAVE" + fmt + b"data" + struct.pack("<I", 0)
    >>> fixed = fix_wav_lengths(head + bytes(7))       # 3 whole 2-byte frames and one odd byte
    >>> struct.unpack("<I", fixed[40:44])[0], struct.unpack("<I", fixed[4:8])[0]
    (6, 43)
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return data
    pos, align = 12, 1
    while pos + 8 <= len(data):
        chunk = data[pos : pos + 4]
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = pos + 8
        if chunk == b"fmt " and size >= 14 and body + 14 <= len(data):
            align = max(1, int.from_bytes(data[body + 12 : body + 14], "little"))
        if chunk == b"data":
            available = len(data) - body
            if size == 0 and _looks_like_chunk(data, body):
                return data  # an honest empty data chunk followed by another chunk
            if 0 < size <= available and size != 0xFFFFFFFF:
                return data  # honest
            whole = min(available - available % align, 0xFFFFFFFF - 36)
            if whole <= 0:
                return data
            fixed = bytearray(data)
            fixed[pos + 4 : pos + 8] = whole.to_bytes(4, "little")
            fixed[4:8] = min(len(data) - 8, 0xFFFFFFFF).to_bytes(4, "little")
            return bytes(fixed)
        pos = body + size + (size & 1)
    return data

def _looks_like_chunk(data: bytes, pos: int) -> bool:
    """True when ``data[pos:]`` starts with a plausible RIFF chunk header that fits."""
    if pos + 8 > len(data):
        return False
    chunk = data[pos : pos + 4]
    size = int.from_bytes(data[pos + 4 : pos + 8], "little")
    return all(48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c == 32 for c in chunk) and (
        pos + 8 + size <= len(data)
    )

def wav_data_shortfall(data: bytes, size: int | None = None) -> tuple[int, int] | None:
    """``(declared, present)`` bytes of the ``data`` chunk when the file holds fewer than its
    header says (a truncated WAV), else None. Streams that do not know their length
    (``is_placeholder``: 0, 0xFFFFFFFF, SoX's 0x7FFFF000) are not truncated. ``size`` is the
    whole file's length when ``data`` is only its beginning.

    >>> import struct
    >>> head = b"RIFF" + struct.pack("<I", 0) + b"WAVE" + b"data" + struct.pack("<I", 8)
    >>> wav_data_shortfall(head + bytes(8)), wav_data_shortfall(head + bytes(3))
    (None, (8, 3))
    """
    total = size
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RF64") or data[8:12] != b"WAVE":
        return None
    ds64_data_size = None
    offset, align = 12, 1
    while offset + 8 <= len(data):
        chunk, size = data[offset : offset + 4], int.from_bytes(data[offset + 4 : offset + 8], "little")
        if chunk == b"ds64" and offset + 8 + 24 <= len(data):
            ds64_data_size = int.from_bytes(data[offset + 16 : offset + 24], "little")
        if chunk == b"fmt " and offset + 8 + 14 <= len(data):
            align = max(1, int.from_bytes(data[offset + 20 : offset + 22], "little"))
        if chunk == b"data":
            if size == 0xFFFFFFFF and ds64_data_size is not None:
                size = ds64_data_size
            elif is_placeholder(size, align):
                return None
            present = (len(data) if total is None else total) - offset - 8
            return (size, present) if present < size else None
        offset += 8 + size + (size & 1)
    return None


def wav_length_unknown(head: bytes, size: int) -> bool:
    """Whether a WAV's ``data`` chunk size is a pipe writer's placeholder, so that only the
    bytes present say how long it is: 0, 0xFFFFFFFF without a ds64 chunk, or more than the
    file of ``size`` bytes holds (as ``fix_wav_lengths`` repairs them). ``head`` is the
    file's beginning.

    >>> import struct
    >>> head = b"RIFF" + struct.pack("<I", 0) + b"WAVE" + b"data" + struct.pack("<I", 0)
    >>> wav_length_unknown(head, 1000), wav_length_unknown(head[:-4] + struct.pack("<I", 8), 28)
    (True, False)
    """
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
        return False
    ds64 = False
    offset = 12
    while offset + 8 <= len(head):
        chunk, length = head[offset : offset + 4], int.from_bytes(head[offset + 4 : offset + 8],
                                                                  "little")
        ds64 = ds64 or chunk == b"ds64"
        if chunk == b"data":
            if length == 0xFFFFFFFF:
                return not ds64
            return length == 0 or offset + 8 + length > size
        offset += 8 + length + (length & 1)
    return False
