"""The calibration cache: cost-model rates that ``convcli calibrate`` fitted, one file per device.

``cost_rates(device, engine)`` (the table the cost model prices with) asks
``cached_rates(device, engine)`` on every choice of method, so this module is light (json and
the file system; torch only to name a CUDA device, where torch is already loaded). Where the files live:

- ``CONVCLI_CALIBRATION`` unset or empty: ``$XDG_CACHE_HOME/convcli/`` (default
  ``~/.cache/convcli/``), one ``calibration-<kind>-<hash>.json`` per device key;
- ``CONVCLI_CALIBRATION=off`` (or ``0``, ``no``, ``none``, ``built-in``): no file is read, the
  built-in tables price everything;
- ``CONVCLI_CALIBRATION=DIR`` (an existing directory, or a path ending in ``/``): that
  directory instead of the cache directory; ``=FILE``: that one file (for its kind of device).

A device key names what the rates depend on: for the CPU its model name, core count and the
numpy and torch versions; for CUDA the device's name, its compute capability and the torch and
CUDA versions. A file is used only when its format, its device key and the cost model it was
fitted to (``model_fingerprint``: the model's own counts on a few fixed problems) all match
this process; otherwise it is ignored with one warning (``CalibrationWarning``), which the CLI
prints as one ``warning:`` line.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import platform
import sys
import warnings
from pathlib import Path

from convcli.core.spec import ConvSpec
from convcli.errors import ConvcliWarning
from convcli.plan.costmodel import builtin_rates, estimate_costs

#: bump when the file layout changes (older files are then stale)
FORMAT = 1
ENV = "CONVCLI_CALIBRATION"
OFF = ("off", "0", "no", "none", "false", "built-in", "builtin")
RATE_KEYS = ("gemm_flop", "conv1d_mac", "fft_flop", "byte", "call")
ENGINES = ("numpy", "torch")


class CalibrationWarning(ConvcliWarning):
    """A calibration file that exists but cannot be used (corrupt, stale, another device)."""


# --- where ---------------------------------------------------------------------------------
def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/convcli`` (an absolute XDG_CACHE_HOME only, as the spec says), else
    ``~/.cache/convcli``."""
    return _cache_dir(os.environ.get("XDG_CACHE_HOME", ""), os.environ.get("HOME", ""))


@functools.lru_cache(maxsize=8)
def _cache_dir(base: str, home: str) -> Path:
    # per environment: every auto choice asks, and building the path was half its 50 µs
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "convcli"


def setting() -> tuple[str, Path | None]:
    """What ``CONVCLI_CALIBRATION`` asks for: ``("off", None)``, ``("dir", DIR)`` or
    ``("file", FILE)``."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return "dir", cache_dir()
    if value.lower() in OFF:
        return "off", None
    path = Path(value).expanduser()
    if value.endswith(("/", os.sep)) or path.is_dir():
        return "dir", path
    return "file", path


def device_kind(device: str) -> str:
    return "cuda" if str(device).startswith("cuda") else "cpu"


def file_name(key: dict) -> str:
    """``calibration-cpu-<hash of the key>.json``: one file per device key."""
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return f"calibration-{key['kind']}-{digest}.json"


def cache_path(key: dict) -> Path | None:
    """The file ``cost_rates`` reads for ``key``; None when calibration is off."""
    mode, where = setting()
    if mode == "off" or where is None:
        return None
    return where if mode == "file" else where / file_name(key)


def save_path(key: dict) -> Path:
    """Where ``convcli calibrate`` writes for ``key``: ``cache_path``, or with
    ``CONVCLI_CALIBRATION=off`` the default cache directory (kept, though not read)."""
    return cache_path(key) or cache_dir() / file_name(key)


# --- which device ----------------------------------------------------------------------------
@functools.cache
def _version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def device_key(device: str = "cpu") -> dict:
    """What identifies the machine the rates were measured on (see the module doc).

    A CUDA device is named by the torch that resolved it: it is loaded by then (this module
    never imports it, so the CPU path stays free of torch); ``RuntimeError`` if it is not.
    """
    if device_kind(device) == "cpu":
        return {"kind": "cpu", "cpu": _cpu_model(), "cores": os.cpu_count() or 1,
                "numpy": _version("numpy"), "torch": _version("torch")}
    torch = _loaded_torch()
    index = torch.device(device).index
    return _cuda_key(torch.cuda.current_device() if index is None else index)


def _loaded_torch():
    torch = sys.modules.get("torch")
    if torch is None:
        raise RuntimeError("a CUDA device is named only after torch has resolved it")
    return torch


@functools.cache
def _cuda_key(index: int) -> dict:
    torch = _loaded_torch()
    major, minor = torch.cuda.get_device_capability(index)
    return {"kind": "cuda", "name": torch.cuda.get_device_name(index),
            "capability": f"{major}.{minor}", "torch": _version("torch"),
            "cuda": torch.version.cuda}


def describe_key(key: dict) -> str:
    """``Intel Xeon … (2 cores), numpy 2.1, torch 2.13`` or ``NVIDIA H100 (sm 9.0), torch …``."""
    if key.get("kind") == "cuda":
        return (f"{key.get('name')} (compute capability {key.get('capability')}), "
                f"torch {key.get('torch')}, CUDA {key.get('cuda')}")
    return (f"{key.get('cpu')} ({key.get('cores')} cores), numpy {key.get('numpy')}, "
            f"torch {key.get('torch')}")


@functools.cache
def model_fingerprint(kind: str = "cpu") -> str:
    """A hash of the cost model's counts on fixed problems on a ``cpu`` or ``cuda`` device:
    rates fitted to other counts (the model changed since the calibration) do not apply."""
    problems = [  # (length, k, spec, batch, channels, out_channels, nfft)
        (48_000, 31, ConvSpec(groups=2), 1, 2, 2, 4096),
        (2_048, 31, ConvSpec(groups=1), 256, 1, 1, 256),
        (100_000, 1001, ConvSpec(groups=1, stride=2), 1, 4, 4, 16384),
        (30_000, 63, ConvSpec(groups=2, dilation=3), 2, 4, 6, 8192),
        (1 << 26, 31, ConvSpec(groups=2), 1, 2, 2, 65536),  # chunks of a long signal
    ]
    counts = []
    for engine in ENGINES:
        for length, k, spec, batch, channels, out_channels, nfft in problems:
            for unit in RATE_KEYS:
                rates = {key: float(key == unit) for key in RATE_KEYS}
                costs = estimate_costs(length, k, spec, batch=batch, channels=channels,
                                       out_channels=out_channels, device=kind, engine=engine,
                                       rates=rates, at_nfft=nfft)
                counts.append({name: f"{seconds:.9g}" for name, (seconds, _) in costs.items()})
    return hashlib.sha1(json.dumps(counts, sort_keys=True).encode()).hexdigest()[:16]


# --- reading ---------------------------------------------------------------------------------
class Stale(Exception):
    """Why a calibration file cannot be used (the message of the warning)."""


def validate(data, key: dict) -> dict:
    """The file's content if it is a usable calibration for ``key``; else raise ``Stale``."""
    if not isinstance(data, dict):
        raise Stale("not a calibration file (a JSON object was expected)")
    if data.get("format") != FORMAT:
        raise Stale(f"written in format {data.get('format')!r}, this convcli reads format {FORMAT}")
    if data.get("device") != key:
        found = data.get("device")
        other = describe_key(found) if isinstance(found, dict) else repr(found)
        raise Stale(f"it was measured on {other}, not on {describe_key(key)}")
    if data.get("model") != model_fingerprint(key["kind"]):
        raise Stale("the cost model changed since it was measured")
    engines = data.get("engines")
    if not isinstance(engines, dict) or not engines:
        raise Stale("it holds no fitted rates")
    for engine, entry in engines.items():
        rates = entry.get("rates") if isinstance(entry, dict) else None
        if not isinstance(rates, dict) or set(rates) != set(RATE_KEYS):
            raise Stale(f"the {engine} rates are not the {len(RATE_KEYS)} of the cost model")
        for name, value in rates.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    math.isfinite(value) and value > 0):
                raise Stale(f"{engine} rate {name} = {value!r} is not a positive number")
    return data


@functools.lru_cache(maxsize=32)
def _load(path: str, stamp: tuple[int, int], key_json: str) -> dict | None:
    """The validated content of ``path`` (as it was at ``stamp``), or None with one warning."""
    key = json.loads(key_json)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, UnicodeDecodeError) as exc:
        reason = f"cannot be read ({exc.strerror or exc})" if isinstance(exc, OSError) else \
            "is not text"
        _warn(path, reason)
        return None
    except ValueError as exc:
        _warn(path, f"is corrupt (not JSON: {exc})")
        return None
    try:
        return validate(data, key)
    except Stale as exc:
        _warn(path, f"does not apply: {exc}")
        return None


def _warn(path: str, reason: str) -> None:
    warnings.warn(f"calibration file {path} {reason}; using the built-in cost model rates "
                  "(hint: rerun 'convcli calibrate', or delete the file)",
                  CalibrationWarning, stacklevel=2)


def cached(device: str = "cpu") -> tuple[Path, dict] | None:
    """The path and validated content of this device's calibration file, if there is one."""
    mode, where = setting()
    if mode == "off" or where is None or (mode == "dir" and not where.is_dir()):
        return None  # the common case: nothing calibrated, nothing to compute
    try:
        key = device_key(device)
    except (RuntimeError, AssertionError, ValueError):  # e.g. "cuda" where torch sees none
        return None
    path = cache_path(key)
    if path is None:
        return None
    try:
        stat = path.stat()
    except OSError:
        return None  # not calibrated (yet): the built-in tables, silently
    if mode == "file" and _kind_of(path, stat) not in (None, key["kind"]):
        return None  # a file for the other kind of device (CPU vs CUDA): not ours to judge
    data = _load(str(path), (stat.st_mtime_ns, stat.st_size), json.dumps(key, sort_keys=True))
    return None if data is None else (path, data)


@functools.lru_cache(maxsize=32)
def _kind_of_cached(path: str, stamp: tuple[int, int]) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            device = json.load(handle).get("device")
        return device.get("kind") if isinstance(device, dict) else None
    except (OSError, ValueError, AttributeError):
        return None


def _kind_of(path: Path, stat) -> str | None:
    return _kind_of_cached(str(path), (stat.st_mtime_ns, stat.st_size))


def cached_rates(device: str = "cpu", engine: str = "torch") -> dict[str, float] | None:
    """The fitted rates for this device and engine, or None (use the built-in table)."""
    found = cached(device)
    if found is None:
        return None
    entry = found[1]["engines"].get(engine)
    if entry is None:
        return None
    # calibrate times float32 and fits RATE_KEYS with the other terms at zero (the fitted rates
    # absorb them), so only the built-in float64 factors carry over
    factors = {name: value for name, value in builtin_rates(device, engine).items()
               if name.endswith("_float64")}
    return {**factors, **{name: float(entry["rates"][name]) for name in RATE_KEYS}}


def cached_source(device: str = "cpu", engine: str = "torch") -> str | None:
    """``calibrated DATE (PATH)`` when ``cached_rates`` has rates for this engine, else None."""
    found = cached(device)
    if found is None or engine not in found[1]["engines"]:
        return None
    path, data = found
    return f"calibrated {str(data.get('created', '?'))[:10]} ({path})"


# --- writing ---------------------------------------------------------------------------------
def save(path: Path, data: dict) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file beside it, then a rename)."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


# --- the rates in use ------------------------------------------------------------------------
def cost_rates(device: str = "cpu", engine: str = "torch") -> dict[str, float]:
    """The seconds-per-unit table ``estimate_costs`` prices with, for this device and engine.

    The rates ``convcli calibrate`` fitted for this device, where its cache file is valid
    (this module: ``$XDG_CACHE_HOME/convcli/``, ``CONVCLI_CALIBRATION=off`` or a
    path to bypass it or point elsewhere); else the built-in table.
    """
    fitted = cached_rates(device, engine)
    return fitted if fitted is not None else builtin_rates(device, engine)


def rates_source(device: str = "cpu", engine: str = "torch") -> str:
    """Where ``cost_rates`` takes its rates from: ``built-in`` or ``calibrated DATE (PATH)``."""
    return cached_source(device, engine) or "built-in"
