"""``CorpusJob -> Tally``: a corpus listed, shared out, planned and run, results reported.

The order of the work: the options checked; a ``--workers`` cluster started on its own
thread; every input found and each output named and checked before anything computes (an
output that would replace an input is refused then); ``--shard`` takes its share
of the sorted list; ``--skip-existing`` leaves the outputs already there (a line ``skipped``);
the rest runs in batches here (``local``) or on Dask (``cluster``), and every result is a line
of the report as it arrives.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from convcli import pipeline
from convcli.core.levels import check_level_options
from convcli.corpus import inputs as inputs_
from convcli.corpus.batch import Settings, result
from convcli.corpus.files import sweep_parts
from convcli.corpus.kernels import load_bank
from convcli.corpus.local import BATCH_FILES, make_batches, make_tasks, run_local, split_existing
from convcli.corpus.report import ReportFile, Tally
from convcli.errors import UsageError
from convcli.plan.memory import reuse_freed_memory

#: Dask tasks per worker (a cluster started by hand: per ``ASSUMED_WORKERS``), each a run of
#: consecutive local batches (a few seconds of work, not a task per file), at most
#: ``TASK_BATCHES`` of them
TASKS_PER_WORKER = 4
ASSUMED_WORKERS = 8
TASK_BATCHES = 32


@dataclass
class CorpusJob:
    """What ``convcli corpus`` was asked: the sources, where to, how to choose kernels, where to
    run. ``filter`` holds the kernel request and every conv, level and format option."""

    args: list[str]
    out_dir: str
    filter: pipeline.FilterJob
    recursive: bool = False
    files_from: str | None = None
    manifest: str | None = None
    path_key: str = inputs_.NEMO_KEY
    report: str | None = None
    skip_existing: bool = False
    shard: str | None = None
    pick: str = "random"
    seed: int = 0
    scheduler: str | None = None
    workers: int | None = None
    batch_files: int = BATCH_FILES
    environ: dict = field(default_factory=lambda: dict(os.environ))


def check(job: CorpusJob) -> tuple[int, int]:
    """The options checked before anything is read or started; the shard ``(I, N)``."""
    if not job.args and job.files_from is None and job.manifest is None:
        raise UsageError("no inputs", "give files, directories or globs, --files-from LIST or "
                         "--manifest JSONL")
    if not job.out_dir or job.out_dir == "-":
        raise UsageError(f"--out-dir {job.out_dir!r} is not a directory",
                         "give the directory the outputs go to")
    check_level_options(job.filter.gain, job.filter.normalize_output)
    shard = inputs_.parse_shard(job.shard, job.environ)
    if job.workers is not None and job.scheduler is not None:
        raise UsageError("--scheduler and --workers both given",
                         "--workers starts a cluster here; --scheduler uses one that runs")
    if job.workers is not None or job.scheduler is not None:
        from convcli.corpus.cluster import import_distributed

        import_distributed()  # refused now, not after listing the corpus
    return shard


def plan(job: CorpusJob, shard: tuple[int, int]):
    """``(settings, tasks to run, tasks skipped)`` decided before any work."""
    items = inputs_.collect(job.args, recursive=job.recursive, files_from=job.files_from,
                            manifest=job.manifest, path_key=job.path_key, exclude=job.out_dir)
    bank = load_bank(job.filter.kernel)
    places = [i for i, item in enumerate(items) if inputs_.shard_of(item.rel, shard[1]) ==
              shard[0]] if shard[1] > 1 else list(range(len(items)))
    tasks = make_tasks([items[i] for i in places], bank, job.pick, job.seed, job.out_dir,
                       job.filter.out_format, places)  # (--pick cycle counts the whole corpus)
    inputs_.check_outputs([item.path for item in items], [(t.input, t.output) for t in tasks])
    todo, there = split_existing(tasks) if job.skip_existing else (tasks, [])
    return Settings(job.filter, bank), todo, there


def dask_tasks(batches: list, workers: int | None) -> list[list]:
    """The local batches, consecutive ones grouped into Dask tasks (the batches themselves
    unchanged: a Dask run computes exactly what a local one does).

    >>> [len(t) for t in dask_tasks(list(range(20)), 2)]
    [3, 3, 3, 3, 3, 3, 2]
    """
    size = -(-len(batches) // (TASKS_PER_WORKER * (workers or ASSUMED_WORKERS)))
    size = min(max(size, 1), TASK_BATCHES)
    return [batches[i : i + size] for i in range(0, len(batches), size)]


def run_corpus(job: CorpusJob, progress: pipeline.Progress = pipeline.no_progress,
               on_failure: Callable[[dict], None] | None = None) -> Tally:
    """Run the corpus; ``progress`` is ``pipeline.Progress`` (counted in files),
    ``on_failure(line)`` hears each failed file as it is known."""
    # batches allocate arrays of the same few MB over and over: kept by glibc for reuse, they
    # are not page-faulted in afresh each time (pipeline.run_filter does the same)
    reuse_freed_memory()
    shard = check(job)
    starting = contextlib.nullcontext()
    if job.workers is not None:
        from convcli.corpus.cluster import local_cluster_starting

        starting = local_cluster_starting(job.workers)
    with starting as cluster:
        return _run_corpus(job, plan(job, shard), cluster, progress, on_failure)


def _run_corpus(job: CorpusJob, planned, cluster, progress: pipeline.Progress,
                on_failure: Callable[[dict], None] | None) -> Tally:
    settings, todo, there = planned
    tally = Tally()
    report = ReportFile(job.report)
    try:
        skipped = [result(task, settings.bank, "skipped") for task in there]
        for line in skipped:
            tally.add(line)
        report.write(skipped)
        with progress(len(todo), "filtering", unit="files") as tick:
            def on_results(lines: list[dict]) -> None:
                report.write(lines)
                for line in lines:
                    tally.add(line)
                    if line["status"] == "failed" and on_failure is not None:
                        on_failure(line)
                tick(len(lines))

            if job.workers is None and job.scheduler is None:
                run_local(settings, make_batches(todo, job.batch_files), on_results)
            else:
                from convcli.corpus.cluster import run_dask

                run_dask(settings, dask_tasks(make_batches(todo, job.batch_files), job.workers),
                         on_results, scheduler=job.scheduler, cluster=cluster)
    finally:
        report.close()
        sweep_parts([task.output for task in todo])
    return tally
