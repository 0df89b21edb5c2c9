"""What ``convcli calibrate`` times: one calibration problem, run by the engine it names.

``plan.calibrate`` chooses the problems and fits the rates; it never imports an engine, so
``runner`` (passed to ``plan.calibrate.run``) builds each problem's signal and kernel and runs
it through that engine's real ``conv1d`` with the method forced.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from convcli.plan.calibrate import Problem
from convcli.plan.selection import MethodChoice


def runner(problem: Problem, device: str) -> Callable[[], object]:
    """A function that runs ``problem`` once on ``device`` (method forced, output kept)."""
    rng = np.random.default_rng(0)
    shape = (problem.batch, problem.channels, problem.length)
    x = rng.standard_normal(shape, dtype=np.float32)
    if problem.out_channels is None:
        w = rng.standard_normal((problem.channels, 1, problem.k)).astype(np.float32)
    else:
        w = rng.standard_normal((problem.out_channels, problem.channels, problem.k)).astype(np.float32)
    if problem.algorithm == "overlap-save":
        choice = MethodChoice("fft", "calibration", "overlap-save", problem.nfft)
    else:
        choice = MethodChoice("direct", "calibration", problem.algorithm)
    if problem.engine == "numpy":
        from convcli.engines.numpy_backend import conv1d

        if problem.algorithm == "memory":
            return x.copy
        return lambda: conv1d(x, w, problem.spec, choice)
    import torch

    from convcli.engines.torch_backend import conv1d as torch_conv1d

    target = torch.device(device)
    xt, wt = torch.from_numpy(x).to(target), torch.from_numpy(w).to(target)
    sync = torch.cuda.synchronize if target.type == "cuda" else (lambda: None)

    def run():
        with torch.no_grad():
            y = xt.clone() if problem.algorithm == "memory" else torch_conv1d(
                xt, wt, problem.spec, choice)
        sync()
        return y

    return run
