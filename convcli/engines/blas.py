"""The OpenBLAS numpy ships, called directly: products that accumulate, and its thread count.

``numpy.matmul`` cannot add into its output: ``c += a @ b`` writes ``a @ b`` to a temporary
and adds it in a second pass over ``c``. The banded GEMM (``numpy_backend.GemmPlan``) is two
products summed into one output, so on 64 × 1 s of 31 taps a third of its time went to that
temporary. ``gemm`` calls the same library's ``cblas_?gemm`` with ``beta = 1`` instead,
through ctypes (which releases the GIL, as numpy does), on strided views with no copy.

The library is the one numpy's own ``matmul`` runs, as threadpoolctl finds it (which also
sets its thread count: ``single_threaded``). Where it is not OpenBLAS (a numpy built on MKL
or Accelerate) or an operand does not suit BLAS, ``gemm`` runs ``numpy.matmul`` instead: the
same numbers, a little slower.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
from typing import NamedTuple

import numpy as np

_ROW_MAJOR, _NO_TRANS = 101, 111

#: (symbol prefix, suffix, integer type): numpy ≥ 2 ships scipy-openblas (64-bit integers,
#: symbols ``scipy_cblas_sgemm64_``), numpy 1.2x ``openblas64_`` (``cblas_sgemm64_``)
_FLAVOURS = (("scipy_", "64_", ctypes.c_int64), ("scipy_", "_64_", ctypes.c_int64),
             ("", "64_", ctypes.c_int64), ("", "", ctypes.c_int))


class OpenBLAS(NamedTuple):
    gemm: dict  # numpy dtype -> ctypes function (float32: sgemm, float64: dgemm)
    int_max: int


@functools.cache
def _controller():
    """threadpoolctl's view of numpy's BLAS (the libraries loaded when first asked), or None."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # a dependency; without it, BLAS keeps its own thread count
        return None
    return ThreadpoolController().select(user_api="blas")


def libraries() -> list[dict]:
    """numpy's BLAS libraries as threadpoolctl sees them: API, version, threads, path."""
    controller = _controller()
    return [{"api": lib.internal_api, "version": lib.version, "threads": lib.num_threads,
             "path": lib.filepath} for lib in (controller.lib_controllers if controller else [])]


def _openblas_libraries() -> list:
    """The OpenBLAS libraries threadpoolctl found, numpy's first (scipy may bring its own)."""
    controller = _controller()
    if controller is None:
        return []
    found = [lib for lib in controller.lib_controllers if lib.internal_api == "openblas"]
    return sorted(found, key=lambda lib: ("numpy" not in lib.filepath, lib.filepath))


@functools.cache
def openblas() -> OpenBLAS | None:
    """numpy's OpenBLAS ``sgemm``/``dgemm``, or None where it is not found."""
    for library in _openblas_libraries():
        lib = library.dynlib  # the ctypes handle threadpoolctl opened
        for prefix, suffix, integer in _FLAVOURS:
            if getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None) is None:
                continue
            gemm = {}
            for dtype, letter, real in ((np.dtype(np.float32), "s", ctypes.c_float),
                                        (np.dtype(np.float64), "d", ctypes.c_double)):
                function = getattr(lib, f"{prefix}cblas_{letter}gemm{suffix}", None)
                if function is not None:
                    function.restype = None
                    function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, integer, integer,
                                         integer, real, ctypes.c_void_p, integer, ctypes.c_void_p,
                                         integer, real, ctypes.c_void_p, integer]
                    gemm[dtype] = function
            bits = 8 * ctypes.sizeof(integer)
            found = OpenBLAS(gemm, 2 ** (bits - 1) - 1)
            for dtype in [d for d in gemm if not _answers_right(found, d)]:
                del gemm[dtype]  # a symbol that is not what its name says: numpy's matmul
            return found
    return None


def _answers_right(lib: OpenBLAS, dtype) -> bool:
    """One small known product, with a row pitch and beta = 1, through ``lib``'s gemm."""
    a = np.array([[1, 2, 0], [3, 4, 0]], dtype)[:, :2]  # rows 3 apart
    b = np.array([[5, 6], [7, 8]], dtype)
    c = np.ones((2, 2), dtype)
    lib.gemm[dtype](_ROW_MAJOR, _NO_TRANS, _NO_TRANS, 2, 2, 2, 1.0, a.ctypes.data, 3,
                    b.ctypes.data, 2, 1.0, c.ctypes.data, 2)
    return c.tolist() == [[20.0, 23.0], [44.0, 51.0]]


def single_threaded():
    """BLAS on one thread while inside (restored after), through threadpoolctl.

    Each worker runs its own single-threaded product: OpenBLAS's own threads spin-wait, and
    while another process held a core a 30 000-output batch took 20-60 ms instead of 0.2 ms.
    """
    controller = _controller()
    return contextlib.nullcontext() if controller is None else controller.limit(limits=1)


#: outputs below which numpy's matmul (and a temporary) is cheaper than this call: a ctypes
#: call and its three pointers cost about 9 µs, numpy's own call 2
SMALL = 1 << 14


def _leading(array: np.ndarray) -> int | None:
    """The row pitch BLAS takes for a 2-D view whose rows are contiguous (None if they are not)."""
    item = array.itemsize
    if array.shape[1] > 1 and array.strides[1] != item:
        return None
    if array.shape[0] == 1:
        return max(array.shape[1], 1)
    pitch, rest = divmod(array.strides[0], item)
    return pitch if rest == 0 and pitch >= max(array.shape[1], 1) else None


def gemm(a: np.ndarray, b: np.ndarray, c: np.ndarray, accumulate: bool = False) -> None:
    """``c[:] = a @ b``, or ``c += a @ b`` where ``accumulate``, in place.

    ``a [m, k]`` and ``c [m, n]`` may be strided views (rows contiguous, any pitch ≥ their
    width; ``a``'s rows may overlap ``a``'s, never ``c``'s); all three share one float dtype.

    >>> c = np.ones((2, 2))
    >>> gemm(np.eye(2), np.array([[1.0, 2.0], [3.0, 4.0]]), c, accumulate=True)
    >>> c.tolist()
    [[2.0, 3.0], [4.0, 5.0]]
    """
    (m, k), n = a.shape, b.shape[1]
    if m == 0 or n == 0:
        return
    lib = openblas()
    function = lib.gemm.get(c.dtype) if lib and m * n >= SMALL else None
    lda, ldc = (_leading(a), _leading(c)) if function else (None, None)
    if (function is None or a.dtype != c.dtype or b.dtype != c.dtype or lda is None
            or ldc is None or not b.flags.c_contiguous or not c.flags.writeable
            or max(m, n, k, lda, ldc) > lib.int_max):
        if accumulate:
            c += a @ b
        else:
            np.matmul(a, b, out=c)
        return
    function(_ROW_MAJOR, _NO_TRANS, _NO_TRANS, m, n, k, 1.0, a.ctypes.data, lda, b.ctypes.data,
             max(n, 1), 1.0 if accumulate else 0.0, c.ctypes.data, ldc)
