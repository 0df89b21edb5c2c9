"""convcli: filter signals from the shell with exact 1-D convolution semantics.

The core (``spec``, ``windows``, ``kernels``, ``signals``, ``engine``, ``autodiff``) is plain
functions over numpy arrays and torch tensors; ``cli`` is the thin Typer layer on top.
Importing this package imports neither torch nor typer.
"""

__version__ = "0.1.0"
