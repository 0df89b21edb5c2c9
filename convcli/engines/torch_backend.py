"""The engine: batched multi-channel conv1d with the exact semantics of a ``ConvSpec``.

``conv1d(x, weight, spec, method)`` is the one entry point: ``[B, C, T] x [O, C/G, k] -> [B, O, T_out]``.
Every method computes a *valid, strided cross-correlation of the padded signal* ``xp`` (the
spec owns the pads; the kernel is flipped unless correlating) through a *plan* built once per
kernel:

- ``direct`` / banded GEMM (depthwise kernels: one input channel per group, as every window and
  every ``(k,)``/``(C, k)`` kernel file is): the signal is cut into blocks of ``hop = B·s``
  samples and each block of ``B`` outputs is ``X_j @ M1 + X_{j+1}[:K−s] @ M2`` where ``M1, M2``
  are banded matrices built from the kernel (``M[s·i + t, i] = w[t]``). Both products read the
  signal in place (no copy), stride is built into the band, and it is 10–30× faster than
  ``F.conv1d`` on long signals on CPU.
- ``direct`` / ``F.conv1d`` after explicit pads (``padding=0``: the ``padding=`` argument takes a
  slow path on CPU builds): general groups (several input channels per group).
- ``fft`` / overlap-save: frames of ``nfft`` samples hop by ``nfft − K + 1``; each frame's
  spectrum is multiplied by the kernel's (an einsum over the channels of a group) and the
  wrap-free part kept. ``nfft`` is chosen by the cost model; a single frame covering the whole
  padded signal is the classic whole-signal FFT, chosen where it wins (short signals).

The padded signal is never materialised: the middle of the output reads views of ``x`` and
only the edges (where the pad lies) are concatenated, in chunks that keep the working set small
(``Streamer`` does the same for a signal that arrives in blocks, see ``convcli.stream``).
Everything is differentiable in ``x`` and ``weight`` (gradcheck in the tests) and
device-agnostic: tensors stay on the device they came on.

``filter`` on the CPU with a depthwise kernel runs the same algorithms in numpy instead
(``convcli.npengine``: no ``import torch``, which alone costs seconds); both choose the method
through ``convcli.costmodel``.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F

from convcli.plan.costmodel import (  # noqa: F401  (re-exported: engine.X as before)
    CHUNK_ELEMENTS,
    CPU_COST,
    CUDA_COST,
    FFT32_MAX_DYNAMIC_RANGE,
    FFT64_MAX_DYNAMIC_RANGE,
    FFT_ERROR_PER_LOG2,
    METHODS,
    MethodChoice,
    check_method,
    chunk_elements,
    decide,
    depthwise,
    estimate_costs,
    fft_candidates,
    fft_error_bound,
    gemm_block,
    next_fast_len,
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

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def ieee_float32() -> None:
    """float32 on CUDA means IEEE float32: turn TensorFloat-32 off for cuDNN and cuBLAS.

    cuDNN convolutions default to TF32 on Ampere and later (10-bit mantissa): ``F.conv1d`` of a
    mixing kernel then errs by ~1e-3 relative, where float32 promises ~1e-7.
    """
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available else cpu; ``cuda`` without CUDA is a clear error.

    A CUDA device turns TF32 off for this process (``ieee_float32``): the CLI owns it.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and torch.cuda.is_available():
        ieee_float32()
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConvcliError(
            "--device cuda was asked for, but this torch build sees no CUDA device",
            "use --device cpu (or auto), or install a CUDA build of torch on a machine with a GPU",
        )
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def resolve_dtype(name: str | None, data_dtype=None) -> torch.dtype:
    """``--dtype NAME``; without it, the data's own precision (float64 stays, else float32)."""
    if name is None:
        return torch.float64 if str(data_dtype) == "float64" else torch.float32
    if name not in DTYPES:
        raise UsageError(f"--dtype must be float32 or float64, got {name!r}")
    return DTYPES[name]


def dynamic_range(x: torch.Tensor, sample: int = 1 << 16, peak: float | None = None) -> float:
    """``max|x|`` over the 1st percentile of the non-zero ``|x|`` (that on a subsample); 1 if silent.

    An FFT's error is about ``eps · log2(nfft) · max|x|`` everywhere in a frame, so samples this
    much quieter than the peak keep only ``eps · range`` of relative precision (scipy issue 22390).
    The subsample (≤ ``sample`` values, 512 KB) comes to the host in one copy and numpy ranks it
    (``npengine.dynamic_range``): on a GPU, masking and ``kthvalue`` cost a sync each.
    """
    from convcli.engines import numpy_backend as npengine

    if x.numel() == 0:
        return 1.0
    if peak is None:
        low, high = torch.aminmax(x.detach())  # one pass, no |x| copy of a long signal
        peak = max(-float(low), float(high))
    flat = x.detach().reshape(-1)
    if flat.numel() > sample:
        flat = flat[:: flat.numel() // sample]
    return npengine.dynamic_range(flat.cpu().numpy(), sample, peak)


def has_only_finite(x: torch.Tensor) -> bool:
    """No NaN/Inf in ``x`` (one ``aminmax`` pass: a NaN or an infinity shows in the extremes)."""
    if x.numel() == 0:
        return True
    low, high = torch.aminmax(x.detach())
    return math.isfinite(float(low)) and math.isfinite(float(high))


def choose_method(
    length: int, k: int, spec: ConvSpec, requested: str = "auto", *,
    batch: int = 1, channels: int = 1, out_channels: int | None = None,
    dtype: torch.dtype = torch.float32, device: str = "cpu", x: torch.Tensor | None = None,
) -> MethodChoice:
    """Pick direct or FFT (and how) for ``batch × channels`` signals of ``length`` samples.

    With non-finite samples in ``x`` (``--allow-nonfinite``) direct runs as ``F.conv1d``, the only
    algorithm that propagates a NaN exactly to the outputs whose taps touch it.

    The cost model (``estimate_costs``) prices the banded GEMM, ``F.conv1d`` and overlap-save at
    its best frame size; ``auto`` takes the cheapest. In float32, where ``x`` (if given) spans
    more than ``FFT32_MAX_DYNAMIC_RANGE`` (100 dB), the FFT runs in float64 instead (priced
    twice); beyond ``FFT64_MAX_DYNAMIC_RANGE`` (220 dB) no FFT keeps the quiet samples and auto
    runs direct, whatever it costs.

    >>> depthwise_stereo = ConvSpec(groups=2)   # a window on both channels of a stereo file
    >>> choose_method(28_800_000, 31, depthwise_stereo, channels=2).algorithm
    'gemm'
    >>> choose_method(28_800_000, 4095, depthwise_stereo, channels=2).algorithm
    'overlap-save'
    """
    check_method(requested)
    out_channels = channels if out_channels is None else out_channels
    costs = estimate_costs(length, k, spec, batch=batch, channels=channels,
                           out_channels=out_channels, dtype=dtype, device=device)
    peak = None
    if x is not None and requested != "fft" and x.numel():
        low, high = (float(v) for v in torch.aminmax(x.detach()))
        peak = max(-low, high) if math.isfinite(low) and math.isfinite(high) else math.inf
    # NaN/Inf (--allow-nonfinite): the banded matrix's zeros and an FFT would smear them
    # over whole blocks (0·NaN = NaN); F.conv1d multiplies only the taps, as SPEC says
    nonfinite = ("conv1d", ("non-finite samples: F.conv1d propagates them only through the "
                            "taps that touch them"))
    return decide(costs, spec, k, requested, dtype=dtype, peak=peak,
                  spread=None if x is None else (lambda p: dynamic_range(x, peak=p)),
                  nonfinite=nonfinite)


# --- the pieces every method shares -----------------------------------------------------------
def pad(x: torch.Tensor, spec: ConvSpec, k: int) -> torch.Tensor:
    """The padded signal ``xp[B, C, T + left + right]`` (materialised; the engine avoids it)."""
    left, right = edge_pads(x, x, x.shape[-1], spec, k)
    return torch.cat([left, x, right], -1)


def oriented(weight: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """The weight as cross-correlation applies it: flipped for convolution."""
    return weight if spec.correlate else weight.flip(-1)


def dilate(w: torch.Tensor, dilation: int) -> torch.Tensor:
    """Insert ``dilation − 1`` zeros between taps: ``[..., k] -> [..., d·(k−1)+1]``."""
    if dilation == 1:
        return w
    k = w.shape[-1]
    spaced = F.pad(w.unsqueeze(-1), (0, dilation - 1)).reshape(*w.shape[:-1], k * dilation)
    return spaced[..., : dilation * (k - 1) + 1]


def edge_pads(
    head: torch.Tensor, tail: torch.Tensor, n: int, spec: ConvSpec, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The left and right pads of a signal of ``n`` samples, from its ends only.

    ``head = x[..., :h]`` and ``tail = x[..., n−h:]`` with ``h = edge_extent(n, spec, k)`` (or the
    whole signal for both). Which sample fills each pad position is ``spec.source``'s answer.

    Shape: ``[B, C, h], [B, C, h] -> [B, C, left], [B, C, right]``.
    """
    left, right = spec.pads(k)
    indices = edge_indices(n, head.shape[-1], tail.shape[-1], spec, k)
    if indices is None:
        return head.new_zeros(*head.shape[:-1], left), head.new_zeros(*head.shape[:-1], right)
    ends = torch.cat([head, tail], -1)

    def take(index: list[int]) -> torch.Tensor:
        return ends.index_select(-1, torch.tensor(index, dtype=torch.long, device=head.device))

    return take(indices[0]), take(indices[1])


# --- plans: one kernel, applied to any stretch of the padded signal ----------------------------
class Plan:
    """Valid, strided cross-correlation with one kernel: ``seg[B, C, P] -> [B, O, ⌊(P−K)/s⌋+1]``."""

    span: int
    stride: int
    out_channels: int

    def __call__(self, seg: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def outputs(self, seg_length: int) -> int:
        return max(0, (seg_length - self.span) // self.stride + 1)

    #: outputs × rows per chunk (``costmodel.chunk_elements`` of the device; ``make_plan`` sets it)
    chunk_elements: int = CHUNK_ELEMENTS

    def chunk_outputs(self, rows: int) -> int:
        """Outputs per chunk so that a chunk's working set stays around ``chunk_elements``."""
        return max(self.chunk_elements // max(rows, 1) // self.stride, 1)


class Conv1dPlan(Plan):
    """``F.conv1d`` with ``padding=0`` on the padded stretch: general groups."""

    def __init__(self, w: torch.Tensor, spec: ConvSpec):
        self.w, self.spec = w, spec
        self.span, self.stride, self.out_channels = spec.span(w.shape[-1]), spec.stride, w.shape[0]

    def __call__(self, seg, out=None):
        y = F.conv1d(seg, self.w, stride=self.spec.stride, dilation=self.spec.dilation,
                     groups=self.spec.groups)
        if out is not None:
            out.copy_(y)
        return y


class GemmPlan(Plan):
    """Depthwise direct correlation as two banded matrix products per block (see module doc)."""

    #: above this many rows, one batched matmul (which copies) beats a loop of in-place products
    LOOP_ROWS = 16
    #: rows up to this long run as one concatenated row (one matrix product for a whole batch)
    SHORT_ROW = 1 << 16

    def __init__(self, w: torch.Tensor, spec: ConvSpec, block: int | None = None):
        out_channels, _, _k = w.shape
        wd = dilate(w[:, 0, :], spec.dilation)  # [C, K]
        span, s = wd.shape[-1], spec.stride
        self.span, self.stride, self.out_channels = span, s, out_channels
        self.block = block or gemm_block(span, s)
        self.hop = self.block * s
        # one shared kernel (a window on every channel) -> one matrix; else one per channel
        shared = out_channels == 1 or bool((wd == wd[:1]).all())
        rows = wd[:1] if shared else wd
        band_rows = (self.block - 1) * s + span  # input samples one block of outputs reads
        r = torch.arange(max(band_rows, self.hop + max(span - s, 0)), device=w.device)[:, None]
        t = r - s * torch.arange(self.block, device=w.device)[None, :]
        index = torch.where((t >= 0) & (t < span), t, span)  # span -> the appended zero
        padded = torch.cat([rows, rows.new_zeros(rows.shape[0], 1)], -1)
        band = padded[:, index]  # [C or 1, rows, block], differentiable in w
        self.m1 = band[:, : self.hop]
        self.tail = max(span - s, 0)  # how far a block's outputs read into the next block
        self.m2 = band[:, self.hop : self.hop + self.tail]
        self.shared = shared

    def _matrices(self, c: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = 0 if self.shared else c
        return self.m1[i], self.m2[i]

    def __call__(self, seg, out=None):
        batch, channels, length = seg.shape
        n_out = self.outputs(length)
        if (self.shared and batch * channels > 1 and seg.is_contiguous() and n_out
                and length % self.stride == 0 and length <= self.SHORT_ROW):
            # many short rows, one kernel: run them as one long row and drop the outputs that
            # straddle two rows (K−1 per row), so one matrix product serves the whole batch
            per_row = length // self.stride
            flat = seg.reshape(1, 1, -1)
            n_flat = self.outputs(flat.shape[-1])
            grad = torch.is_grad_enabled() and (seg.requires_grad or self.m1.requires_grad)
            if grad:
                y = F.pad(self(flat), (0, batch * channels * per_row - n_flat))
            else:
                y = seg.new_empty(1, 1, batch * channels * per_row)
                self(flat, y[..., :n_flat])
            y = y.reshape(batch, channels, per_row)[..., :n_out]
            if out is not None:
                out.copy_(y)
            return y
        # full blocks: block j reads [j·hop, (j+1)·hop + tail) and all of it lies in seg
        full = max(0, (length - self.tail) // self.hop) if n_out else 0
        full = min(full, -(-n_out // self.block))
        main = min(full * self.block, n_out)
        parts = []
        if full:
            y = self._blocks(seg, full, main, None if out is None else out[..., :main])
            parts.append(y)
        if main < n_out:  # the ragged end: pad a copy of the few samples left to whole blocks
            rest = seg[..., main * self.stride :]
            count = n_out - main
            nb = -(-count // self.block)
            need = nb * self.hop + self.tail
            rest = F.pad(rest, (0, need - rest.shape[-1])) if need > rest.shape[-1] else rest
            y = self._blocks(rest, nb, count, None if out is None else out[..., main:])
            parts.append(y)
        if out is not None:
            return out
        return parts[0] if len(parts) == 1 else torch.cat(parts, -1)

    def _blocks(self, seg, nb, count, out):
        """``count`` outputs from ``nb`` full blocks of ``seg`` (``seg`` long enough)."""
        batch, channels, _ = seg.shape
        x1 = seg[..., : nb * self.hop].unflatten(-1, (nb, self.hop))  # view
        x2 = seg[..., self.hop :].unfold(-1, self.tail, self.hop)[..., :nb, :] if self.tail else None
        in_place = out is not None and not (
            torch.is_grad_enabled() and (seg.requires_grad or self.m1.requires_grad))
        if batch * channels > self.LOOP_ROWS or not in_place:
            m1 = self.m1 if not self.shared else self.m1[0]
            y = torch.matmul(x1, m1 if self.shared else m1.unsqueeze(0))
            if x2 is not None:
                m2 = self.m2[0] if self.shared else self.m2.unsqueeze(0)
                y = y + torch.matmul(x2, m2)
            y = y.flatten(-2)[..., :count]
            if out is not None:
                out.copy_(y)
            return y
        for b in range(batch):
            for c in range(channels):
                m1, m2 = self._matrices(c)
                target = out[b, c]
                if count == nb * self.block and target.is_contiguous():
                    view = target.view(nb, self.block)
                    torch.mm(x1[b, c], m1, out=view)
                    if x2 is not None:
                        view.addmm_(x2[b, c], m2)
                else:
                    y = torch.mm(x1[b, c], m1)
                    if x2 is not None:
                        y.addmm_(x2[b, c], m2)
                    target.copy_(y.view(-1)[:count])
        return out


class FFTPlan(Plan):
    """Overlap-save FFT correlation with frames of ``nfft`` (see module doc)."""

    def __init__(self, w: torch.Tensor, spec: ConvSpec, nfft: int, compute: torch.dtype | None = None):
        out_channels, per_group, _ = w.shape
        wd = dilate(w, spec.dilation)
        self.span, self.stride, self.out_channels = wd.shape[-1], spec.stride, out_channels
        self.nfft = max(nfft, self.span)
        self.step = self.nfft - self.span + 1
        self.groups, self.per_group = spec.groups, per_group
        self.depthwise = depthwise(out_channels, per_group, spec.groups)
        self.compute = compute or w.dtype
        spectrum = torch.fft.rfft(wd.to(self.compute), self.nfft).conj()
        if self.depthwise:
            self.spectrum = spectrum[:, 0, None, :]  # [C, 1, F]: broadcast over frames
        else:
            self.spectrum = spectrum.reshape(self.groups, out_channels // self.groups, per_group, -1)

    def chunk_outputs(self, rows):
        return max(1, max(4 * self.chunk_elements // max(rows, 1), 4 * self.step) // self.stride)

    def __call__(self, seg, out=None):
        _batch, _channels, length = seg.shape
        n1 = length - self.span + 1
        frames = -(-n1 // self.step)
        need = (frames - 1) * self.step + self.nfft
        x = seg.to(self.compute)
        if need > length:
            x = F.pad(x, (0, need - length))
        spectra = torch.fft.rfft(x.unfold(-1, self.nfft, self.step), self.nfft)  # [B, C, n, F]
        if self.depthwise:
            product = spectra * self.spectrum
        else:
            g, cg = self.groups, self.per_group
            product = torch.einsum("bgcnf,gocf->bgonf", spectra.unflatten(1, (g, cg)),
                                   self.spectrum).flatten(1, 2)
        y = torch.fft.irfft(product, self.nfft)[..., : self.step].flatten(-2)
        y = y[..., : n1 : self.stride].to(seg.dtype)
        if out is not None:
            out.copy_(y)
        return y


def make_plan(weight: torch.Tensor, spec: ConvSpec, choice: MethodChoice) -> Plan:
    """The plan for ``weight [O, C/G, k]`` (as the user wrote it) and the chosen method."""
    w = oriented(weight, spec)
    if choice.method == "fft":
        compute = DTYPES[choice.fft_dtype] if choice.fft_dtype else None
        plan: Plan = FFTPlan(w, spec, choice.nfft or 4096, compute)
    elif choice.algorithm != "conv1d" and depthwise(w.shape[0], w.shape[1], spec.groups):
        plan = GemmPlan(w, spec)
    else:
        plan = Conv1dPlan(w, spec)
    plan.chunk_elements = chunk_elements(weight.device)
    return plan


def run_chunks(plan: Plan, seg: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    """Apply ``plan`` to ``seg`` in chunks of outputs (views of ``seg``), into ``out`` if given."""
    n_out = plan.outputs(seg.shape[-1])
    chunk = plan.chunk_outputs(seg.shape[0] * seg.shape[1])
    if n_out <= chunk:
        return plan(seg, out)
    parts = []
    s, span = plan.stride, plan.span
    for m0 in range(0, n_out, chunk):
        m1 = min(n_out, m0 + chunk)
        piece = seg[..., s * m0 : s * (m1 - 1) + span]
        parts.append(plan(piece, None if out is None else out[..., m0:m1]))
    return out if out is not None else torch.cat(parts, -1)


# --- the entry point -------------------------------------------------------------------------
def conv1d(
    x: torch.Tensor, weight: torch.Tensor, spec: ConvSpec, method: str | MethodChoice = "auto"
) -> torch.Tensor:
    """Convolve (or correlate) a batch of multi-channel signals.

    Args:
        x: input signals.
        weight: the kernel as the user wrote it (not flipped).
        spec: mode, padding, stride, dilation, correlate, groups.
        method: ``auto``, ``direct`` or ``fft`` (or a ``choose_method`` result); all give the
            same numbers to float tolerance.

    Shape:
        ``x [B, C, T]``, ``weight [O, C/G, k]`` -> ``[B, O, spec.output_length(T, k)]``.

    Differentiable in both ``x`` and ``weight``; runs on their device.

    >>> x = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    >>> conv1d(x, torch.tensor([[[1.0, 0.0, -1.0]]]), ConvSpec(mode="valid")).tolist()
    [[[2.0, 2.0]]]
    """
    batch, channels, length = x.shape
    out_channels, per_group, k = weight.shape
    if per_group * spec.groups != channels or out_channels % spec.groups:
        raise ValueError(f"weight {tuple(weight.shape)} does not fit {channels} channels in "
                         f"{spec.groups} groups")
    spec.check(length, k)
    if x.is_cuda:
        ieee_float32()
    choice = method if isinstance(method, MethodChoice) else choose_method(
        length, k, spec, method, batch=batch, channels=channels, out_channels=out_channels,
        dtype=x.dtype, device=str(x.device), x=x)
    plan = make_plan(weight, spec, choice)
    h = edge_extent(length, spec, k)
    left_pad, right_pad = edge_pads(x[..., :h], x[..., length - h :], length, spec, k)
    left, right = left_pad.shape[-1], right_pad.shape[-1]
    n_out = spec.output_length(length, k)
    s, span = spec.stride, plan.span
    grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    if plan.outputs(length + left + right) <= plan.chunk_outputs(batch * channels):
        return plan(torch.cat([left_pad, x, right_pad], -1))
    out = None if grad else x.new_empty(batch, out_channels, n_out)
    parts = []
    for m0, m1 in output_regions(n_out, left, length, span, s):
        seg = padded_slice(left_pad, x, right_pad, s * m0, s * (m1 - 1) + span,
                           lambda pieces: torch.cat(pieces, -1))
        parts.append(run_chunks(plan, seg, None if out is None else out[..., m0:m1]))
    return out if out is not None else torch.cat(parts, -1)


# --- streaming: the same result for a signal that arrives in blocks ---------------------------
class Streamer(BlockStreamer):
    """Convolve a signal of known length ``n`` that arrives in blocks (overlap-save state).

    Needs the signal's ends first (``head = x[..., :h]``, ``tail = x[..., n−h:]``, with
    ``h = edge_extent(n, spec, k)``) for the pads; then ``push`` blocks in order and
    ``finish``. The concatenation of what they return equals ``conv1d(x, weight, spec)``.
    Memory: the block, the kernel span and the plan's chunk.

    Shape: blocks ``[B, C, t]`` -> outputs ``[B, O, t_out]`` (any ``t``, also shorter than K).
    """

    def __init__(self, weight: torch.Tensor, spec: ConvSpec, n: int, head: torch.Tensor,
                 tail: torch.Tensor, method: str | MethodChoice = "auto"):
        out_channels, _per_group, k = weight.shape
        batch, channels, _ = head.shape
        spec.check(n, k)
        self.choice = method if isinstance(method, MethodChoice) else choose_method(
            n, k, spec, method, batch=batch, channels=channels, out_channels=out_channels,
            dtype=head.dtype, device=str(head.device))
        self.plan = make_plan(weight, spec, self.choice)
        left, right = edge_pads(head, tail, n, spec, k)
        self.spec = spec
        self._begin(self.plan, left, right, n, spec.output_length(n, k))

    def _concat(self, parts: list) -> torch.Tensor:
        return torch.cat(parts, -1)

    def _empty(self, batch: int, length: int) -> torch.Tensor:
        return self.buffer.new_zeros(batch, self.plan.out_channels, length)

    def _run(self, seg: torch.Tensor, length: int) -> torch.Tensor:
        out = None if torch.is_grad_enabled() and seg.requires_grad else seg.new_empty(
            seg.shape[0], self.plan.out_channels, length)
        return run_chunks(self.plan, seg, out)


# --- the CLI's boundary: numpy in, numpy out --------------------------------------------------
def filter_batches(
    arrays: list,
    coefficients,
    spec: ConvSpec,
    *,
    method: str = "auto",
    device: str = "auto",
) -> tuple[list, dict]:
    """Filter several ``[B, C, T]`` numpy arrays with one kernel; equal shapes run as one batch.

    Returns the results as numpy arrays (in input order) and what ran (method, reason, device,
    dtype, batches). This is the sink boundary: results are copied to host memory here, once.
    """
    import numpy as np

    target = resolve_device(device)

    def run(batch):
        channels, length = batch.shape[1:]
        x = torch.from_numpy(batch).to(target)
        weight, run_spec = prepare_weight(coefficients, channels, spec, x)
        run_spec.check(length, weight.shape[-1])
        choice = choose_method(length, weight.shape[-1], run_spec, method, batch=x.shape[0],
                               channels=channels, out_channels=weight.shape[0], dtype=x.dtype,
                               device=str(target), x=x)
        with torch.no_grad():
            y = conv1d(x, weight, run_spec, choice).cpu().numpy()
        return y, (choice, x, weight)

    results, (choice, x, weight), groups = filter_by_shape(arrays, run, np.concatenate)
    return results, describe(choice, x, weight, target, groups)


def prepare_weight(coefficients, channels: int, spec: ConvSpec, like: torch.Tensor):
    """The kernel as a ``[O, C/G, k]`` tensor on ``like``'s device and dtype, and the spec to run."""
    from convcli.core.kernels import to_weight

    weight_np, groups = to_weight(coefficients, channels, spec.groups)
    run_spec = spec if groups == spec.groups else replace(spec, groups=groups)
    return torch.from_numpy(weight_np).to(device=like.device, dtype=like.dtype), run_spec


def describe(choice: MethodChoice, x: torch.Tensor | None, weight: torch.Tensor | None, device,
             batches: int = 1) -> dict:
    """What ran, for ``--json``: method, reason, algorithm, nfft and the FFT error bound.

    ``fft_error_bound`` is absolute: the relative bound times ``max|x|`` times the largest
    ``Σ|w|`` of an output channel (the largest value an output can reach).
    """
    run = {
        "engine": "torch",
        "method": choice.method,
        "reason": choice.reason,
        "algorithm": choice.algorithm,
        "device": str(device),
        "dtype": str(x.dtype).replace("torch.", "") if x is not None else None,
        "batches": batches,
        "estimates_s": choice.estimates,
    }
    if choice.method == "fft":
        dtype = DTYPES[choice.fft_dtype] if choice.fft_dtype else (x.dtype if x is not None else torch.float32)
        relative = fft_error_bound(choice.nfft, dtype)
        run.update(nfft=choice.nfft, fft_dtype=str(dtype).replace("torch.", ""),
                   fft_relative_error_bound=relative)
        if x is not None and weight is not None:
            peak = float(x.detach().abs().max())
            gain = float(weight.detach().abs().sum((1, 2)).max())
            run["fft_error_bound"] = relative * peak * gain
    return run

