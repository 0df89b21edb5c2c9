"""window, info and explain, checked against scipy, numpy and torch; command-line manners.

The CLI calls here are the cheap ones (window/info/explain/--help import no torch); the
semantics of explain are checked on the core function over a grid of options.
"""

from __future__ import annotations

import io
import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import SAMPLES, cli_env
from scipy import signal as sps

from convcli.core.explain import explain
from convcli.core.spec import ConvSpec
from convcli.errors import InputError
from convcli.render.progress import Ticker, progress


def _json(proc: subprocess.CompletedProcess, stream: str = "stdout") -> dict:
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(getattr(proc, stream))


# --- window ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, param, size, periodic, norm", [
    ("kaiser", 6.0, 21, False, "sum"),
    ("tukey", 0.3, 8, True, "peak"),
])
def test_window_prints_scipy_coefficients_round_trip(cli_fast, tmp_path, name, param, size,
                                                     periodic, norm):
    spec = name if param is None else f"{name}:{param:g}"
    args = ["window", spec, "--size", str(size), "--normalize", norm]
    if periodic:
        args.append("--periodic")
    text = cli_fast(*args, check=True)
    npy = tmp_path / "w.npy"
    cli_fast(*args, "-o", npy, check=True)
    printed = np.array([float(line) for line in text.stdout.decode().splitlines()])
    saved = np.load(npy)
    assert saved.dtype == np.float64
    np.testing.assert_array_equal(printed, saved)  # text is repr: no digit lost
    scipy_name = {"rect": "boxcar"}.get(name, name)
    ref = sps.get_window(scipy_name if param is None else (scipy_name, param), size,
                         fftbins=periodic)
    ref = {"sum": ref / ref.sum(), "peak": ref / np.abs(ref).max(), "none": ref}[norm]
    np.testing.assert_allclose(printed, ref, rtol=1e-14, atol=1e-16)
    assert text.stderr == b""  # nothing but data, data on stdout


def test_window_json_goes_to_stderr_when_stdout_is_data(cli_fast):
    proc = cli_fast("window", "hann", "--size", "5", "--json")
    assert [float(v) for v in proc.stdout.split()] == [0.0, 0.25, 0.5, 0.25, 0.0]
    summary = json.loads(proc.stderr)
    assert summary["coefficients"] == [0.0, 0.25, 0.5, 0.25, 0.0]
    assert summary["sum"] == 1.0


# --- info --------------------------------------------------------------------------------------
def test_info_figures_match_numpy(cli_fast):
    files = [str(SAMPLES / f) for f in ("chord.wav", "speech.wav", "batch.npy", "tc.npy")]
    summary = _json(cli_fast("info", *files, "--json"))
    by_name = {Path(d["file"]).name: d for d in summary["files"]}
    files = [Path(f).name for f in files]
    for name in files:
        d = by_name[name]
        if name.endswith(".wav"):
            x, rate = sf.read(SAMPLES / name, dtype="float64", always_2d=True)
            x = x.T  # [C, T]
            assert d["rate"] == rate and d["subtype"] == "PCM_16" and d["format"] == "wav"
            assert d["duration"] == pytest.approx(x.shape[1] / rate)
        else:
            raw = np.load(SAMPLES / name)
            assert d["dtype"] == str(raw.dtype) and d["rate"] is None
            x = raw.T if name == "tc.npy" else raw.transpose(1, 0, 2).reshape(raw.shape[1], -1)
            if name == "tc.npy":
                assert d["layout"] == "tc" and d["layout_guessed"]
        x = x.astype(np.float64)
        assert d["channels"] == x.shape[0]
        assert d["peak"] == pytest.approx(np.abs(x).max(), rel=1e-12)
        assert d["rms"] == pytest.approx(np.sqrt(np.mean(x**2)), rel=1e-9)
        assert d["peak_dbfs"] == pytest.approx(20 * np.log10(np.abs(x).max()), rel=1e-9)
        for c, ch in enumerate(d["channel"]):
            assert ch["peak"] == pytest.approx(np.abs(x[c]).max(), rel=1e-12)
            assert ch["rms"] == pytest.approx(np.sqrt(np.mean(x[c] ** 2)), rel=1e-9)
            assert ch["dc"] == pytest.approx(np.mean(x[c]), rel=1e-9, abs=1e-15)
    assert by_name["batch.npy"]["shape"] == [4, 2, 8000]
    assert by_name["speech.wav"]["frames"] == 78000


def test_info_human_text_on_stdout_and_a_bad_file_is_exit_1(cli_fast):
    proc = cli_fast("info", SAMPLES / "chord.wav", "missing.wav")
    assert proc.returncode == 1
    assert proc.stdout.startswith(f"{SAMPLES / 'chord.wav'}: WAV PCM_16, 44,100 Hz, 2 ch".encode())
    err = proc.stderr.decode()
    assert "skipped missing.wav" in err and err.strip().splitlines()[-1].startswith("error: ")


def test_info_of_a_zero_batch_npy(cli_fast, tmp_path):
    """(0, C, T) is a batch of no signals: described, with silent levels, not refused."""
    np.save(tmp_path / "z.npy", np.zeros((0, 2, 5)))
    d = _json(cli_fast("info", tmp_path / "z.npy", "--json", check=True))["files"][0]
    assert d["shape"] == [0, 2, 5] and d["peak"] == 0.0 and d["channel"][1]["rms"] == 0.0
    assert b"0 \xc3\x97 2 ch \xc3\x97 5 frames" in cli_fast("info", tmp_path / "z.npy").stdout


# --- explain -------------------------------------------------------------------------------------
def _torch_reference(x: np.ndarray, w: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """y from torch: F.pad with the spec's pads (numpy.pad's meaning), then F.conv1d."""
    import torch
    import torch.nn.functional as F

    left, right = spec.pads(len(w))
    mode = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}
    xp = np.pad(x, (left, right), mode=mode[spec.padding])
    weight = w if spec.correlate else w[::-1]
    y = F.conv1d(torch.from_numpy(xp.copy())[None, None], torch.from_numpy(weight.copy())[None, None],
                 stride=spec.stride, dilation=spec.dilation)
    return y[0, 0].numpy()


def _eval_formula(index_expr: str, x: np.ndarray, w: np.ndarray, spec: ConvSpec,
                  length: int) -> np.ndarray:
    """Evaluate explain's printed index expression literally (x outside 0…N−1 = the pad)."""
    py = index_expr.replace("·", "*").replace("−", "-")
    n = len(x)

    def value(m: int) -> float:
        if 0 <= m < n:
            return x[m]
        if spec.padding == "zeros":
            return 0.0
        if spec.padding == "replicate":
            return x[min(max(m, 0), n - 1)]
        if spec.padding == "circular":
            return x[m % n]
        return x[-m] if m < 0 else x[2 * (n - 1) - m]

    return np.array([sum(w[j] * value(eval(py, {"i": i, "j": j})) for j in range(len(w)))
                     for i in range(length)])


GRID = list(itertools.product(
    ["same", "valid", "full", "causal"], [False, True], [1, 3], [1, 2],
    ["zeros", "reflect", "replicate", "circular"], [(9, 3), (6, 4)]))


def test_explain_lengths_formula_and_example_match_torch():
    """Over modes × correlate × stride × dilation × padding × (N, k): explain's length and pads
    equal torch's, its printed formula evaluated literally gives torch's y, and so does its
    worked example. One test, not 256: each torch conv config costs a few ms to set up."""
    refused = 0
    for mode, correlate, stride, dilation, padding, (n, k) in GRID:
        spec = ConvSpec(mode=mode, correlate=correlate, stride=stride, dilation=dilation,
                        padding=padding)
        case = f"{spec} n={n} k={k}"
        rng = np.random.default_rng(n * 100 + k)
        x, w = rng.normal(size=n), rng.normal(size=k)
        span, longest = dilation * (k - 1) + 1, max(spec.pads(k))
        impossible = ((mode == "valid" and span > n) or (padding == "reflect" and longest > n - 1)
                      or (padding == "circular" and longest > n))
        try:
            e = explain(spec, n, k, w)
        except InputError:
            assert impossible, case
            refused += 1
            continue
        assert not impossible, case
        y = _torch_reference(x, w, spec)
        assert e["output_length"] == len(y), case
        assert e["pads"] == list(spec.pads(k)), case
        np.testing.assert_allclose(_eval_formula(e["index_expr"], x, w, spec, len(y)), y,
                                   atol=1e-12, err_msg=case)
        ex = e["example"]
        assert ex["same_as_asked"] and ex["w"] == list(w), case  # small: the real sizes
        np.testing.assert_allclose(ex["y"], _torch_reference(np.array(ex["x"]), w, spec),
                                   atol=1e-12, err_msg=case)
        lo, hi = e["interior_rows"]
        left = spec.pads(k)[0]
        for i in range(len(y)):  # the interior rows are exactly those reading real samples only
            inside = all(0 <= spec.tap(i, j, k) - left < n for j in range(k))
            assert inside == (lo <= i <= hi), (case, i)
    assert 0 < refused < len(GRID) // 4


def test_explain_jacobian_diagonals_match_the_autograd_jacobian():
    import torch

    spec = ConvSpec(mode="same", dilation=2)
    n, k = 12, 3
    w = np.array([1.0, 2.0, 3.0])
    e = explain(spec, n, k, w)
    left, right = spec.pads(k)
    wt = torch.tensor(w[::-1].copy())[None, None]

    def f(x):
        return torch.nn.functional.conv1d(torch.nn.functional.pad(x[None, None], (left, right)),
                                          wt, dilation=2)[0, 0]

    jac = torch.autograd.functional.jacobian(f, torch.zeros(n, dtype=torch.float64)).numpy()
    for diag in e["jacobian_input"]["diagonals"]:
        j = int(diag["value"][2:-1])
        band = np.diagonal(jac, offset=diag["offset"])
        interior = band[max(0, -diag["offset"]) + 2 : -2]  # away from the cut edges
        assert np.all(interior == w[j]), diag
    assert e["jacobian_input"]["structure"].startswith("banded Toeplitz (12 × 12)")


def test_explain_cli_worked_example_and_json(cli_fast):
    text = cli_fast("explain", "--length", "8", "--size", "3", check=True).stdout.decode()
    assert "y[i] = Σ_{j=0}^{2} w[j]·x[i + 1 − j]" in text
    assert "y[0] = w[0]·x[1] + w[1]·x[0] + w[2]·0 (pad x[-1])" in text
    assert "= 1·2 + 2·1 + 3·0 = 4" in text
    assert "banded Toeplitz" in text
    np.testing.assert_array_equal(  # the example's y is numpy.convolve's
        [float(v) for v in re.search(r"y = \[(.*)\]", text).group(1).split(",")],
        np.convolve(np.arange(1, 9), [1, 2, 3], mode="same"))
    e = _json(cli_fast("explain", "--length", "64", "--size", "3", "--correlate", "--mode", "valid",
                  "--json"))
    assert e["output_length"] == 62 and e["pads"] == [0, 0] and e["operation"] == "correlation"


# --- command-line manners ------------------------------------------------------------------------
def _imports(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "convcli", *args],
                          capture_output=True, env=cli_env(), cwd=SAMPLES, check=False,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    return proc.stderr.decode()


@pytest.mark.parametrize("args", [["--help"], ["info", "chord.wav"],
                                  ["explain", "--length", "8", "--size", "3"],
                                  ["window", "hann", "--size", "4"]])
def test_fast_commands_do_not_import_torch(args):
    modules = {line.split("|")[-1].strip() for line in _imports(*args).splitlines()
               if line.startswith("import time:")}
    assert "torch" not in modules and "convcli.engines.torch_backend" not in modules


def test_exit_codes_and_debug(cli, cli_fast):
    usage = cli_fast("window", "hann", "--size", "0")
    assert usage.returncode == 2 and usage.stderr.decode().startswith("error: ")
    assert len(usage.stderr.decode().strip().splitlines()) == 1
    data = cli_fast("info", "missing.wav")
    assert data.returncode == 1
    err = data.stderr.decode()
    assert err.startswith("error: no such") and "missing.wav (hint: " in err and err.count("\n") == 1
    debug = cli("info", "missing.wav", "--debug")  # a real process: the traceback is Python's
    assert debug.returncode == 1 and "Traceback" in debug.stderr.decode()
    assert "InputError: no such" in debug.stderr.decode()
    # the completion script itself (--show-completion would first detect the calling shell,
    # which depends on the process tree the tests run in)
    script = subprocess.run([sys.executable, "-m", "convcli"], capture_output=True, check=False,
                            env=cli_env() | {"_CONVCLI_COMPLETE": "source_bash"}, timeout=60)
    assert script.returncode == 0 and b"_convcli_completion()" in script.stdout


def test_completion_completes_commands_and_choices():
    env = cli_env() | {"_CONVCLI_COMPLETE": "complete_bash", "COMP_WORDS": "convcli filter x --mode ",
                       "COMP_CWORD": "4"}
    proc = subprocess.run([sys.executable, "-m", "convcli"], env=env, capture_output=True,
                          check=False, timeout=60)
    assert proc.stdout.decode().split() == ["same", "valid", "full", "causal"]


# --- progress ------------------------------------------------------------------------------------
def test_progress_draws_on_a_terminal_only_after_the_delay():
    from rich.console import Console

    shown = io.StringIO()
    console = Console(file=shown, force_terminal=True, width=80)
    with progress(3, "blocks", delay=0, console=console) as tick:
        for _ in range(3):
            tick()
    assert "blocks" in shown.getvalue() and tick.done == 3
    quiet = io.StringIO()
    with progress(3, "blocks", delay=3600, console=Console(file=quiet, force_terminal=True)) as t:
        t(3)
    assert quiet.getvalue() == ""  # short work: no bar at all
    plain = io.StringIO()
    with progress(3, "blocks", delay=0, console=Console(file=plain, force_terminal=False)) as t:
        t(3)
    assert plain.getvalue() == ""  # not a terminal: nothing, no escape codes


def test_ticker_counts_without_a_terminal():
    tick = Ticker(None, "x", enabled=True)  # pytest's stderr is not a terminal
    tick(2, description="y")
    tick(0, total=10)
    assert (tick.done, tick.description, tick.total) == (2, "y", 10)
