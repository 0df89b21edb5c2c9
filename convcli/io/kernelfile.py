"""Kernel files: coefficients from .npy or text, checked once at the boundary.

"The kernel" is always the coefficients as the user wrote them; ``core.kernels`` shapes them
into a conv weight.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from convcli.core.kernels import designed_kernel, make_kernel
from convcli.core.limits import MAX_TAPS
from convcli.errors import InputError, UsageError
from convcli.io.npy import load_npy
from convcli.io.signals import read_bytes

#: taps of a window when --size is not given
DEFAULT_SIZE = 31


def read_kernel(path: str) -> np.ndarray:
    """The coefficients of kernel file ``path`` (``-`` = stdin), float64, as written."""
    return parse_kernel_bytes(read_bytes(path, what="kernel"), "stdin" if path == "-" else path)


def parse_kernel_bytes(data: bytes, name: str) -> np.ndarray:
    """Coefficients from .npy bytes or text (one per line, or whitespace/comma separated).

    Text with several lines of several numbers is 2-D ``(C, k)``. ``#`` starts a comment.
    NPY is loaded with pickles refused, so a crafted file never runs code.
    """
    return check_kernel_array(parse_numbers(data, name, "kernel"), name)


def parse_numbers(data: bytes, name: str, what: str) -> np.ndarray:
    """The numbers of a .npy or text file (``parse_kernel_bytes``' rules), unchecked; ``what``
    names the role (kernel, bias) in messages."""
    if not data.strip():
        raise InputError(f"{what} {name} is empty", "give one number per line, or a .npy file")
    if data[:6] == b"\x93NUMPY":
        return load_npy(data, f"{what} {name}")
    return parse_text(data, name, what)


#: separators a text kernel may use besides spaces and newlines
_SEPARATORS = bytes.maketrans(b",;\t\r\f\v", b"      ")
#: bytes parsing holds per byte of text at most: a copy with the separators replaced, and 8
#: bytes of float64 for every 2 bytes (the shortest number and its separator)
TEXT_BYTES_PER_BYTE = 6


def parse_text(data: bytes, name: str, what: str = "kernel") -> np.ndarray:
    """Text numbers as float64, ``[k]`` or ``[C, k]``: parsed by numpy's C reader, never a
    Python float per number (10 million taps take 80 MB, not gigabytes of lists)."""
    import io
    import warnings

    from convcli.plan.memory import check_allocation

    check_allocation(TEXT_BYTES_PER_BYTE * len(data), f"parsing {what} {name}",
                     f"save the {what} as .npy (numpy.save)")
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{what} {name} is neither .npy nor text",
                             "give one number per line, or a .npy file") from None
    if b"," in data or b";" in data:  # numpy's reader splits on one kind of separator
        data = data.translate(_SEPARATORS)
    try:
        with warnings.catch_warnings():  # "input contained no data": said below, in words
            warnings.simplefilter("ignore")
            rows = np.loadtxt(io.BytesIO(data), dtype=np.float64, ndmin=2, comments="#",
                              encoding="utf-8")
    except ValueError as exc:
        text = str(exc)
        if "number of columns changed" in text:
            raise InputError(f"{what} {name}: rows have different lengths ({text.split(';')[0]})",
                             "a 2-D text kernel needs one row of k numbers per channel") from None
        token = re.search(r"string (.*?) to float", text)
        raise InputError(
            f"{what} {name}: not a number: {token[1][:40] if token else text[:60]}",
            "give one number per line, or numbers separated by spaces or commas",
        ) from None
    if rows.size == 0:
        raise InputError(f"{what} {name} has no numbers", "give one number per line")
    return rows.reshape(-1) if 1 in rows.shape else rows


def read_bias(source: str) -> np.ndarray:
    """``--bias B|PATH``: one number added to every output channel (a 0-d array), or one per
    output channel, ``(O,)``, from a .npy or text file (one number per line). Finite, float64.

    >>> read_bias("-0.5")
    array(-0.5)
    """
    try:
        array, name = np.array(float(source)), f"--bias {source}"
    except ValueError:
        if source == "-":
            raise UsageError("--bias takes a number or a file, not standard input",
                             "write the values into a file") from None
        array, name = parse_numbers(read_bytes(source, what="bias"), source, "bias"), f"bias {source}"
    if array.dtype.kind not in "biuf" or array.ndim > 1:
        raise InputError(f"{name} has shape {array.shape} and dtype {array.dtype}",
                         "a bias is one number, or one per output channel (O,)")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise InputError(f"{name} is not finite", "every bias must be a finite number")
    return array


def check_kernel_array(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype.kind not in "biuf":
        raise InputError(
            f"kernel {name} has dtype {array.dtype}, not real numbers", "save a float array"
        )
    if array.ndim not in (1, 2, 3) or array.size == 0:
        raise InputError(
            f"kernel {name} has shape {array.shape}",
            "a kernel is (k,), (C, k) or (O, C/G, k) with k ≥ 1",
        )
    if array.shape[-1] > MAX_TAPS:
        raise InputError(f"kernel {name} has {array.shape[-1]:,} taps (at most {MAX_TAPS:,})",
                         "split the filter into stages, or design it with fewer taps")
    array = array.astype(np.float64)
    bad = np.argwhere(~np.isfinite(array))
    if len(bad):
        raise InputError(
            f"kernel {name} has a non-finite coefficient at index {tuple(int(i) for i in bad[0])}",
            "every coefficient must be a finite number",
        )
    return array




#: float64 arrays a window holds while it is built and normalized: bytes a tap
WINDOW_BYTES_PER_TAP = 5 * 8


def reserve_taps(nbytes: int, taps: int) -> None:
    """The memory check before a window or a design of ``taps`` taps is computed."""
    from convcli.plan.memory import check_allocation

    check_allocation(nbytes, f"a kernel of {taps:,} taps", "use fewer taps (--size), or a "
                     "wider --transition")


@dataclass(frozen=True)
class KernelRequest:
    """Where a run's kernel comes from: a window, a kernel file, or a FIR design in Hz.

    ``size`` None means "not given": a window then has the default 31 taps and a design lets
    Kaiser's formulas choose. ``path`` is a kernel file (``-``: stdin); ``values`` the
    coefficients themselves (the Python API). ``design`` is a ``core.fir.FirRequest`` (it
    needs the signal's sample rate, so ``load`` takes one).
    """

    window: str | None = None
    size: int | None = None
    periodic: bool = False
    normalize: str | None = None
    path: str | None = None
    design: Any = None
    values: Any = None

    @property
    def taps(self) -> int:
        return DEFAULT_SIZE if self.size is None else self.size

    def load(self, rate: float | None = None) -> tuple[np.ndarray, Any]:
        """``(coefficients as applied, core.fir.Design or None)``."""
        if self.design is not None:
            return designed_kernel(self.design, rate, window_spec=self.window, size=self.size,
                                   periodic=self.periodic, normalization=self.normalize,
                                   has_file=self.path is not None or self.values is not None,
                                   reserve=reserve_taps)
        kernel = read_kernel(self.path) if self.path is not None else None
        if kernel is None and self.values is None:
            reserve_taps(WINDOW_BYTES_PER_TAP * self.taps, self.taps)
        if self.values is not None:
            if kernel is not None:
                raise UsageError("a kernel file and kernel values both given", "use one of them")
            kernel = check_kernel_array(np.asarray(self.values), "values")
        return make_kernel(window_spec=self.window, size=self.taps, periodic=self.periodic,
                           normalization=self.normalize, kernel=kernel), None

    def source(self, design: Any = None) -> str:
        """What ``--json`` calls the kernel: the file, the design, or the window's name."""
        if design is not None:
            return design.describe()
        if self.values is not None:
            return "values"
        return self.path or self.window or "hann"

    def summary(self, coefficients: np.ndarray, design: Any = None) -> dict:
        """The kernel as ``--json`` shows it: where it came from, its taps and its shape."""
        return {"source": self.source(design), "taps": int(coefficients.shape[-1]),
                "shape": list(coefficients.shape)}

    def label(self, coefficients: np.ndarray, design: Any = None) -> str:
        """How messages name the kernel: ``hann(31)``, ``kernel taps.txt (5,)``, a design."""
        if design is not None:
            return design.describe()
        if self.path is not None or self.values is not None:
            name = "stdin" if self.path == "-" else self.path or "values"
            return f"kernel {name} {tuple(coefficients.shape)}"
        return f"{self.window or 'hann'}({self.taps})"
