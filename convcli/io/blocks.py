"""Audio in blocks: read a file block by block as ``[1, C, t]`` rows, write rows as PCM frames.

What a stream needs from the file formats (``convcli.io.formats``): the file's facts without
reading it (``audio_info``), its blocks de-interleaved into contiguous channel rows in the
precision of ``formats.audio_dtype`` (``read_rows``), the next block read on a thread while the
current one is filtered (``read_ahead``), NaN/Inf found block by block with the whole-file
message (``check_block_finite``), and rows rounded to integer PCM as they are interleaved
(``rows_to_pcm``).
"""

from __future__ import annotations

import numpy as np

from convcli.io.formats import PCM, SOUNDFILE_FORMATS, sniff_format, to_pcm
from convcli.io.signals import find_nonfinite, nonfinite_error


def audio_info(path: str) -> tuple[str, int, int, int] | None:
    """``(format, frames, channels, rate)`` of an audio file, or None for NPY/unknown/stdin."""
    if path == "-":
        return None
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
    except OSError:
        return None
    fmt = sniff_format(head)
    if fmt not in SOUNDFILE_FORMATS:
        return None
    import soundfile as sf

    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError, ValueError):
        return None
    return fmt, int(info.frames), int(info.channels), int(info.samplerate)


def frames_to_rows(frames: np.ndarray) -> np.ndarray:
    """soundfile's ``[t, C]`` frames as a contiguous ``[1, C, t]`` batch."""
    return np.ascontiguousarray(frames.T)[None]


def read_rows(infile, block: int, dtype: str):
    """The open file's blocks of ``block`` frames as contiguous ``[1, C, t]`` arrays of ``dtype``.

    Integer PCM is read as the integers and scaled here, in the same pass that de-interleaves
    the channels: 3× less time than libsndfile's own conversion to float, and the same numbers
    (libsndfile also scales by 2^−(bits−1), and that power of two is exact).
    """
    if infile.subtype not in PCM:
        for frames in infile.blocks(blocksize=block, dtype=dtype, always_2d=True):
            yield frames_to_rows(frames)
        return
    container = np.dtype(PCM[infile.subtype][1])
    unit = np.array(2.0 ** (1 - 8 * container.itemsize), dtype)
    for ints in infile.blocks(blocksize=block, dtype=container.name, always_2d=True):
        rows = np.empty((1, ints.shape[1], ints.shape[0]), dtype)
        for c in range(ints.shape[1]):  # a channel at a time: see rows_to_pcm
            np.multiply(ints[:, c], unit, out=rows[0, c], dtype=dtype)
        yield rows


def read_ahead(blocks, reader):
    """The items (never None) of the iterator ``blocks``, each next one fetched on ``reader``
    (an executor) while the caller works on the current one.

    >>> from concurrent.futures import ThreadPoolExecutor
    >>> with ThreadPoolExecutor(1) as pool:
    ...     list(read_ahead(iter("abc"), pool))
    ['a', 'b', 'c']
    """
    pending = reader.submit(next, blocks, None)
    while (item := pending.result()) is not None:
        pending = reader.submit(next, blocks, None)
        yield item


def rows_to_pcm(rows: np.ndarray, subtype: str) -> tuple[np.ndarray, int, float]:
    """``to_pcm`` of ``[C, t]`` rows into interleaved ``[t, C]`` frames, in the same pass.

    A channel at a time: numpy copies ``[C, t]`` into ``[t, C]`` 4-5× slower in one call
    (its inner loop runs over the C channels) than C long strided rows.
    """
    frames = np.empty(rows.shape[::-1], PCM[subtype][1])
    clipped, peak = 0, 0.0
    for c, row in enumerate(rows):
        _, row_clipped, row_peak = to_pcm(row, subtype, out=frames[:, c])
        clipped, peak = clipped + row_clipped, max(peak, row_peak)
    return frames, clipped, peak




def check_block_finite(rows: np.ndarray, offset: int, name: str) -> None:
    """Refuse NaN/Inf in a block ``[1, C, t]`` that starts at sample ``offset``, as the whole-file
    check words it (first in time, then channel)."""
    where = find_nonfinite(rows)
    if where is not None:
        _, c, t = where
        raise nonfinite_error(name, rows[0, c, t], c, offset + t)
