"""Arrays as files: NPY, NPZ and text (CSV, or whitespace on stdout), written atomically.

What ``jacobian`` and ``grad`` write besides audio: a matrix, a gradient, the arrays of a
banded Jacobian.
"""

from __future__ import annotations

import io

import numpy as np

from convcli.io.atomic import atomic_output


def text_of(array: np.ndarray, delimiter: str = " ") -> bytes:
    """``array`` (1-D or 2-D) as text, 9 significant digits, one row a line.

    >>> text_of(np.array([[1.0, 0.5], [0.0, 2.0]]), ",")
    b'1,0.5\\n0,2\\n'
    """
    buffer = io.StringIO()
    np.savetxt(buffer, array, fmt="%.9g", delimiter=delimiter)
    return buffer.getvalue().encode()


def save_npy(array: np.ndarray, output: str) -> None:
    with atomic_output(output) as handle:
        np.save(handle, array, allow_pickle=False)


def save_npz(arrays: dict, output: str) -> None:
    with atomic_output(output) as handle:
        np.savez(handle, **arrays)


def save_text(array: np.ndarray, output: str, delimiter: str = " ") -> None:
    with atomic_output(output) as handle:
        handle.write(text_of(array, delimiter))
