"""What ``jacobian`` differentiates at: the input file's first batch item, or a seeded random
signal (the input Jacobian of a linear conv does not depend on it). numpy only, no torch."""

from __future__ import annotations

import numpy as np

from convcli.errors import InputError, UsageError
from convcli.io.signals import check_finite, read_signal

#: samples of the random input used without INPUT
DEFAULT_LENGTH = 64


def jacobian_input(path: str | None, length: int | None, seed: int, layout: str | None,
                   dtype: str | None, allow_nonfinite: bool, coefficients: np.ndarray,
                   groups: int) -> tuple[np.ndarray, str]:
    """``([C, N], what it is)``: batch item 0 of ``path``, or seeded normal noise of ``length``
    samples on as many channels as the kernel reads.

    >>> x, source = jacobian_input(None, 8, 0, None, None, False, np.ones(3), 1)
    >>> x.shape, source
    ((1, 8), 'random normal (1 ch × 8, seed 0)')
    """
    if path is not None:
        if length is not None:
            raise UsageError("--length makes a random input; it cannot go with INPUT",
                             "drop one of them")
        signal = read_signal(path, layout=layout, dtype=dtype or "auto")
        if not allow_nonfinite:
            check_finite(signal)
        if not signal.data.shape[0]:
            raise InputError(f"{signal.name} is a batch of no signals {signal.data.shape}, and "
                             "jacobian differentiates at batch item 0", "give a non-empty input")
        return signal.data[0], signal.name
    if coefficients.ndim == 1:
        channels = 1
    elif coefficients.ndim == 2:
        channels = coefficients.shape[0]
    else:
        channels = coefficients.shape[1] * groups
    n = length or DEFAULT_LENGTH
    data = np.random.default_rng(seed).standard_normal((channels, n), dtype=dtype or "float32")
    return data, f"random normal ({channels} ch × {n:,}, seed {seed})"
