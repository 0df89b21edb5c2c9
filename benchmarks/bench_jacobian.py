"""Jacobian benchmark: closed form vs autograd, dense N = 4096 and banded N = 10⁶ (k = 31).

Each workload runs in its own child process so its peak memory (ru_maxrss, minus the
process's resident size before the workload) is its own. Seconds are the median of
``--repeat`` runs after one warm-up (the warm-up also pays torch.func's one-time imports).

    python benchmarks/bench_jacobian.py                 # table on stdout
    python benchmarks/bench_jacobian.py --json out.json # and the numbers as JSON
    python benchmarks/bench_jacobian.py --quick         # smaller sizes, for a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: name -> (description, N, format, route, padding)
WORKLOADS = {
    "dense-closed": ("dense, closed form (spec.tap/source, index_put)", 4096, "dense", "closed", "zeros"),
    "dense-autograd": ("dense, convcli autograd (jvp vmapped, chunked)", 4096, "dense", "autograd", "zeros"),
    "dense-jacrev": ("dense, torch.func.jacrev(chunk_size=512)", 4096, "dense", "jacrev", "zeros"),
    "dense-jacfwd": ("dense, torch.func.jacfwd", 4096, "dense", "jacfwd", "zeros"),
    "banded-closed": ("banded, closed form", 1_000_000, "banded", "closed", "zeros"),
    "banded-autograd": ("banded, autograd (31 compressed jvp seeds)", 1_000_000, "banded", "autograd", "zeros"),
    "banded-closed-reflect": ("banded, closed form, reflect padding", 1_000_000, "banded", "closed", "reflect"),
    "banded-autograd-reflect": ("banded, autograd, reflect padding", 1_000_000,
                                "banded", "autograd", "reflect"),
    "banded-autograd-circular": ("banded, autograd + 30 wrap-around seeds, circular", 1_000_000,
                                 "banded", "autograd", "circular"),
}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_one(name: str, repeat: int, quick: bool) -> dict:
    import torch

    from convcli.autodiff import jacobian as autodiff
    from convcli.autodiff.banded import Banded
    from convcli.core.spec import ConvSpec

    _, n, fmt, route, padding = WORKLOADS[name]
    if quick:
        n = min(n, 512 if fmt == "dense" else 20_000)
    k = 31
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, n, generator=generator)
    w = torch.rand(1, 1, k, generator=generator)
    pair = autodiff.channel_pair(x, w, ConvSpec(mode="same", padding=padding), 0, 0)
    f_input, _ = autodiff.pair_functions(pair)

    def work():
        if route in ("closed", "autograd"):
            return autodiff.jacobian(pair, "input", banded=fmt == "banded", via=route).matrix
        if route == "jacrev":
            return torch.func.jacrev(f_input, chunk_size=512)(pair.row)
        return torch.func.jacfwd(f_input)(pair.row)

    baseline = rss_bytes()
    result = work()  # warm-up
    nbytes = (result.nbytes if isinstance(result, Banded)
              else result.numel() * result.element_size())
    del result
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - started)
        del result
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"name": name, "n": n, "k": k, "format": fmt, "route": route, "padding": padding,
            "seconds": statistics.median(times), "all_seconds": times,
            "peak_extra_bytes": max(0, peak - baseline), "result_bytes": nbytes,
            "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--only", nargs="*", choices=list(WORKLOADS), help="run these only")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.repeat, args.quick)))
        return
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    rows = []
    for name in args.only or WORKLOADS:
        command = [sys.executable, __file__, "--one", name, "--repeat", str(args.repeat)]
        proc = subprocess.run(command + (["--quick"] if args.quick else []), env=env,
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(f"{name}: failed\n{proc.stderr}", file=sys.stderr)
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{WORKLOADS[name][0]:<50} N={row['n']:>9,}  {row['seconds']:8.3f} s  "
              f"peak +{row['peak_extra_bytes'] / 2**20:8.1f} MiB  "
              f"result {row['result_bytes'] / 2**20:7.1f} MiB", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "python": platform.python_version()},
            "results": rows}, indent=2))


if __name__ == "__main__":
    main()
