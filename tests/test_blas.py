"""``convcli.engines.blas``: OpenBLAS's gemm called directly, against numpy's float64 matmul."""

from __future__ import annotations

import numpy as np
import pytest

from convcli.engines import blas

as_strided = np.lib.stride_tricks.as_strided


def numpy_uses_openblas() -> bool:
    config = getattr(np, "__config__", None)
    deps = getattr(config, "CONFIG", {}).get("Build Dependencies", {})
    return "openblas" in str(deps.get("blas", {}).get("name", "")).lower()


@pytest.mark.skipif(not numpy_uses_openblas(), reason="numpy is not built on OpenBLAS here")
def test_numpys_openblas_is_found_with_sgemm_and_dgemm():
    lib = blas.openblas()
    assert lib is not None, "the direct path would never run"
    assert set(lib.gemm) == {np.dtype(np.float32), np.dtype(np.float64)}
    from threadpoolctl import threadpool_info

    with blas.single_threaded():
        assert {info["num_threads"] for info in threadpool_info()
                if info["internal_api"] == "openblas"} == {1}


def cases(rng, dtype):
    """(a, b, c) triples: contiguous, strided and overlapping ``a``, a strided ``c``, sizes on
    both sides of ``blas.SMALL`` (numpy's matmul below it, the ctypes call above)."""
    for m, k, n in ((7, 5, 3), (3000, 32, 32), (2000, 30, 24), (1, 9, 40)):
        a = rng.standard_normal((m, k)).astype(dtype)
        b = rng.standard_normal((k, n)).astype(dtype)
        c = rng.standard_normal((m, n)).astype(dtype)
        yield "contiguous", a, b, c
        wide = rng.standard_normal((m, k + 3)).astype(dtype)
        yield "a rows apart", wide[:, 1 : k + 1], b, c
        signal = rng.standard_normal(m * 2 + k).astype(dtype)  # rows 2 apart, k ≥ 2: overlapping
        size = signal.itemsize
        yield "a rows overlapping", as_strided(signal, (m, k), (2 * size, size)), b, c
        out = rng.standard_normal((m, n + 5)).astype(dtype)
        yield "c rows apart", a, b, out[:, 2 : n + 2]


@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("accumulate", [False, True])
def test_gemm_equals_numpy_in_float64(direct, dtype, accumulate, monkeypatch):
    if not direct:  # no OpenBLAS found: numpy's matmul, the same numbers
        monkeypatch.setattr(blas, "openblas", lambda: None)
    rng = np.random.default_rng(5)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    for name, a, b, c in cases(rng, dtype):
        expected = (c.astype(np.float64) if accumulate else 0.0) + a.astype(np.float64) @ b
        before = c.base.copy() if c.base is not None else None
        blas.gemm(a, b, c, accumulate=accumulate)
        np.testing.assert_allclose(c, expected, rtol=tol, atol=tol * 10, err_msg=name)
        if before is not None:  # the columns outside the view are untouched
            untouched = np.ones(before.shape, bool)
            untouched[:, 2 : c.shape[1] + 2] = False
            np.testing.assert_array_equal(c.base[untouched], before[untouched])


def test_operands_blas_cannot_take_go_to_numpy():
    """Mixed dtypes, a non-contiguous ``b``, columns not contiguous: still the right product."""
    rng = np.random.default_rng(6)
    a = rng.standard_normal((4000, 8))
    b = rng.standard_normal((16, 8))[::2]  # rows 2 apart: not C-contiguous
    c = np.zeros((4000, 8))
    blas.gemm(a, b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-12)
    c32 = np.zeros((4000, 8), np.float32)
    blas.gemm(a, b.copy(), c32)  # float64 operands into float32: numpy casts
    np.testing.assert_allclose(c32, a @ b, rtol=1e-5, atol=1e-5)
    cols = np.zeros((4000, 16))[:, ::2]  # columns 2 apart
    blas.gemm(a, b.copy(), cols)
    np.testing.assert_allclose(cols, a @ b, rtol=1e-12)


def test_a_gemm_that_answers_wrong_is_not_used():
    """openblas() checks each symbol on one known product before trusting it."""
    silent = blas.OpenBLAS({np.dtype(np.float32): lambda *args: None}, 2**31 - 1)
    assert not blas._answers_right(silent, np.dtype(np.float32))
    found = blas.openblas()
    if found is not None:
        assert all(blas._answers_right(found, dtype) for dtype in found.gemm)
