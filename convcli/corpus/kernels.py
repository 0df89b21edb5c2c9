"""The kernels of a corpus run and which one each file gets.

``--kernel DIR`` takes every kernel file in the directory (sorted by name), ``--kernel LIST`` a
text file naming one kernel file a line (relative to the list), and ``--kernel FILE`` or a
window one kernel for every file. ``--pick`` chooses per file: ``random`` by a hash of the seed
and the file's relative path (the same on every machine, shard and rerun, whatever the order),
``cycle`` by the file's place in the sorted corpus, ``all`` every kernel for every file.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from convcli.errors import InputError, UsageError
from convcli.io.kernelfile import KernelRequest

#: the files ``--kernel DIR`` takes
KERNEL_SUFFIXES = frozenset({".npy", ".txt", ".csv", ".tsv", ".dat"})
PICKS = ("random", "cycle", "all")


@dataclass
class KernelBank:
    """Named kernels (``coefficients`` as applied); ``request`` is the single kernel's request
    (a window, a file or a FIR design, which is made per sample rate: ``for_rate``)."""

    names: list[str]
    coefficients: list[np.ndarray | None]
    request: KernelRequest | None = None
    _designs: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.names)

    def get(self, index: int, rate: float | None) -> np.ndarray:
        """The kernel ``index`` for a file at ``rate`` (a design is made once per rate)."""
        if self.coefficients[index] is not None:
            return self.coefficients[index]
        if rate not in self._designs:
            self._designs[rate] = self.request.load(rate)[0]
        return self._designs[rate]

    def __getstate__(self) -> dict[str, Any]:  # shipped to Dask workers without the cache
        return {**self.__dict__, "_designs": {}}


def load_bank(request: KernelRequest) -> KernelBank:
    """The bank for ``--kernel`` (a directory or a list: several; a file or a window: one)."""
    path = request.path
    if path is not None and path != "-" and os.path.isdir(path):
        files = sorted(str(p) for p in Path(path).iterdir()
                       if p.suffix.lower() in KERNEL_SUFFIXES and not p.name.startswith("."))
        if not files:
            raise InputError(f"no kernel files ({', '.join(sorted(KERNEL_SUFFIXES))}) in {path}",
                             "check the directory")
        return _bank_of(files, request)
    if path is not None and path != "-" and is_kernel_list(path):
        base = os.path.dirname(path)
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        files = [os.path.join(base, line.strip()) for line in lines
                 if line.strip() and not line.lstrip().startswith("#")]
        return _bank_of(files, request)
    if request.design is not None:  # made for each file's rate
        from convcli.core.fir import format_cutoffs

        name = f"{request.design.band} {format_cutoffs(request.design.cutoffs)} Hz"
        return KernelBank([name], [None], request)
    coefficients = request.load()[0]
    return KernelBank([request.label(coefficients)], [coefficients], request)


def is_kernel_list(path: str) -> bool:
    """A text file whose first entry is not a number names kernel files (a kernel file holds
    numbers)."""
    if Path(path).suffix.lower() == ".npy":
        return False
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                entry = line.strip()
                if entry and not entry.startswith("#"):
                    token = entry.replace(",", " ").split()[0]
                    try:
                        float(token)
                    except ValueError:
                        return True
                    return False
    except (OSError, UnicodeDecodeError):
        return False  # the kernel reader says why
    return False


def _bank_of(files: list[str], request: KernelRequest) -> KernelBank:
    if request.design is not None:
        raise UsageError("a FIR design and a kernel directory or list both given", "use one")
    names = [Path(f).stem for f in files]
    if len(set(names)) < len(names):  # the same stem twice: numbered instead
        names = [f"k{i}" for i in range(len(files))]
    coefficients = [replace(request, path=f).load()[0] for f in files]
    return KernelBank(names, coefficients, None)


def pick(how: str, count: int, rel: str, place: int, seed: int) -> list[int]:
    """The kernels (indices) one file gets: ``place`` is its index in the sorted corpus.

    >>> pick("random", 10, "a.wav", 0, 1) == pick("random", 10, "a.wav", 5, 1)
    True
    >>> pick("cycle", 3, "x", 4, 0), pick("all", 2, "x", 0, 0)
    ([1], [0, 1])
    """
    if how not in PICKS:
        raise UsageError(f"--pick {how!r} is not one of {', '.join(PICKS)}")
    if how == "all":
        return list(range(count))
    if how == "cycle":
        return [place % count]
    digest = hashlib.blake2b(f"{seed}\0{rel}".encode("utf-8", "surrogateescape"),
                             digest_size=8).digest()
    return [int.from_bytes(digest, "little") % count]
