"""What a corpus holds: every input file with the relative path its output mirrors.

Each argument has a root its files are relative to: a directory is its own root, a glob the
directory before its first wildcard, and plain files, ``--files-from`` lists and manifests the
deepest directory common to the files they name. An output is ``OUT_DIR / relative path``, so
the tree under each root is mirrored. The list is sorted by relative path, so it is the same on
every machine (``--shard`` and ``--pick cycle`` rely on it).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from convcli.errors import InputError, UsageError
from convcli.io.formats import format_from_path

#: what a directory walk takes: the extensions of the formats convcli reads
AUDIO_SUFFIXES = frozenset({".wav", ".wave", ".flac", ".ogg", ".opus", ".mp3", ".aif", ".aiff",
                            ".au", ".snd", ".caf", ".w64", ".rf64", ".npy"})
#: NeMo's manifest key for the audio file
NEMO_KEY = "audio_filepath"


@dataclass(frozen=True)
class Item:
    """One input: its path (as given, or found) and the relative path its output mirrors."""

    path: str
    rel: str


def is_glob(text: str) -> bool:
    return glob.has_magic(text) and not os.path.exists(text)


def collect(args: list[str], *, recursive: bool = False, files_from: str | None = None,
            manifest: str | None = None, path_key: str = NEMO_KEY,
            exclude: str | None = None) -> list[Item]:
    """Every input the arguments name, sorted by relative path, each once. ``exclude`` is a
    directory whose files are never inputs (the output directory inside an input tree).
    Refuses, before any work, a directory or glob that finds nothing and a list that cannot
    be read; a missing file named in a list stays in (it fails alone, in the report)."""
    items: list[Item] = []
    loose: list[str] = []
    skip = None if exclude is None else os.path.realpath(exclude)
    for arg in args:
        if arg == "":
            raise UsageError("an input path is empty ('')", "give a file, directory or glob")
        if arg == "-":
            raise UsageError("corpus reads files, not standard input",
                             "pass a list of paths on stdin with --files-from -")
        if os.path.isdir(arg):
            items += walk(arg, recursive, skip)
        elif is_glob(arg):
            items += expand_glob(arg, recursive)
        else:
            loose.append(arg)
    if files_from is not None:
        loose += read_list(files_from)
    items += rooted(loose, None)
    if manifest is not None:
        items += rooted(read_manifest(manifest, path_key), None)
    return unique(items)


def walk(root: str, recursive: bool, skip: str | None) -> list[Item]:
    found: list[Item] = []
    for folder, dirs, files in os.walk(root):
        if skip is not None and folder != root and os.path.realpath(folder) == skip:
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        under = os.path.relpath(folder, root)  # once a folder: relpath is slow per file
        for name in files:
            if os.path.splitext(name)[1].lower() in AUDIO_SUFFIXES and not name.startswith("."):
                found.append(Item(os.path.join(folder, name),
                                  name if under == "." else os.path.join(under, name)))
    if not found:
        raise InputError(f"no audio or NPY files in {root}"
                         f"{'' if recursive else ' (its subdirectories are not searched)'}",
                         "add --recursive, or check the path" if not recursive
                         else "check the path")
    return found


def expand_glob(pattern: str, recursive: bool) -> list[Item]:
    paths = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    if not paths:
        raise InputError(f"no files match {pattern}", "quote the pattern, or check it")
    parts = Path(pattern).parts
    literal = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    root = os.path.join(*parts[:literal]) if literal else "."
    return [Item(p, os.path.relpath(p, root)) for p in paths]


def read_list(source: str) -> list[str]:
    """``--files-from``: one path a line (``-``: stdin); blank lines and ``#`` comments skipped."""
    text = read_text(source, "--files-from")
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def read_manifest(source: str, key: str) -> list[str]:
    """A JSONL manifest's paths (``key``), relative ones resolved against its directory, as
    NeMo does."""
    text = read_text(source, "--manifest")
    base = None if source == "-" else os.path.dirname(source) or "."
    paths = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{source} line {number} is not JSON: {exc.msg}",
                             "a manifest holds one JSON object a line") from None
        if not isinstance(record, dict) or not isinstance(record.get(key), str):
            raise InputError(f"{source} line {number} has no {key!r} path",
                             "name the key that holds the path with --path-key")
        path = record[key]
        paths.append(path if os.path.isabs(path) or base is None else os.path.join(base, path))
    return paths


def read_text(source: str, flag: str) -> str:
    try:
        if source == "-":
            return sys.stdin.read()
        return Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {flag} {source}: {getattr(exc, 'strerror', None) or exc}",
                         "check the path") from None


def rooted(paths: list[str], root: str | None) -> list[Item]:
    """Files relative to ``root``, by default the deepest directory common to them all."""
    if not paths:
        return []
    if root is None:
        parents = [os.path.dirname(os.path.abspath(p)) for p in paths]
        root = os.path.commonpath(parents)
    return [Item(p, os.path.relpath(os.path.abspath(p), os.path.abspath(root))) for p in paths]


def unique(items: list[Item]) -> list[Item]:
    """Each file once (the first naming of it), sorted by relative path."""
    seen: dict[str, Item] = {}
    for item in items:
        seen.setdefault(os.path.abspath(item.path), item)
    return sorted(seen.values(), key=lambda item: (item.rel, item.path))


# --- shards --------------------------------------------------------------------------------------
def parse_shard(text: str | None, environ=os.environ) -> tuple[int, int]:
    """``I/N`` (0 ≤ I < N) -> ``(I, N)``; without one, a Slurm array's task (its id counted
    from ``SLURM_ARRAY_TASK_MIN``, of ``SLURM_ARRAY_TASK_COUNT``), else ``(0, 1)``."""
    if text is None:
        count, task = environ.get("SLURM_ARRAY_TASK_COUNT"), environ.get("SLURM_ARRAY_TASK_ID")
        if not count or task is None:
            return 0, 1
        what = f"SLURM_ARRAY_TASK_ID={task}"
        numbers = _whole(task, environ.get("SLURM_ARRAY_TASK_MIN", "0"), count)
        if numbers is None:
            raise UsageError(f"{what}, SLURM_ARRAY_TASK_COUNT={count} are not whole numbers",
                             "pass --shard I/N")
        return _checked_shard(numbers[0] - numbers[1], numbers[2], what)
    index, _, count = text.partition("/")
    numbers = _whole(index, count)
    if numbers is None:
        raise UsageError(f"--shard {text!r} is not I/N", "e.g. --shard 0/4 (shards 0 to 3 of 4)")
    return _checked_shard(*numbers, f"--shard {text}")


def _whole(*texts: str) -> list[int] | None:
    try:
        return [int(t) for t in texts]
    except ValueError:
        return None


def _checked_shard(index: int, count: int, what: str) -> tuple[int, int]:
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"{what}: the shard must lie in 0..N-1 of N ≥ 1, got {index}/{count}",
                         "e.g. --shard 0/4 (shards 0 to 3 of 4)")
    return index, count


def shard_of(rel: str, count: int) -> int:
    """A file's shard: a stable hash of its relative path (the same on every machine and in
    every listing order, and a file added to the corpus moves no other).

    >>> shard_of("a/b.wav", 4) == shard_of("a/b.wav", 4), shard_of("x.wav", 1)
    (True, 0)
    """
    digest = hashlib.blake2b(rel.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % count


def take_shard(items: list[Item], index: int, count: int) -> list[Item]:
    return items if count == 1 else [i for i in items if shard_of(i.rel, count) == index]


# --- outputs -------------------------------------------------------------------------------------
def output_name(rel: str, out_format: str | None, kernel: str | None = None) -> str:
    """The output's path relative to ``--out-dir``: the input's, with ``--format``'s extension
    (an input convcli does not write keeps its name and gets ``.wav``), ``.KERNEL`` before it
    for ``--pick all``.

    >>> output_name("a/b.flac", "wav"), output_name("c.npy", None, "room1")
    ('a/b.wav', 'c.room1.npy')
    """
    folder, name = os.path.split(rel)  # (string operations: this runs once a file)
    stem, suffix = os.path.splitext(name)
    if out_format is not None:
        suffix = "." + out_format
    elif format_from_path(rel) is None:
        suffix = ".wav"
    if kernel is not None:
        stem = f"{stem}.{kernel}"
    return os.path.join(folder, stem + suffix)


def check_outputs(inputs: list[str], pairs: list[tuple[str, str]]) -> None:
    """Refuse, before any work, an output (of the ``(input, output)`` pairs) that is one of
    the ``inputs`` (``--out-dir`` = an input directory), or two inputs writing one output."""
    folders: dict[str, str] = {}

    def real(path: str) -> str:  # realpath once per directory, not per file
        folder, name = os.path.split(path)
        if folder not in folders:
            folders[folder] = os.path.realpath(folder or ".")
        return os.path.join(folders[folder], name)

    sources = {real(path) for path in inputs}
    seen: dict[str, str] = {}
    for path, out in pairs:
        target = real(out)
        if target in sources:
            raise UsageError(f"the output of {path} would replace the input {out}",
                             "choose an --out-dir outside the input tree, or another --format")
        if seen.setdefault(target, path) != path:
            raise UsageError(f"{seen[target]} and {path} would both be written to {out}",
                             "give them one common directory, or filter them in two runs")
