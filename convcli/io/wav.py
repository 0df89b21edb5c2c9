"""WAV headers as pipe writers leave them: placeholder lengths repaired, truncation told apart.

A writer that cannot seek back (``sox ... -t wav -``, ``ffmpeg ... -f wav -``) leaves a
placeholder where the sizes belong; a file cut short announces more than it holds.
"""

from __future__ import annotations


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

#: a WAV ``data`` size meaning "unknown length" (streaming writers put these before they know)
_UNKNOWN_WAV_SIZES = (0, 0xFFFFFFFF)

def wav_data_shortfall(data: bytes, size: int | None = None) -> tuple[int, int] | None:
    """``(declared, present)`` bytes of the ``data`` chunk when the file holds fewer than its
    header says (a truncated WAV), else None. Streams that do not know their length
    (size 0 or 0xFFFFFFFF, or ≥ 0x7FFFF000 as some pipe writers use) are not truncated.
    ``size`` is the whole file's length when ``data`` is only its beginning.

    >>> import struct
    >>> head = b"RIFF" + struct.pack("<I", 0) + b"WAVE" + b"data" + struct.pack("<I", 8)
    >>> wav_data_shortfall(head + bytes(8)), wav_data_shortfall(head + bytes(3))
    (None, (8, 3))
    """
    total = size
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RF64") or data[8:12] != b"WAVE":
        return None
    ds64_data_size = None
    offset = 12
    while offset + 8 <= len(data):
        chunk, size = data[offset : offset + 4], int.from_bytes(data[offset + 4 : offset + 8], "little")
        if chunk == b"ds64" and offset + 8 + 24 <= len(data):
            ds64_data_size = int.from_bytes(data[offset + 16 : offset + 24], "little")
        if chunk == b"data":
            if size == 0xFFFFFFFF and ds64_data_size is not None:
                size = ds64_data_size
            elif size in _UNKNOWN_WAV_SIZES or size >= 0x7FFFF000:
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
