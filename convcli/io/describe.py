"""``convcli info``: what a signal file holds, and its levels. numpy and soundfile only (no torch).

Levels are measured on the samples as floats with full scale 1.0 (integer PCM divided by
2^(bits−1), as soundfile reads it; NPY values as stored), in float64, over the finite samples.
A file on disk is measured block by block (audio decoded ``BLOCK_SAMPLES`` at a time, NPY
memory-mapped), so a 4 GB file needs a few MB; stdin and pipes are read whole first (in
memory that is checked, ``io.signals.read_bytes``).

    >>> import io
    >>> import numpy as np
    >>> buf = io.BytesIO(); np.save(buf, np.array([[0.5, -0.5, 0.5, -0.5], [0.0, 0.0, 0.0, 1.0]]))
    >>> d = describe(buf.getvalue(), "x.npy")
    >>> d["shape"], d["dtype"], d["peak"], d["channel"][0]["rms"]
    ([1, 2, 4], 'float64', 1.0, 0.5)
"""

from __future__ import annotations

import io
import math
import os
from typing import Any

import numpy as np

from convcli.core import limits
from convcli.core.levels import LevelMeter
from convcli.errors import InputError, UsageError
from convcli.io import formats, npy, signals
from convcli.io.wav import wav_length_unknown

#: samples (all channels) measured at a time: 32 MB of float64
BLOCK_SAMPLES = 1 << 22
#: bytes read to tell what a file is (NPY headers and WAV chunks before ``data`` fit)
HEAD_BYTES = 1 << 20


def describe_file(path: str, *, layout: str | None = None,
                  rate: float | None = None) -> dict[str, Any]:
    """``describe`` of the file ``path`` (``-`` = stdin) in bounded memory: a regular file is
    measured in blocks where it lies; stdin, a pipe or a FIFO is read first."""
    name = "stdin" if path == "-" else path
    if path == "-" or not os.path.isfile(path):
        return describe(signals.read_bytes(path), name, layout=layout, rate=rate)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            head = handle.read(HEAD_BYTES)
    except OSError as exc:
        raise InputError(f"cannot read input {path}: {exc.strerror or exc}",
                         "check the file's permissions") from None
    if not head:
        raise InputError(f"input {path} is empty (0 bytes)", "check the file was written completely")
    if formats.sniff_format(head[:12]) == "wav" and wav_length_unknown(head, size):
        # a pipe writer's placeholder: only the bytes present say how long it is
        return describe(signals.read_bytes(path), name, layout=layout, rate=rate)
    return _describe(path, head, size, name, layout, rate)


def describe(data: bytes, name: str, *, layout: str | None = None,
             rate: float | None = None) -> dict[str, Any]:
    """Describe one signal file given as bytes: container facts plus peak/RMS/DC per channel.

    A 2-D NPY that looks like (time, channels) is read that way (``layout_guessed`` says so)
    unless ``layout`` is given: ``info`` describes what it can instead of refusing.
    """
    return _describe(data, data[:HEAD_BYTES], len(data), name, layout, rate)


def _describe(source: str | bytes, head: bytes, size: int, name: str, layout: str | None,
              rate: float | None) -> dict[str, Any]:
    if rate is not None:
        limits.check("rate", rate)
    fmt = formats.sniff_format(head[:12])
    if fmt is None:
        raise InputError(
            f"{name} is not a WAV, FLAC, OGG or NPY file (unrecognised first bytes {head[:4]!r})",
            "convert it with sox or ffmpeg first",
        )
    if fmt == "npy":
        return _describe_npy(source, head, size, name, layout, rate)
    if layout is not None:
        raise UsageError("--layout applies to NPY input only")
    return _describe_audio(source, head, size, name, fmt)


def _facts(name: str, fmt: str, size: int, rate: float | None, shape: tuple[int, int, int],
           subtype: str | None = None, dtype: str | None = None) -> dict[str, Any]:
    batch, channels, frames = shape
    return {"file": name, "format": fmt, "subtype": subtype, "dtype": dtype, "bytes": size,
            "rate": rate, "batch": batch, "channels": channels, "frames": frames,
            "shape": [batch, channels, frames],
            "duration": frames / rate if rate else None}


def _describe_npy(source: str | bytes, head: bytes, size: int, name: str, layout: str | None,
                  rate: float | None) -> dict[str, Any]:
    shape, dtype, offset = npy.read_header(head if isinstance(source, str) else source, name)
    if dtype.hasobject:
        raise InputError(f"{name} holds Python objects, which convcli never unpickles",
                         "save a plain float array with numpy.save")
    expected = math.prod(shape) * dtype.itemsize
    if size - offset < expected:
        raise InputError(f"{name} is truncated: its header announces {shape} {dtype} "
                         f"({expected:,} bytes) but only {size - offset:,} bytes follow",
                         "the file was cut short; save it again")
    guessed = (layout is None and len(shape) == 2 and shape[0] > shape[1]
               and shape[0] > npy.TC_GUESS_MIN)
    if isinstance(source, str):
        try:
            array = np.load(source, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InputError(f"cannot read {name} as NPY: {exc}",
                             "the file may be truncated or corrupt; save it again") from None
    else:
        array = npy.load_npy(source, name)
    bct, used = signals.npy_batches(array, name, "tc" if guessed else layout)
    batch, channels, frames = bct.shape
    meter = LevelMeter(channels)
    step = max(1, BLOCK_SAMPLES // channels)
    for b in range(batch):
        for start in range(0, frames, step):
            meter.add(bct[b, :, start : start + step])
    out = _facts(name, "npy", size, rate, bct.shape, dtype=str(dtype))
    out["layout"], out["layout_guessed"] = used, guessed
    out.update(meter.result())
    return out


def _describe_audio(source: str | bytes, head: bytes, size: int, name: str,
                    fmt: str) -> dict[str, Any]:
    import soundfile as sf

    if isinstance(source, bytes):
        source = signals.checked_audio_bytes(source, name, fmt)
    else:
        signals.checked_audio_bytes(head, name, fmt, size)
    try:
        with sf.SoundFile(io.BytesIO(source) if isinstance(source, bytes) else source) as f:
            channels, declared = f.channels, f.frames
            meter = LevelMeter(channels)
            got = 0
            for block in f.blocks(blocksize=max(1, BLOCK_SAMPLES // channels), dtype="float64",
                                  always_2d=True):
                meter.add(block.T)
                got += block.shape[0]
            facts = _facts(name, fmt, size, float(f.samplerate), (1, channels, got), f.subtype)
            log = f.extra_info if fmt == "ogg" else ""
    except signals.AUDIO_ERRORS as exc:
        raise signals.decode_error(name, fmt, exc) from None
    signals.check_complete(name, fmt, got, declared, log)
    facts.update(meter.result())
    return facts
