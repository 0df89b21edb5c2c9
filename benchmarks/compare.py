"""This checkout against another (an older commit, a branch) on the same benchmark, in one run.

    git worktree add ../convcli-base v0.1.0      # or any commit
    python benchmarks/compare.py --base ../convcli-base
    python benchmarks/compare.py --base ../convcli-base --only W4 --rounds 5 --no-process

Each round runs ``benchmarks/bench.py`` of both checkouts, one workload at a time and in turns
(base, this, this, base, ...), so both see the same load on a noisy machine; the table shows,
per workload and kernel length, the median over the rounds of each one's ``convcli auto``
(the numpy engine on a CPU) and of the best peer, and the whole-process rows against SoX.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = ("W1", "W2", "W3", "W4", "W5")


def bench(tree: Path, args: list[str]) -> dict:
    """One run of ``tree``'s bench.py with ``args``; its JSON."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([sys.executable, str(tree / "benchmarks" / "bench.py"), *args,
                        "--json", out.name], check=True, stdout=subprocess.DEVNULL)
        return json.loads(Path(out.name).read_text())


def engine_rows(result: dict) -> dict:
    """(workload, k) -> (convcli auto median, best peer median, peer name)."""
    rows = {}
    for row in result.get("engine", []):
        timings = row["results"]
        auto = timings.get("convcli auto", {}).get("median")
        peers = [(r["median"], name) for name, r in timings.items()
                 if "median" in r and not name.startswith("convcli")]
        best = min(peers) if peers else (None, "")
        rows[(row["workload"], row["k"])] = (auto, *best)
    return rows


def process_rows(result: dict) -> dict:
    return {row["what"]: row for row in result.get("process", []) if "convcli_s" in row}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, type=Path, help="the other checkout")
    parser.add_argument("--rounds", type=int, default=2, help="turns of both checkouts")
    parser.add_argument("--only", nargs="*", default=list(WORKLOADS))
    parser.add_argument("--repeat", type=int, default=5, help="bench.py's --repeat")
    parser.add_argument("--no-process", action="store_true", help="skip the whole-process rows")
    parser.add_argument("--hour", action="store_true", help="the 1-hour WAV in the process rows")
    args = parser.parse_args()
    trees = {"base": args.base.resolve(), "this": ROOT}
    engine: dict = {name: {} for name in trees}
    process: dict = {name: {} for name in trees}
    for round_ in range(args.rounds):
        order = list(trees) if round_ % 2 == 0 else list(trees)[::-1]
        for workload in args.only:
            for name in order:
                result = bench(trees[name], ["--only", workload, "--repeat", str(args.repeat)])
                for key, row in engine_rows(result).items():
                    engine[name].setdefault(key, []).append(row)
        if not args.no_process:
            for name in order:
                extra = ["--hour"] if args.hour else []
                result = bench(trees[name], ["--process", "--no-engine", "--process-repeat", "1",
                                             *extra])
                for key, row in process_rows(result).items():
                    process[name].setdefault(key, []).append(row)
        print(f"round {round_ + 1} of {args.rounds} done", file=sys.stderr)

    def median(rows, index):
        values = [r[index] for r in rows if r[index] is not None]
        return statistics.median(values) if values else float("nan")

    print(f"base = {trees['base']}, this = {trees['this']}; medians over {args.rounds} rounds\n")
    print("| workload | k | base auto | this auto | this / base | best peer | this vs peer |")
    print("|---|---|---|---|---|---|---|")
    for key in sorted(engine["this"]):
        this, base = engine["this"][key], engine["base"].get(key, [])
        t, b, peer = median(this, 0), median(base, 0), median(this, 1)
        print(f"| {key[0]} | {key[1]} | {b * 1e3:.1f} ms | {t * 1e3:.1f} ms | {t / b:.2f} | "
              f"{this[0][2]} {peer * 1e3:.1f} ms | {peer / t:.2f}× |")
    if process["this"]:
        print("\n| whole process | base | this | this / base | RSS base / this | SoX |")
        print("|---|---|---|---|---|---|")
        for what, rows in process["this"].items():
            base_rows = process["base"].get(what, [])
            t = statistics.median(r["convcli_s"] for r in rows)
            b = statistics.median(r["convcli_s"] for r in base_rows) if base_rows else float("nan")
            rss_b = max((r["convcli_rss_mb"] for r in base_rows), default=float("nan"))
            rss_t = max(r["convcli_rss_mb"] for r in rows)
            sox = statistics.median(r.get("sox_s", float("nan")) for r in rows)
            print(f"| {what} | {b:.2f} s | {t:.2f} s | {t / b:.2f} | {rss_b:.0f} / {rss_t:.0f} MB | "
                  f"{sox:.2f} s |")


if __name__ == "__main__":
    main()
