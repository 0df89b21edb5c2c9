"""The cost model and method rule shared by both engines (no torch: the numpy engine uses it too).

``estimate_costs`` prices the banded GEMM, ``F.conv1d`` and overlap-save; ``decide`` applies
``auto``'s rule (cheapest, with the dynamic-range precision rule) given the signal's peak and a
way to measure its dynamic range. ``convcli.engine`` (torch) and ``convcli.npengine`` (numpy)
both choose through here, so they agree on the method for the same input.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from convcli.errors import UsageError
from convcli.core.spec import ConvSpec

METHODS = ("auto", "direct", "fft")

#: Cost model, seconds per unit, fitted on the 2-core CPU of MEASUREMENTS.md (float32; float64
#: counts twice). ``convcli calibrate`` fits them for another machine (cached per device).
CPU_COST = {
    "gemm_flop": 1 / 55e9,  # banded GEMM, effective (the band wastes some of it, counted in flops)
    "conv1d_mac": 1 / 1.0e9,  # F.conv1d, padding=0, per multiply-add (depthwise is slow on CPU)
    "fft_flop": 1 / 9e9,  # pocketfft r2c + c2r, per 2.5·n·log2(n) flop, plus the product
    "byte": 1 / 6e9,  # a pass over memory (frames, spectra, outputs)
    "call": 15e-6,  # per block of the python-level loop / per FFT frame batch
}
#: The numpy engine (``convcli.npengine``), fitted on its own runs on this 2-core machine: 57
#: timings (1-min stereo at k = 3…48 000, direct at strides 1-3 and overlap-save at every
#: power-of-two frame 256…2^17; 64 × 1 s mono; 1 s stereo; 10 min stereo), each the 20th
#: percentile of 8 interleaved rounds, fitted by non-negative least squares on relative error.
#: The FFT's time per frame sample is flat from 2^9 to 2^15 and grows past it (cache), hence
#: ``fft_cache``; ``fft_frame`` is numpy's per-transform overhead (small frames); ``call`` also
#: absorbs each call's fixed costs (pads, thread hand-off, the ragged end of a row).
#: float64 costs ``gemm_float64``× (the band is memory-bound) and ``fft_float64``× float32.
#: The FFT rates are that fit × 0.4, fft_float64 1.6 → 2.0: numpy's float32 rfft had run in
#: float64 (see ``npengine.FFTPlan``); once in float32 and in fours, 4 M stereo samples at
#: k = 63…8191 took 0.35-0.52× the fit's float32 prediction and 2.0× as long in float64.
NUMPY_COST = {
    "gemm_flop": 1 / 51.5e9,
    "conv1d_mac": CPU_COST["conv1d_mac"],  # not run by the numpy engine
    "fft_flop": 1 / 15.75e9,
    "fft_frame": 0.15e-6,  # per transform (rfft or irfft of one frame)
    "fft_cache": 0.35e-9,  # per transformed sample and octave of nfft above 2^15
    "byte": 1 / 16e9,
    "call": 235e-6,
    "gemm_float64": 2.5,
    "fft_float64": 2.0,
}
#: CUDA, fitted on an H200 (torch 2.11, IEEE float32: TF32 off) with ``bench.py --device cuda``:
#: cuDNN's depthwise conv1d ran 3.4-3.6e12 multiply-adds/s (k = 4095 and 48 000 on 10 min
#: stereo) and the whole 31-tap W1 in 1.0-1.3 ms; the banded GEMM is a CPU trick (skinny
#: matrices: 1.4e12 flop/s there); overlap-save ~2.5e12 flop/s, ~0.8 ms at least per signal.
CUDA_COST = {"gemm_flop": 1 / 1.4e12, "conv1d_mac": 1 / 3.5e12, "fft_flop": 1 / 2.5e12,
             "byte": 1 / 3e12, "call": 40e-6}


def builtin_rates(device: str = "cpu", engine: str = "torch") -> dict[str, float]:
    """The built-in seconds-per-unit table for this device and engine (no calibration)."""
    if str(device).startswith("cuda"):
        return CUDA_COST
    return NUMPY_COST if engine == "numpy" else CPU_COST


def cost_rates(device: str = "cpu", engine: str = "torch") -> dict[str, float]:
    """The seconds-per-unit table ``estimate_costs`` prices with, for this device and engine.

    The rates ``convcli calibrate`` fitted for this device, where its cache file is valid
    (``convcli.ratecache``: ``$XDG_CACHE_HOME/convcli/``, ``CONVCLI_CALIBRATION=off`` or a
    path to bypass it or point elsewhere); else the built-in table.
    """
    from convcli.plan.ratecache import cached_rates  # light: json and the file system, no torch

    fitted = cached_rates(device, engine)
    return fitted if fitted is not None else builtin_rates(device, engine)


def rates_source(device: str = "cpu", engine: str = "torch") -> str:
    """Where ``cost_rates`` takes its rates from: ``built-in`` or ``calibrated DATE (PATH)``."""
    from convcli.plan.ratecache import cached_source

    return cached_source(device, engine) or "built-in"

#: Outputs per chunk (× rows) for the whole-signal loop: ~4 MB of float32 working set (cache).
CHUNK_ELEMENTS = 1 << 20
#: On a GPU, chunks only bound memory: each one costs kernel launches and the device has room.
CUDA_CHUNK_ELEMENTS = 1 << 25


def chunk_elements(device) -> int:
    """Outputs × rows per chunk of the whole-signal loop on ``device`` (a name or torch device)."""
    return CUDA_CHUNK_ELEMENTS if str(device).startswith("cuda") else CHUNK_ELEMENTS
#: auto's precision rule, by the dynamic range (peak / 1st percentile of |x| ≠ 0): above the
#: first, a float32 FFT runs in float64; above the second, no FFT at all (direct)
FFT32_MAX_DYNAMIC_RANGE = 1e5
FFT64_MAX_DYNAMIC_RANGE = 1e11
#: relative error of one FFT convolution, per log2(nfft), in units of the dtype's epsilon
FFT_ERROR_PER_LOG2 = 2.0


# --- choosing a method ------------------------------------------------------------------------
@dataclass(frozen=True)
class MethodChoice:
    """Which method runs and why (``--json`` reports it).

    ``algorithm`` is ``gemm``, ``conv1d`` or ``overlap-save``; ``nfft`` the FFT frame size;
    ``fft_dtype`` the precision the FFT runs in (float64 where float32 would lose the quiet
    samples); ``estimates`` the cost model's seconds for each candidate.
    """

    method: str
    reason: str
    algorithm: str = ""
    nfft: int = 0
    fft_dtype: str | None = None
    estimates: dict = field(default_factory=dict, compare=False)


def depthwise(out_channels: int, per_group: int, groups: int) -> bool:
    """One input channel per group and one output per input: what windows and (C, k) files give."""
    return per_group == 1 and out_channels == groups


#: Bytes of one banded GEMM matrix at most: ``(B·s + K − s) × B`` values with ``B ≥ (K − s)/s``
#: grows as K², 18 GB at 48 000 taps; past this, ``direct`` multiplies the taps instead
#: (``F.conv1d`` in torch, ``numpy.correlate`` in numpy)
GEMM_MAX_BAND_BYTES = 1 << 28


def gemm_fits(span: int, stride: int, itemsize: int = 4) -> bool:
    """The banded GEMM's matrix for this kernel span stays within ``GEMM_MAX_BAND_BYTES``.

    >>> gemm_fits(4095, 1), gemm_fits(16383, 1)
    (True, False)
    """
    block = gemm_block(span, stride)
    return (block * stride + span) * block * itemsize <= GEMM_MAX_BAND_BYTES


def gemm_block(span: int, stride: int) -> int:
    """Outputs per banded block: the fewest that let two blocks cover a kernel span.

    A block of B outputs costs B·s + K − s multiply-adds per output, so B should be as small as
    the band allows, ≥ (K − s)/s, rounded up to a multiple of 8 (whole SIMD lanes) and at
    least 16 (narrower products lose more to call and packing overhead than the band saves).
    Measured on this CPU (numpy and torch, float32 and float64, k = 3…255, s = 1…5), this was
    the fastest block or within noise of it; the former 64/128 floor cost 1.3-2.5× for k < 32
    or s > 1.

    >>> gemm_block(31, 1), gemm_block(3, 1), gemm_block(255, 3)
    (32, 16, 88)
    """
    least = -(-(span - stride) // stride)
    return max(16, -(-least // 8) * 8)


#: numpy.fft's time per sample grows past 2^17-point frames (cache; 48 000 taps, float32 run in
#: float32, one thread: 18 ns per output at 2^17, 20 at 2^18-2^19, 36 at 2^20), so the numpy
#: engine's frames stop at this size or the power of two ≥ 2K, whichever is larger
NUMPY_MAX_NFFT = 1 << 17
#: the numpy engine joins rows whose padded length is at most this end to end (one GEMM for a
#: batch of short clips); longer rows are read in place, with no padded copy
JOIN_ROW = 1 << 16


def joins_rows(rows: int, length: int, spec: ConvSpec, k: int) -> bool:
    """The numpy engine's direct method runs these rows joined into one (``npengine.conv1d_joined``)."""
    return rows > 1 and length + sum(spec.pads(k)) <= JOIN_ROW


def fft_candidates(padded: int, span: int) -> list[int]:
    """Frame sizes worth pricing: powers of two from 2K up, and one frame for the whole signal."""
    sizes = []
    n = max(64, 1 << (2 * span - 1).bit_length())
    whole = next_fast_len(padded)
    while n < whole and n <= 1 << 22:
        sizes.append(n)
        n *= 2
    sizes.append(whole)
    return sizes


def numpy_max_nfft(span: int) -> int:
    """The numpy engine's largest FFT frame: ``NUMPY_MAX_NFFT`` or the power of two ≥ 2K."""
    return max(NUMPY_MAX_NFFT, 1 << (2 * span - 1).bit_length())


def estimate_costs(
    length: int, k: int, spec: ConvSpec, *, batch: int = 1, channels: int = 1,
    out_channels: int | None = None, dtype="float32", device: str = "cpu", engine: str = "torch",
    rates: dict[str, float] | None = None, at_nfft: int | None = None,
) -> dict[str, tuple[float, int]]:
    """Seconds the cost model predicts per candidate: ``{"gemm": (s, block), "fft": (s, nfft), ...}``.

    Counts flops and bytes of each algorithm as the engine runs it; see ``CPU_COST``. The numpy
    engine's counts differ where its code does: short rows joined into one (``joins_rows``), one
    call per row and chunk, frames no larger than ``numpy_max_nfft``, float64 priced per rate.
    ``rates`` prices with that table instead of ``cost_rates(device, engine)`` (the cost is
    linear in the rates: a unit table gives the counts ``convcli calibrate`` fits to);
    ``at_nfft`` prices overlap-save at that frame size only.
    """
    c = cost_rates(device, engine) if rates is None else rates
    numpy_engine = engine == "numpy" and not str(device).startswith("cuda")
    wide = is_float64(dtype)
    width = 2.0 if wide else 1.0
    out_channels = channels if out_channels is None else out_channels
    per_group = max(1, channels // spec.groups)
    span, s = spec.span(k), spec.stride
    left, right = spec.pads(k)
    padded = length + left + right
    n1 = max(padded - span + 1, 1)  # stride-1 outputs
    n_out = (n1 - 1) // s + 1
    rows_in, rows_out = batch * channels, batch * out_channels
    costs: dict[str, tuple[float, int]] = {}
    mac = rows_out * n_out * k * per_group
    conv_chunks = max(1, n_out * rows_out // chunk_elements(device))
    costs["conv1d"] = (width * mac * c["conv1d_mac"] + 8 * width * rows_out * n_out * c["byte"]
                       + conv_chunks * c["call"], 0)
    if depthwise(out_channels, per_group, spec.groups) and gemm_fits(span, s, 8 if wide else 4):
        block = gemm_block(span, s)
        band = block * s + span - s  # multiply-adds per output
        outputs = rows_out * n_out
        if numpy_engine and joins_rows(rows_in, length, spec, k):
            outputs = rows_out * -(-padded // s)  # each row's ⌈P/s⌉, straddling ones dropped
            calls = -(-outputs * s // CHUNK_ELEMENTS)
        elif numpy_engine:  # each row: its middle in chunks, its two edges
            calls = rows_in * (-(-n_out * rows_in * s // CHUNK_ELEMENTS) + 2)
        else:
            calls = rows_in * -(-n_out * rows_in // chunk_elements(device))
        per_output = 4 * (s + 1) if numpy_engine else 8  # bytes: s samples read, one written
        gemm_width = c.get("gemm_float64", width) if wide else 1.0
        costs["gemm"] = (gemm_width * outputs * (2 * band * c["gemm_flop"] + per_output * c["byte"])
                         + calls * c["call"], block)
    fft_width = c.get("fft_float64", width) if wide else 1.0
    cap = numpy_max_nfft(span) if numpy_engine else math.inf
    best = None
    candidates = fft_candidates(padded, span)
    if numpy_engine:  # numpy.fft ran 2-3× slower per sample at 2^a·3^b·5^c sizes than at 2^n
        candidates = sorted({1 << (n - 1).bit_length() for n in candidates})
    for nfft in [at_nfft] if at_nfft else candidates:
        if nfft > cap and not at_nfft:  # numpy.fft's time per sample grows fast past it (cache)
            continue
        step = nfft - span + 1
        frames = -(-n1 // step)
        flops = (rows_in + rows_out) * frames * 2.5 * nfft * math.log2(nfft)
        flops += rows_out * per_group * frames * 4 * nfft
        moved = (rows_in * 3 + rows_out * 3) * frames * nfft * 4
        if numpy_engine:  # one call per row and chunk of frames (FFTPlan.chunk_outputs)
            chunks = rows_in * -(-n_out // (max(4 * CHUNK_ELEMENTS // rows_in, 4 * step) // s))
        else:
            chunks = max(1, frames * nfft * rows_in // (4 * chunk_elements(device)))
        transforms = (rows_in + rows_out) * frames  # each one's overhead and cache misses
        per_transform = c.get("fft_frame", 0.0) + nfft * max(0.0, math.log2(nfft) - 15) * c.get(
            "fft_cache", 0.0)
        seconds = (fft_width * (flops * c["fft_flop"] + transforms * per_transform
                                + moved * c["byte"]) + chunks * c["call"])
        if best is None or seconds < best[0]:
            best = (seconds, nfft)
    assert best is not None
    costs["fft"] = best
    return costs


def fft_error_bound(nfft: int, dtype) -> float:
    """Bound on |FFT − exact| / (max|x| · Σ|w|) for one overlap-save frame of ``nfft``.

    ``dtype``: a torch or numpy dtype, or its name.
    """
    eps = float(np.finfo(dtype_name(dtype)).eps)
    return FFT_ERROR_PER_LOG2 * eps * max(math.log2(max(nfft, 2)), 1.0)


def next_fast_len(n: int) -> int:
    """Smallest 2^a·3^b·5^c ≥ n (sizes pocketfft and cuFFT handle fastest)."""
    best = 1 << max(n - 1, 0).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best



def dtype_name(dtype) -> str:
    """``float32``/``float64`` for a torch dtype, a numpy dtype or a name."""
    return str(dtype).replace("torch.", "")


def is_float64(dtype) -> bool:
    return dtype_name(dtype) == "float64"


def decide(
    costs: dict[str, tuple[float, int]], spec: ConvSpec, k: int, requested: str, *,
    dtype, peak: float | None, spread: Callable[[float | None], float] | None,
    nonfinite: tuple[str, str],
) -> MethodChoice:
    """``auto``'s rule over ``estimate_costs``'s prices (see ``engine.choose_method``).

    ``peak`` is max|x| (``inf`` for NaN/Inf, None when no signal was given); ``spread(peak)``
    the dynamic range, asked only when an FFT would win; ``nonfinite`` the (algorithm, reason)
    of the direct algorithm that propagates NaN/Inf exactly, run whenever ``peak`` is not finite.
    """
    estimates = {name: round(seconds, 6) for name, (seconds, _) in costs.items()}
    # the banded GEMM (depthwise only) or F.conv1d, whichever is cheaper here: the GEMM wins by
    # 10-30x on a CPU, cuDNN's conv1d by 5x on a GPU
    gemm_ok = "gemm" in costs and costs["gemm"][0] <= costs.get("conv1d", (math.inf, 0))[0]
    direct_name = "gemm" if gemm_ok else "conv1d"
    if peak is not None and not math.isfinite(peak):
        return MethodChoice("direct", nonfinite[1], nonfinite[0], 0, None, estimates)
    fft_seconds, nfft = costs["fft"]
    fft_dtype = None
    note = ""
    direct_seconds = costs[direct_name][0]
    fft_wins = requested == "fft" or requested == "auto" and fft_seconds < direct_seconds
    if spread is not None and requested == "auto" and fft_wins:
        ratio = spread(peak)
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
        return MethodChoice("direct", why, direct_name, 0, None, estimates)
    if requested == "fft":
        why = "asked for with --method"
    else:
        why = (f"cost model: FFT {fft_seconds:.3g} s (nfft {nfft}) < direct {direct_seconds:.3g} s "
               f"(kernel span {spec.span(k)})" + note)
    return MethodChoice("fft", why, "overlap-save", nfft, fft_dtype, estimates)


def check_method(requested: str) -> None:
    if requested not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}, got {requested!r}")
