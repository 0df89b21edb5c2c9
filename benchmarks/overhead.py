"""What one ``engine.conv1d`` call costs besides the arithmetic: choosing, planning, the edges.

    python benchmarks/overhead.py --device cuda     # where launches and syncs dominate short work

For a 1-minute stereo signal and a few kernel lengths it prints the median time of
``choose_method`` alone, of ``conv1d`` with the method already chosen, and of ``conv1d(auto)``,
then a ``torch.profiler`` table of one ``auto`` call (the operators that take the time).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from convcli.core.spec import ConvSpec
from convcli.engines.torch_backend import choose_method, conv1d


def median_seconds(fn, device, repeat: int = 20) -> float:
    fn()
    times = []
    for _ in range(repeat):
        torch.cuda.synchronize() if device.type == "cuda" else None
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize() if device.type == "cuda" else None
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def overhead_row(x, k: int, spec, device) -> str:
    n = x.shape[-1]
    w = torch.hann_window(k + 2, periodic=False, device=device)[1:-1].expand(2, 1, k)
    choice = choose_method(n, k, spec, "auto", channels=2, device=str(device), x=x)
    with torch.no_grad():
        choose = median_seconds(lambda: choose_method(n, k, spec, "auto", channels=2,
                                                      device=str(device), x=x), device)
        chosen = median_seconds(lambda: conv1d(x, w, spec, choice), device)
        auto = median_seconds(lambda: conv1d(x, w, spec, "auto"), device)
    return (f"{k:6d} {choose * 1e3:10.3f} {chosen * 1e3:10.3f} {auto * 1e3:10.3f}  "
            f"{choice.method}/{choice.algorithm}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    device = torch.device(args.device)
    n = int(args.seconds * 48_000)
    x = torch.from_numpy((0.25 * np.random.default_rng(0).standard_normal((1, 2, n)))
                         .astype(np.float32)).to(device)
    spec = ConvSpec(groups=2)
    print(f"{'k':>6s} {'choose ms':>10s} {'chosen ms':>10s} {'auto ms':>10s}  method")
    for k in (31, 255, 4095):
        print(overhead_row(x, k, spec, device))
    w = torch.hann_window(257, periodic=False, device=device)[1:-1].expand(2, 1, 255)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.no_grad(), torch.profiler.profile(activities=activities) as prof:
        conv1d(x, w, spec, "auto")
        torch.cuda.synchronize() if device.type == "cuda" else None
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
