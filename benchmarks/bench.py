"""convcli's engine against its peers: workloads W1–W5 x methods x peers.

    python benchmarks/bench.py            # the full run (several minutes on 2 cores)
    python benchmarks/bench.py --quick    # a small version, seconds
    python benchmarks/bench.py --process  # also whole-process rows vs SoX (10-minute WAV)
    python benchmarks/bench.py --pipe --no-engine  # cat long.wav | convcli filter - -o - vs SoX
    python benchmarks/bench.py --device cuda  # the torch engine on a GPU vs cuDNN and CuPy

On the CPU the headline rows "convcli auto / direct / fft" time the numpy engine
(``engines.numpy_backend.conv1d``), which is what ``convcli filter`` runs there for these
depthwise kernels; "convcli torch auto / direct / fft" time the torch engine
(``engines.torch_backend.conv1d``: CUDA, mixing
kernels, jacobian/grad) beside it. With ``--device cuda`` the convcli rows are the torch engine
on the GPU. W5 ends with one table of the sweep: auto over the faster of direct and fft.

Every timing is the median of ``--repeat`` runs (default 5) after one warm-up run, all in one
process, side by side (the rows of one point take their runs in turns, the torch rows
apart from the others), so ratios are fair even on a noisy shared machine (±35 % between runs
here). Peers that would take longer than ``--budget`` seconds per run are skipped (their
estimate is printed). Prints a table and writes JSON (``benchmarks/results.json`` by default,
git-ignored).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RATE = 48_000


def hann(k: int) -> np.ndarray:
    """convcli's ``--window hann --size k`` (scipy's symmetric hann, sum-normalized)."""
    w = np.hanning(k) if k > 2 else np.ones(k)
    return w / w.sum()


def reverb(k: int, seed: int = 7) -> np.ndarray:
    """A 1-second-style impulse response: decaying noise, unit energy."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(k) * np.exp(-np.arange(k) / (k / 6))
    return w / np.sqrt(np.sum(w**2))


def timeit(fn, repeat: int, budget: float) -> dict:
    """Median of ``repeat`` runs after a warm-up; a run slower than ``budget`` ends the series."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    if first > budget:
        return {"median": first, "runs": 1, "note": "one cold run (slow)"}
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median": statistics.median(times), "min": min(times), "runs": len(times)}


#: written between timed runs (untimed), larger than the last-level cache
_EVICT = None


def evict_caches() -> None:
    """Write 64 MB so that the next timed run finds nothing of the last one in the caches.

    Without it a row ran faster or slower by what the row before it left there: `auto` and
    `direct` on W4 (the same code) read 0.3-0.8 ms apart, `auto` being the row that most often
    came after scipy's large FFT temporaries. Every row now starts as a filter of data read from
    a file does: from memory.
    """
    global _EVICT
    if _EVICT is None:
        _EVICT = np.empty(1 << 24, np.float32)
    _EVICT.fill(1.0)


def time_side_by_side(fns: dict, repeat: int, budget: float) -> dict:
    """``timeit`` for several callables, their runs interleaved (a, c, b, b, a, c, ...).

    On a shared machine the load drifts over seconds; runs taken in turns see the same drift,
    so the ratios between rows (auto over the best method, convcli over a peer) hold better than
    with each row's runs taken in one stretch. Before each timed run the caches are flushed
    (``evict_caches``): no row inherits the one before it. Each turn takes the rows in a new
    (seeded) order: in a fixed cycle a row always ran after the same one, and on W4 `auto`,
    always after the single-threaded numpy.convolve, read 0.3-0.7 ms slower than `direct`, the
    same code run after `auto` (an idle second core is slow to wake on this VM).
    """
    results, times = {}, {}
    for name, fn in fns.items():  # warm-up; a run slower than the budget is timed only once
        t0 = time.perf_counter()
        fn()
        first = time.perf_counter() - t0
        if first > budget:
            results[name] = {"median": first, "runs": 1, "note": "one cold run (slow)"}
        else:
            times[name] = []
    order = list(times)
    shuffle = np.random.default_rng(len(order)).permutation
    for _ in range(repeat):  # each round in a new order: no row always follows the same one
        for name in (order[i] for i in shuffle(len(order))):
            evict_caches()
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    for name, runs in times.items():
        results[name] = {"median": statistics.median(runs), "min": min(runs), "runs": len(runs)}
    return {name: results[name] for name in fns}


def synced(fn, device):
    """``fn`` that returns only once a GPU has finished its work (CUDA calls are asynchronous)."""
    if device.type != "cuda":
        return fn
    import torch

    def run():
        result = fn()
        torch.cuda.synchronize(device)
        return result
    return run


def memory_floor(x, repeat: int) -> float:
    """Seconds to read the input once and write an output of the same size (preallocated)."""
    import torch

    out = torch.empty_like(x)
    return timeit(synced(lambda: out.copy_(x), x.device), repeat, 10)["median"]


def workloads(quick: bool) -> list[dict]:
    minutes = 10 / 60 if quick else 10
    n = int(minutes * 60 * RATE)
    sweep = [3, 31, 255, 4095, 8191, 48_000] if quick else [3, 7, 15, 31, 63, 127, 255, 511, 1023,
                                                      2047, 4095, 8191, 16383, 48_000]
    return [
        {"name": "W1", "what": f"{minutes:g} min stereo 48 kHz, k=31", "shape": (1, 2, n), "k": [31]},
        {"name": "W2", "what": f"{minutes:g} min stereo 48 kHz, k=4095", "shape": (1, 2, n), "k": [4095]},
        {"name": "W3", "what": f"{minutes:g} min stereo 48 kHz, k=48000", "shape": (1, 2, n), "k": [48_000]},
        {"name": "W4", "what": "64 x 1 s mono 16 kHz, k=31", "shape": (64, 1, 16_000), "k": [31]},
        {"name": "W5", "what": f"{'5 s' if quick else '1 min'} stereo 48 kHz, k sweep",
         "shape": (1, 2, (5 if quick else 60) * RATE), "k": sweep},
    ]


def runners(x_np: np.ndarray, w_np: np.ndarray, spec, device) -> dict:
    """name -> (callable, estimated seconds or None). Every one computes ``same`` convolution."""
    import scipy.signal as ss
    import torch
    import torch.nn.functional as F

    from convcli.engines import numpy_backend as npengine
    from convcli.engines.torch_backend import conv1d, ieee_float32

    x = torch.from_numpy(x_np).to(device)
    batch, channels, n = x_np.shape
    k = w_np.shape[-1]
    weight = torch.from_numpy(np.broadcast_to(w_np, (channels, 1, k)).copy()).to(device)
    flat = x_np.reshape(batch * channels, n)
    w2 = w_np[None, :]
    samples = batch * channels * n

    def ours(method):  # the torch engine (engine.conv1d)
        def run():
            with torch.no_grad():
                return conv1d(x, weight, spec, method)
        return run

    weight_np = np.ascontiguousarray(np.broadcast_to(w_np, (channels, 1, k)))

    def numpy_engine(method):  # what `filter` runs on the CPU for these depthwise kernels
        return lambda: npengine.conv1d(x_np, weight_np, spec, method)

    def numpy_direct_estimate():  # the cost model's own price (numpy rates), to skip k ≫ 1000
        from convcli.plan.costmodel import estimate_costs

        costs = estimate_costs(n, k, spec, batch=batch, channels=channels, engine="numpy")
        # past the GEMM's band limit, direct multiplies the taps (numpy.correlate): the conv1d price
        return costs["gemm"][0] if "gemm" in costs else costs["conv1d"][0]

    def naive():  # the way most people write it: padding= inside the call, correlating the flip
        with torch.no_grad():
            return F.conv1d(x, weight.flip(-1), padding=k // 2, groups=channels)[..., :n]

    def padded():
        with torch.no_grad():
            left = k // 2
            return F.conv1d(F.pad(x, (left, k - 1 - left)), weight.flip(-1), groups=channels)

    def numpy_convolve():
        return [np.convolve(row, w_np, mode="same") for row in flat]

    def direct_estimate(rate):
        return samples * k / rate

    if device.type == "cuda":
        ieee_float32()  # the peers too: cuDNN in TF32 would be faster and wrong in float32
        gpu = {
            "convcli auto": (ours("auto"), None),
            "convcli direct": (ours("direct"), None),
            "convcli fft": (ours("fft"), None),
            "F.conv1d padding= (naive)": (naive, None),
            "F.pad + F.conv1d": (padded, None),
        }
        try:
            import cupy
            import cupyx.scipy.signal as cs

            xc, wc = cupy.asarray(x_np.reshape(batch * channels, n)), cupy.asarray(w_np[None, :])
            gpu["cupyx oaconvolve"] = (lambda: cs.oaconvolve(xc, wc, mode="same", axes=-1), None)
            gpu["cupyx fftconvolve"] = (lambda: cs.fftconvolve(xc, wc, mode="same", axes=-1), None)
        except ImportError:
            pass
        return {name: (synced(fn, device), estimate) for name, (fn, estimate) in gpu.items()}
    return {
        "convcli auto": (numpy_engine("auto"), None),
        "convcli direct": (numpy_engine("direct"), numpy_direct_estimate() if k > 512 else None),
        "convcli fft": (numpy_engine("fft"), None),
        "convcli torch auto": (ours("auto"), None),
        "convcli torch direct": (ours("direct"), direct_estimate(2e9) if k > 512 else None),
        "convcli torch fft": (ours("fft"), None),
        "scipy convolve auto": (lambda: ss.convolve(flat, w2, mode="same"), None),
        "scipy fftconvolve": (lambda: ss.fftconvolve(flat, w2, mode="same", axes=-1), None),
        "scipy oaconvolve": (lambda: ss.oaconvolve(flat, w2, mode="same", axes=-1), None),
        "numpy.convolve": (numpy_convolve, direct_estimate(1.5e9)),
        "F.conv1d padding= (naive)": (naive, direct_estimate(0.15e9)),
        "F.pad + F.conv1d": (padded, direct_estimate(0.8e9)),
    }


def run_engine(args) -> list[dict]:
    import torch

    from convcli.core.spec import ConvSpec

    rows = []
    rng = np.random.default_rng(0)
    device = torch.device(args.device)
    for load in workloads(args.quick):
        if args.only and load["name"] not in args.only:
            continue
        batch, channels, n = load["shape"]
        x_np = (0.25 * rng.standard_normal(load["shape"])).astype(np.float32)
        floor = memory_floor(torch.from_numpy(x_np).to(device), args.repeat)
        spec = ConvSpec(groups=channels)
        for k in load["k"]:
            w_np = (hann(k) if k < 8000 else reverb(k)).astype(np.float32)
            reference = None
            results = {}
            from convcli.engines import numpy_backend as npengine
            from convcli.engines import torch_backend as engine

            if device.type == "cuda":
                choice = engine.choose_method(n, k, spec, "auto", batch=batch, channels=channels,
                                              device=str(device), x=torch.from_numpy(x_np))
            else:  # the headline rows are the numpy engine's, as `filter` runs on the CPU
                choice = npengine.choose_method(n, k, spec, "auto", batch=batch, channels=channels,
                                                dtype=x_np.dtype, x=x_np)
            timed = {}
            for name, (fn, estimate) in runners(x_np, w_np, spec, device).items():
                if load["name"] == "W5" and name not in W5_ROWS:
                    continue
                if estimate is not None and estimate > args.budget:
                    results[name] = {"skipped": f"estimated {estimate:.0f} s per run"}
                else:
                    timed[name] = fn
                    results[name] = {}
            # torch's OpenMP workers spin on both cores for a while after each op: a numpy or
            # scipy run right after a torch run loses a core, so each group takes turns apart
            on_torch = {name: fn for name, fn in timed.items() if "torch" in name or "F." in name}
            for group in ({n: f for n, f in timed.items() if n not in on_torch}, on_torch):
                results.update(time_side_by_side(group, args.repeat, args.budget))
            for name, fn in timed.items():
                timing = results[name]
                y = fn()
                y = to_numpy(y).reshape(batch * channels, -1)
                if reference is None and name == "convcli auto":
                    import scipy.signal as ss

                    probe = slice(n // 2, n // 2 + 20_000)  # exact float64 on a stretch
                    exact = ss.oaconvolve(x_np.reshape(batch * channels, n).astype(np.float64),
                                          w_np.astype(np.float64)[None], mode="same", axes=-1)
                    reference = exact[:, probe], probe
                timing["max_abs_err"] = float(np.max(np.abs(y[:, reference[1]] - reference[0])))
                results[name] = timing
            best = min((r["median"], name) for name, r in results.items() if "median" in r)
            row = {"workload": load["name"], "what": load["what"], "k": k, "shape": load["shape"],
                   "memory_floor_s": floor, "auto_picked": choice.algorithm
                   + (f" {choice.nfft}" if choice.nfft else ""), "fastest": best[1],
                   "results": results}
            rows.append(row)
            print_row(row)
        if load["name"] == "W5":
            print_sweep([row for row in rows if row["workload"] == "W5"])
    return rows


#: W5 sweeps 14 kernel lengths: convcli's methods (both engines) and the best peer only
W5_ROWS = ("convcli auto", "convcli direct", "convcli fft", "convcli torch auto",
           "convcli torch direct", "convcli torch fft", "scipy oaconvolve")


def print_sweep(rows: list[dict]) -> None:
    """W5 as one table: auto against the faster of its own direct and fft (the 1.25× target)."""
    def seconds(row, name):
        return row["results"].get(name, {}).get("median", math.inf)

    def cell(value):
        return f"{value:9.4f}" if math.isfinite(value) else f"{'skipped':>9s}"

    print("\nW5 sweep (median s): auto/best = auto over the faster of direct and fft (target ≤ 1.25)")
    print(f"  {'k':>6s} {'auto':>9s} {'picked':>16s} {'direct':>9s} {'fft':>9s} {'auto/best':>9s}"
          f" {'torch auto':>10s} {'t.auto/best':>11s} {'oaconvolve':>10s}")
    for row in rows:
        auto, direct, fft = (seconds(row, f"convcli {m}") for m in ("auto", "direct", "fft"))
        t_auto, t_direct, t_fft = (seconds(row, f"convcli torch {m}") for m in ("auto", "direct", "fft"))
        print(f"  {row['k']:6d} {cell(auto)} {row['auto_picked']:>16s} {cell(direct)} {cell(fft)}"
              f" {auto / min(direct, fft):9.2f} {cell(t_auto):>10s} "
              f"{t_auto / min(t_direct, t_fft) if math.isfinite(t_auto) else math.nan:11.2f}"
              f" {cell(seconds(row, 'scipy oaconvolve')):>10s}")
    sys.stdout.flush()


def to_numpy(y) -> np.ndarray:
    """A torch tensor (any device), a CuPy array or a list of arrays, as one numpy array."""
    if hasattr(y, "get"):  # CuPy
        return y.get()
    if hasattr(y, "cpu"):
        return y.cpu().numpy()
    return np.asarray(y)


def print_row(row: dict) -> None:
    res = row["results"]
    auto = res["convcli auto"]["median"]
    print(f"\n{row['workload']} ({row['what']}{', k=' + str(row['k']) if row['workload'] == 'W5' else ''})"
          f" - auto picked {row['auto_picked']}; memory floor {row['memory_floor_s']:.3f} s "
          f"(auto is {auto / row['memory_floor_s']:.0f}x it)")
    print(f"  {'method':28s} {'median s':>10s} {'runs':>5s} {'auto faster by':>15s} {'max|err|':>10s}")
    for name, r in res.items():
        if "median" not in r:
            print(f"  {name:28s} {'-':>10s} {'':>5s} {'':>15s} {r['skipped']}")
            continue
        print(f"  {name:28s} {r['median']:10.4f} {r['runs']:5d} {r['median'] / auto:14.2f}x "
              f"{r['max_abs_err']:10.1e}")
    sys.stdout.flush()


# --- whole process, as a user runs it -------------------------------------------------------
def run_timed(cmd: list[str], env=None) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MB) of the command, exit status (``/usr/bin/time`` measures it:
    a forked child's own ru_maxrss would count the memory of this Python parent)."""
    with tempfile.NamedTemporaryFile("r") as report:
        t0 = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", report.name, *cmd], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        wall = time.perf_counter() - t0
        if proc.returncode:
            sys.stderr.write(proc.stderr.decode(errors="replace"))
        lines = [line for line in report.read().split() if line.strip().isdigit()]
    return wall, (int(lines[-1]) / 1024 if lines else math.nan), proc.returncode


def make_wav(path: Path, seconds: float) -> None:
    """A stereo 16-bit WAV of band-limited noise at about −12 dBFS, written in blocks."""
    import soundfile as sf

    rng = np.random.default_rng(3)
    block = RATE * 10
    with sf.SoundFile(path, "w", RATE, 2, "PCM_16") as f:
        left = int(seconds * RATE)
        while left > 0:
            m = min(block, left)
            noise = rng.standard_normal((m, 2)) * 0.25
            f.write(np.clip(noise, -1, 1))
            left -= m


def run_process(args) -> list[dict]:
    import soundfile as sf

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    py = sys.executable
    rows = []
    t_import, rss_import, _ = run_timed([py, "-c", "import torch"])
    t_np, _rss_np, _ = run_timed([py, "-c", "import numpy, soundfile"])
    print(f"\nimport torch: {t_import:.2f} s, {rss_import:.0f} MB; import numpy, soundfile: {t_np:.2f} s")
    rows.append({"what": "import torch", "seconds": t_import, "peak_rss_mb": rss_import})
    lengths = [("10 min", 600)] + ([("1 hour", 3600)] if args.hour else [])
    if args.quick:
        lengths = [("1 min", 60)]
    sox = shutil.which("sox")
    for label, seconds in lengths:
        wav = workdir / f"long{seconds}.wav"
        if not wav.exists() or sf.info(str(wav)).frames != seconds * RATE:
            make_wav(wav, seconds)
        for taps in (31, 48_000):
            coeffs = hann(taps) if taps < 8000 else reverb(taps) * 0.05
            txt = workdir / f"coeffs{taps}.txt"
            npy = workdir / f"coeffs{taps}.npy"
            np.savetxt(txt, coeffs, fmt="%.10g")
            np.save(npy, coeffs)
            ours = workdir / "ours.wav"
            kernel = ["--size", "31"] if taps == 31 else ["--kernel", str(npy)]
            cmd = [py, "-m", "convcli", "filter", str(wav), "-o", str(ours), *kernel, "-q"]
            walls, rss = [], 0.0
            for _ in range(args.process_repeat):
                wall, peak, _code = run_timed(cmd, env)
                walls.append(wall)
                rss = max(rss, peak)
            row = {"what": f"{label}, {taps} taps", "convcli_s": statistics.median(walls),
                   "convcli_rss_mb": rss, "runs": len(walls)}
            if sox:
                theirs = workdir / "sox.wav"
                walls, rss = [], 0.0
                for _ in range(args.process_repeat):
                    wall, peak, _code = run_timed([sox, "-D", str(wav), str(theirs), "fir", str(txt)])
                    walls.append(wall)
                    rss = max(rss, peak)
                row.update(sox_s=statistics.median(walls), sox_rss_mb=rss)
                a = sf.read(str(ours), dtype="int16")[0].astype(np.int32)
                b = sf.read(str(theirs), dtype="int16")[0].astype(np.int32)
                m = min(len(a), len(b))
                row["max_lsb_vs_sox"] = int(np.max(np.abs(a[:m] - b[:m])))
                row["length_equal"] = len(a) == len(b)
            rows.append(row)
            print(f"{row['what']:22s} convcli {row['convcli_s']:6.2f} s {row['convcli_rss_mb']:6.0f} MB"
                  + (f" | sox {row['sox_s']:6.2f} s {row['sox_rss_mb']:5.0f} MB | ratio "
                     f"{row['convcli_s'] / row['sox_s']:.2f}x | max diff {row['max_lsb_vs_sox']} LSB"
                     if sox else " | sox not installed"))
            sys.stdout.flush()
    return rows


# --- the pipe rows: stdin to stdout, as a shell pipeline runs it ------------------------------
def run_piped(cmd: list[str], wav: Path, out: Path,
              env: dict | None = None) -> tuple[float, float, float, int]:
    """``cat WAV | CMD > (this process) > OUT``: wall seconds, seconds to CMD's first output
    byte, CMD's peak RSS (MB, ``/usr/bin/time``) and its exit status. The pipeline starts
    when ``cat`` does; this process reads CMD's output as it comes and writes it to ``out``."""
    with tempfile.NamedTemporaryFile("r") as report, open(out, "wb") as sink:
        t0 = time.perf_counter()
        cat = subprocess.Popen(["cat", str(wav)], stdout=subprocess.PIPE)
        proc = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", report.name, *cmd],
                                stdin=cat.stdout, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)
        cat.stdout.close()  # the filter holds the only read end: cat sees EPIPE if it stops
        first = math.nan
        while chunk := proc.stdout.read1(1 << 20):
            if math.isnan(first):
                first = time.perf_counter() - t0
            sink.write(chunk)
        err = proc.stderr.read()
        proc.wait()
        cat.wait()
        wall = time.perf_counter() - t0
        if proc.returncode:
            sys.stderr.write(err.decode(errors="replace"))
        lines = [line for line in report.read().split() if line.strip().isdigit()]
    return wall, first, (int(lines[-1]) / 1024 if lines else math.nan), proc.returncode


def max_lsb(a: Path, b: Path) -> tuple[int, bool]:
    """The largest difference between two 16-bit WAVs (read in pieces), and equal lengths."""
    import soundfile as sf

    worst = 0
    with sf.SoundFile(a) as fa, sf.SoundFile(b) as fb:
        same = fa.frames == fb.frames
        while len(x := fa.read(1 << 20, dtype="int16")):
            y = fb.read(len(x), dtype="int16")
            m = min(len(x), len(y))
            worst = max(worst, int(np.abs(x[:m].astype(np.int32) - y[:m]).max(initial=0)))
    return worst, same


def run_pipe(args) -> list[dict]:
    """The pipe rows: a 1-hour stereo 16-bit WAV (1 minute with ``--quick``) through
    ``cat long.wav | convcli filter - -o - | ...`` and through the SoX pipe that does the same
    (``sox -D -t wav - -t wav - fir coeffs.txt``: SoX without its dither, as the equality
    check needs and a little faster than with it), for 31 and 48 000 taps: wall time, time to
    the first output byte and the filter's peak RSS, medians of ``--process-repeat`` runs."""
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    seconds = 60 if args.quick else 3600
    wav = workdir / f"long{seconds}.wav"
    import soundfile as sf

    if not wav.exists() or sf.info(str(wav)).frames != seconds * RATE:
        make_wav(wav, seconds)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    sox = shutil.which("sox")
    rows = []
    print(f"\npipes: {seconds} s stereo 16-bit 48 kHz through cat | FILTER | (read here)")
    for taps in (31, 48_000):
        coeffs = hann(taps) if taps < 8000 else reverb(taps) * 0.05
        txt, npy_path = workdir / f"coeffs{taps}.txt", workdir / f"coeffs{taps}.npy"
        np.savetxt(txt, coeffs, fmt="%.10g")
        np.save(npy_path, coeffs)
        kernel = ["--size", "31"] if taps == 31 else ["--kernel", str(npy_path)]
        commands = {"convcli": [sys.executable, "-m", "convcli", "filter", "-", "-o", "-",
                                *kernel, "-q"]}
        if sox:
            commands["sox"] = [sox, "-D", "-t", "wav", "-", "-t", "wav", "-", "fir", str(txt)]
        runs: dict = {name: [] for name in commands}
        for _ in range(args.process_repeat):
            for name, cmd in commands.items():  # in turns: the machine's load hits both
                runs[name].append(run_piped(cmd, wav, workdir / f"pipe_{name}.wav", env))
        row = {"what": f"pipe, {seconds} s, {taps} taps"}
        for name, results in runs.items():
            walls, firsts, rss, codes = zip(*results)
            row.update({f"{name}_s": statistics.median(walls),
                        f"{name}_first_byte_s": statistics.median(firsts),
                        f"{name}_rss_mb": max(rss), f"{name}_ok": not any(codes)})
        if sox:
            row["max_lsb_vs_sox"], row["length_equal"] = max_lsb(workdir / "pipe_convcli.wav",
                                                                 workdir / "pipe_sox.wav")
        rows.append(row)
        text = " | ".join(f"{name} {row[f'{name}_s']:6.2f} s, first byte "
                          f"{row[f'{name}_first_byte_s']:.2f} s, {row[f'{name}_rss_mb']:4.0f} MB"
                          for name in commands)
        extra = (f" | {row['convcli_s'] / row['sox_s']:.2f}x SoX, max diff "
                 f"{row['max_lsb_vs_sox']} LSB" if sox else "")
        print(f"{row['what']:26s} {text}{extra}")
        sys.stdout.flush()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small workloads, seconds in all")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per point (after a warm-up)")
    parser.add_argument("--budget", type=float, default=20.0,
                        help="skip a peer whose estimated run exceeds this many seconds")
    parser.add_argument("--only", nargs="*", help="workloads to run, e.g. W1 W4")
    parser.add_argument("--process", action="store_true", help="whole-process rows vs SoX")
    parser.add_argument("--hour", action="store_true", help="add the 1-hour WAV to --process")
    parser.add_argument("--process-repeat", type=int, default=3)
    parser.add_argument("--no-engine", action="store_true", help="only the whole-process rows")
    parser.add_argument("--pipe", action="store_true",
                        help="the pipe rows: a 1-hour WAV (1 min with --quick) through "
                        "cat | convcli filter - -o - and the SoX pipe")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "convcli_bench"),
                        help="where the long WAVs and outputs go")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda: the torch engine on a GPU")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results.json"))
    args = parser.parse_args()
    if args.quick:
        args.repeat = min(args.repeat, 5)
        args.budget = min(args.budget, 2.0)
    import torch

    from convcli.plan.memory import reuse_freed_memory

    reuse_freed_memory()  # as convcli filter does: temporaries reuse the heap (no page faults)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"convcli bench on {platform.machine()} {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), timings are medians of {args.repeat} after a warm-up")
    gpu = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else None
    if gpu:
        print(f"device: {gpu}")
    result = {"machine": {"cores": os.cpu_count(), "torch": torch.__version__, "gpu": gpu,
                          "python": platform.python_version()}, "args": vars(args)}
    if not args.no_engine:
        result["engine"] = run_engine(args)
    if args.process:
        result["process"] = run_process(args)
    if args.pipe:
        result["pipe"] = run_pipe(args)
    Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
