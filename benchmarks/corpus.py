"""Files per second on a corpus: convcli corpus against GNU parallel + SoX, a Python loop and
convcli once per file, in one run.

    python benchmarks/corpus.py                # 10 000 clips of 1 s + 200 files of 30 s
    python benchmarks/corpus.py --scale 0.1    # a tenth of each, for a quick look

The corpus (1 s mono 16 kHz 16-bit clips of noise, 30 s stereo 48 kHz 16-bit files) is made
once and cached in the temporary directory. Every row filters every file with a 31-tap Hann
window (unity DC gain), mode same (= SoX ``fir``), into 16-bit WAV, except "convcli once per
file", which runs on a sample and is extrapolated (it says so). A few outputs of SoX and of
the loop are checked against convcli's: within 1 LSB. Prints a table (and ``--json FILE``).

Creating thousands of files is most of the work, so the disk matters: the table says how
long creating an empty file took before the runs. On ext4 without a journal that is 10-20x
slower for a few minutes after many files were removed there (the last run of this benchmark
removes its outputs at the end): wait a few minutes between runs, or give ``--out-root``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONVCLI = [sys.executable, "-m", "convcli"]
TAPS = 31


def make_corpus(scale: float) -> Path:
    """The corpus for ``scale`` (cached): clips/NNNNN.wav and long/NNN.wav."""
    import soundfile as sf

    clips, longs = max(1, round(10_000 * scale)), max(1, round(200 * scale))
    root = Path(tempfile.gettempdir()) / f"convcli-corpus-bench-{clips}-{longs}"
    done = root / ".complete"
    if done.exists():
        return root
    rng = np.random.default_rng(14)
    (root / "clips").mkdir(parents=True, exist_ok=True)
    (root / "long").mkdir(exist_ok=True)
    for i in range(clips):
        x = (rng.standard_normal(16000) * 3000).clip(-32768, 32767).astype(np.int16)
        sf.write(root / "clips" / f"{i:05d}.wav", x, 16000, subtype="PCM_16")
    for i in range(longs):
        x = (rng.standard_normal((48000 * 30, 2)) * 3000).clip(-32768, 32767).astype(np.int16)
        sf.write(root / "long" / f"{i:03d}.wav", x, 48000, subtype="PCM_16")
    done.touch()
    return root


def files_of(corpus: Path) -> list[Path]:
    return sorted(corpus.glob("clips/*.wav")) + sorted(corpus.glob("long/*.wav"))


def hann() -> np.ndarray:
    from scipy.signal import get_window

    w = get_window("hann", TAPS, fftbins=False)
    return w / w.sum()


def timed(function) -> float:
    """Seconds ``function()`` takes, from a clean start: the last run's writes flushed first
    (each run writes 1.4 GB, whose write-back would fall on the next one)."""
    os.sync()
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def run_sox(files: list[Path], out: Path, coeffs: Path) -> float:
    """GNU parallel -j2, one sox process per file."""
    listing = "\n".join(str(f.relative_to(files[0].parents[1])) for f in files) + "\n"
    for sub in ("clips", "long"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    command = ["parallel", "-j2", "sox", "-D", f"{files[0].parents[1]}/{{}}", f"{out}/{{}}",
               "fir", str(coeffs)]
    return timed(lambda: subprocess.run(command, input=listing.encode(), check=True))


def run_loop(files: list[Path], out: Path) -> float:
    """soundfile + scipy.signal.oaconvolve, one file after another, in this process."""
    import soundfile as sf
    from scipy.signal import oaconvolve

    h = hann()

    def loop() -> None:
        for f in files:
            x, rate = sf.read(f, dtype="float64", always_2d=True)
            y = oaconvolve(x, h[:, None], mode="same", axes=0)
            target = out / f.parent.name / f.name
            target.parent.mkdir(parents=True, exist_ok=True)
            pcm = np.clip(np.rint(y * 32768), -32768, 32767).astype(np.int16)
            sf.write(target, pcm, rate, subtype="PCM_16")

    return timed(loop)


def run_convcli_each(files: list[Path], out: Path, sample: int) -> tuple[float, int]:
    """``convcli filter`` once per file, on ``sample`` files spread over the corpus."""
    picked = files[:: max(1, len(files) // sample)][:sample]
    (out / "clips").mkdir(parents=True, exist_ok=True)
    (out / "long").mkdir(parents=True, exist_ok=True)

    def each() -> None:
        for f in picked:
            subprocess.run([*CONVCLI, "filter", str(f), "-q", "-o",
                            str(out / f.parent.name / f.name)], check=True)

    seconds = timed(each)
    return seconds * len(files) / len(picked), len(picked)


def run_corpus(corpus: Path, out: Path, *extra: str) -> float:
    command = [*CONVCLI, "corpus", str(corpus), "-r", "--out-dir", str(out), "-q", *extra]
    return timed(lambda: subprocess.run(command, check=True))


def lsb_apart(a: Path, b: Path) -> int:
    import soundfile as sf

    x, _ = sf.read(a, dtype="int16", always_2d=True)
    y, _ = sf.read(b, dtype="int16", always_2d=True)
    assert x.shape == y.shape, (a, x.shape, y.shape)
    return int(np.max(np.abs(x.astype(np.int32) - y)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="share of the full corpus")
    parser.add_argument("--sample", type=int, default=40, help="files run once per process")
    parser.add_argument("--skip", nargs="*", default=[], choices=["sox", "loop", "each", "dask"])
    parser.add_argument("--rounds", type=int, default=5,
                        help="runs of each convcli corpus row (the median is shown): a few "
                             "seconds each, where the peers' minute smooths the load out")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--out-root", help="the folder the outputs go under (default: the "
                        "temporary folder); about 1.4 GB a run, all removed at the end")
    args = parser.parse_args()
    load = os.getloadavg()[0]  # before this benchmark adds its own
    corpus = make_corpus(args.scale)
    files = files_of(corpus)
    for f in files:  # every run reads from the page cache
        f.read_bytes()
    work = Path(tempfile.mkdtemp(prefix="convcli-corpus-out-", dir=args.out_root))
    runs_total = 2 + 2 * args.rounds + 3  # warm-ups, convcli's rounds, the peers
    need = sum(f.stat().st_size for f in files) * runs_total
    if shutil.disk_usage(work).free < need * 1.1:
        shutil.rmtree(work)
        sys.exit(f"error: the outputs need about {need / 1e9:.0f} GB under {work.parent}\n"
                 "hint: give --out-root on a larger disk, or fewer --rounds")
    coeffs = work / "hann31.txt"
    coeffs.write_text("\n".join(f"{v:.17g}" for v in hann()) + "\n")
    rows: list[tuple[str, float, str]] = []
    checked = [Path(f.parent.name) / f.name for f in files[:3] + files[-2:]]
    runs = itertools.count()

    def fresh(name: str) -> Path:
        """A new output folder for each run, none removed before the end: ext4 without a
        journal (this machine's disk) skips inodes freed in the last 1-6 minutes when it
        creates a file, so a run after the removal of 10 000 files creates each of its own
        ten times slower, a cost of the benchmark, not of the tool that runs next."""
        return work / f"{next(runs):02d}-{name}"

    outputs: dict[str, Path] = {}
    try:
        create = create_cost(fresh("create-probe"))
        for warm in ("warm-up", "dask-warm-up"):  # the page cache, and Dask's first imports
            run_corpus(corpus, fresh(warm), *(["--workers", "2"] if "dask" in warm else []))
        spread = f"median of {args.rounds}" if args.rounds > 1 else ""
        mine = [(name, label, extra) for name, label, extra in (
            ("one", "convcli corpus (one process)", []),
            ("dask", "convcli corpus --workers 2 (LocalCluster)", ["--workers", "2"]))
            if name not in args.skip]
        times: dict[str, list[float]] = {name: [] for name, _, _ in mine}
        for _ in range(args.rounds):  # in turns, so both see the same load
            for name, _, extra in mine:
                outputs[name] = fresh(name)
                times[name].append(run_corpus(corpus, outputs[name], *extra))
        for name, label, _ in mine:
            t = times[name]
            note = ", ".join(filter(None, [spread and f"{spread} ({min(t):.1f}-{max(t):.1f} s)",
                                           "includes starting the cluster" * (name == "dask")]))
            rows.append((label, statistics.median(t), note))
        if "sox" not in args.skip:
            outputs["sox"] = fresh("sox")
            rows.append(("parallel -j2 sox ... fir (a process per file)",
                         run_sox(files, outputs["sox"], coeffs), ""))
        if "loop" not in args.skip:
            outputs["loop"] = fresh("loop")
            rows.append(("Python loop: soundfile + oaconvolve", run_loop(files, outputs["loop"]),
                         ""))
        if "each" not in args.skip:
            seconds, n = run_convcli_each(files, fresh("each"), args.sample)
            rows.append(("convcli filter once per file", seconds, f"{n} files, extrapolated"))
        checks = [(peer, str(rel), lsb_apart(outputs["one"] / rel, outputs[peer] / rel))
                  for rel in checked for peer in ("sox", "loop", "dask")
                  if "one" in outputs and peer in outputs]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(rows, len(files), checks, load, create)
    if args.json:
        Path(args.json).write_text(json.dumps({"files": len(files), "rows": rows,
                                               "checks": checks, "load": load,
                                               "create_seconds": create},
                                              indent=2))


def create_cost(folder: Path, count: int = 2000) -> float:
    """Seconds to create an empty file in ``folder`` (kept: removing them would slow the runs
    that follow)."""
    folder.mkdir()
    started = time.perf_counter()
    for i in range(count):
        (folder / f"{i:05d}").touch()
    return (time.perf_counter() - started) / count


def print_table(rows, count: int, checks, load: float, create: float) -> None:
    base = {name: seconds for name, seconds, _ in rows}
    one = base["convcli corpus (one process)"]
    print(f"{count} files; load average {load:.2f} before the runs, {os.cpu_count()} cores; "
          f"creating a file took {create * 1e3:.3f} ms")
    if create > 2e-4:
        print("warning: creating files is slow on this disk now (were many removed there in "
              "the last minutes?): every row is slowed by it")
    print(f"{'run':48} {'seconds':>9} {'files/s':>9} {'vs one process':>15}  note")
    for name, seconds, note in rows:
        print(f"{name:48} {seconds:9.2f} {count / seconds:9.0f} {seconds / one:14.2f}x  {note}")
    for peer, rel, lsb in checks:
        print(f"check: {peer} {rel} within {lsb} LSB of convcli")


if __name__ == "__main__":
    main()
