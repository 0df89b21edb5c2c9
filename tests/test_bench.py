"""The benchmark script runs end to end (its numbers are not asserted: timing is never tested)."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT, cli_env


def test_quick_benchmark_runs_and_every_row_is_accurate(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--quick", "--only", "W4", "W5",
         "--repeat", "1", "--json", str(out)],
        capture_output=True, env=cli_env(), timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    rows = json.loads(out.read_text())["engine"]
    assert {row["workload"] for row in rows} == {"W4", "W5"}
    for row in rows:
        for name, result in row["results"].items():
            if "median" in result:  # every row computed the same convolution (float32 rounding)
                assert result["max_abs_err"] < 1e-5, (row["workload"], row["k"], name)
