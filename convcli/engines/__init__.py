"""The engines: one driver (``driver.Engine``) over a numpy and a torch backend.

``load(name)`` gives the engine ``plan.selection.engine_for`` named; only the torch one
imports torch, and only when it is loaded.
"""

from __future__ import annotations


def load(name: str):
    """The ``numpy`` or ``torch`` engine (a ``driver.Engine``)."""
    if name == "numpy":
        from convcli.engines.numpy_backend import ENGINE
    elif name == "torch":
        from convcli.engines.torch_backend import ENGINE
    else:
        raise ValueError(f"no engine {name!r}; there are numpy and torch")
    return ENGINE
