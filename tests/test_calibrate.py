"""``convcli calibrate``, the fit of the cost model's rates, and the per-device rate cache.

Timings on this shared machine are noise: nothing here depends on a measured value. The fit is
checked on synthetic timings (from a hand-made count matrix, and from ``estimate_costs`` itself
with known rates); real runs are checked for shapes, positivity and what gets cached and used.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from conftest import SAMPLES, run_cli

from convcli.core.spec import ConvSpec
from convcli.plan import calibrate, costmodel, ratecache
from convcli.plan.costmodel import estimate_costs
from convcli.plan.ratecache import RATE_KEYS, CalibrationWarning
from convcli.plan.selection import costs_for

#: known "true" rates: each built-in rate scaled by its own factor, so none is a prior value
SCALE = {"gemm_flop": 2.0, "conv1d_mac": 0.5, "fft_flop": 3.0, "byte": 0.7, "call": 1.5}


def true_rates(device: str, engine: str) -> dict[str, float]:
    builtin = costmodel.builtin_rates(device, engine)
    return {key: builtin[key] * SCALE[key] for key in RATE_KEYS}


def model_seconds(problem: calibrate.Problem, rates: dict[str, float], device: str) -> float:
    """What the cost model says ``problem`` takes at ``rates`` on ``device`` (priced directly,
    not from the unit counts the fit uses); a copy moves 8 bytes per float32 sample."""
    if problem.algorithm == "memory":
        return 8 * problem.batch * problem.channels * problem.length * rates["byte"]
    groups = problem.channels if problem.out_channels is None else 1
    costs = estimate_costs(problem.length, problem.k, ConvSpec(groups=groups),
                           batch=problem.batch, channels=problem.channels,
                           out_channels=problem.out_channels, device=device,
                           engine=problem.engine, rates=rates, at_nfft=problem.nfft or None)
    return costs[{"gemm": "gemm", "conv1d": "conv1d", "overlap-save": "fft"}[problem.algorithm]][0]


# --- the fit, a pure function ----------------------------------------------------------------
def test_fit_recovers_rates_from_exact_timings_of_a_hand_made_design():
    units = [  # four problems, each dominated by a different rate; the call rate in two
        {"gemm_flop": 4e9, "conv1d_mac": 0, "fft_flop": 0, "byte": 1e8, "call": 100},
        {"gemm_flop": 0, "conv1d_mac": 2e8, "fft_flop": 0, "byte": 5e7, "call": 0},
        {"gemm_flop": 0, "conv1d_mac": 0, "fft_flop": 3e9, "byte": 4e8, "call": 10},
        {"gemm_flop": 0, "conv1d_mac": 0, "fft_flop": 0, "byte": 8e8, "call": 0},
        {"gemm_flop": 1e8, "conv1d_mac": 0, "fft_flop": 0, "byte": 1e6, "call": 1000},
    ]
    truth = {"gemm_flop": 1 / 40e9, "conv1d_mac": 1 / 2e9, "fft_flop": 1 / 5e9,
             "byte": 1 / 10e9, "call": 20e-6}
    seconds = [sum(u[k] * truth[k] for k in RATE_KEYS) for u in units]  # worked by hand: linear
    prior = dict.fromkeys(RATE_KEYS, 1e-9)  # far from the truth on purpose (4 decades off)
    exact = calibrate.fit_rates(units, seconds, prior, prior_weight=0.0, bound=None)
    pulled = calibrate.fit_rates(units, seconds, prior, bound=None)  # the weak pull to the prior
    for key in RATE_KEYS:
        assert exact[key] == pytest.approx(truth[key], rel=1e-6), key
        assert pulled[key] == pytest.approx(truth[key], rel=1e-2), key


@pytest.mark.parametrize("kind,quick", [("cpu", False), ("cpu", True), ("cuda", False)])
def test_fit_recovers_known_rates_from_the_cost_models_own_timings(kind, quick):
    """Synthetic timings made by ``estimate_costs`` at known rates, for the problems calibrate
    times: the fit gets the rates back (every rate the plan exercises enough to tell)."""
    problems = calibrate.plan(kind, quick)
    for engine in dict.fromkeys(p.engine for p in problems):
        mine = [p for p in problems if p.engine == engine]
        truth = true_rates(kind, engine)
        seconds = [model_seconds(p, truth, kind) for p in mine]
        prior = costmodel.builtin_rates(kind, engine)
        units = [calibrate.counts(p, kind) for p in mine]
        fitted = calibrate.fit_rates(units, seconds, prior)
        for key in RATE_KEYS:
            used = [u[key] * truth[key] / s for u, s in zip(units, seconds)]
            if not any(used):  # a rate no problem exercises keeps the built-in value exactly
                assert fitted[key] == prior[key], (engine, key)
            elif max(used) > 0.15:  # a rate that makes up a good share of some problem
                assert fitted[key] == pytest.approx(truth[key], rel=0.03), (kind, engine, key)
            else:  # barely exercised: positive and finite, and no further from the truth
                assert 0 < fitted[key] < math.inf
                assert abs(math.log(fitted[key] / truth[key])) <= abs(
                    math.log(prior[key] / truth[key])) + 1e-9, (kind, engine, key)


def test_fit_with_noisy_timings_stays_close():
    rng = np.random.default_rng(5)
    problems = [p for p in calibrate.plan("cpu") if p.engine == "numpy"]
    truth = true_rates("cpu", "numpy")
    seconds = [model_seconds(p, truth, "cpu") * math.exp(rng.normal(0, 0.05)) for p in problems]
    fitted = calibrate.fit_rates([calibrate.counts(p) for p in problems], seconds,
                                 costmodel.builtin_rates("cpu", "numpy"))
    for key in ("gemm_flop", "fft_flop", "byte", "call"):
        assert fitted[key] == pytest.approx(truth[key], rel=0.3), key


def test_fit_keeps_rates_within_the_bound_of_the_built_in_ones():
    """Timings 10^4 times what the prior predicts (a disturbed run): each rate stops at 100x."""
    units = [{"gemm_flop": 1e9, "conv1d_mac": 0, "fft_flop": 0, "byte": 0, "call": 0},
             {"gemm_flop": 0, "conv1d_mac": 0, "fft_flop": 0, "byte": 0, "call": 100}]
    prior = dict.fromkeys(RATE_KEYS, 1e-9)
    fitted = calibrate.fit_rates(units, [1e4 * 1e9 * 1e-9, 1e-4 * 100 * 1e-9], prior)
    assert fitted["gemm_flop"] == pytest.approx(calibrate.MAX_FACTOR * 1e-9)
    assert fitted["call"] == pytest.approx(1e-9 / calibrate.MAX_FACTOR)
    unbounded = calibrate.fit_rates(units, [10.0, 1e-11], prior, bound=None)
    assert unbounded["gemm_flop"] == pytest.approx(1e-8, rel=1e-3)
    assert unbounded["call"] == pytest.approx(1e-13, rel=1e-3)


def test_fit_refuses_timings_that_are_not_positive():
    units = [dict.fromkeys(RATE_KEYS, 1.0)]
    with pytest.raises(ValueError, match="positive"):
        calibrate.fit_rates(units, [0.0], dict.fromkeys(RATE_KEYS, 1.0))
    with pytest.raises(ValueError):
        calibrate.fit_rates(units, [1.0, 2.0], dict.fromkeys(RATE_KEYS, 1.0))


def test_counts_are_the_cost_models_own():
    """counts · rates is what estimate_costs charges, for every problem of every plan."""
    for kind in ("cpu", "cuda"):
        for problem in calibrate.plan(kind):
            rates = true_rates(kind, problem.engine)
            predicted = calibrate.predict(calibrate.counts(problem, kind), rates)
            assert predicted == pytest.approx(model_seconds(problem, rates, kind), rel=1e-9), problem


def test_problems_are_sized_by_warm_runs(monkeypatch):
    """A first run of each size pays once for plans, pages and (first in a process) threads:
    sized by it, the first problem stayed tiny and the fit took its per-call overhead for the
    machine's speed. A runner whose first run costs 10 ms extra still grows to the target."""
    def runner(problem, device):
        runs = []

        def run():
            runs.append(1)
            return problem.elements * 1e-9 + (0.01 if len(runs) == 1 else 0.0)  # "seconds"
        return run

    monkeypatch.setattr(calibrate, "_seconds", lambda fn: fn())
    start = calibrate.Problem("numpy", "gemm", 1 << 10, 31)
    m = calibrate.measure(start, "cpu", runner, target=0.01, repeat=3)
    assert m.problem.elements * 1e-9 >= 0.005, m.problem  # grown until a warm run is target/2
    assert m.seconds == pytest.approx(m.problem.elements * 1e-9) and len(m.runs) == 3


# --- the cache: where it is, when it applies ---------------------------------------------------
def test_suite_prices_with_the_built_in_rates():
    """conftest sets CONVCLI_CALIBRATION=off: no developer's cache leaks into the results."""
    assert ratecache.rates_source("cpu", "numpy") == "built-in"
    assert ratecache.cost_rates("cpu", "numpy") is costmodel.NUMPY_COST
    assert ratecache.cost_rates("cpu", "torch") is costmodel.CPU_COST


def a_calibration(tmp_path, **changes) -> dict:
    """A valid cache file's content for this CPU, with ``changes`` made to it."""
    rates = {key: value * 3 for key, value in costmodel.CPU_COST.items()}
    data = {"format": ratecache.FORMAT, "created": "2026-01-02T03:04:05+00:00",
            "device": ratecache.device_key("cpu"), "model": ratecache.model_fingerprint("cpu"),
            "engines": {"numpy": {"rates": dict(rates)}, "torch": {"rates": dict(rates)}}}
    data.update(changes)
    return data


def write(path, data) -> None:
    path.write_text(data if isinstance(data, str) else json.dumps(data))


def assert_priced_with(fitted: dict, engine: str) -> None:
    """``cost_rates`` gives the file's fitted rates, and of the built-in table only its float64
    factors (calibrate times float32)."""
    rates = ratecache.cost_rates("cpu", engine)
    assert {key: rates[key] for key in RATE_KEYS} == fitted
    assert {key: rates[key] for key in set(rates) - set(RATE_KEYS)} == {
        key: value for key, value in costmodel.builtin_rates("cpu", engine).items()
        if key.endswith("_float64")}


def test_a_file_named_by_the_env_var_prices_auto(tmp_path, monkeypatch):
    path = tmp_path / "rates.json"
    data = a_calibration(tmp_path)
    write(path, data)
    monkeypatch.setenv("CONVCLI_CALIBRATION", str(path))
    assert_priced_with(data["engines"]["numpy"]["rates"], "numpy")
    assert ratecache.rates_source("cpu", "numpy") == f"calibrated 2026-01-02 ({path})"
    # the model prices with them: 3x every rate (of CPU_COST, as written) is 3x every estimate
    spec = ConvSpec(groups=2)
    calibrated = costs_for(100_000, 31, spec, channels=2, engine="numpy")  # what auto pays
    builtin = estimate_costs(100_000, 31, spec, channels=2, engine="numpy",
                             rates={key: costmodel.CPU_COST[key] for key in RATE_KEYS})
    for name in calibrated:
        assert calibrated[name][0] == pytest.approx(3 * builtin[name][0]), name
    monkeypatch.setenv("CONVCLI_CALIBRATION", "off")
    assert ratecache.cost_rates("cpu", "numpy") is costmodel.NUMPY_COST


def test_a_file_without_an_engine_leaves_it_built_in(tmp_path, monkeypatch):
    path = tmp_path / "rates.json"
    data = a_calibration(tmp_path)
    del data["engines"]["torch"]
    write(path, data)
    monkeypatch.setenv("CONVCLI_CALIBRATION", str(path))
    assert_priced_with(data["engines"]["numpy"]["rates"], "numpy")
    assert ratecache.cost_rates("cpu", "torch") is costmodel.CPU_COST
    assert ratecache.rates_source("cpu", "torch") == "built-in"


def test_a_cpu_file_does_not_price_cuda(tmp_path, monkeypatch):
    path = tmp_path / "rates.json"
    write(path, a_calibration(tmp_path))
    monkeypatch.setenv("CONVCLI_CALIBRATION", str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not a warning either: the file is simply not for CUDA
        assert ratecache.cost_rates("cuda", "torch") is costmodel.CUDA_COST


@pytest.mark.parametrize("case,message", [
    ("not json", "corrupt"),
    ("list", "not a calibration file"),
    ("format", "format"),
    ("device", "measured on"),
    ("model", "cost model changed"),
    ("negative", "not a positive number"),
    ("missing", "rates are not"),
])
def test_a_bad_cache_file_is_ignored_with_one_warning(tmp_path, monkeypatch, case, message):
    path = tmp_path / f"{case.replace(' ', '_')}.json"
    data = a_calibration(tmp_path)
    if case == "not json":
        data = '{"format": 1, "engines": {'
    elif case == "list":
        data = "[1, 2, 3]"
    elif case == "format":
        data["format"] = 999
    elif case == "device":
        data["device"] = {**data["device"], "cpu": "Some Other CPU", "cores": 64}
    elif case == "model":
        data["model"] = "0123456789abcdef"
    elif case == "negative":
        data["engines"]["numpy"]["rates"]["byte"] = -1.0
    elif case == "missing":
        del data["engines"]["torch"]["rates"]["call"]
    write(path, data)
    monkeypatch.setenv("CONVCLI_CALIBRATION", str(path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        numpy_rates = ratecache.cost_rates("cpu", "numpy")
        torch_rates = ratecache.cost_rates("cpu", "torch")
        source = ratecache.rates_source("cpu", "numpy")
    assert numpy_rates is costmodel.NUMPY_COST and torch_rates is costmodel.CPU_COST
    assert source == "built-in"
    assert len(caught) == 1, [str(w.message) for w in caught]  # once, not on every lookup
    assert issubclass(caught[0].category, CalibrationWarning)
    assert message in str(caught[0].message) and str(path) in str(caught[0].message)


def test_a_corrupt_cache_is_one_warning_line_for_filter_not_a_traceback(tmp_path):
    """A real process, as a user meets it: the default cache directory holds a broken file."""
    cache = tmp_path / "xdg" / "convcli"
    cache.mkdir(parents=True)
    (cache / ratecache.file_name(ratecache.device_key("cpu"))).write_text("{ not json")
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg"), "CONVCLI_CALIBRATION": ""}
    out = tmp_path / "out.wav"
    proc = run_cli("filter", SAMPLES / "chord.wav", "--device", "cpu", "--json", "-o", out,
                   env=env)
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: calibration file "), err
    assert "convcli calibrate" in lines[0]
    assert json.loads(proc.stdout)["rates"] == "built-in"
    quiet = run_cli("filter", SAMPLES / "chord.wav", "--device", "cpu", "-q", "-o", out, env=env)
    assert quiet.returncode == 0 and quiet.stderr == b""


# --- the command -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One ``convcli calibrate --quick --json`` that saves into a temporary XDG_CACHE_HOME."""
    xdg = tmp_path_factory.mktemp("xdg")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(xdg))
        mp.delenv("CONVCLI_CALIBRATION")
        from conftest import run_inprocess

        proc = run_inprocess("calibrate", "--quick", "--json", "--device", "cpu")
    return proc, xdg


def check_rates(summary: dict, engines: tuple[str, ...]) -> None:
    assert set(summary["rates"]) == set(engines)
    for engine in engines:
        rates = summary["rates"][engine]
        assert set(rates) == set(RATE_KEYS)
        assert all(math.isfinite(v) and v > 0 for v in rates.values()), rates


def test_calibrate_quick_no_save_json(cli_fast, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("CONVCLI_CALIBRATION")
    proc = cli_fast("calibrate", "--quick", "--no-save", "--json", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr.decode()
    summary = json.loads(proc.stdout)
    assert summary["command"] == "calibrate" and summary["saved"] is None
    check_rates(summary, ("numpy", "torch"))
    plan = calibrate.plan("cpu", quick=True)
    rows = summary["measurements"]
    assert [(r["engine"], r["algorithm"]) for r in rows] == [(p.engine, p.algorithm) for p in plan]
    for row in rows:
        assert row["measured_s"] > 0 and row["predicted_s"] > 0
        assert row["error"] == pytest.approx(row["predicted_s"] / row["measured_s"] - 1)
        assert row["measured_s"] == min(row["runs_s"])
    assert list(tmp_path.iterdir()) == []  # --no-save wrote nothing


def test_calibrate_saves_per_device_and_auto_uses_it(quick_run, cli_fast, tmp_path,
                                                      monkeypatch):
    proc, xdg = quick_run
    assert proc.returncode == 0, proc.stderr.decode()
    summary = json.loads(proc.stdout)
    check_rates(summary, ("numpy", "torch"))
    saved = summary["saved"]
    assert saved is not None
    files = list((xdg / "convcli").iterdir())
    assert [str(f) for f in files] == [saved]
    assert files[0].name.startswith("calibration-cpu-")
    stored = json.loads(files[0].read_text())
    assert stored["device"]["cores"] >= 1 and stored["device"]["kind"] == "cpu"
    assert stored["device"]["numpy"] == np.__version__
    assert stored["device"]["torch"].split("+")[0] == torch.__version__.split("+")[0]

    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    monkeypatch.delenv("CONVCLI_CALIBRATION")
    for engine in ("numpy", "torch"):
        rates = ratecache.cost_rates("cpu", engine)
        assert {key: rates[key] for key in RATE_KEYS} == pytest.approx(summary["rates"][engine])
        assert ratecache.rates_source("cpu", engine).startswith("calibrated ")
    out = tmp_path / "out.wav"
    run = cli_fast("filter", SAMPLES / "chord.wav", "--size", "301", "--device", "cpu",
                   "--json", "-o", out)
    assert run.returncode == 0, run.stderr.decode()
    report = json.loads(run.stdout)
    assert report["rates"] == f"calibrated {summary['created'][:10]} ({saved})"
    # the estimates it reports are the model at the fitted rates (2 channels, 88 200 frames)
    spec = ConvSpec(groups=2)
    expected = estimate_costs(88_200, 301, spec, channels=2, engine="numpy",
                              rates=summary["rates"]["numpy"])
    assert report["estimates_s"]["gemm"] == pytest.approx(expected["gemm"][0], abs=1e-6)

    monkeypatch.setenv("CONVCLI_CALIBRATION", "off")
    run = cli_fast("filter", SAMPLES / "chord.wav", "--device", "cpu", "--json", "-o", out)
    assert json.loads(run.stdout)["rates"] == "built-in"


def test_calibrate_human_output_is_a_table(quick_run, cli_fast, tmp_path, monkeypatch):
    """Without --json: the measurements and rates as tables on stdout, the rest on stderr."""
    monkeypatch.setenv("CONVCLI_CALIBRATION", str(tmp_path / "rates.json"))
    monkeypatch.setattr(calibrate, "plan", lambda kind, quick=False: [
        calibrate.Problem("numpy", "gemm", 4096, 31), calibrate.Problem("numpy", "memory", 4096)])
    proc = cli_fast("calibrate", "--quick", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr.decode()
    text = proc.stdout.decode()
    for word in ("measured", "built-in", "fitted", "gemm_flop", "GFLOP/s", "copy"):
        assert word in text, word
    assert f"wrote {tmp_path / 'rates.json'}" in proc.stderr.decode()
    assert json.loads((tmp_path / "rates.json").read_text())["engines"]["numpy"]["rates"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_calibrate_cuda_without_cuda_is_a_clear_error(cli_fast):
    proc = cli_fast("calibrate", "--device", "cuda", "--no-save")
    err = proc.stderr.decode()
    assert proc.returncode == 1
    assert err.startswith("error: --device cuda") and "hint:" in err and err.count("\n") == 1


def test_calibrate_unwritable_cache_is_a_clear_error(cli_fast, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("CONVCLI_CALIBRATION", str(blocker / "sub" / "rates.json"))
    monkeypatch.setattr(calibrate, "plan", lambda kind, quick=False: [
        calibrate.Problem("numpy", "memory", 4096)])
    proc = cli_fast("calibrate", "--quick", "--device", "cpu")
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert err.startswith("error: cannot write the calibration") and "--no-save" in err


def test_nonnegative_fit_matches_scipy():
    from scipy.optimize import nnls

    rng = np.random.default_rng(11)
    for case in range(40):
        columns = int(rng.integers(1, 6))
        a = rng.standard_normal((int(rng.integers(columns, 12)), columns))
        b = rng.standard_normal(a.shape[0])
        expected, _ = nnls(a, b)
        got = calibrate.nonnegative_fit(a, b)
        assert np.linalg.norm(a @ got - b) == pytest.approx(np.linalg.norm(a @ expected - b),
                                                           rel=1e-9, abs=1e-12), case
        np.testing.assert_allclose(got, expected, atol=1e-8, err_msg=f"case {case}")
