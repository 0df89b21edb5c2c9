"""One ``--json`` schema per command: whole and streamed runs of ``filter`` report the same keys
(only ``streamed`` tells them apart), and every command that convolves reports its kernel and
its spec with the pads."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf
from conftest import SAMPLES


def keys(value, prefix=""):
    """Every key path of a JSON value (``files[].shape_in``), the lists' items merged."""
    if isinstance(value, dict):
        return {path for key, item in value.items()
                for path in {f"{prefix}{key}"} | keys(item, f"{prefix}{key}.")}
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return {path for item in value for path in keys(item, f"{prefix[:-1]}[].")}
    return set()


def summary(cli_fast, *args):
    proc = cli_fast(*args, "--json", check=True)
    return json.loads(proc.stdout)


def test_whole_and_streamed_filter_report_the_same_keys(cli_fast, tmp_path):
    wav = tmp_path / "in.wav"
    sf.write(wav, np.random.default_rng(0).uniform(-0.5, 0.5, (20_000, 2)), 16_000)
    for options in ([], ["--mode", "full", "--stride", "2", "--kernel", str(SAMPLES / "smooth5.txt")]):
        whole = summary(cli_fast, "filter", wav, "-o", tmp_path / "w.wav", *options)
        streamed = summary(cli_fast, "filter", wav, "-o", tmp_path / "s.wav", "--block", "3000",
                           *options)
        assert "streamed" not in whole and streamed["streamed"]["blocks"] == 7
        assert keys(whole) == keys(streamed) - {"streamed", "streamed.block", "streamed.blocks"}
        for run in (whole, streamed):
            assert set(run["timings"]) == {"read", "compute", "write"}
            assert all(isinstance(v, float) and v >= 0 for v in run["timings"].values())
            assert set(run["kernel"]) == {"source", "taps", "shape"}
        assert whole["kernel"] == streamed["kernel"] and whole["spec"] == streamed["spec"]
        piped = cli_fast("filter", "-", "-o", "-", "--block", "3000", "--json", *options,
                         input=wav.read_bytes(), check=True)
        from_stdin = json.loads(piped.stderr)  # stdout carries the data
        assert keys(from_stdin) == keys(streamed) and from_stdin["files"][0]["input"] == "stdin"


def test_every_command_that_convolves_reports_kernel_and_pads(cli_fast, tmp_path):
    runs = {
        "filter": summary(cli_fast, "filter", SAMPLES / "batch.npy", "-o", tmp_path / "y.npy",
                          "--size", "5", "--mode", "causal"),
        "jacobian": summary(cli_fast, "jacobian", "--length", "20", "--size", "5", "--mode",
                            "causal"),
        "grad": summary(cli_fast, "grad", SAMPLES / "batch.npy", "--loss", "sum", "--size", "5",
                        "--mode", "causal"),
    }
    for command, run in runs.items():
        assert run["command"] == command
        assert run["kernel"] == {"source": "hann", "taps": 5, "shape": [5]}, command
        assert run["spec"]["pads"] == [4, 0], command
        assert {"mode", "padding", "stride", "dilation", "correlate", "groups"} <= set(run["spec"])
