"""``convcli calibrate``: time the engine's own algorithms here and fit the cost model's rates.

``auto`` prices each method with ``costmodel.estimate_costs``: counts of flops, multiply-adds,
bytes and calls, times seconds-per-unit rates (``gemm_flop``, ``conv1d_mac``, ``fft_flop``,
``byte``, ``call``). The built-in rates were fitted on one 2-core machine. This module measures
the machine at hand:

1. ``plan(kind, quick)``: a few representative problems for the engine ``filter`` runs on that
   device. On the CPU: the numpy engine (``engines.numpy_backend``: depthwise kernels) — banded GEMM
   at a few kernel lengths, overlap-save at a few ``nfft``, many short rows (per-call
   overhead), a memory pass — and the torch engine (``engines.torch_backend``: kernels that mix
   channels) — ``F.conv1d``, overlap-save with a channel-mixing product, its GEMM and a
   memory pass. On CUDA: the torch engine's algorithms on the GPU.
2. ``measure``: each problem runs through the engine's real ``conv1d`` with the method forced
   (the ``runner``: ``engines.timing``, since this layer never imports an engine);
   its size doubles until one warm run takes about ``target`` seconds, then the fastest of
   ``repeat`` warm runs is kept (as ``timeit`` advises: slower runs are other
   processes' interference, which would otherwise be cached as this machine's speed).
3. ``counts``: the cost model's own counts for each problem (``estimate_costs`` with a unit
   rate table; it is linear in the rates), so the fitted model is the one ``auto`` uses.
4. ``fit_rates``: the rates ``r > 0`` that minimise the squared log error of the predictions
   ``counts · r`` against the measured seconds, with a pull (``PRIOR_WEIGHT``: weak, firmer
   for ``--quick``'s few problems) toward the built-in rates so that a rate the problems hardly
   exercise stays where it was.

``run`` does all of it; ``ratecache.save`` keeps the result per device, where
``ratecache.cost_rates`` finds it. No printing here: the CLI renders ``Calibration``.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

import numpy as np

from convcli.about import __version__
from convcli.core.spec import ConvSpec
from convcli.plan.costmodel import builtin_rates, estimate_costs
from convcli.plan.ratecache import FORMAT, RATE_KEYS, device_key, model_fingerprint

#: weight of the pull toward the built-in rates, per rate, in squared log units, for --quick
#: and the default: --quick's few problems leave the per-call and per-byte rates free to trade
#: against the flop rates (a per-call rate 0.03-0.25× the built-in one, from one run to the
#: next), so it leans on the built-in table more; the fit to the default's problems barely moves
PRIOR_WEIGHT = {True: 0.1, False: 1e-4}
#: one input stays under this many samples (float32: 4 bytes each) while a problem grows
MAX_ELEMENTS = {"cpu": 1 << 24, "cuda": 1 << 27}
#: (seconds one timed run aims at, timed runs per problem) for --quick and the default
EFFORT = {True: (0.015, 3), False: (0.08, 5)}
#: a fitted rate stays within this factor of the built-in one: beyond it, the timing was
#: disturbed (another process, a cold machine), not a property of the machine
MAX_FACTOR = 100.0
#: runs of one problem that vary more than this (slowest / fastest) mean a busy machine
NOISY_SPREAD = 1.5
#: the estimate_costs entry that prices each algorithm
PRICED_AS = {"gemm": "gemm", "conv1d": "conv1d", "overlap-save": "fft"}


# --- problems --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """One timed run: ``batch × channels`` float32 signals of ``length`` samples, ``k`` taps.

    ``out_channels`` None is a depthwise kernel (one per channel, as ``--window`` gives);
    otherwise a full ``[out_channels, channels, k]`` kernel that mixes channels (groups 1).
    ``nfft`` is the overlap-save frame size; ``grow`` the size that doubles while one run is
    shorter than the target. ``memory`` is a copy of the input (read once, written once).
    """

    engine: str  # numpy | torch
    algorithm: str  # gemm | conv1d | overlap-save | memory
    length: int
    k: int = 1
    batch: int = 1
    channels: int = 2
    out_channels: int | None = None
    nfft: int = 0
    grow: str = "length"  # length | batch

    @property
    def spec(self) -> ConvSpec:
        return ConvSpec(groups=self.channels if self.out_channels is None else 1)

    @property
    def elements(self) -> int:
        return self.batch * self.channels * self.length

    def label(self) -> str:
        """``k=255 nfft=4096 2×131072``; a kernel that mixes channels shows ``4→4``."""
        shape = (f"{self.batch}×" if self.batch > 1 else "") + f"{self.channels}×{self.length}"
        if self.algorithm == "memory":
            return shape
        mix = "" if self.out_channels is None else f" {self.channels}→{self.out_channels}"
        frames = f" nfft={self.nfft}" if self.nfft else ""
        return f"k={self.k}{frames}{mix} {shape}"

    def grown(self, factor: int) -> Problem:
        if self.grow == "batch":
            return replace(self, batch=self.batch * factor)
        return replace(self, length=self.length * factor)

    def to_dict(self) -> dict:
        return {"engine": self.engine, "algorithm": self.algorithm, "length": self.length,
                "k": self.k, "batch": self.batch, "channels": self.channels,
                "out_channels": self.out_channels, "nfft": self.nfft}


def steady(k: int, nfft: int = 0, floor: int = 1 << 15) -> int:
    """A starting length where the work the model counts dominates: the banded matrices (about
    2K × K per channel) and the FFT frames at the edges are built or run once per call, and
    the model does not count them, so a GEMM reads 2048 samples per tap and an overlap-save
    runs 16 frames or more.

    >>> steady(511), steady(255, 4096), steady(7)
    (1046528, 65536, 32768)
    """
    return max(floor, 16 * nfft if nfft else 2048 * k)


def plan(kind: str, quick: bool = False) -> list[Problem]:
    """The problems ``calibrate`` times on a ``cpu`` or ``cuda`` device (starting sizes)."""
    if kind == "cuda":  # the torch engine on the GPU: everything, at GPU sizes
        gpu = 1 << 20
        problems = [Problem("torch", "gemm", steady(k, floor=gpu), k)
                    for k in ((31, 255) if quick else (15, 63, 255))]
        fft = ((255, 4096), (4095, 65536)) if quick else ((255, 4096), (1023, 16384),
                                                          (4095, 65536), (16383, 262144))
        problems += [Problem("torch", "overlap-save", steady(k, n, gpu), k, nfft=n) for k, n in fft]
        # direct on a GPU is cuDNN's conv1d where it is cheaper than the banded GEMM
        problems += [Problem("torch", "conv1d", gpu, k) for k in ((255,) if quick else (31, 1023))]
        problems += [Problem("torch", "conv1d", 1 << 18, 31, channels=4, out_channels=4)]
        problems += [Problem("torch", "overlap-save", steady(1023, 16384, 1 << 18), 1023,
                             channels=4, out_channels=4, nfft=16384)]
        problems += [Problem("torch", "memory", 1 << 22)]
        return problems
    gemm = (31, 127) if quick else (7, 31, 63, 127)
    fft = ((255, 4096), (2047, 32768)) if quick else ((63, 1024), (255, 4096), (1023, 16384),
                                                      (4095, 65536), (8191, 131072))
    problems = [Problem("numpy", "gemm", steady(k), k) for k in gemm]
    problems += [Problem("numpy", "overlap-save", steady(k, n), k, nfft=n) for k, n in fft]
    # many short rows: the per-call overhead of the python-level loop (batches of clips)
    problems += [Problem("numpy", "gemm", 2048, 31, batch=64, channels=1, grow="batch")]
    problems += [Problem("numpy", "memory", 1 << 18)]
    # the torch engine runs kernels that mix channels (and jacobian/grad) on the CPU
    problems += [Problem("torch", "conv1d", 1 << 12, k, channels=4, out_channels=4)
                 for k in ((15,) if quick else (15, 63))]
    problems += [Problem("torch", "overlap-save", steady(k, n), k, channels=4, out_channels=4,
                         nfft=n)
                 for k, n in (((511, 8192),) if quick else ((255, 4096), (2047, 32768)))]
    problems += [Problem("torch", "gemm", steady(k), k) for k in ((31,) if quick else (31, 255))]
    problems += [Problem("torch", "memory", 1 << 18)]
    return problems


def counts(problem: Problem, device: str = "cpu") -> dict[str, float]:
    """The cost model's units for ``problem`` on ``device``: ``{rate key: count}``; seconds =
    Σ count · rate (a GPU runs longer chunks, so fewer calls)."""
    if problem.algorithm == "memory":  # 4 bytes read and 4 written per float32 sample
        return {key: 8.0 * problem.elements if key == "byte" else 0.0 for key in RATE_KEYS}
    out = {}
    for unit in RATE_KEYS:
        rates = {key: float(key == unit) for key in RATE_KEYS}
        costs = estimate_costs(problem.length, problem.k, problem.spec, batch=problem.batch,
                               channels=problem.channels, out_channels=problem.out_channels,
                               dtype="float32", device=device, engine=problem.engine,
                               rates=rates, at_nfft=problem.nfft or None)
        out[unit] = float(costs[PRICED_AS[problem.algorithm]][0])
    return out


def predict(units: dict[str, float], rates: dict[str, float]) -> float:
    return sum(units[key] * rates[key] for key in RATE_KEYS)


# --- the fit ---------------------------------------------------------------------------------
def fit_rates(units: Sequence[dict[str, float]], seconds: Sequence[float],
              prior: dict[str, float], *, prior_weight: float = PRIOR_WEIGHT[False],
              bound: float | None = MAX_FACTOR, iterations: int = 200) -> dict[str, float]:
    """Positive rates whose predictions ``Σ units·rate`` match ``seconds`` in log space.

    Minimises ``Σ_i (log(A_i·r) − log t_i)² + w Σ_j (log r_j − log prior_j)²`` over
    ``θ = log r`` (Levenberg–Marquardt, projected onto ``prior / bound ≤ r ≤ prior · bound``),
    starting from the non-negative linear fit. Rates no problem counts keep their prior value
    exactly. Log errors weigh a 2 ms run like a 2 s one, and the rates stay positive and
    finite by construction.

    >>> units = [{"gemm_flop": 1e9, "conv1d_mac": 0, "fft_flop": 0, "byte": 0, "call": 0},
    ...          {"gemm_flop": 0, "conv1d_mac": 0, "fft_flop": 0, "byte": 1e9, "call": 10}]
    >>> prior = dict.fromkeys(RATE_KEYS, 1e-9)
    >>> fitted = fit_rates(units, [0.02, 0.1], prior)
    >>> round(1 / fitted["gemm_flop"] / 1e9), fitted["conv1d_mac"] == prior["conv1d_mac"]
    (50, True)
    """
    a = np.array([[float(u.get(key, 0.0)) for key in RATE_KEYS] for u in units])
    t = np.asarray(seconds, dtype=float)
    if a.ndim != 2 or a.shape[0] != t.shape[0] or not a.shape[0]:
        raise ValueError(f"{len(units)} count rows for {len(t)} timings")
    if not (np.all(np.isfinite(t)) and np.all(t > 0)):
        raise ValueError("timings must be positive and finite")
    theta0 = np.log([float(prior[key]) for key in RATE_KEYS])
    free = np.flatnonzero(np.any(a > 0, axis=0))
    # start where the linear fit (relative errors, rates ≥ 0) is: from the prior alone, a rate
    # far too small would contribute nothing to any prediction, so no gradient would move it
    span = math.inf if bound is None else math.log(bound)
    low, high = theta0[free] - span, theta0[free] + span
    theta = theta0.copy()
    start = nonnegative_fit(a[:, free] / t[:, None], np.ones(len(t)))
    theta[free] = np.where(start > 0, np.log(np.where(start > 0, start, 1.0)), theta0[free])
    theta[free] = np.clip(theta[free], low, high)
    sqrt_w = math.sqrt(prior_weight)

    def residuals(th):
        pred = a @ np.exp(th)
        return np.concatenate([np.log(pred) - np.log(t), sqrt_w * (th[free] - theta0[free])]), pred

    res, pred = residuals(theta)
    cost = float(res @ res)
    damping = 1e-3
    for _ in range(iterations):
        r = np.exp(theta)
        jac = np.vstack([a[:, free] * r[free] / pred[:, None], sqrt_w * np.eye(len(free))])
        normal = jac.T @ jac
        gradient = jac.T @ res
        improved = False
        while damping < 1e12:
            step = np.linalg.solve(normal + damping * np.diag(np.diag(normal) + 1e-12), -gradient)
            trial = theta.copy()
            trial[free] = np.clip(trial[free] + np.clip(step, -5.0, 5.0), low, high)
            trial_res, trial_pred = residuals(trial)
            trial_cost = float(trial_res @ trial_res)
            if trial_cost <= cost:
                moved = float(np.max(np.abs(trial - theta)))
                theta, res, pred, cost = trial, trial_res, trial_pred, trial_cost
                damping = max(damping / 3, 1e-12)
                improved = True
                break
            damping *= 4
        if not improved or moved < 1e-10:
            break
    fitted = {key: float(prior[key]) for key in RATE_KEYS}
    fitted.update({RATE_KEYS[j]: float(math.exp(theta[j])) for j in free})
    return fitted


def nonnegative_fit(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``argmin ‖a x − b‖`` over ``x ≥ 0``, for the few columns of a rate table.

    Every support set is tried (2^5 at most): the answer is the least-squares solution on the
    support where it is positive with the smallest residual. Columns are scaled to unit norm.

    >>> a = np.array([[1.0, 1.0], [1.0, -1.0], [0.0, 1.0]])
    >>> nonnegative_fit(a, np.array([2.0, 0.0, -1.0])).round(6)  # unconstrained: both positive
    array([1.      , 0.333333])
    >>> nonnegative_fit(a, np.array([2.0, 0.0, -3.0]))  # unconstrained: x2 = -1/3 < 0
    array([1., 0.])
    """
    from itertools import combinations

    norms = np.linalg.norm(a, axis=0)
    norms[norms == 0] = 1.0
    scaled = a / norms
    columns = range(a.shape[1])
    best, best_x = float(b @ b), np.zeros(a.shape[1])
    for size in range(1, a.shape[1] + 1):
        for support in combinations(columns, size):
            sub = scaled[:, support]
            x, *_ = np.linalg.lstsq(sub, b, rcond=None)
            if np.all(x > 0):
                residual = b - sub @ x
                if float(residual @ residual) < best - 1e-15:
                    best = float(residual @ residual)
                    best_x = np.zeros(a.shape[1])
                    best_x[list(support)] = x
    return best_x / norms


# --- measuring -------------------------------------------------------------------------------
#: what times a problem: ``runner(problem, device)`` returns a function that runs it once
#: through the engine's real ``conv1d`` with its method forced (``engines.timing.runner``)
Runner = Callable[[Problem, str], Callable[[], object]]


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@dataclass
class Measurement:
    problem: Problem
    units: dict[str, float]
    seconds: float  # the fastest of the timed runs
    runs: list[float]

    @property
    def spread(self) -> float:
        """Slowest over fastest run: near 1 on a quiet machine."""
        return max(self.runs) / min(self.runs)


def measure(problem: Problem, device: str, runner: Runner, *, target: float,
            repeat: int) -> Measurement:
    """Time ``problem`` on ``device``: grow it until a run takes about ``target`` s, then the
    fastest of ``repeat`` runs after one warm-up."""
    cap = MAX_ELEMENTS["cuda" if device.startswith("cuda") else "cpu"]
    while True:
        fn = runner(problem, device)
        # sized by a warm run: a cold one (plans, FFT tables, pages, and for the first problem
        # of a process the worker threads and BLAS) ran 3-10× slower on small problems and
        # left them tiny, so the fit took their per-call overhead for the whole machine
        _seconds(fn)
        first = _seconds(fn)
        if first >= target / 2 or problem.grown(2).elements > cap:
            break
        factor = 2
        while factor < 64 and first * factor * 2 <= target and problem.grown(factor * 2).elements <= cap:
            factor *= 2
        problem = problem.grown(factor)
    runs = [first] + [_seconds(fn) for _ in range(repeat - 1)]
    return Measurement(problem, counts(problem, device), min(runs), runs)


# --- the whole calibration -----------------------------------------------------------------
@dataclass
class Calibration:
    """What ``run`` measured and fitted on one device (``kind`` cpu or cuda)."""

    device: str
    key: dict
    quick: bool
    created: str
    measurements: list[Measurement]
    rates: dict[str, dict[str, float]] = field(default_factory=dict)  # engine -> fitted
    builtin: dict[str, dict[str, float]] = field(default_factory=dict)  # engine -> built-in
    fitted: dict[str, list[str]] = field(default_factory=dict)  # engine -> keys it measured
    bounded: dict[str, list[str]] = field(default_factory=dict)  # engine -> keys at MAX_FACTOR
    seconds: float = 0.0

    @property
    def engines(self) -> list[str]:
        return list(dict.fromkeys(m.problem.engine for m in self.measurements))

    def rows(self) -> list[dict]:
        """Each measurement with the built-in and the fitted model's prediction and error."""
        out = []
        for m in self.measurements:
            engine = m.problem.engine
            before = predict(m.units, self.builtin[engine])
            after = predict(m.units, self.rates[engine])
            out.append({**m.problem.to_dict(), "label": m.problem.label(),
                        "measured_s": m.seconds, "runs_s": m.runs, "spread": m.spread,
                        "counts": m.units,
                        "predicted_builtin_s": before, "error_builtin": before / m.seconds - 1,
                        "predicted_s": after, "error": after / m.seconds - 1})
        return out

    def errors(self) -> dict[str, dict[str, float]]:
        """Per engine, the median |relative error| of the built-in and of the fitted rates."""
        rows = self.rows()
        out = {}
        for engine in self.engines:
            mine = [r for r in rows if r["engine"] == engine]
            out[engine] = {"builtin": statistics.median(abs(r["error_builtin"]) for r in mine),
                           "fitted": statistics.median(abs(r["error"]) for r in mine)}
        return out

    def noisy(self, limit: float = NOISY_SPREAD) -> list[str]:
        """The engines whose runs varied by more than ``limit`` (median over the problems of
        slowest / fastest run): another process was competing for the cores."""
        return [engine for engine in self.engines if statistics.median(
            m.spread for m in self.measurements if m.problem.engine == engine) > limit]

    def cache_content(self) -> dict:
        """What ``ratecache`` keeps (and ``ratecache.cost_rates`` reads back)."""
        return {
            "format": FORMAT, "convcli": __version__, "created": self.created,
            "device": self.key, "model": model_fingerprint(self.key["kind"]),
            "mode": "quick" if self.quick else "default",
            "engines": {e: {"rates": self.rates[e], "fitted": self.fitted[e]} for e in self.engines},
            "measurements": self.rows(),
        }

    def summary(self) -> dict:
        """The ``--json`` summary."""
        return {
            "device": self.device, "device_key": self.key, "quick": self.quick,
            "created": self.created, "rates": self.rates, "builtin_rates": self.builtin,
            "fitted": self.fitted, "at_bound": self.bounded, "median_error": self.errors(),
            "measurements": self.rows(),
            "seconds": self.seconds,
        }


def run(target_device: str, runner: Runner, *, quick: bool = False,
        on_problem: Callable[[int, int, Problem], None] | None = None) -> Calibration:
    """Measure the plan for ``target_device`` (``cpu`` or a resolved CUDA device) with
    ``runner`` and fit each engine's rates (see the module doc).

    ``on_problem(i, n, problem)`` is called before each of the ``n`` problems (progress).
    """
    started = time.perf_counter()
    kind = "cuda" if target_device.startswith("cuda") else "cpu"
    target, repeat = EFFORT[quick]
    problems = plan(kind, quick)
    measurements = []
    for i, problem in enumerate(problems):
        if on_problem is not None:
            on_problem(i, len(problems), problem)
        measurements.append(measure(problem, target_device, runner, target=target,
                                    repeat=repeat))
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    result = Calibration(target_device, device_key(target_device), quick, created, measurements)
    for engine in result.engines:
        mine = [m for m in measurements if m.problem.engine == engine]
        prior = dict(builtin_rates(target_device, engine))
        result.builtin[engine] = prior
        result.rates[engine] = fit_rates([m.units for m in mine], [m.seconds for m in mine], prior,
                                         prior_weight=PRIOR_WEIGHT[quick])
        result.fitted[engine] = [key for key in RATE_KEYS if any(m.units[key] > 0 for m in mine)]
        result.bounded[engine] = [key for key in result.fitted[engine] if abs(math.log(
            result.rates[engine][key] / prior[key])) >= math.log(MAX_FACTOR) - 1e-6]
    result.seconds = time.perf_counter() - started
    return result
