"""Kernel files (.npy and text) and their shaping into conv weights."""

from __future__ import annotations

import io

import numpy as np
import pytest

from convcli.core.kernels import make_kernel, to_weight
from convcli.errors import InputError, UsageError
from convcli.io.kernelfile import parse_kernel_bytes


def npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize("text", [
    "1\n2\n3\n", "1 2 3", "1, 2, 3\n", "# comment\n1\n\n2  # two\n3\n", "1;2;3", "1e0\n2.0\n+3\n",
])
def test_text_kernels(text):
    np.testing.assert_array_equal(parse_kernel_bytes(text.encode(), "k"), [1.0, 2.0, 3.0])


def test_text_2d_and_npy_shapes():
    np.testing.assert_array_equal(parse_kernel_bytes(b"1 2 3\n4 5 6\n", "k"), [[1, 2, 3], [4, 5, 6]])
    w = np.arange(24.0).reshape(4, 2, 3)
    np.testing.assert_array_equal(parse_kernel_bytes(npy_bytes(w), "k.npy"), w)


@pytest.mark.parametrize("data,match", [
    (b"", "empty"), (b"   \n", "empty"), (b"1\nabc\n", "not a number"), (b"1 2\n3\n", "different lengths"),
    (b"nan\n1\n", "non-finite"), (b"\xff\xfe\x00", "neither"),
])
def test_bad_text_kernels(data, match):
    with pytest.raises(InputError, match=match):
        parse_kernel_bytes(data, "k")


def test_bad_npy_kernels():
    with pytest.raises(InputError, match="dtype"):
        parse_kernel_bytes(npy_bytes(np.array([1 + 1j, 2])), "k.npy")
    with pytest.raises(InputError, match="shape"):
        parse_kernel_bytes(npy_bytes(np.ones((1, 1, 1, 2))), "k.npy")
    with pytest.raises(InputError):
        parse_kernel_bytes(npy_bytes(np.array([{"a": 1}], dtype=object)), "k.npy")


def test_to_weight_shapes():
    w, groups = to_weight(np.array([1.0, 2.0]), channels=3)
    assert w.shape == (3, 1, 2) and groups == 3
    w, groups = to_weight(np.ones((2, 5)), channels=2)
    assert w.shape == (2, 1, 5) and groups == 2
    w, groups = to_weight(np.ones((16, 2, 3)), channels=2)
    assert w.shape == (16, 2, 3) and groups == 1
    w, groups = to_weight(np.ones((6, 1, 3)), channels=2, groups=2)
    assert groups == 2
    with pytest.raises(InputError, match="rows"):
        to_weight(np.ones((3, 5)), channels=2)
    with pytest.raises(InputError, match="second axis"):
        to_weight(np.ones((4, 3, 3)), channels=2)
    with pytest.raises(InputError, match="divide"):
        to_weight(np.ones((3, 1, 3)), channels=2, groups=2)
    with pytest.raises(UsageError):
        to_weight(np.ones(3), channels=2, groups=2)


def test_make_kernel_normalization_rules():
    hann = make_kernel(window_spec="hann", size=5)
    np.testing.assert_allclose(hann.sum(), 1.0)
    raw = make_kernel(kernel=parse_kernel_bytes(b"1\n2\n1\n", "k"))
    np.testing.assert_array_equal(raw, [1, 2, 1])  # files are used as written
    np.testing.assert_allclose(make_kernel(kernel=parse_kernel_bytes(b"1\n2\n1\n", "k"), normalization="sum"),
                               [0.25, 0.5, 0.25])
    np.testing.assert_allclose(make_kernel(window_spec="rect", size=4, normalization="peak"),
                               np.ones(4))
    with pytest.raises(UsageError, match="both"):
        make_kernel(window_spec="hann", kernel=np.ones(1))
