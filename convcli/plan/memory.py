"""Memory checks before big allocations: refuse with a hint instead of an out-of-memory kill.

Pure functions, no torch. Callers estimate what an operation needs and ask
``check_allocation(nbytes, what, hint)``; it raises ``ResourceError`` (exit 1) when that is more
than the memory this process can get: the least of ``MemAvailable`` (``/proc/meminfo``, else
``os.sysconf``), the cgroup limit, ``RLIMIT_AS`` and ``CONVCLI_MEMORY_LIMIT`` (e.g. ``2G``),
which users and tests set to cap what convcli allows itself.

    >>> parse_size("1.5G")
    1610612736
    >>> human_bytes(3 * 2**30)
    '3.0 GiB'
    >>> check_allocation(10, "a tiny buffer", limit=100)   # fits: returns quietly
    >>> check_allocation(10**12, "a dense 10⁶ × 10⁶ Jacobian", "use --format banded", limit=2**30)
    Traceback (most recent call last):
    ...
    convcli.errors.ResourceError: a dense 10⁶ × 10⁶ Jacobian needs about 931.3 GiB but only 1.0 GiB of memory is available (hint: use --format banded)
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import replace
from pathlib import Path

from convcli.errors import ResourceError, UsageError

#: environment variable that caps the memory convcli lets itself use (bytes, or 512M, 2G, ...)
LIMIT_ENV = "CONVCLI_MEMORY_LIMIT"
_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(text: str) -> int:
    """``"512M"`` -> 536870912; plain numbers are bytes; K/M/G/T are powers of 1024."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgtb]?)i?b?\s*", text.lower())
    if not match:
        raise UsageError(f"{LIMIT_ENV}={text!r} is not a size", "write e.g. 512M or 2G")
    return int(float(match[1]) * _UNITS[match[2]])


def human_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _meminfo_available() -> int | None:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        text = ""
    match = re.search(r"^MemAvailable:\s+(\d+)\s+kB", text, re.MULTILINE)
    if match:
        return int(match[1]) * 1024
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_available() -> int | None:
    """Room left under a cgroup v2 or v1 memory limit, None when unlimited or unknown."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            raw = Path(limit_file).read_text().strip()
            if raw == "max" or int(raw) >= 2**60:
                return None
            return max(int(raw) - int(Path(usage_file).read_text().strip()), 0)
        except (OSError, ValueError):
            continue
    return None


def _rlimit_available() -> int | None:
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        return None
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        size = re.search(r"^VmSize:\s+(\d+)\s+kB", Path("/proc/self/status").read_text(), re.MULTILINE)
        used = int(size[1]) * 1024 if size else 0
    except OSError:
        used = 0
    return max(soft - used, 0)


def available_memory() -> int | None:
    """Bytes this process can still allocate (best estimate), None when nothing is known."""
    candidates = [_meminfo_available(), _cgroup_available(), _rlimit_available()]
    if os.environ.get(LIMIT_ENV):
        candidates.append(parse_size(os.environ[LIMIT_ENV]))
    known = [c for c in candidates if c is not None]
    return min(known) if known else None


def check_allocation(nbytes: int, what: str, hint: str | None = None, *,
                     limit: int | None = None) -> None:
    """Refuse ``nbytes`` for ``what`` when it exceeds the memory available (or ``limit``).

    Call it before allocating, with the whole need of the operation (inputs, padded copies,
    outputs, FFT buffers). The message names both sizes; ``hint`` says what to do instead.
    """
    room = available_memory() if limit is None else limit
    if room is None or nbytes <= room:
        return
    raise ResourceError(
        f"{what} needs about {human_bytes(nbytes)} but only {human_bytes(room)} of memory is "
        "available",
        hint,
    )


def conv_bytes(batch: int, channels: int, length: int, out_channels: int, k: int, spec,
               method: str, itemsize: int) -> int:
    """Peak bytes of one whole-signal ``conv1d`` call, ``[B, C, T] -> [B, O, T_out]``.

    Counts the input, its padded copy, the output and, for ``fft``, the spectra of input,
    kernel and output and the real inverse transform (complex = 2 items). An estimate on the
    safe side of what ``engine`` allocates, not an exact figure.

    >>> from convcli.core.spec import ConvSpec
    >>> conv_bytes(1, 2, 1000, 2, 31, ConvSpec(), "direct", 4)
    24240
    """
    left, right = spec.pads(k)
    padded = length + left + right
    out_length = spec.output_length(length, k)
    items = batch * channels * (length + padded) + batch * out_channels * out_length
    if method == "fft":
        n = padded  # engine rounds up to a fast length: at most ~1/3 more
        n = n + n // 3
        half = n // 2 + 1
        items += 2 * half * (batch * channels + out_channels * channels + batch * out_channels)
        items += batch * out_channels * n
    return int(items) * itemsize


def check_filter_memory(arrays: list, coefficients, spec, method: str, hint: str, *,
                        device: str = "cpu", device_free: int | None = None) -> None:
    """Refuse a whole-signal filter of ``arrays`` (each ``[B, C, T]``) that cannot fit.

    Equal shapes run as one batch (as ``pipeline.filter_arrays`` runs them), each priced on
    the engine and method ``plan.selection`` picks for it. Host memory must hold the largest
    batch's concatenated copy, its output and the encoding of that output (scaled copy and
    bytes), plus, on the CPU, the computation itself (``conv_bytes``); on a CUDA ``device``
    (resolved) the computation is checked against ``device_free``, the bytes free there.
    Call it after reading, before computing.
    """
    from convcli.core.kernels import depthwise, weight_shape
    from convcli.plan.selection import choose_method, engine_for

    on_gpu = str(device).startswith("cuda")
    shapes: dict[tuple, list] = {}
    for array in arrays:
        shapes.setdefault((array.shape[1:], array.dtype.itemsize), []).append(array.shape[0])
    host = gpu = 0
    k = coefficients.shape[-1]
    for ((channels, length), itemsize), batches in shapes.items():
        batch = sum(batches)
        (out_channels, per_group, _), groups = weight_shape(coefficients.shape, channels,
                                                            spec.groups)
        run_spec = spec if groups == spec.groups else replace(spec, groups=groups)
        engine = engine_for(device, depthwise(out_channels, per_group, groups))
        chosen = choose_method(length, k, run_spec, method, batch=batch, channels=channels,
                               out_channels=out_channels, engine=engine, device=device).method
        run = conv_bytes(batch, channels, length, out_channels, k, spec, chosen, itemsize)
        run += out_channels * per_group * k * (8 + itemsize)  # the weight: float64, then cast
        out_items = batch * out_channels * spec.output_length(length, k)
        copy = batch * channels * length * itemsize if len(batches) > 1 else 0
        encoding = 2 * out_items * 8
        if on_gpu:
            host = max(host, copy + out_items * itemsize + encoding)
            gpu = max(gpu, run)
        else:
            host = max(host, copy + run + encoding)
    what = f"filtering {len(arrays)} signals whole" if len(arrays) > 1 else "filtering the signal whole"
    check_allocation(host, what, hint)
    if on_gpu and device_free is not None:
        check_allocation(gpu, f"{what} on {device}", hint, limit=device_free)


#: glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: the largest mmap threshold glibc accepts on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
_MMAP_THRESHOLD_MAX = 32 << 20


@functools.cache  # once per process: filter and stream_filter both ask for it
def reuse_freed_memory() -> bool:
    """Let glibc keep freed blocks of up to 32 MB for reuse instead of handing them back.

    A stream allocates the same few-MB arrays for every block. By default glibc returns such
    blocks to the kernel when freed (mmap'ed, or trimmed off a thread's heap), so each new one
    page-faults in afresh: 2.4 M faults and 10 s of system time for an hour of stereo, more
    than the FFTs took. Kept, they cost only the stream's working set, which stays resident
    anyway. False where the C library has no ``mallopt`` (not glibc): nothing changes there.
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
                and mallopt(_M_TRIM_THRESHOLD, 2 * _MMAP_THRESHOLD_MAX))
