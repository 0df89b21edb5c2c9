"""Batches as Dask distributed tasks: on a cluster (``--scheduler tcp://HOST:8786``) or a
``LocalCluster`` started here (``--workers N``, one single-threaded worker process each, started
while the corpus is listed).

The settings (kernels included) go to every worker once (``scatter``); each batch is one task
(``local.worker_batch``), and results come back as tasks finish (``as_completed``) to the
client, which alone writes the report. A worker lost mid-run has its unfinished tasks redone
elsewhere by the scheduler; a redo writes nothing that the lost worker had already put in
place this run (``Settings.since``), and an output is whole or absent either way, so nothing is
written twice or lost. ``distributed`` is imported only here, only when asked for.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace

from convcli.corpus.batch import Settings, Task, describe, result
from convcli.corpus.local import worker_batch
from convcli.errors import ConvcliError

INSTALL_HINT = "pip install 'convcli[dask]'"


def import_distributed():
    """``distributed``, or one clear error naming the extra to install."""
    try:
        import distributed
    except ImportError:
        raise ConvcliError("--scheduler and --workers run on Dask distributed, which is not "
                           "installed", INSTALL_HINT) from None
    return distributed


@contextlib.contextmanager
def local_cluster_starting(workers: int):
    """A ``LocalCluster`` of ``workers`` single-threaded processes, started on a thread of its
    own (the block gets a ``Future`` of it) and closed when the block ends. Starting its
    processes (Python, Dask, convcli: about a second) goes on while this one lists the
    corpus; the workers import convcli as they start (``preload``), not at their first task."""
    distributed = import_distributed()
    import logging

    starter = ThreadPoolExecutor(1, "convcli-cluster")
    cluster = starter.submit(distributed.LocalCluster, n_workers=workers,
                             threads_per_worker=1, processes=True, dashboard_address=None,
                             silence_logs=logging.ERROR, preload=["convcli.corpus.local"])
    try:
        yield cluster
    finally:
        starter.shutdown()  # (a cluster still starting is waited for, then closed)
        if cluster.exception() is None:
            cluster.result().close()


@contextlib.contextmanager
def client_for(scheduler: str | None, cluster: Future | None):
    """A client of the scheduler at ``scheduler``, or of ``cluster`` (a ``LocalCluster``
    starting: ``local_cluster_starting``)."""
    distributed = import_distributed()
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise ConvcliError(f"cannot reach the Dask scheduler at {scheduler}: {exc}",
                               "start one with `dask scheduler`, or check the address") from None
        with client:
            yield client
        return
    with distributed.Client(cluster.result()) as client:
        yield client


def run_dask(settings: Settings, groups: list[list[list[Task]]],
             on_results: Callable[[list[dict]], None], *, scheduler: str | None = None,
             cluster: Future | None = None) -> None:
    """Every group of batches as one task of the cluster; ``on_results(lines)`` as each one
    finishes. A task the cluster gave up on (its workers died again and again) fails whole."""
    distributed = import_distributed()
    settings = replace(settings, since=time.time(), cwd=os.getcwd())
    with client_for(scheduler, cluster) as client:
        shared = client.scatter(settings, broadcast=True, hash=False)
        futures = {client.submit(worker_batch, shared, parts, pure=False,
                                 key=f"convcli-batch-{i}-{time.time_ns():x}"): parts
                   for i, parts in enumerate(groups)}
        try:
            for future in distributed.as_completed(futures):
                try:
                    lines = future.result()
                except Exception as exc:  # noqa: BLE001 (the task failed: KilledWorker, lost data)
                    why = task_failure(exc)
                    lines = [result(t, settings.bank, "failed", why)
                             for part in futures[future] for t in part]
                on_results(lines)
                future.release()
        except BaseException:
            client.cancel(list(futures))
            raise


def task_failure(exc: BaseException) -> str:
    """A batch the cluster could not finish, in words: each file of it is reported failed
    (no output of it is half written) and a rerun with ``--skip-existing`` makes the rest.

    A worker that died too often is ``KilledWorker``; every worker gone loses the settings
    scattered to them, which cancels the batches still waiting (``FutureCancelledError``)."""
    from distributed.client import FutureCancelledError
    from distributed.scheduler import KilledWorker

    if isinstance(exc, ConvcliError):
        return f"the Dask task failed: {describe(exc)}"
    if isinstance(exc, FutureCancelledError):
        cause = "the cluster lost every worker holding the run's settings"
    elif isinstance(exc, KilledWorker):
        cause = "the workers running it died again and again"
    else:
        cause = f"{type(exc).__name__}: {exc}"
    return f"the Dask cluster did not finish this batch ({cause}); rerun with --skip-existing"
