"""convcli: filter signals with exact 1-D convolution semantics, down to the derivatives.

The Python API (``convcli.api``), importable without torch or typer:

- ``conv1d(x, weight, *, mode, padding, stride, dilation, groups, correlate, method)``: numpy
  arrays or torch tensors (differentiable, on their device), ``[B, C, T] -> [B, O, T_out]``;
- ``filter_file(input, output, ...)``: ``convcli filter`` as a function;
- ``ConvSpec``: the semantics (pads, lengths, the formula of y[i]).

The layers below it: ``core`` (semantics, windows, FIR designs, numpy only), ``io`` (formats,
atomic outputs), ``plan`` (geometry, cost model, the engine and method selection), ``engines``
(one driver, a numpy and a torch backend), ``autodiff``, ``pipeline``, and on top ``cli`` and
``render``; docs/architecture.md walks through them.
"""

from convcli.about import __version__

__all__ = ["ConvSpec", "__version__", "conv1d", "filter_file"]


def __getattr__(name: str):
    # lazily, so that importing convcli (or ``python -m convcli --help``) stays fast
    if name in ("conv1d", "filter_file", "ConvSpec"):
        from convcli import api

        return getattr(api, name)
    raise AttributeError(f"module 'convcli' has no attribute {name!r}")
