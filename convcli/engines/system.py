"""What this machine and this install give convcli (``convcli doctor``): versions, engines,
CUDA devices, memory and the calibration in use, as data.

torch is imported only where an NVIDIA driver is present, to ask torch what it sees (that
import is what costs seconds); elsewhere its version comes from the package metadata and the
report says torch was not imported, and why.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from typing import Any

from convcli.about import __version__
from convcli.engines.devices import has_nvidia
from convcli.plan import memory, ratecache

#: the packages whose versions matter to convcli (dependencies, then optional extras)
PACKAGES = ("numpy", "soundfile", "typer", "rich", "threadpoolctl", "torch", "matplotlib",
            "scipy")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def facts() -> dict[str, Any]:
    """The report as a dict (``doctor --json`` prints it)."""
    cpu = ratecache.device_key("cpu")
    cuda = cuda_facts()
    return {
        "convcli": __version__,
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "platform": platform.platform(),
        "cpu": {"model": cpu["cpu"], "cores": cpu["cores"]},
        "packages": {name: _version(name) for name in PACKAGES},
        "libsndfile": _libsndfile(),
        "engines": engine_facts(),
        "cuda": cuda,
        "memory": {"available": memory.available_memory(),
                   "limit_env": memory.LIMIT_ENV, "limit": _limit()},
        "calibration": calibration_facts(["cpu", *[d["device"] for d in cuda["devices"]]]),
    }


def _libsndfile() -> str | None:
    try:
        import soundfile
    except (ImportError, OSError):
        return None
    return soundfile.__libsndfile_version__


def _limit() -> str | None:
    import os

    return os.environ.get(memory.LIMIT_ENV) or None


def engine_facts() -> list[dict[str, Any]]:
    """The two engines: what runs them and where ``plan.selection`` sends work to each."""
    from convcli.engines import blas

    return [
        {"name": "numpy", "version": _version("numpy"), "blas": blas.libraries(),
         "runs": "depthwise kernels (windows, (k,) and (C, k) files) on the CPU"},
        {"name": "torch", "version": _version("torch"),
         "runs": "CUDA, kernels that mix channels, jacobian and grad"},
    ]


def cuda_facts() -> dict[str, Any]:
    """The CUDA devices torch sees, with their memory; torch is asked only where an NVIDIA
    driver is present (``devices.has_nvidia``)."""
    if not has_nvidia():
        return {"torch_imported": "torch" in sys.modules, "driver": False, "available": False,
                "devices": [], "note": "no NVIDIA driver (/dev/nvidiactl), so torch was not "
                                       "imported to ask"}
    try:
        import torch
    except ImportError:
        return {"torch_imported": False, "driver": True, "available": False, "devices": [],
                "note": "torch is not installed"}
    if not torch.cuda.is_available():
        return {"torch_imported": True, "driver": True, "available": False, "devices": [],
                "cuda": torch.version.cuda,
                "note": "an NVIDIA driver is present, but this torch build sees no CUDA device"}
    devices = []
    for index in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(index)
        major, minor = torch.cuda.get_device_capability(index)
        devices.append({"device": f"cuda:{index}", "name": torch.cuda.get_device_name(index),
                        "capability": f"{major}.{minor}", "free": int(free),
                        "total": int(total)})
    return {"torch_imported": True, "driver": True, "available": True,
            "cuda": torch.version.cuda, "devices": devices,
            "note": "torch was imported to ask which CUDA devices it sees"}


def calibration_facts(devices: list[str]) -> dict[str, Any]:
    """Where the cost model's rates come from, per device and engine (``convcli calibrate``)."""
    mode, where = ratecache.setting()
    rows = []
    for device in devices:
        engines = ("numpy", "torch") if device == "cpu" else ("torch",)
        key = ratecache.device_key(device)
        path = ratecache.cache_path(key)
        rows.append({"device": device, "file": None if path is None else str(path),
                     "exists": bool(path is not None and path.exists()),
                     "rates": {engine: ratecache.rates_source(device, engine)
                               for engine in engines}})
    return {"env": ratecache.ENV, "setting": mode, "where": None if where is None else str(where),
            "devices": rows}
