"""A corpus as tasks and batches, and the batches run in this process on threads (the
local run, and each Dask task in its worker).

Reading, decoding, encoding and writing release the GIL for most of their time (system
calls, numpy), so ``BATCH_THREADS`` batches in flight keep the cores busy: one computes
while another reads or writes. Every batch is one ``batch.run_batch``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from convcli.corpus import batch as batches_
from convcli.corpus.batch import Settings, Task
from convcli.corpus.inputs import Item, output_name
from convcli.corpus.kernels import KernelBank, pick
from convcli.plan.memory import reuse_freed_memory

#: a batch holds at most this many files and bytes of input (about 8 M samples of 16 bits)
BATCH_FILES = 256
BATCH_BYTES = 16 << 20
#: batches run side by side in one process; in a Dask worker (one process per core, which
#: overlap each other's reads and writes) one at a time: a second thread only competed for
#: the worker's core and GIL (the benchmark corpus ran about 1 s slower on two workers)
BATCH_THREADS = 2
WORKER_THREADS = 1
#: seconds a thread holds the GIL while another wants it (Python's default: 0.005). Thousands
#: of short system calls and numpy calls per second hand the GIL back and forth at every one
#: with the default; a longer slice let 10 000 clips run 20-25 % faster here (0.0005 slower)
SWITCH_INTERVAL = 0.02


def make_tasks(items: list[Item], bank: KernelBank, how: str, seed: int, out_dir: str,
               out_format: str | None, places: list[int] | None = None) -> list[Task]:
    """One task per output: a kernel (``kernels.pick``; ``places``: each item's place in the
    whole sorted corpus, default its index) and a path under ``out_dir``; the kernel's name
    is in the output's name when every file gets every kernel."""
    tasks = []
    for place, item in zip(range(len(items)) if places is None else places, items):
        try:
            size = os.stat(item.path).st_size
        except OSError:
            size = 0  # missing: it fails alone, when read
        for k in pick(how, len(bank), item.rel, place, seed):
            named = bank.names[k] if how == "all" and len(bank) > 1 else None
            tasks.append(Task(item.path, os.path.join(out_dir, output_name(item.rel, out_format,
                                                                           named)), k, size))
    return tasks


def split_existing(tasks: list[Task]) -> tuple[list[Task], list[Task]]:
    """``--skip-existing``: (tasks to run, tasks whose output is there already)."""
    run, there = [], []
    for task in tasks:
        (there if os.path.exists(task.output) else run).append(task)
    return run, there


def make_batches(tasks: list[Task], max_files: int = BATCH_FILES,
                 max_bytes: int = BATCH_BYTES) -> list[list[Task]]:
    """Consecutive tasks in batches of at most ``max_files`` files and ``max_bytes`` of
    input (a larger file is a batch of its own).

    >>> [len(b) for b in make_batches([Task("i", "o", 0, 10)] * 5, 2, 100)]
    [2, 2, 1]
    """
    out: list[list[Task]] = []
    size = 0
    for task in tasks:
        if not out or len(out[-1]) >= max_files or size + task.size > max_bytes:
            out.append([])
            size = 0
        out[-1].append(task)
        size += task.size
    return out


_switching = threading.Lock()
_switching_runs: list[float] = []  # the interval before the first run in, one entry per run


@contextlib.contextmanager
def calm_switching(interval: float = SWITCH_INTERVAL):
    """``sys.setswitchinterval(interval)`` for the block (never shorter than it was). Runs
    that overlap (Dask tasks on a worker of several threads) share it: the last one out puts
    back the interval the first one found."""
    with _switching:
        before = _switching_runs[0] if _switching_runs else sys.getswitchinterval()
        _switching_runs.append(before)
        sys.setswitchinterval(max(before, interval))
    try:
        yield
    finally:
        with _switching:
            _switching_runs.pop()
            if not _switching_runs:
                sys.setswitchinterval(before)


def run_local(settings: Settings, batches: Iterable[list[Task]],
              on_results: Callable[[list[dict]], None], threads: int = BATCH_THREADS) -> None:
    """Every batch on ``threads`` threads, a few in flight; ``on_results(lines)`` in this
    thread as each batch ends. An exception here (SIGTERM) stops the batches in flight from
    writing more and waits for them, so no temporary file is left."""
    from convcli.engines import blas

    pending = iter(batches)
    with blas.single_threaded(), calm_switching(), \
            ThreadPoolExecutor(threads, "convcli-batch") as pool:
        running: set = set()
        try:
            while True:
                while len(running) < threads + 1:  # one queued: no thread waits for this one
                    tasks = next(pending, None)
                    if tasks is None:
                        break
                    running.add(pool.submit(batches_.run_batch, settings, tasks))
                if not running:
                    return
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    on_results(future.result())
        except BaseException:
            batches_.STOP.set()
            for future in running:
                future.cancel()
            wait(running)
            raise
        finally:
            batches_.STOP.clear()


def worker_batch(settings: Settings, parts: list[list[Task]]) -> list[dict]:
    """A Dask task: its batches run as a local run runs them (each the very batch a local run
    makes, so every output is the same to the last bit), ``WORKER_THREADS`` at a time."""
    reuse_freed_memory()  # a worker process, like the local run: see run.run_corpus
    lines: list[dict] = []
    run_local(settings, parts, lines.extend, WORKER_THREADS)
    return lines
