"""Every registered window equals scipy.signal.get_window, symmetric and periodic."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

from convcli.core.windows import WINDOWS, normalize, parse_window, window
from convcli.errors import InputError, UsageError

PARAMS = {"kaiser": [0.0, 6.0, 14.0], "gaussian": [0.5, 3.0], "tukey": [0.0, 0.25, 0.5, 1.0]}
SIZES = [1, 2, 3, 4, 7, 16, 31, 64, 257]


def scipy_window(name, param, size, periodic):
    spec = WINDOWS[name].scipy_name
    return scipy.signal.get_window((spec, param) if param is not None else spec, size,
                                   fftbins=periodic)


@pytest.mark.parametrize("name", sorted(WINDOWS))
@pytest.mark.parametrize("periodic", [False, True])
def test_every_window_equals_scipy(name, periodic):
    for param in PARAMS.get(name, [None]):
        for size in SIZES:
            got = window(name, size, param, periodic)
            want = scipy_window(name, param, size, periodic)
            assert got.dtype == np.float64 and got.shape == (size,)
            np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15,
                                       err_msg=f"{name}:{param} size={size} periodic={periodic}")


@pytest.mark.parametrize("name", sorted(WINDOWS))
def test_shared_properties(name):
    """Symmetric windows are symmetric, finite, peak at most 1; normalizations do what they say."""
    param = PARAMS.get(name, [None])[-1]
    w = window(name, 33, param)
    np.testing.assert_allclose(w, w[::-1], atol=1e-15)
    assert np.all(np.isfinite(w)) and w.max() <= 1 + 1e-8  # flattop's rounded coefficients peak at 1 + 3e-9
    np.testing.assert_allclose(normalize(w, "sum").sum(), 1.0, rtol=1e-14)
    np.testing.assert_allclose(np.abs(normalize(w, "peak")).max(), 1.0, rtol=1e-14)
    assert normalize(w, "none") is w


def test_parse_window():
    assert parse_window("kaiser:8.6") == ("kaiser", 8.6)
    assert parse_window("HANN") == ("hann", None)
    assert parse_window("boxcar") == ("rect", None)
    assert parse_window("tukey") == ("tukey", 0.5)
    with pytest.raises(UsageError, match="did you mean 'hann'"):
        parse_window("han")
    with pytest.raises(UsageError, match="needs its beta"):
        parse_window("kaiser")
    with pytest.raises(UsageError, match="must be a number"):
        parse_window("kaiser:x")
    with pytest.raises(UsageError, match="takes no parameter"):
        parse_window("hann:3")
    with pytest.raises(UsageError, match="> 0"):
        parse_window("gaussian:0")


def test_sizes_and_normalization_errors():
    with pytest.raises(UsageError):
        window("hann", 0)
    with pytest.raises(UsageError, match="out of range"):
        window("hann", 10**12)
    with pytest.raises(InputError, match="sums to zero"):
        normalize(np.array([1.0, -1.0]), "sum")
