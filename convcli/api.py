"""convcli's Python API: ``conv1d`` for arrays and tensors, ``filter_file`` for files.

``conv1d`` is the convolution ``convcli filter`` runs, with the same semantics (``ConvSpec``),
the same engines and the same ``auto`` rule, for numpy arrays or torch tensors. With tensors
it is differentiable in the signal and the kernel and stays on their device: a batch of
signals convolved with a Hann window keeps its autograd graph (a hand loop writing into a
preallocated output in place does not).

``filter_file`` is ``convcli filter`` for one file (or ``-``), as a function that returns the
run's ``pipeline.FilterResult`` instead of printing it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from convcli.core.spec import ConvSpec
from convcli.io.atomic import keep_existing
from convcli.io.kernelfile import KernelRequest

__all__ = ["ConvSpec", "conv1d", "filter_file"]


def _is_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")  # a tensor can exist only if torch is imported already
    return torch is not None and isinstance(value, torch.Tensor)


def conv1d(x, weight, *, mode: str = "same", padding: str = "zeros", stride: int = 1,
           dilation: int = 1, groups: int = 1, correlate: bool = False, method: str = "auto",
           pad: int | tuple[int, int] | None = None, bias=None):
    """Convolve (default) or cross-correlate signals with a kernel, exactly as ``convcli filter``.

    Args:
        x: the signals, a numpy array or a torch tensor: ``[T]``, ``[C, T]`` or ``[B, C, T]``.
        weight: the kernel as written (never flipped by you): ``[k]`` for every channel,
            ``[C, k]`` one per channel, or ``[O, C/G, k]`` with ``groups`` G. A tensor with a
            tensor ``x``; a numpy array (or list) with either.
        mode: ``same`` (length N), ``valid``, ``full`` or ``causal`` (``lfilter``): the pads.
        pad: the pads themselves instead of ``mode``'s, as ``nn.Conv1d(padding=P)``: ``P`` at
            both ends or ``(left, right)`` (``mode`` stays at its default).
        padding: ``zeros``, ``reflect``, ``replicate`` or ``circular``: what fills them
            (``nn.Conv1d``'s ``padding_mode``).
        stride, dilation, groups: as ``torch.nn.functional.conv1d``'s.
        correlate: cross-correlation (exactly ``F.conv1d``) instead of convolution
            (``numpy.convolve``/``scipy.signal.convolve``).
        method: ``auto``, ``direct`` or ``fft``: the same numbers to float tolerance.
        bias: added to every output of each channel after the convolution, as
            ``nn.Conv1d(bias=True)``'s: one number for all, or ``[O]`` (a tensor with a tensor
            ``x`` is differentiable too).

    Shape:
        ``[B, C, T] -> [B, O, T_out]``, ``[C, T] -> [O, T_out]``, ``[T] -> [T_out]``, with
        ``T_out = spec.output_length(T, k)`` and O the kernel's output channels (C for a
        ``[k]`` or ``[C, k]`` kernel).

    numpy in, numpy out (float64 stays float64, anything else is computed in float32 if it is
    float32, else float64). torch in, torch out, on ``x``'s device and in its dtype,
    differentiable in ``x`` and ``weight``.

    >>> conv1d(np.array([1.0, 2.0, 3.0, 4.0]), [1.0, 0.0, -1.0], mode="valid").tolist()
    [2.0, 2.0]
    >>> import torch
    >>> x = torch.ones(2, 1, 8, requires_grad=True)           # a batch of two mono signals
    >>> y = conv1d(x, torch.hann_window(5, periodic=False), mode="same")
    >>> y.shape, y.requires_grad
    (torch.Size([2, 1, 8]), True)
    >>> conv1d(np.array([1.0, 2.0, 3.0]), [1.0, 1.0], pad=(0, 2), correlate=True, method="direct").tolist()
    [3.0, 5.0, 3.0, 0.0]
    """
    spec = ConvSpec(mode=mode, padding=padding, stride=stride, dilation=dilation,
                    correlate=correlate, groups=groups, pad=pad)
    if _is_tensor(x):
        return _torch_conv1d(x, weight, spec, method, bias)
    return _numpy_conv1d(np.asarray(x), np.asarray(weight, dtype=np.float64), spec, method, bias)


def _as_batch(x, ndim: int):
    """``x`` as ``[B, C, T]`` (a view), refused with the shapes allowed when it is not 1-3-D."""
    from convcli.errors import UsageError

    if ndim == 1:
        return x[None, None]
    if ndim == 2:
        return x[None]
    if ndim == 3:
        return x
    raise UsageError(f"x has {ndim} dimensions; conv1d takes [T], [C, T] or [B, C, T]")


def _as_given(y, ndim: int):
    """The result shaped as the input was: ``[B, O, T_out]`` back to 2-D or 1-D."""
    if ndim == 3:
        return y
    if ndim == 2:
        return y[0]
    return y[0, 0] if y.shape[1] == 1 else y[0]


def _numpy_conv1d(x: np.ndarray, weight: np.ndarray, spec: ConvSpec, method: str,
                  bias) -> np.ndarray:
    from dataclasses import replace

    from convcli import engines
    from convcli.core.kernels import bias_for, depthwise, to_weight
    from convcli.io.kernelfile import check_kernel_array
    from convcli.plan.selection import engine_for

    dtype = np.float32 if x.dtype == np.float32 else np.float64
    batch = np.ascontiguousarray(_as_batch(x, x.ndim), dtype=dtype)
    w, groups = to_weight(check_kernel_array(weight, "weight"), batch.shape[1], spec.groups)
    spec = spec if groups == spec.groups else replace(spec, groups=groups)
    engine = engines.load(engine_for("cpu", depthwise(w.shape[0], w.shape[1], groups)))
    b = None if bias is None else engine.asarray(bias_for(bias, w.shape[0]).astype(dtype))
    with engine.no_grad():
        y = engine.conv1d(engine.asarray(batch), engine.asarray(w.astype(dtype)), spec, method, b)
    return _as_given(engine.to_numpy(y), x.ndim)


def _torch_conv1d(x, weight, spec: ConvSpec, method: str, bias):
    from dataclasses import replace

    import torch

    from convcli.autodiff.grad import bias_tensor, weight_from_coefficients
    from convcli.engines.torch_backend import conv1d as torch_conv1d

    if not _is_tensor(weight):
        weight = torch.as_tensor(np.asarray(weight, dtype=np.float64))
    weight = weight.to(device=x.device, dtype=x.dtype)  # differentiable, a no-op if it matches
    batch = _as_batch(x, x.ndim)
    w, groups = weight_from_coefficients(weight, batch.shape[1], spec.groups)
    spec = spec if groups == spec.groups else replace(spec, groups=groups)
    b = None if bias is None else bias_tensor(bias, w.shape[0], x)
    return _as_given(torch_conv1d(batch, w, spec, method, b), x.ndim)


def filter_file(input: str | Path, output: str | Path | None = None, *, window: str | None = None,
                size: int | None = None, periodic: bool = False, normalize: str | None = None,
                kernel: str | Path | Any = None, lowpass: float | None = None,
                highpass: float | None = None, bandpass: tuple[float, float] | None = None,
                bandstop: tuple[float, float] | None = None, transition: float | None = None,
                attenuation: float | None = None, mode: str = "same", padding: str = "zeros",
                stride: int = 1, dilation: int = 1, groups: int = 1, correlate: bool = False,
                pad: int | tuple[int, int] | None = None, bias=None, **options: Any):
    """``convcli filter INPUT -o OUTPUT`` as a function: returns the ``pipeline.FilterResult``
    (``.summary()`` is what ``--json`` prints) and prints nothing.

    ``kernel`` is a kernel file's path or the coefficients themselves (``[k]``, ``[C, k]`` or
    ``[O, C/G, k]``); ``bandpass``/``bandstop`` are ``(low, high)`` in Hz; ``pad`` and ``bias``
    are ``conv1d``'s (``--pad``, ``--bias``). ``options`` are the
    rest of ``pipeline.FilterJob``'s fields: ``out_format``, ``subtype``, ``layout``, ``rate``,
    ``method``, ``device``, ``dtype``, ``gain``, ``normalize_output``, ``clip``, ``block``,
    ``allow_nonfinite``, ``no_clobber``. The output defaults to ``INPUT_STEM.filtered.EXT`` beside the input.

    Shape: the file's ``[B, C, T]`` -> ``[B, O, T_out]``, written to ``output``.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> np.save(folder / "x.npy", np.array([[0.0, 1.0, 2.0, 3.0]]))
    >>> result = filter_file(folder / "x.npy", folder / "y.npy", kernel=[1.0, 1.0], mode="full")
    >>> np.load(folder / "y.npy", allow_pickle=False).round(12).tolist(), result.summary()["files"][0]["shape_out"]
    ([[0.0, 1.0, 3.0, 5.0, 3.0]], [1, 1, 5])
    """
    from convcli import pipeline
    from convcli.core.fir import request_from_options

    edges = {name: None if band is None else f"{band[0]}:{band[1]}"
             for name, band in (("bandpass", bandpass), ("bandstop", bandstop))}
    design = request_from_options(lowpass, highpass, edges["bandpass"], edges["bandstop"],
                                  transition, attenuation)
    is_path = isinstance(kernel, (str, Path))
    request = KernelRequest(window=window, size=size if size is not None or design else 31,
                            periodic=periodic, normalize=normalize,
                            path=str(kernel) if is_path else None, design=design,
                            values=None if is_path or kernel is None else kernel)
    inputs = [str(input)]
    with keep_existing(bool(options.get("no_clobber"))):
        outputs = pipeline.plan_outputs(inputs, None if output is None else str(output), None,
                                        options.get("out_format"), request.path)
    spec = ConvSpec(mode=mode, padding=padding, stride=stride, dilation=dilation,
                    correlate=correlate, groups=groups, pad=pad)
    job = pipeline.FilterJob(inputs=inputs, outputs=outputs, kernel=request, spec=spec,
                             bias=None if bias is None else np.asarray(bias, dtype=np.float64),
                             **options)
    return pipeline.run_filter(job)
