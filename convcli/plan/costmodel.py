"""The cost model: seconds each algorithm would take, as counts of work times fitted rates.

``estimate_costs`` prices the banded GEMM, the tap-by-tap direct algorithm (``F.conv1d``, or
``numpy.correlate`` in the numpy engine) and overlap-save at each frame size worth trying,
for the engine that would run them; ``cost_rates`` says which seconds-per-unit table prices
them (built in, or fitted by ``convcli calibrate``). ``convcli.plan.selection`` chooses with
these prices. numpy only, no torch.
"""

from __future__ import annotations

import math

from convcli.core.kernels import depthwise
from convcli.core.spec import ConvSpec
from convcli.plan.geometry import (
    CHUNK_ELEMENTS,
    chunk_elements,
    fft_candidates,
    gemm_block,
    gemm_fits,
    joins_rows,
    numpy_max_nfft,
)

#: Cost model, seconds per unit, fitted on a 2-core x86-64 VM (float32; float64
#: counts twice). ``convcli calibrate`` fits them for another machine (cached per device).
CPU_COST = {
    "gemm_flop": 1 / 55e9,  # banded GEMM, effective (the band wastes some of it, counted in flops)
    "conv1d_mac": 1 / 1.0e9,  # F.conv1d, padding=0, per multiply-add (depthwise is slow on CPU)
    "fft_flop": 1 / 9e9,  # pocketfft r2c + c2r, per 2.5·n·log2(n) flop, plus the product
    "byte": 1 / 6e9,  # a pass over memory (frames, spectra, outputs)
    "call": 15e-6,  # per block of the python-level loop / per FFT frame batch
}
#: The numpy engine (``engines.numpy_backend``), fitted on its own runs on this 2-core machine: 57
#: timings (1-min stereo at k = 3…48 000, direct at strides 1-3 and overlap-save at every
#: power-of-two frame 256…2^17; 64 × 1 s mono; 1 s stereo; 10 min stereo), each the 20th
#: percentile of 8 interleaved rounds, fitted by non-negative least squares on relative error.
#: The FFT's time per frame sample is flat from 2^9 to 2^15 and grows past it (cache), hence
#: ``fft_cache``; ``fft_frame`` is numpy's per-transform overhead (small frames); ``call`` also
#: absorbs each call's fixed costs (pads, thread hand-off, the ragged end of a row).
#: float64 costs ``gemm_float64``× (the band is memory-bound) and ``fft_float64``× float32.
#: The FFT rates are that fit × 0.4, fft_float64 1.6 → 2.0: numpy's float32 rfft had run in
#: float64 (see ``numpy_backend.FFTPlan``); once in float32 and in fours, 4 M stereo samples at
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


def estimate_costs(
    length: int, k: int, spec: ConvSpec, *, batch: int = 1, channels: int = 1,
    out_channels: int | None = None, dtype="float32", device: str = "cpu", engine: str = "torch",
    rates: dict[str, float] | None = None, at_nfft: int | None = None,
) -> dict[str, tuple[float, int]]:
    """Seconds the cost model predicts per candidate: ``{"gemm": (s, block), "fft": (s, nfft), ...}``.

    Counts flops and bytes of each algorithm as the engine runs it; see ``CPU_COST``. The numpy
    engine's counts differ where its code does: short rows joined into one (``joins_rows``), one
    call per row and chunk, frames no larger than ``numpy_max_nfft``, float64 priced per rate.
    ``rates`` prices with that table instead of the built-in one (``ratecache.cost_rates`` gives
    the table in use, calibrated or not; the cost is linear in the rates: a unit table gives
    the counts ``convcli calibrate`` fits to);
    ``at_nfft`` prices overlap-save at that frame size only.
    """
    c = builtin_rates(device, engine) if rates is None else rates
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
    rows_in, rows_out = max(batch, 1) * channels, max(batch, 1) * out_channels  # 0: as for one
    costs: dict[str, tuple[float, int]] = {}
    mac = rows_out * n_out * k * per_group
    conv_chunks = max(1, n_out * rows_out // chunk_elements(device))
    costs["conv1d"] = (width * mac * c["conv1d_mac"] + 8 * width * rows_out * n_out * c["byte"]
                       + conv_chunks * c["call"], 0)
    if depthwise(out_channels, per_group, spec.groups) and gemm_fits(span, s, 8 if wide else 4):
        block = gemm_block(span, s)
        band = block * s + span - s  # multiply-adds per output
        outputs = rows_out * n_out
        if numpy_engine and joins_rows(rows_in, padded):
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
    for nfft in [max(at_nfft, span)] if at_nfft else candidates:  # as OverlapSavePlan runs it
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


def dtype_name(dtype) -> str:
    """``float32``/``float64`` for a torch dtype, a numpy dtype or a name."""
    return str(dtype).replace("torch.", "")


def is_float64(dtype) -> bool:
    return dtype_name(dtype) == "float64"
