"""Which device a run asks for: ``--device auto|cpu|cuda[:N]`` resolved once, torch only if needed.

``resolve_device`` is the one place a device name becomes a device: ``cpu`` at once, and
``auto`` on a machine with no NVIDIA driver too (no ``import torch``, which alone costs
seconds); otherwise torch says whether it sees CUDA. ``cuda`` without CUDA is a clear error.
"""

from __future__ import annotations

import os

from convcli.errors import ConvcliError, UsageError

DEVICES = ("auto", "cpu", "cuda")


def has_nvidia() -> bool:
    """An NVIDIA driver is present (so ``--device auto`` may mean CUDA and torch must decide)."""
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia/version")


def check_device(name: str) -> None:
    if name not in ("auto", "cpu") and not str(name).startswith("cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda, got {name!r}")


def resolve_device(name: str) -> str:
    """``cpu``, or the CUDA device ``auto``/``cuda``/``cuda:N`` means here, as torch names it.

    >>> resolve_device("cpu")
    'cpu'
    """
    check_device(name)
    if name == "cpu" or name == "auto" and not has_nvidia():
        return "cpu"
    import torch

    if not torch.cuda.is_available():
        if name == "auto":
            return "cpu"
        raise ConvcliError(
            "--device cuda was asked for, but this torch build sees no CUDA device",
            "use --device cpu (or auto), or install a CUDA build of torch on a machine with a GPU",
        )
    return str(torch.device("cuda" if name == "auto" else name))


def free_bytes(device: str) -> int | None:
    """Bytes free on a CUDA ``device`` (resolved), None for the CPU (``plan.memory`` knows it)."""
    if not str(device).startswith("cuda"):
        return None
    import torch

    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return int(free)
