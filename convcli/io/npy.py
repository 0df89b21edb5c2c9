"""NPY: the one reader of NPY headers and arrays (pickles refused), and the layouts convcli keeps.

Signals and kernels both come here, and ``info`` reads only the header.
"""

from __future__ import annotations

import io
import math

import numpy as np

from convcli.errors import InputError, UsageError

#: a 2-D NPY this much longer along axis 0 is almost surely (time, channels)
TC_GUESS_MIN = 16


def read_header(data: bytes, name: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, offset of the data)`` from NPY bytes, without loading the array.

    Versions 1.0, 2.0 and 3.0 (3.0 only changes the header's encoding to UTF-8). A header that
    cannot be read is an ``InputError``.

    >>> buf = io.BytesIO(); np.save(buf, np.zeros((2, 3), np.float32))
    >>> read_header(buf.getvalue(), "x.npy")[:2]
    ((2, 3), dtype('float32'))
    """
    shape, _, dtype, offset = header_info(data, name)
    return shape, dtype, offset


def header_length(head: bytes) -> int | None:
    """How many bytes the header of an NPY file that starts with ``head`` (12 bytes or more)
    takes, data offset included; None if ``head`` is not an NPY magic."""
    if len(head) < 12 or head[:6] != b"\x93NUMPY":
        return None
    if head[6] == 1:
        return 10 + int.from_bytes(head[8:10], "little")
    return 12 + int.from_bytes(head[8:12], "little")


def header_info(data: bytes, name: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """``(shape, fortran_order, dtype, offset of the data)`` from NPY bytes (see
    ``read_header``)."""
    fmt = np.lib.format
    try:
        handle = io.BytesIO(data)
        version = fmt.read_magic(handle)
        if version == (3, 0):
            handle = io.BytesIO(data[:6] + bytes([2, 0]) + data[8:])
            fmt.read_magic(handle)
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran_order, dtype = read(handle)
    except (ValueError, OSError, EOFError, SyntaxError) as exc:  # numpy: bad or cut headers
        raise InputError(f"cannot read {name} as NPY: {exc}",
                         "the file may be truncated or corrupt; save it again") from None
    return tuple(shape), bool(fortran_order), dtype, handle.tell()


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


# --- streams -----------------------------------------------------------------------------
def time_major(shape: tuple[int, ...], fortran_order: bool, layout: str) -> bool:
    """Whether an NPY array of ``shape`` stores its samples a time step after another (every
    channel of step t before step t+1), so it can be read and written block by block in order:
    1-D, ``(time, channels)`` in C order (``--layout tc``), ``(channels, time)`` and
    ``(batch, channels, time)`` in Fortran order, and any array with one row. A C-order
    ``(channels, time)`` stores each channel whole, one after another: it needs the whole array.

    >>> time_major((8000,), False, "t"), time_major((2, 8000), False, "ct")
    (True, False)
    >>> time_major((8000, 2), False, "tc"), time_major((2, 8000), True, "ct")
    (True, True)
    """
    rows = math.prod(shape) // max(shape[0] if layout == "tc" else shape[-1], 1) if shape else 1
    if len(shape) == 1 or rows == 1:
        return True
    return fortran_order != (layout == "tc")


def file_shape(batch: int, channels: int, frames: int, layout: str) -> tuple[int, ...]:
    """The NPY shape ``to_file_layout`` gives a ``[B, C, T]`` result."""
    if layout == "bct" or batch > 1:
        return (batch, channels, frames)
    if layout == "t" and channels == 1:
        return (frames,)
    if layout == "tc":
        return (frames, channels)
    return (channels, frames)


def stream_order(shape: tuple[int, ...], layout: str) -> bool:
    """The ``fortran_order`` a streamed output of ``shape`` is written in: time-major, so each
    block is written as it comes (C order for 1-D and ``(time, channels)``, Fortran order for
    ``(channels, time)`` and ``(batch, channels, time)``; ``np.load`` reads either as the same
    array)."""
    return len(shape) > 1 and layout != "tc" and math.prod(shape[:-1]) > 1


#: bytes a header takes when it is written before the length is known (rewritten in place)
RESERVED_HEADER = 128


def header_bytes(shape: tuple[int, ...], dtype, fortran_order: bool,
                 length: int | None = None) -> bytes:
    """An NPY 1.0 header for ``shape``: as ``numpy.save`` writes it, or padded to ``length``
    bytes (``RESERVED_HEADER``: room for any shape, so that a header written with a guess can
    be rewritten in place with the true shape).

    >>> buf = io.BytesIO(); np.save(buf, np.zeros((2, 3), np.float32))
    >>> header_bytes((2, 3), np.float32, False) == buf.getvalue()[:128]
    True
    """
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
              "fortran_order": fortran_order, "shape": tuple(shape)}
    if length is None:
        out = io.BytesIO()
        np.lib.format.write_array_header_1_0(out, header)
        return out.getvalue()
    text = repr(header).encode("latin1")
    pad = length - 10 - len(text) - 1
    if pad < 0:
        raise ValueError(f"an NPY header for {shape} does not fit {length} bytes")
    return (b"\x93NUMPY\x01\x00" + (length - 10).to_bytes(2, "little") + text + b" " * pad
            + b"\n")


def block_from_bytes(raw, dtype, shape: tuple[int, ...], layout: str,
                     fortran_order: bool) -> np.ndarray:
    """Time-major samples (``time_major``) of an array of ``shape`` as a ``[B, C, t]`` block.

    Shape: ``t`` time steps of ``B·C`` values -> ``[B, C, t]`` (a view: the caller copies it).
    """
    if len(shape) == 1:
        return np.frombuffer(raw, dtype)[None, None, :]
    if layout == "tc":  # (time, channels), C order
        return np.frombuffer(raw, dtype).reshape(-1, shape[1]).T[None]
    if len(shape) == 2:  # (channels, time): Fortran order, or one channel
        return np.frombuffer(raw, dtype).reshape(-1, shape[0]).T[None]
    batch, channels = shape[0], shape[1]  # (batch, channels, time): b fastest, then c
    return np.frombuffer(raw, dtype).reshape(-1, channels, batch).transpose(2, 1, 0)


# --- what a signal is -------------------------------------------------------------------------
def check_npy(shape: tuple[int, ...], dtype: np.dtype, name: str) -> None:
    """Refuse an NPY that is no signal: not real numbers, empty."""
    if dtype.hasobject:
        raise InputError(f"{name} holds Python objects, which convcli never unpickles",
                         "save a plain float array with numpy.save")
    if dtype.kind not in "biuf":
        raise InputError(
            f"{name} has dtype {dtype}; convcli filters real numbers",
            "save a real float array (for complex data, filter .real and .imag separately)",
        )
    if math.prod(shape) == 0 and not (len(shape) == 3 and shape[1] and shape[2]):
        # (0, C, T) is a batch of no signals, whose output is (0, O, T_out) as in torch
        raise InputError(f"{name} is an empty array {shape}", "a signal needs at least one sample")


def signal_layout(shape: tuple[int, ...], layout: str | None, name: str) -> str:
    """How an NPY of ``shape`` is read as ``[B, C, T]``: ``t`` (1-D), ``ct``, ``tc`` (2-D, by
    ``--layout``; a ``(C, T)`` that looks like ``(time, channels)`` is refused without it) or
    ``bct`` (3-D)."""
    if layout not in (None, "ct", "tc"):
        raise UsageError(f"--layout must be ct or tc, got {layout!r}")
    if len(shape) == 1:
        return "t"
    if len(shape) == 2:
        if layout == "tc":
            return "tc"
        if layout is None and shape[0] > shape[1] and shape[0] > TC_GUESS_MIN:
            raise InputError(
                f"{name} has shape {shape}: {shape[0]} channels of "
                f"{shape[1]} samples looks like (time, channels)",
                "pass --layout tc to read it as (time, channels), or --layout ct to insist",
            )
        return "ct"
    if len(shape) == 3:
        if layout == "tc":
            raise UsageError("--layout tc applies to 2-D NPY only; 3-D is (batch, channels, time)")
        return "bct"
    raise InputError(
        f"{name} has {len(shape)} dimensions {shape}",
        "an NPY signal is (time,), (channels, time) or (batch, channels, time)",
    )


def bct_shape(shape: tuple[int, ...], layout: str) -> tuple[int, int, int]:
    """``[B, C, T]`` of an NPY of ``shape`` read with ``layout`` (``signal_layout``)."""
    if layout == "t":
        return (1, 1, shape[0])
    if layout == "tc":
        return (1, shape[1], shape[0])
    if layout == "ct":
        return (1, shape[0], shape[1])
    return shape  # type: ignore[return-value]
