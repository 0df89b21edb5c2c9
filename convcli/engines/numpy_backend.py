"""The numpy engine: ``filter`` on the CPU without importing torch.

``import torch`` alone costs 2.5-3.5 s on this machine, longer than SoX takes to filter ten
minutes of audio. For what ``filter`` and streaming need on the CPU (no autograd, depthwise
kernels: every window and every ``(k,)``/``(C, k)`` kernel file) this module does the same
computation as ``convcli.engine`` with numpy alone, with the same semantics (``ConvSpec`` owns
the pads), the same cost model and the same ``auto`` rule (``convcli.costmodel``):

- ``direct`` = banded GEMM: the padded signal in blocks of ``hop = B·s`` samples, each block of
  ``B`` outputs ``X_j @ M1 + X_{j+1}[:K−s] @ M2`` with banded matrices built from the
  (flipped unless correlating, dilated) kernel; both operands are views of the signal, and
  both products go straight into the output through numpy's OpenBLAS (``convcli.blas``: the
  second adds in place), one worker thread per core. A batch that shares one kernel at stride
  1 runs as one row, read in place (``conv1d_flat``).
- ``fft`` = overlap-save with ``numpy.fft.rfft/irfft`` at the cost model's ``nfft``.
- NaN/Inf (``--allow-nonfinite``): ``numpy.correlate`` per channel and per dilation phase, which
  multiplies only the taps, so a NaN reaches exactly the outputs whose taps touch it.

The middle of a long signal is read in place; only the edges, joined to their pads, are copied.
``use_numpy`` is the one decision (CPU, depthwise); everything else runs ``convcli.engine``.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import replace
from itertools import pairwise

import numpy as np

from convcli.engines import blas
from convcli.plan.costmodel import (  # noqa: F401  (NUMPY_MAX_NFFT re-exported)
    CHUNK_ELEMENTS,
    NUMPY_MAX_NFFT,
    MethodChoice,
    check_method,
    cost_rates,
    decide,
    depthwise,
    estimate_costs,
    fft_error_bound,
    gemm_block,
    joins_rows,
)
from convcli.errors import ConvcliError, UsageError
from convcli.plan.geometry import (
    BlockStreamer,
    edge_extent,
    edge_indices,
    filter_by_shape,
    output_regions,
    padded_slice,
)
from convcli.core.spec import ConvSpec

NONFINITE = ("correlate", ("non-finite samples: numpy.correlate per channel propagates them "
                           "only through the taps that touch them"))


# --- which engine ------------------------------------------------------------------------------
def has_nvidia() -> bool:
    """An NVIDIA driver is present (so ``--device auto`` may mean CUDA and torch must decide)."""
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia/version")


def cpu_requested(device: str) -> bool:
    """``--device cpu``, or ``auto`` on a machine without an NVIDIA driver."""
    return device == "cpu" or device == "auto" and not has_nvidia()


def use_numpy(device: str, coefficients: np.ndarray, channels: int, spec: ConvSpec) -> bool:
    """The numpy engine runs this filter: a CPU run of a depthwise kernel (one channel per group).

    >>> use_numpy("cpu", np.ones(5), 2, ConvSpec())
    True
    >>> use_numpy("cuda", np.ones(5), 2, ConvSpec())
    False
    """
    if not cpu_requested(device):
        return False
    from convcli.core.kernels import to_weight

    try:
        weight, groups = to_weight(coefficients, channels, spec.groups)
    except ConvcliError:  # the torch path reports the misfit with its usual message
        return False
    return depthwise(weight.shape[0], weight.shape[1], groups)


# --- choosing a method ---------------------------------------------------------------------------
def dynamic_range(x: np.ndarray, sample: int = 1 << 16, peak: float | None = None) -> float:
    """``max|x|`` over the 1st percentile of the non-zero ``|x|`` (on a subsample); 1 if silent.

    ``auto``'s precision rule reads it (``costmodel.decide``); ``engine.dynamic_range`` says why.
    """
    if x.size == 0:
        return 1.0
    if peak is None:
        peak = max(-float(x.min()), float(x.max()))
    flat = x.reshape(-1)
    if flat.size > sample:  # 256 evenly spaced runs of contiguous samples (a view): whole cache
        run = sample // 256  # lines, not one sample per line (0.2 ms on a minute of stereo)
        rows = flat[: flat.size // run * run].reshape(-1, run)
        flat = rows[:: max(1, rows.shape[0] // 256)][:256]
    flat = np.abs(flat.reshape(-1))
    nonzero = flat[flat > 0]
    if peak == 0.0 or not math.isfinite(peak) or nonzero.size == 0:
        return 1.0
    q = max(1, int(0.01 * nonzero.size))
    quiet = float(np.partition(nonzero, q - 1)[q - 1])
    return peak / quiet if quiet > 0 else math.inf


def extremes(x: np.ndarray) -> tuple[float, float]:
    """``(min, max)`` of ``x`` (NaN if it holds one): a long one in halves, one per core.

    ``auto`` reads both for every input (NaN/Inf, the peak of the dynamic-range rule): two
    passes of 2 ms each over a minute of stereo, an eighth of the filter itself, so they run
    side by side (numpy's reductions release the GIL).

    >>> extremes(np.array([3.0, -1.0, 2.0]))
    (-1.0, 3.0)
    """
    if THREADS == 1 or x.size < THREADED_OUTPUTS * 16 or not x.flags.c_contiguous:
        return float(x.min()), float(x.max())
    parts = np.array_split(x.reshape(-1), THREADS)
    found: list = [None] * len(parts)

    def task(i: int) -> None:
        found[i] = (parts[i].min(), parts[i].max())

    _parallel(task, range(len(parts)))
    lows, highs = zip(*found)
    return float(np.min(lows)), float(np.max(highs))  # a NaN in any part stays NaN


def numpy_costs(length: int, k: int, spec: ConvSpec, *, batch: int = 1, channels: int = 1,
                dtype="float32") -> dict:
    """``estimate_costs`` for the numpy engine: its direct method is its GEMM where the band fits.

    Remembered per shape and rates (``cost_rates`` is read each time, so a calibration takes
    effect at once): pricing every FFT frame size is 0.1-0.5 ms of Python, a tenth of
    filtering 64 × 1 s, and a caller filtering batch after batch asks the same question.
    """
    rates = cost_rates("cpu", "numpy")
    return dict(_numpy_costs(length, k, spec, batch, channels, np.dtype(dtype).name,
                             tuple(sorted(rates.items()))))


@functools.lru_cache(maxsize=64)
def _numpy_costs(length, k, spec, batch, channels, dtype, rates) -> dict:
    costs = estimate_costs(length, k, spec, batch=batch, channels=channels, out_channels=channels,
                           dtype=dtype, device="cpu", engine="numpy", rates=dict(rates))
    if "gemm" in costs:
        costs.pop("conv1d", None)
    return costs


def choose_method(length: int, k: int, spec: ConvSpec, requested: str = "auto", *, batch: int = 1,
                  channels: int = 1, dtype="float32", x: np.ndarray | None = None,
                  costs: dict | None = None) -> MethodChoice:
    """``engine.choose_method`` for a depthwise kernel on the CPU, with numpy statistics
    (``costs``: ``numpy_costs`` for these arguments, where the caller has them).

    >>> choose_method(28_800_000, 31, ConvSpec(groups=2), channels=2).algorithm
    'gemm'
    """
    check_method(requested)
    if costs is None:
        costs = numpy_costs(length, k, spec, batch=batch, channels=channels, dtype=dtype)
    peak = None
    if x is not None and requested != "fft" and x.size:
        low, high = extremes(x)
        peak = max(-low, high) if math.isfinite(low) and math.isfinite(high) else math.inf
    choice = decide(costs, spec, k, requested, dtype=dtype, peak=peak,
                    spread=None if x is None else (lambda p: dynamic_range(x, peak=p)),
                    nonfinite=NONFINITE)
    if choice.algorithm == "conv1d":  # a kernel too long for the GEMM's band: multiply the taps
        choice = replace(choice, algorithm=NONFINITE[0],
                         reason=choice.reason + "; numpy.correlate (the GEMM's band would not fit)")
    return choice


# --- plans: valid, strided correlation of a stretch of the padded signal ------------------------
def oriented(weight: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """``[C, k]`` as cross-correlation applies it (flipped for convolution), then dilated."""
    w = weight if spec.correlate else weight[..., ::-1]
    if spec.dilation == 1:
        return np.ascontiguousarray(w)
    out = np.zeros((w.shape[0], spec.span(w.shape[-1])), dtype=w.dtype)
    out[:, :: spec.dilation] = w
    return out


class Plan:
    """Valid, strided correlation of one row: ``row(x[P], c, out[⌊(P−K)/s⌋+1])`` (channel c's kernel)."""

    span: int
    stride: int
    #: outputs a stream runs in multiples of, but for the last block (see ``BlockStreamer``)
    granule = 1

    def outputs(self, seg_length: int) -> int:
        return max(0, (seg_length - self.span) // self.stride + 1)

    def chunk_outputs(self, rows: int) -> int:
        return max(CHUNK_ELEMENTS // max(rows, 1) // self.stride, 1)

    def row(self, x: np.ndarray, c: int, out: np.ndarray) -> None:
        raise NotImplementedError


class GemmPlan(Plan):
    """Banded GEMM (see the module doc); ``w`` is the oriented, dilated ``[C, K]``."""

    def __init__(self, w: np.ndarray, spec: ConvSpec):
        span, s = w.shape[-1], spec.stride
        self.span, self.stride = span, s
        self.block = gemm_block(span, s)
        self.hop = self.block * s
        self.tail = max(span - s, 0)
        shared = bool((w == w[:1]).all())
        rows = w[:1] if shared else w
        r = np.arange(self.hop + self.tail)[:, None]
        t = r - s * np.arange(self.block)[None, :]
        index = np.where((t >= 0) & (t < span), t, span)
        padded = np.concatenate([rows, np.zeros((rows.shape[0], 1), rows.dtype)], -1)
        band = padded[:, index]  # [C or 1, hop + tail, block]
        self.m1 = np.ascontiguousarray(band[:, : self.hop])
        self.m2 = np.ascontiguousarray(band[:, self.hop :])
        self.shared = shared

    def row(self, x, c, out):
        i = 0 if self.shared else c
        n_out = out.shape[0]
        if n_out == 0:
            return
        full = min(max(0, (x.shape[0] - self.tail) // self.hop), -(-n_out // self.block))
        main = min(full * self.block, n_out)
        if full:
            self._blocks(x, full, i, out[:main])
        if main < n_out:  # the ragged end: a zero-padded copy of the few samples left
            rest = x[main * self.stride :]
            nb = -(-(n_out - main) // self.block)
            need = nb * self.hop + self.tail
            if need > rest.shape[0]:
                rest = np.concatenate([rest, np.zeros(need - rest.shape[0], x.dtype)])
            self._blocks(rest, nb, i, out[main:])

    def _blocks(self, x, nb, i, out):
        count = out.shape[0]
        whole = count == nb * self.block
        y = out.reshape(nb, self.block) if whole else np.empty((nb, self.block), out.dtype)
        blas.gemm(x[: nb * self.hop].reshape(nb, self.hop), self.m1[i], y)
        if self.tail:  # the next block's first K − s samples, added in place (beta = 1)
            size = x.itemsize
            x2 = np.lib.stride_tricks.as_strided(x[self.hop :], (nb, self.tail), (self.hop * size, size))
            blas.gemm(x2, self.m2[i], y, accumulate=True)
        if not whole:
            out[:] = y.reshape(-1)[:count]


class FFTPlan(Plan):
    """Overlap-save with frames of ``nfft`` (``numpy.fft``), in ``compute`` precision.

    The frames' forward transform is scaled by 1/nfft (``norm="forward"``) and the kernel's
    spectrum by nfft, which cancel: numpy.fft computes in the array's precision only when its
    scale factor is a float of that precision, and the default forward scale (the int 1) makes
    numpy pick its float64 loop, so a float32 ``rfft`` ran in float64, 2.5-3× slower.
    """

    def __init__(self, w: np.ndarray, spec: ConvSpec, nfft: int, compute):
        self.span, self.stride = w.shape[-1], spec.stride
        self.nfft = max(nfft, self.span)
        self.step = self.nfft - self.span + 1
        self.compute = np.dtype(compute)
        spectrum = np.conj(np.fft.rfft(w.astype(np.float64), self.nfft)) * self.nfft
        self.spectrum = spectrum.astype(np.result_type(self.compute, np.complex64))  # [C, F]

    def chunk_outputs(self, rows):
        return max(1, max(4 * CHUNK_ELEMENTS // max(rows, 1), 4 * self.step) // self.stride)

    #: frames numpy's pocketfft transforms side by side, one per SIMD lane (4 float32 or 2
    #: float64 lanes); the frames left over run one by one at about twice the time per frame
    #: (2^17 points, float32: 4 frames 3.3 ms, 3 frames 5.0 ms), so streams run frames in fours
    SIMD_FRAMES = 4

    @property
    def granule(self) -> int:
        """Outputs of ``SIMD_FRAMES`` frames: a stream that runs multiples of it fills every
        frame and every SIMD lane."""
        return max(1, self.SIMD_FRAMES * self.step // self.stride)

    def row(self, x, c, out):
        n1 = x.shape[0] - self.span + 1
        frames = -(-n1 // self.step)
        x = x.astype(self.compute, copy=False)
        spectra = np.empty((frames, self.nfft // 2 + 1), self.spectrum.dtype)
        whole = n1 // self.step  # frames that lie inside x; the one after runs past its end
        if whole:
            view = np.lib.stride_tricks.as_strided(x, (whole, self.nfft),
                                                   (self.step * x.itemsize, x.itemsize))
            np.fft.rfft(view, self.nfft, norm="forward", out=spectra[:whole])
        if whole < frames:
            last = x[whole * self.step :]
            np.fft.rfft(last, self.nfft, norm="forward", out=spectra[whole])  # zero-padded
        spectra *= self.spectrum[c]
        y = np.fft.irfft(spectra, self.nfft)[:, : self.step]  # frame j: outputs j·step...
        if self.stride == 1 and out.flags.c_contiguous:  # straight into out, one copy
            out[: whole * self.step].reshape(whole, self.step)[:] = y[:whole]
            if whole < frames:
                out[whole * self.step :] = y[whole, : n1 - whole * self.step]
        else:
            out[:] = y.reshape(-1)[: n1 : self.stride]


class CorrelatePlan(Plan):
    """``numpy.correlate`` per dilation phase: multiplies only the taps (NaN/Inf stay put)."""

    def __init__(self, w: np.ndarray, spec: ConvSpec):
        self.taps = np.ascontiguousarray(w[:, :: spec.dilation])  # [C, k], oriented
        self.d, self.span, self.stride = spec.dilation, w.shape[-1], spec.stride

    def row(self, x, c, out):
        n1 = x.shape[0] - self.span + 1
        y1 = np.empty(n1, dtype=out.dtype)
        for r in range(min(self.d, n1)):
            y1[r :: self.d] = np.correlate(x[r :: self.d], self.taps[c], "valid")[: len(y1[r :: self.d])]
        out[:] = y1[:: self.stride]


#: the last few plans made (their banded matrices or kernel spectra), by kernel and options: a
#: caller that filters batch after batch with one kernel builds its plan once
_plans: dict = {}
PLANS_KEPT = 4


def make_plan(weight: np.ndarray, spec: ConvSpec, choice: MethodChoice, dtype) -> Plan:
    """The plan for the depthwise ``weight [C, 1, k]`` (as the user wrote it)."""
    key = (weight.shape, weight.dtype.str, weight.tobytes(), spec, choice.method,
           choice.algorithm, choice.nfft, choice.fft_dtype, np.dtype(dtype).str)
    plan = _plans.pop(key, None) or build_plan(weight, spec, choice, dtype)
    _plans[key] = plan  # the newest last; the oldest goes
    while len(_plans) > PLANS_KEPT:
        _plans.pop(next(iter(_plans)), None)
    return plan


def build_plan(weight: np.ndarray, spec: ConvSpec, choice: MethodChoice, dtype) -> Plan:
    w = oriented(weight[:, 0, :].astype(dtype), spec)
    if choice.method == "fft":
        return FFTPlan(w, spec, choice.nfft or 4096, choice.fft_dtype or dtype)
    if choice.algorithm == NONFINITE[0]:
        return CorrelatePlan(w, spec)
    return GemmPlan(w, spec)


#: worker threads: numpy's matmul and FFT release the GIL, so rows and chunks run side by side
THREADS = os.cpu_count() or 1
#: below this many outputs in all a call runs in the calling thread
THREADED_OUTPUTS = 1 << 16
_pool = None
#: pieces per worker of an in-place GEMM (``valid_rows``): a worker that wakes late leaves its
#: second piece to the others (64 × 1 s, cold: 4.0-4.3 ms with 2, 4.4-4.7 with 1, 4.2-4.4 with 4)
PIECES_PER_THREAD = 2


def _parallel(task, items) -> None:
    """``task(item)`` for every item, on ``THREADS`` threads: the pool's and the caller's, which
    works rather than waits (single-threaded BLAS: the caller's setting holds in the pool too)."""
    global _pool
    import threading
    from concurrent.futures import ThreadPoolExecutor

    items = list(items)
    if _pool is None:
        _pool = ThreadPoolExecutor(max(THREADS - 1, 1), thread_name_prefix="convcli")
    pending = iter(items)
    lock = threading.Lock()

    def drain() -> None:
        while True:
            with lock:
                item = next(pending, _parallel)  # the function itself: a sentinel no item is
            if item is _parallel:
                return
            task(item)

    helpers = [_pool.submit(drain) for _ in range(min(THREADS, len(items)) - 1)]
    try:
        drain()
        for future in helpers:
            future.result()
    except BaseException:  # an error, or a signal (SIGTERM): hand out no further pieces
        with lock:
            for _ in pending:
                pass
        raise


def run_items(task, items: list, threaded: bool) -> None:
    """``task(item)`` for every item, on the workers where ``threaded``; single-threaded BLAS."""
    with blas.single_threaded():
        if threaded and len(items) > 1:
            _parallel(task, items)
        else:
            for item in items:
                task(item)


def run_chunks(plan: Plan, seg: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Apply ``plan`` to ``seg`` in pieces of outputs (views of ``seg``) into ``out``.

    Each row is cut into chunks that keep the working set around ``CHUNK_ELEMENTS`` (and into at
    least as many pieces as there are workers); the pieces run on ``THREADS`` workers.
    """
    batch, channels = seg.shape[:2]
    n_out = out.shape[-1]
    if n_out == 0:
        return out
    rows = batch * channels
    threaded = THREADS > 1 and n_out * rows >= THREADED_OUTPUTS
    pieces = max(-(-n_out // plan.chunk_outputs(rows)), -(-THREADS // rows) if threaded else 1)
    size = -(-n_out // pieces // plan.granule) * plan.granule  # FFT: frames in fours
    s, span = plan.stride, plan.span
    items = [(b, c, m0, min(n_out, m0 + size))
             for m0 in range(0, n_out, size) for b in range(batch) for c in range(channels)]

    def task(item) -> None:
        b, c, m0, m1 = item
        plan.row(np.ascontiguousarray(seg[b, c, s * m0 : s * (m1 - 1) + span]), c, out[b, c, m0:m1])

    run_items(task, items, threaded)
    return out


# --- pads and the whole signal -------------------------------------------------------------------
def edge_pads(head: np.ndarray, tail: np.ndarray, n: int, spec: ConvSpec, k: int):
    """The left and right pads from the signal's ends (``spec.source`` says which sample goes where).

    Shape: ``[B, C, h], [B, C, h] -> [B, C, left], [B, C, right]``.
    """
    left, right = spec.pads(k)
    indices = edge_indices(n, head.shape[-1], tail.shape[-1], spec, k)
    if indices is None:
        return (np.zeros((*head.shape[:-1], left), head.dtype),
                np.zeros((*head.shape[:-1], right), head.dtype))
    ends = np.concatenate([head, tail], -1)
    return ends[..., indices[0]], ends[..., indices[1]]


def reads_rows_in_place(plan: Plan, x: np.ndarray, n_out: int) -> bool:
    """``conv1d_flat`` runs this: one kernel for every row, stride 1, rows end to end in memory,
    no longer than the input (``left + right ≤ K − 1``) and each row at least a kernel long."""
    return (isinstance(plan, GemmPlan) and plan.shared and plan.stride == 1
            and x.flags.c_contiguous and plan.span <= x.shape[-1] and n_out <= x.shape[-1])


def valid_rows(plan: GemmPlan, rows: np.ndarray, out: np.ndarray | None = None,
               threaded: bool = False, nonfinite: list | None = None) -> np.ndarray:
    """The valid correlation of every row of ``rows [R, L]``, as one row: the rows end to end.

    Output ``r·L + i`` is row r's output i for ``i ≤ L − K``; the K − 1 after it read across
    two rows (junk, for the caller to overwrite or drop). Into ``out`` (flat, R·L − K + 1) where
    given, else a new ``[R, L − K + 1]``. The pieces, of whole blocks, run on the workers where
    ``threaded``. Where ``nonfinite`` is a list, each piece first checks its samples, which
    brings them into the core's cache for the GEMM, and appends its start there, computing
    nothing, if one is NaN or Inf.
    """
    count, length = rows.shape
    flat = rows.reshape(-1)
    n = flat.shape[0] - plan.span + 1
    dest = np.empty(count * length, rows.dtype) if out is None else out
    if n > 0:
        pieces = max(-(-n // plan.chunk_outputs(1)), THREADS * PIECES_PER_THREAD if threaded else 1)
        size = -(-n // pieces // plan.block) * plan.block
        items = [(m0, min(n, m0 + size)) for m0 in range(0, n, size)]

        def task(item) -> None:
            m0, m1 = item
            piece = flat[m0 : m1 + plan.span - 1]
            if nonfinite is not None and not np.isfinite(piece).all():
                nonfinite.append(m0)  # no product of NaN/Inf (numpy would warn of them)
            else:
                plan.row(piece, 0, dest[m0:m1])

        run_items(task, items, threaded)
    return dest if out is not None else dest.reshape(count, length)[:, : length - plan.span + 1]


def conv1d_flat(x: np.ndarray, left_pad: np.ndarray, right_pad: np.ndarray, plan: GemmPlan,
                n_out: int, nonfinite: list | None = None) -> np.ndarray:
    """Every row through one kernel, read in place: one banded GEMM over the batch end to end.

    The rows of a contiguous ``x`` lie end to end, so one valid correlation over all of them
    computes every output whose window lies inside its row (row r's output i is flat output
    r·T + i − left) straight into an output of the same row pitch T. The windows across two
    rows write junk exactly where the outputs that read a pad go, the first ``left`` and last
    ``right`` of a row; those come after, from the pads joined to the K − 1 samples next to them
    (one small GEMM for the whole batch). Nothing of the signal is copied: 64 × 1 s of 31 taps
    took 3.2-3.5 ms where padded copies of the rows (``conv1d_joined``) took 5.1-5.4.

    ``nonfinite``: as ``valid_rows`` (every sample of ``x`` lies in one of its pieces).

    Shape: ``[B, C, T]`` with its pads ``-> [B, C, n_out]`` (a view of ``[B, C, T]``).
    """
    batch, channels, length = x.shape
    rows, span = batch * channels, plan.span
    left, right = left_pad.shape[-1], right_pad.shape[-1]
    out = np.empty(x.shape, x.dtype)
    threaded = THREADS > 1 and rows * length >= THREADED_OUTPUTS
    valid_rows(plan, x.reshape(rows, length), out.reshape(-1)[left : left + rows * length - span + 1],
               threaded, nonfinite)
    if nonfinite:
        return out[..., :n_out]  # not the result: the caller runs numpy.correlate instead
    if left or right:  # each row's [left pad, K − 1 first, K − 1 last, right pad]: one GEMM
        edges = np.concatenate([left_pad, x[..., : span - 1], x[..., length - span + 1 :],
                                right_pad], -1)
        y = valid_rows(plan, edges.reshape(rows, -1)).reshape(batch, channels, -1)
        out[..., :left] = y[..., :left]
        out[..., n_out - right : n_out] = y[..., left + span - 1 : left + span - 1 + right]
    return out[..., :n_out]


def conv1d_joined(x: np.ndarray, left_pad: np.ndarray, right_pad: np.ndarray, plan: GemmPlan,
                  n_out: int) -> np.ndarray:
    """Many short rows as one long row per kernel: one banded GEMM for a group of rows.

    A row of 16 000 samples costs a few matrix products and their Python calls on each of its
    three regions (two edges, the middle); 64 such rows spend more in the calls than in the
    products. Joined end to end (pads included), the outputs that straddle two rows are computed
    and dropped: K − 1 per row, a few percent for the rows this runs (``joins_rows``). A row's
    kept outputs read only its own padded samples, so groups of rows run apart, one per core,
    each padding its own rows (``[C, B, P]``, P = ⌈(left + T + right)/s⌉·s, the tail zero) where
    it then reads them: in the core's cache, 1 ms less for 64 × 1 s than padding all first.

    Shape: ``[B, C, T]`` with its pads ``-> [B, C, n_out]`` (a strided view of the joined outputs).
    """
    batch, channels, length = x.shape
    s = plan.stride
    left, right = left_pad.shape[-1], right_pad.shape[-1]
    total = left + length + right
    width = -(-total // s) * s  # each padded row, rounded up to a multiple of the stride
    rows = np.empty((channels, batch, width), x.dtype)
    y = np.empty((channels, batch, width // s), x.dtype)
    outputs = batch * channels * (width // s)
    threaded = THREADS > 1 and outputs >= THREADED_OUTPUTS
    groups = max(-(-outputs // channels // plan.chunk_outputs(1)),
                 -(-THREADS // channels) if threaded else 1)
    bounds = np.linspace(0, batch, min(groups, batch) + 1).astype(int)
    items = [(c, int(b0), int(b1)) for c in range(channels) for b0, b1 in pairwise(bounds)]

    def task(item) -> None:
        c, b0, b1 = item
        seg = rows[c, b0:b1]
        seg[:, :left] = left_pad[b0:b1, c]
        seg[:, left : left + length] = x[b0:b1, c]
        seg[:, left + length : total] = right_pad[b0:b1, c]
        seg[:, total:] = 0
        joined = seg.reshape(-1)
        plan.row(joined, c, y[c, b0:b1].reshape(-1)[: plan.outputs(joined.shape[0])])

    run_items(task, items, threaded)
    return y[..., :n_out].transpose(1, 0, 2)


def conv1d(x: np.ndarray, weight: np.ndarray, spec: ConvSpec,
           method: str | MethodChoice = "auto") -> np.ndarray:
    """Depthwise convolution (or correlation) of a batch of multi-channel signals, numpy only.

    Shape: ``x [B, C, T]``, ``weight [C, 1, k]`` (``spec.groups == C``) -> ``[B, C, T_out]``.

    >>> x = np.array([[[1.0, 2.0, 3.0, 4.0]]])
    >>> conv1d(x, np.array([[[1.0, 0.0, -1.0]]]), ConvSpec(mode="valid")).tolist()
    [[[2.0, 2.0]]]
    """
    if isinstance(method, MethodChoice):
        check_depthwise(x, weight, spec)
        return run_choice(x, weight, spec, method)
    return conv1d_chosen(x, weight, spec, method)[0]


def check_depthwise(x: np.ndarray, weight: np.ndarray, spec: ConvSpec) -> None:
    channels, length = x.shape[1:]
    if weight.shape[:2] != (channels, 1) or spec.groups != channels:
        raise ValueError(f"the numpy engine runs depthwise kernels [C, 1, k]; got {weight.shape} "
                         f"for {channels} channels in {spec.groups} groups")
    spec.check(length, weight.shape[-1])


def conv1d_chosen(x: np.ndarray, weight: np.ndarray, spec: ConvSpec,
                  method: str = "auto") -> tuple[np.ndarray, MethodChoice]:
    """``conv1d`` by ``choose_method``'s choice for ``x``, and that choice.

    The signal's statistics only ever veto an FFT (its peak and dynamic range) or send NaN/Inf
    to ``numpy.correlate``. So where the cost model alone picks the GEMM, the GEMM runs first,
    checking each piece of the signal for NaN/Inf just before multiplying it (``conv1d_flat``:
    the check brings it into the core's cache, instead of a pass of its own through memory
    ahead of the GEMM: 0.5 ms of 4 for 64 × 1 s),
    and that is the choice ``choose_method(x=x)`` makes for a finite signal. A signal with NaN
    or Inf is then chosen for with ``x`` read (``numpy.correlate``) and runs again.
    """
    check_depthwise(x, weight, spec)
    batch, channels, length = x.shape
    k = weight.shape[-1]
    shape = {"batch": batch, "channels": channels, "dtype": x.dtype}
    costs = numpy_costs(length, k, spec, **shape)
    blind = choose_method(length, k, spec, method, **shape, costs=costs)
    if blind.algorithm == "gemm":
        nonfinite: list = []
        y = run_choice(x, weight, spec, blind, nonfinite)
        if not nonfinite:
            return y, blind
    choice = choose_method(length, k, spec, method, **shape, x=x, costs=costs)
    return run_choice(x, weight, spec, choice), choice


def run_choice(x: np.ndarray, weight: np.ndarray, spec: ConvSpec, choice: MethodChoice,
               nonfinite: list | None = None) -> np.ndarray:
    """``conv1d`` by a method already chosen (``check_depthwise`` passed); where ``nonfinite``
    is a list, an entry is appended to it if ``x`` holds NaN or Inf (read as it is computed
    where the path allows), and what returns is then no result."""
    batch, channels, length = x.shape
    k = weight.shape[-1]
    plan = make_plan(weight, spec, choice, x.dtype)
    h = edge_extent(length, spec, k)
    left_pad, right_pad = edge_pads(x[..., :h], x[..., length - h :], length, spec, k)
    n_out = spec.output_length(length, k)
    if reads_rows_in_place(plan, x, n_out):
        return conv1d_flat(x, left_pad, right_pad, plan, n_out, nonfinite)
    if nonfinite is not None and not all(map(math.isfinite, extremes(x))):
        nonfinite.append(0)  # the other paths read the signal first, in a pass of its own
        return x[..., :0]  # not the result: the caller runs numpy.correlate instead
    if isinstance(plan, GemmPlan) and joins_rows(batch * channels, length, spec, k):
        return conv1d_joined(x, left_pad, right_pad, plan, n_out)
    left = left_pad.shape[-1]
    s, span = spec.stride, plan.span
    out = np.empty((batch, channels, n_out), dtype=x.dtype)
    for m0, m1 in output_regions(n_out, left, length, span, s):
        seg = padded_slice(left_pad, x, right_pad, s * m0, s * (m1 - 1) + span,
                           lambda pieces: np.concatenate(pieces, -1))
        run_chunks(plan, seg, out[..., m0:m1])
    return out


# --- streaming ---------------------------------------------------------------------------------
class Streamer(BlockStreamer):
    """``engine.Streamer`` in numpy: push blocks ``[B, C, t]`` in order, then ``finish``."""

    def __init__(self, weight: np.ndarray, spec: ConvSpec, n: int, head: np.ndarray,
                 tail: np.ndarray, choice: MethodChoice):
        k = weight.shape[-1]
        spec.check(n, k)
        self.choice = choice
        self.dtype = head.dtype
        self.plan = make_plan(weight, spec, choice, head.dtype)
        left, right = edge_pads(head, tail, n, spec, k)
        self.spec = spec
        self._begin(self.plan, left, right, n, spec.output_length(n, k), self.plan.granule)

    def _concat(self, parts: list) -> np.ndarray:
        return np.concatenate(parts, -1)

    def _empty(self, batch: int, length: int) -> np.ndarray:
        return np.zeros((batch, self.buffer.shape[1], length), self.dtype)

    def _run(self, seg: np.ndarray, length: int) -> np.ndarray:
        out = np.empty((seg.shape[0], seg.shape[1], length), self.dtype)
        return run_chunks(self.plan, seg, out)


# --- the CLI's boundary --------------------------------------------------------------------------
def prepare_weight(coefficients: np.ndarray, channels: int, spec: ConvSpec, dtype):
    """The depthwise kernel ``[C, 1, k]`` in ``dtype`` and the spec to run (groups = C)."""
    from convcli.core.kernels import to_weight

    weight, groups = to_weight(coefficients, channels, spec.groups)
    run_spec = spec if groups == spec.groups else replace(spec, groups=groups)
    return weight.astype(dtype), run_spec


def describe(choice: MethodChoice, x: np.ndarray | None, weight: np.ndarray, batches: int = 1,
             dtype=None) -> dict:
    """What ran, for ``--json`` (as ``engine.describe``, with ``engine: numpy``)."""
    dtype = np.dtype(dtype if dtype is not None else x.dtype)
    run = {
        "engine": "numpy",
        "method": choice.method,
        "reason": choice.reason,
        "algorithm": choice.algorithm,
        "device": "cpu",
        "dtype": dtype.name,
        "batches": batches,
        "estimates_s": choice.estimates,
    }
    if choice.method == "fft":
        fft_dtype = np.dtype(choice.fft_dtype or dtype)
        relative = fft_error_bound(choice.nfft, fft_dtype.name)
        run.update(nfft=choice.nfft, fft_dtype=fft_dtype.name, fft_relative_error_bound=relative)
        if x is not None:
            peak = max(-float(x.min()), float(x.max())) if x.size else 0.0
            run["fft_error_bound"] = relative * peak * float(np.abs(weight).sum((1, 2)).max())
    return run


def filter_batches(arrays: list, coefficients, spec: ConvSpec, *, method: str = "auto",
                   device: str = "auto") -> tuple[list, dict]:
    """``engine.filter_batches``, choosing the engine: numpy for CPU depthwise runs, else torch.

    The one place ``filter`` picks an engine for whole signals; torch is imported only when it
    runs (CUDA, or kernels that mix channels).
    """
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda, got {device!r}")
    if not arrays or not all(use_numpy(device, coefficients, a.shape[1], spec) for a in arrays):
        from convcli.engines import torch_backend as engine

        return engine.filter_batches(arrays, coefficients, spec, method=method, device=device)
    def run(batch):
        weight, run_spec = prepare_weight(coefficients, batch.shape[1], spec, batch.dtype)
        y, choice = conv1d_chosen(batch, weight, run_spec, method)  # checks the spec first
        return y, (choice, batch, weight)

    results, (choice, batch, weight), groups = filter_by_shape(arrays, run, np.concatenate)
    return results, describe(choice, batch, weight, groups)
