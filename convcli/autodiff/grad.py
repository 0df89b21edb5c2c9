"""Gradients of a scalar loss of conv1d (``convcli grad``): reverse-mode autograd."""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from convcli.core.spec import ConvSpec
from convcli.errors import InputError, UsageError

WRT = ("input", "kernel")
LOSSES = ("sum", "mean", "energy", "mse")


def weight_from_coefficients(coefficients: torch.Tensor, channels: int, groups: int = 1):
    """Shape coefficients ``(k,)``, ``(C, k)`` or ``(O, C/G, k)`` into ``weight [O, C/G, k]``.

    Differentiable: the gradient of a shared ``(k,)`` kernel sums over the channels.
    Returns ``(weight, groups)`` like ``kernels.to_weight`` (whose checks run first).
    """
    import numpy as np

    from convcli.core.kernels import to_weight

    _, groups = to_weight(np.zeros(tuple(coefficients.shape)), channels, groups)
    if coefficients.ndim == 1:
        return coefficients.expand(channels, 1, coefficients.shape[0]), groups
    if coefficients.ndim == 2:
        return coefficients[:, None, :], groups
    return coefficients, groups


def bias_tensor(bias, out_channels: int, like: torch.Tensor) -> torch.Tensor:
    """A bias ``[O]`` on ``like``'s device and dtype (``core.kernels.bias_for``'s rules: one
    number for every channel, or one per channel); a tensor stays differentiable."""
    import numpy as np

    from convcli.core.kernels import bias_for

    if not isinstance(bias, torch.Tensor):
        return torch.as_tensor(bias_for(bias, out_channels), dtype=like.dtype, device=like.device)
    bias_for(np.zeros(tuple(bias.shape)), out_channels)  # its shape checked, as above
    if not bool(torch.isfinite(bias).all()):
        bias_for(np.nan, out_channels)  # the same error
    bias = bias.to(device=like.device, dtype=like.dtype)
    return bias.reshape(()).expand(out_channels) if bias.numel() == 1 else bias


def loss_value(y: torch.Tensor, loss: str, target: torch.Tensor | None = None) -> torch.Tensor:
    """A scalar loss of the output ``y [B, O, L_out]``.

    sum: Σ y; mean: mean y; energy: Σ y²; mse: mean (y − target)² over every element.

    >>> float(loss_value(torch.tensor([1.0, -2.0]), "energy"))
    5.0
    """
    if loss == "sum":
        return y.sum()
    if loss == "mean":
        return y.mean()
    if loss == "energy":
        return (y * y).sum()
    if loss == "mse":
        if target is None:
            raise UsageError("--loss mse needs --target FILE", "give the target output")
        if tuple(target.shape) != tuple(y.shape):
            raise InputError(
                f"the target has shape {tuple(target.shape)} but the output has {tuple(y.shape)} "
                "(batch, channels, time)",
                "make the target with the same options, e.g. convcli filter … -o target.npy",
            )
        return ((y - target) ** 2).mean()
    raise UsageError(f"--loss must be one of {', '.join(LOSSES)}, got {loss!r}")


def grad(
    x: torch.Tensor,
    coefficients: torch.Tensor,
    spec: ConvSpec,
    loss: str,
    wrt: tuple[str, ...] = ("input",),
    target: torch.Tensor | None = None,
    method: str = "auto",
    bias=None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss of ``conv1d(x, kernel) + bias`` and its gradients (reverse-mode autograd).

    Shape: ``x [B, C, T]``, ``coefficients (k,) | (C, k) | (O, C/G, k)``, ``bias`` one number
    or ``[O]`` -> ``(loss [], {"input": [B, C, T], "kernel": coefficients.shape})`` for the
    names in ``wrt``. The bias moves the loss (and, for energy and mse, the gradients through
    y); the Jacobians of y do not depend on it.

    >>> value, g = grad(torch.ones(1, 1, 4), torch.ones(2), ConvSpec(mode="valid"), "sum", ("input", "kernel"))
    >>> float(value), g["input"].tolist(), g["kernel"].tolist()
    (6.0, [[[1.0, 2.0, 2.0, 1.0]]], [3.0, 3.0])
    """
    from convcli.engines.torch_backend import conv1d

    for name in wrt:
        if name not in WRT:
            raise UsageError(f"--wrt must be input, kernel or both, got {name!r}")
    with torch.enable_grad():
        x = x.detach().requires_grad_("input" in wrt)
        coefficients = coefficients.detach().requires_grad_("kernel" in wrt)
        weight, groups = weight_from_coefficients(coefficients, x.shape[1], spec.groups)
        b = None if bias is None else bias_tensor(bias, weight.shape[0], x)
        y = conv1d(x, weight, replace(spec, groups=groups), method, b)
        value = loss_value(y, loss, target)
        leaves = [x if name == "input" else coefficients for name in wrt]
        grads = torch.autograd.grad(value, leaves)
    return value.detach(), {name: g.detach() for name, g in zip(wrt, grads)}


def norm(t: torch.Tensor) -> float:
    """Euclidean norm of every element, as a float."""
    return float(math.sqrt(float((t.double() ** 2).sum())))
