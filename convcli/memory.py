"""How much memory a result may take, decided before anything is allocated (no torch here).

    >>> refuse_dense(10, 10, 8, limit=10_000)          # 800 B of 5,000 B: fine
    >>> refuse_dense(1_000, 1_000, 8, limit=10_000)
    Traceback (most recent call last):
    ...
    convcli.errors.ConvcliError: a dense 1,000 × 1,000 Jacobian needs 7.6 MiB but only 4.9 KiB can be spent (half the available memory)
"""

from __future__ import annotations

import os

from convcli.errors import ConvcliError


def available_memory() -> int:
    """Bytes this process can still allocate without swapping (MemAvailable, else total/2)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def human_bytes(n: float) -> str:
    """``1536`` -> ``1.5 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def refuse_dense(rows: int, cols: int, itemsize: int, copies: int = 1,
                 limit: int | None = None) -> None:
    """Refuse a dense ``[rows, cols]`` Jacobian (``copies`` of it) that will not fit in memory.

    The budget is half of ``limit`` (default: the available memory), leaving room for the rest.
    """
    need = rows * cols * itemsize * copies
    budget = (available_memory() if limit is None else limit) // 2
    if need > budget:
        raise ConvcliError(
            f"a dense {rows:,} × {cols:,} Jacobian needs {human_bytes(need)} "
            f"{'(autograd and closed form) ' if copies > 1 else ''}but only {human_bytes(budget)} "
            "can be spent (half the available memory)",
            "use --format banded -o J.npz (diagonals plus offsets, O(k·N)), "
            "or --rows/--cols to take a block",
        )
