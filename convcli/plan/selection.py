"""The one selection: which engine runs a convolution, and which method it runs, and why.

Every run asks here, whole-file filters, streams, the memory check, calibration and the
Python API alike:

- ``engine_for(device, depthwise)``: the numpy engine (``convcli.engines.numpy_backend``) for
  a CPU run of a depthwise kernel (every window and every ``(k,)``/``(C, k)`` kernel file),
  else the torch engine (CUDA, kernels that mix channels, autograd). ``import torch`` alone
  costs seconds, longer than SoX takes to filter ten minutes of audio.
- ``choose_method``: ``auto``'s rule over the cost model's prices (``costmodel``) for that
  engine: the cheapest of the engine's direct algorithm and overlap-save, with a precision
  rule by the signal's dynamic range and NaN/Inf sent to the algorithm that multiplies only
  the taps.
- ``describe_run``: what ran, as ``--json`` reports it.

numpy only, no torch: the signal's statistics come in as an ``Observed`` the engine measured.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from convcli.core.spec import ConvSpec
from convcli.errors import UsageError
from convcli.plan.costmodel import dtype_name, estimate_costs, is_float64
from convcli.plan.ratecache import cost_rates

METHODS = ("auto", "direct", "fft")
#: auto's precision rule, by the dynamic range (peak / 1st percentile of |x| ≠ 0): above the
#: first, a float32 FFT runs in float64; above the second, no FFT at all (direct)
FFT32_MAX_DYNAMIC_RANGE = 1e5
FFT64_MAX_DYNAMIC_RANGE = 1e11
#: relative error of one FFT convolution, per log2(nfft), in units of the dtype's epsilon
FFT_ERROR_PER_LOG2 = 2.0
#: samples the dynamic range is measured on (256 runs of contiguous samples)
RANGE_SAMPLE = 1 << 16


@dataclass(frozen=True)
class EngineFacts:
    """What sets an engine apart in the choice: its direct algorithm that multiplies only the
    taps (NaN/Inf reach exactly the outputs whose taps touch them), named as the user reads it."""

    tap_algorithm: str
    tap_words: str


FACTS = {
    "numpy": EngineFacts("correlate", "numpy.correlate per channel"),
    "torch": EngineFacts("conv1d", "F.conv1d"),
}


@dataclass(frozen=True)
class MethodChoice:
    """Which method runs and why (``--json`` reports it).

    ``algorithm`` is ``gemm``, ``conv1d``, ``correlate`` or ``overlap-save``; ``nfft`` the FFT
    frame size; ``fft_dtype`` the precision the FFT runs in (float64 where float32 would lose
    the quiet samples); ``estimates`` the cost model's seconds for each candidate.
    """

    method: str
    reason: str
    algorithm: str = ""
    nfft: int = 0
    fft_dtype: str | None = None
    estimates: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Observed:
    """What the signal tells the choice: its peak ``max|x|`` (``inf`` with NaN/Inf) and a way
    to measure its dynamic range, asked only when an FFT would win."""

    peak: float
    spread: Callable[[float], float]


def check_method(requested: str) -> None:
    if requested not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}, got {requested!r}")


def engine_for(device: str, depthwise_kernel: bool) -> str:
    """``numpy`` for a CPU run of a depthwise kernel, else ``torch``; ``device`` is resolved
    (``cpu``, ``cuda``, ``cuda:1``: see ``engines.devices.resolve_device``).

    >>> engine_for("cpu", True), engine_for("cpu", False), engine_for("cuda", True)
    ('numpy', 'torch', 'torch')
    """
    return "numpy" if str(device) == "cpu" and depthwise_kernel else "torch"


# --- the signal's dynamic range ----------------------------------------------------------------
def sample_runs(flat, size: int = RANGE_SAMPLE):
    """At most ``size`` samples of a 1-D array (numpy or torch): 256 evenly spaced runs of
    contiguous samples, a view (whole cache lines, not one sample per line)."""
    count = flat.shape[0]
    if count <= size:
        return flat
    run = size // 256
    rows = flat[: count // run * run].reshape(-1, run)
    return rows[:: max(1, rows.shape[0] // 256)][:256].reshape(-1)


def dynamic_range(sample: np.ndarray, peak: float | None = None) -> float:
    """``max|x|`` over the 1st percentile of the non-zero ``|x|`` of ``sample``; 1 if silent.

    An FFT's error is about ``eps · log2(nfft) · max|x|`` everywhere in a frame, so samples this
    much quieter than the peak keep only ``eps · range`` of relative precision (scipy issue
    22390). ``sample`` is a host copy of ``sample_runs`` of the signal; ``peak`` its max |x|.

    >>> dynamic_range(np.array([1.0, -1e-3, 0.5]))
    1000.0
    """
    if sample.size == 0:
        return 1.0
    if peak is None:
        peak = max(-float(sample.min()), float(sample.max()))
    flat = np.abs(sample.reshape(-1))
    nonzero = flat[flat > 0]
    if peak == 0.0 or not math.isfinite(peak) or nonzero.size == 0:
        return 1.0
    q = max(1, int(0.01 * nonzero.size))
    quiet = float(np.partition(nonzero, q - 1)[q - 1])
    return peak / quiet if quiet > 0 else math.inf


# --- prices ------------------------------------------------------------------------------------
def costs_for(length: int, k: int, spec: ConvSpec, *, batch: int = 1, channels: int = 1,
              out_channels: int | None = None, dtype="float32", engine: str = "torch",
              device: str = "cpu") -> dict:
    """``estimate_costs`` for the candidates ``engine`` runs: the numpy engine's direct method is
    its GEMM wherever the band fits (it has no ``F.conv1d``).

    Remembered per shape and rates (``cost_rates`` is read each time, so a calibration takes
    effect at once): pricing every FFT frame size is 0.1-0.5 ms of Python, a tenth of filtering
    64 × 1 s, and a caller filtering batch after batch asks the same question.

    The spec is checked first (``ConvSpec.check``): a kernel longer than the padded signal has
    no frames to price, and its error is the spec's, whoever asks (the memory check prices
    before the engine runs).
    """
    spec.check(length, k)
    out_channels = channels if out_channels is None else out_channels
    rates = cost_rates(device, engine)
    return dict(_costs(length, k, spec, batch, channels, out_channels, dtype_name(np.dtype(
        dtype_name(dtype))), engine, str(device), tuple(sorted(rates.items()))))


@functools.lru_cache(maxsize=64)
def _costs(length, k, spec, batch, channels, out_channels, dtype, engine, device, rates) -> dict:
    costs = estimate_costs(length, k, spec, batch=batch, channels=channels,
                           out_channels=out_channels, dtype=dtype, device=device, engine=engine,
                           rates=dict(rates))
    if engine == "numpy" and "gemm" in costs:
        costs.pop("conv1d", None)
    return costs


# --- the rule ----------------------------------------------------------------------------------
def choose_method(
    length: int, k: int, spec: ConvSpec, requested: str = "auto", *, batch: int = 1,
    channels: int = 1, out_channels: int | None = None, dtype="float32", engine: str = "torch",
    device: str = "cpu", observed: Observed | None = None, costs: dict | None = None,
) -> MethodChoice:
    """Pick direct or FFT (and how) for ``batch × channels`` signals of ``length`` samples.

    The cost model prices the engine's direct algorithm (the banded GEMM for depthwise kernels
    where its band fits, else the one that multiplies the taps: ``F.conv1d`` or
    ``numpy.correlate``) and overlap-save at its best frame size; ``auto`` takes the cheaper.
    With ``observed`` (the signal's statistics): NaN/Inf run the tap algorithm, the only one
    that propagates them exactly to the outputs whose taps touch them; in float32, where the
    signal spans more than ``FFT32_MAX_DYNAMIC_RANGE`` (100 dB), the FFT runs in float64
    (priced twice); beyond ``FFT64_MAX_DYNAMIC_RANGE`` (220 dB) no FFT keeps the quiet samples
    and auto runs direct, whatever it costs. ``costs``: ``costs_for`` these arguments, where
    the caller has them.

    >>> stereo = ConvSpec(groups=2)   # a window on both channels of a stereo file
    >>> choose_method(28_800_000, 31, stereo, channels=2, engine="numpy").algorithm
    'gemm'
    >>> choose_method(28_800_000, 4095, stereo, channels=2, engine="numpy").algorithm
    'overlap-save'
    """
    check_method(requested)
    if not batch * channels:  # a batch of no signals: its output is empty, whatever the method
        spec.check(length, k)
        return MethodChoice("direct", "the batch is empty: nothing to compute",
                            FACTS[engine].tap_algorithm)
    if costs is None:
        costs = costs_for(length, k, spec, batch=batch, channels=channels,
                          out_channels=out_channels, dtype=dtype, engine=engine, device=device)
    facts = FACTS[engine]
    estimates = {name: round(seconds, 6) for name, (seconds, _) in costs.items()}
    peak = None if observed is None or requested == "fft" else observed.peak
    if peak is not None and not math.isfinite(peak):
        why = (f"non-finite samples: {facts.tap_words} propagates them only through the taps "
               "that touch them")
        return MethodChoice("direct", why, facts.tap_algorithm, 0, None, estimates)
    # the banded GEMM (depthwise only) or the tap algorithm, whichever is cheaper here: the
    # GEMM wins by 10-30x on a CPU, cuDNN's conv1d by 5x on a GPU
    gemm = "gemm" in costs and costs["gemm"][0] <= costs.get("conv1d", (math.inf, 0))[0]
    direct_name = "gemm" if gemm else facts.tap_algorithm
    direct_seconds = costs["gemm" if gemm else "conv1d"][0]
    fft_seconds, nfft = costs["fft"]
    fft_dtype, note = None, ""
    fft_wins = requested == "fft" or requested == "auto" and fft_seconds < direct_seconds
    if observed is not None and requested == "auto" and fft_wins:
        ratio = observed.spread(peak)
        span_db = 20 * math.log10(max(ratio, 1.0))
        if ratio > FFT64_MAX_DYNAMIC_RANGE:
            fft_seconds = math.inf
            note = f"; dynamic range {span_db:.0f} dB: an FFT would lose the quiet samples"
        elif not is_float64(dtype) and ratio > FFT32_MAX_DYNAMIC_RANGE:
            fft_dtype, fft_seconds = "float64", fft_seconds * 2
            note = f"; dynamic range {span_db:.0f} dB > 100 dB, so the FFT runs in float64"
    if requested == "direct" or requested == "auto" and direct_seconds <= fft_seconds:
        why = ("asked for with --method" if requested == "direct" else
               f"cost model: direct {direct_seconds:.3g} s ≤ FFT {costs['fft'][0]:.3g} s "
               f"(kernel span {spec.span(k)})" + note)
        if not gemm and engine == "numpy":  # it has no F.conv1d: the taps, multiplied
            why += f"; {facts.tap_words.split()[0]} (the GEMM's band would not fit)"
        return MethodChoice("direct", why, direct_name, 0, None, estimates)
    if requested == "fft":
        why = "asked for with --method"
    else:
        why = (f"cost model: FFT {fft_seconds:.3g} s (nfft {nfft}) < direct {direct_seconds:.3g} s "
               f"(kernel span {spec.span(k)})" + note)
    return MethodChoice("fft", why, "overlap-save", nfft, fft_dtype, estimates)


def tap_choice(choice: MethodChoice, engine: str, why: str) -> MethodChoice:
    """``choice`` with its direct method replaced by the engine's tap algorithm (for blocks
    that may hold NaN/Inf: ``--allow-nonfinite`` on a stream); an FFT stays."""
    facts = FACTS[engine]
    if choice.method != "direct" or choice.algorithm == facts.tap_algorithm:
        return choice
    return replace(choice, algorithm=facts.tap_algorithm,
                   reason=f"{why}: {facts.tap_words} propagates NaN/Inf only through the taps "
                   "that touch them")


# --- what ran ---------------------------------------------------------------------------------
def fft_error_bound(nfft: int, dtype) -> float:
    """Bound on |FFT − exact| / (max|x| · Σ|w|) for one overlap-save frame of ``nfft``.

    ``dtype``: a torch or numpy dtype, or its name.

    >>> fft_error_bound(4096, "float64") < 1e-13 < fft_error_bound(4096, "float32")
    True
    """
    eps = float(np.finfo(dtype_name(dtype)).eps)
    return FFT_ERROR_PER_LOG2 * eps * max(math.log2(max(nfft, 2)), 1.0)


def describe_run(choice: MethodChoice, *, engine: str, device: str, dtype, batches: int = 1,
                 peak: float | None = None, gain: float | None = None) -> dict:
    """What ran, for ``--json``: engine, method, reason, algorithm, nfft and the FFT error bound.

    ``fft_error_bound`` is absolute: the relative bound times ``peak`` (max|x|) times ``gain``
    (the largest ``Σ|w|`` of an output channel: the largest value an output can reach).
    """
    dtype = dtype_name(dtype)
    run = {
        "engine": engine,
        "method": choice.method,
        "reason": choice.reason,
        "algorithm": choice.algorithm,
        "device": str(device),
        "dtype": dtype,
        "batches": batches,
        "estimates_s": choice.estimates,
    }
    if choice.method == "fft":
        fft_dtype = choice.fft_dtype or dtype
        relative = fft_error_bound(choice.nfft, fft_dtype)
        run.update(nfft=choice.nfft, fft_dtype=fft_dtype, fft_relative_error_bound=relative)
        if peak is not None and gain is not None:
            run["fft_error_bound"] = relative * peak * gain
    return run

