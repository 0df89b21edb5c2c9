"""Corpora: thousands of files in one run, on this machine or a Dask cluster, nothing lost.

- ``inputs``: files, directories, globs, lists and JSONL manifests -> ``Item``s (a path and the
  relative path its output mirrors), the ``--shard I/N`` share and the output paths.
- ``kernels``: the kernel bank of ``--kernel DIR|LIST`` and the per-file ``--pick``.
- ``batch``: one batch of files read, filtered (equal lengths in one engine call) and written
  atomically; a failure is one file's result, never the batch's. What a Dask worker runs.
- ``files``: reading and writing at the least cost per file (PCM WAV by convcli itself), and
  the atomic write.
- ``local``: batches on threads in this process; ``cluster``: batches as Dask tasks.
- ``report``: the results manifest (JSONL) and the run's counts.
Nothing here prints or imports typer/rich; the ``corpus`` command renders.
"""
