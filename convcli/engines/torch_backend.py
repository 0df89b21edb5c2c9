"""The torch engine: CUDA, kernels that mix channels, and everything that needs autograd.

The driver's algorithm (``convcli.engines.driver``: the same checks, choice, pads and regions
as the numpy engine) over torch tensors, on the device they came on and differentiable in the
signal and the kernel (gradcheck in the tests):

- ``direct`` / banded GEMM (depthwise kernels): blocks of ``hop = B·s`` samples, each block of
  ``B`` outputs ``X_j @ M1 + X_{j+1}[:K−s] @ M2`` with banded matrices built from the kernel
  (``plan.geometry.band_index``); both products read the signal in place, and it is 10-30×
  faster than ``F.conv1d`` on long signals on a CPU.
- ``direct`` / ``F.conv1d`` after explicit pads (``padding=0``: the ``padding=`` argument takes a
  slow path on CPU builds): general groups, and on a GPU cuDNN's conv1d.
- ``fft`` / overlap-save: frames of ``nfft`` hop by ``nfft − K + 1``; each frame's spectrum is
  multiplied by the kernel's (an einsum over the channels of a group) and the wrap-free part
  kept. A single frame covering the whole padded signal is the classic whole-signal FFT,
  chosen where it wins (short signals).

    >>> x = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    >>> conv1d(x, torch.tensor([[[1.0, 0.0, -1.0]]]), ConvSpec(mode="valid")).tolist()
    [[[2.0, 2.0]]]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from convcli.core.kernels import depthwise
from convcli.core.spec import ConvSpec
from convcli.engines.driver import Engine, OverlapSavePlan, Plan
from convcli.plan.geometry import GemmGeometry, band_index, chunk_elements, fft_frames
from convcli.plan.selection import MethodChoice, sample_runs

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def ieee_float32() -> None:
    """float32 on CUDA means IEEE float32: turn TensorFloat-32 off for cuDNN and cuBLAS.

    cuDNN convolutions default to TF32 on Ampere and later (10-bit mantissa): ``F.conv1d`` of a
    mixing kernel then errs by ~1e-3 relative, where float32 promises ~1e-7.
    """
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


def resolve_dtype(name: str | None, data_dtype=None) -> torch.dtype:
    """``--dtype NAME``; without it, the data's own precision (float64 stays, else float32)."""
    from convcli.errors import UsageError

    if name is None:
        return torch.float64 if str(data_dtype) == "float64" else torch.float32
    if name not in DTYPES:
        raise UsageError(f"--dtype must be float32 or float64, got {name!r}")
    return DTYPES[name]


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


# --- plans: one kernel, applied to any stretch of the padded signal ----------------------------
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

    def __init__(self, w: torch.Tensor, spec: ConvSpec):
        out_channels = w.shape[0]
        wd = dilate(w[:, 0, :], spec.dilation)  # [C, K]
        self.geometry = g = GemmGeometry.of(wd.shape[-1], spec.stride)
        self.span, self.stride, self.out_channels = g.span, g.stride, out_channels
        self.block, self.hop, self.tail = g.block, g.hop, g.tail
        # one shared kernel (a window on every channel) -> one matrix; else one per channel
        self.shared = out_channels == 1 or bool((wd == wd[:1]).all())
        rows = wd[:1] if self.shared else wd
        index = torch.from_numpy(band_index(g.span, g.stride, g.block)).to(w.device)
        padded = torch.cat([rows, rows.new_zeros(rows.shape[0], 1)], -1)
        band = padded[:, index]  # [C or 1, hop + tail, block], differentiable in w
        self.m1 = band[:, : self.hop]
        self.m2 = band[:, self.hop :]

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
        full, main = self.geometry.split(length, n_out)
        parts = []
        if full:
            y = self._blocks(seg, full, main, None if out is None else out[..., :main])
            parts.append(y)
        if main < n_out:  # the ragged end: pad a copy of the few samples left to whole blocks
            rest = seg[..., main * self.stride :]
            count = n_out - main
            nb, need = self.geometry.ragged(count)
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


class FFTPlan(OverlapSavePlan):
    """Overlap-save FFT correlation with frames of ``nfft`` (see module doc)."""

    def __init__(self, w: torch.Tensor, spec: ConvSpec, nfft: int, compute: torch.dtype | None = None):
        out_channels, per_group, _ = w.shape
        wd = dilate(w, spec.dilation)
        super().__init__(wd.shape[-1], spec.stride, nfft)
        self.out_channels = out_channels
        self.groups, self.per_group = spec.groups, per_group
        self.depthwise = depthwise(out_channels, per_group, spec.groups)
        self.compute = compute or w.dtype
        # the kernel's spectrum in float64 (as the numpy engine's), then in the frames' precision
        spectrum = torch.fft.rfft(wd.to(torch.float64), self.nfft).conj()
        spectrum = spectrum.to(torch.complex128 if self.compute == torch.float64 else torch.complex64)
        if self.depthwise:
            self.spectrum = spectrum[:, 0, None, :]  # [C, 1, F]: broadcast over frames
        else:
            self.spectrum = spectrum.reshape(self.groups, out_channels // self.groups, per_group, -1)

    def __call__(self, seg, out=None):
        n1, _, _, need = fft_frames(seg.shape[-1], self.span, self.nfft)
        if not seg.shape[0]:  # no rows: MKL's FFT refuses an empty batch ("inconsistent
            # configuration"); the selection runs F.conv1d for one, this guards a plan made apart
            y = seg.new_zeros(0, self.out_channels, self.outputs(seg.shape[-1]))
            return y if out is None else out
        x = seg.to(self.compute)
        if need > seg.shape[-1]:
            x = F.pad(x, (0, need - seg.shape[-1]))
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
    """The plan for ``weight [O, C/G, k]`` (as the user wrote it) and the chosen method.

    On CUDA, float32 means IEEE float32 from here on (``ieee_float32``): whole signals and
    streams alike build their plan here.
    """
    if weight.is_cuda:
        ieee_float32()
    w = oriented(weight, spec)
    if choice.method == "fft":
        compute = DTYPES[choice.fft_dtype] if choice.fft_dtype else None
        plan: Plan = FFTPlan(w, spec, choice.nfft or 4096, compute)
    elif choice.algorithm not in ("conv1d", "correlate") and depthwise(w.shape[0], w.shape[1],
                                                                     spec.groups):
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


# --- the engine --------------------------------------------------------------------------------
class TorchEngine(Engine):
    """The driver over torch tensors (see the module doc)."""

    name = "torch"

    def __init__(self) -> None:
        self._pinned: dict[int, torch.Tensor] = {}  # host_buffer's arrays -> their tensors

    def asarray(self, array, device="cpu"):
        return torch.from_numpy(array).to(device)

    def to_numpy(self, y):
        return y.detach().cpu().numpy()

    def no_grad(self):
        return torch.no_grad()

    def concat(self, parts):
        return torch.cat(parts, -1)

    def zeros(self, like, shape):
        return like.new_zeros(shape)

    def output(self, like, shape, *sources):
        if torch.is_grad_enabled() and any(s.requires_grad for s in sources):
            return None  # autograd: every piece a new tensor, joined at the end
        return like.new_empty(shape)

    def take(self, ends, index):
        return ends.index_select(-1, torch.tensor(index, dtype=torch.long, device=ends.device))

    def extremes(self, x):
        low, high = torch.aminmax(x.detach())  # one pass, no |x| copy of a long signal
        return float(low), float(high)

    def host_sample(self, x):
        # the subsample (≤ 64 Ki values, 256 KB) comes to the host in one copy and numpy ranks
        # it: on a GPU, masking and kthvalue would cost a sync each
        return sample_runs(x.detach().reshape(-1)).cpu().numpy()

    def device_of(self, x):
        return str(x.device)

    def add(self, y, column):
        if torch.is_grad_enabled() and (y.requires_grad or column.requires_grad):
            return y + column  # a new tensor: autograd records the sum
        return y.add_(column)

    def make_plan(self, weight, spec, choice, dtype):
        return make_plan(weight, spec, choice)

    # A stream on a GPU: each block is read straight into pinned host memory and copied to the
    # device asynchronously (the copy queues behind the previous block's kernels on the
    # current stream, so nothing waits for it); the overlap between blocks stays on the device
    # (``Streamer.buffer``); each output block is copied into pinned memory asynchronously and
    # an event marks its end, which only the writer thread waits for. torch's caching host
    # allocator keeps a pinned block from reuse until the copies recorded on it are done.
    def host_buffer(self, shape, dtype, device):
        if not str(device).startswith("cuda"):
            return super().host_buffer(shape, dtype, device)
        pinned = torch.empty(shape, dtype=DTYPES[str(dtype)], pin_memory=True)
        array = pinned.numpy()  # shares the pinned memory (and keeps the tensor alive)
        self._pinned[array.ctypes.data] = pinned
        return array

    def upload(self, rows, device):
        if not str(device).startswith("cuda"):
            return torch.from_numpy(rows)
        pinned = self._pinned.pop(rows.ctypes.data, None)
        if pinned is None or tuple(pinned.shape) != rows.shape:
            return torch.from_numpy(rows).to(device)  # pageable memory: a synchronous copy
        return pinned.to(device, non_blocking=True)

    def download(self, y):
        if not y.is_cuda:
            return y.detach()
        host = torch.empty(y.shape, dtype=y.dtype, pin_memory=True)
        host.copy_(y.detach(), non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        return host, done

    def host(self, handle):
        if isinstance(handle, tuple):
            host, done = handle
            done.synchronize()  # this block's copy only, not the kernels queued after it
            return host.numpy()
        return handle.numpy()

    def run_plan(self, plan, seg, out):
        return run_chunks(plan, seg, out)

    def whole(self, plan, x, left_pad, right_pad, n_out, nonfinite):
        batch, channels, length = x.shape
        padded = left_pad.shape[-1] + length + right_pad.shape[-1]
        if plan.outputs(padded) <= plan.chunk_outputs(batch * channels):  # one call does it
            return plan(torch.cat([left_pad, x, right_pad], -1))
        return None


ENGINE = TorchEngine()
conv1d = ENGINE.conv1d
choose_method = ENGINE.choose_method
streamer = ENGINE.streamer
edge_pads = ENGINE.edge_pads
