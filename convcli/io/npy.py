"""NPY: the one reader of NPY headers and arrays (pickles refused), and the layouts convcli keeps.

Signals and kernels both come here, and ``info`` reads only the header.
"""

from __future__ import annotations

import io
import math

import numpy as np

from convcli.errors import InputError


def read_header(data: bytes, name: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, offset of the data)`` from NPY bytes, without loading the array.

    Versions 1.0, 2.0 and 3.0 (3.0 only changes the header's encoding to UTF-8). A header that
    cannot be read is an ``InputError``.

    >>> buf = io.BytesIO(); np.save(buf, np.zeros((2, 3), np.float32))
    >>> read_header(buf.getvalue(), "x.npy")[:2]
    ((2, 3), dtype('float32'))
    """
    fmt = np.lib.format
    try:
        handle = io.BytesIO(data)
        version = fmt.read_magic(handle)
        if version == (3, 0):
            handle = io.BytesIO(data[:6] + bytes([2, 0]) + data[8:])
            fmt.read_magic(handle)
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = read(handle)
    except (ValueError, OSError, EOFError, SyntaxError) as exc:  # numpy: bad or cut headers
        raise InputError(f"cannot read {name} as NPY: {exc}",
                         "the file may be truncated or corrupt; save it again") from None
    return tuple(shape), dtype, handle.tell()


def load_npy(data: bytes, name: str) -> np.ndarray:
    """An array from NPY bytes, pickles refused: a crafted object array never runs code.

    The one place convcli calls ``np.load`` (signals and kernels both come here). Truncated
    or corrupt files, and object arrays, become an ``InputError``.
    """
    import warnings

    stream = io.BytesIO(data)
    try:
        with warnings.catch_warnings():  # a crafted header can make Python warn while parsing it
            warnings.simplefilter("ignore")
            return _load_npy(stream, data, name)
    except InputError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InputError(
                f"{name} holds Python objects, which convcli never unpickles",
                "save a plain float array with numpy.save",
            ) from None
        raise InputError(f"cannot read {name} as NPY: {exc}",
                         "the file may be truncated or corrupt; save it again") from None
    except Exception as exc:  # noqa: BLE001 (numpy raises OSError, EOFError, SyntaxError, ...)
        raise InputError(f"cannot read {name} as NPY: {type(exc).__name__}: {exc}",
                         "the file may be truncated or corrupt; save it again") from None


def _load_npy(stream: io.BytesIO, data: bytes, name: str) -> np.ndarray:
    shape, dtype, offset = read_header(data, name)
    if not dtype.hasobject:
        expected = math.prod(shape) * dtype.itemsize
        present = len(data) - offset
        if present < expected:  # refuse before numpy allocates what the header claims
            raise InputError(
                f"{name} is truncated: its header announces {shape} {dtype} "
                f"({expected:,} bytes) but only {present:,} bytes follow",
                "the file was cut short; save it again",
            )
    stream.seek(0)
    return np.load(stream, allow_pickle=False)


def to_file_layout(data: np.ndarray, layout: str) -> np.ndarray:
    """``[B, C, T]`` back to the NPY layout the input had (1-D, (C,T), (T,C) or 3-D)."""
    batch, channels, _ = data.shape
    if layout == "bct" or batch > 1:
        return data
    if layout == "t" and channels == 1:
        return data[0, 0]
    if layout == "tc":
        return data[0].T
    return data[0]
