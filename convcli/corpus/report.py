"""The results manifest (``--report results.jsonl``) and the counts of a run.

One JSON object a line per file, written as results arrive (a run stopped midway leaves the
lines of what it finished): ``input``, ``output``, ``status`` (done, failed or skipped),
``error``, ``kernel``, ``frames``, ``seconds``, ``clipped``, ``peak``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TextIO

from convcli.errors import OutputError


@dataclass
class Tally:
    """What a run did so far; ``failures`` keeps the first few for the messages."""

    done: int = 0
    failed: int = 0
    skipped: int = 0
    clipped_files: int = 0
    failures: list[dict] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def add(self, line: dict) -> None:
        status = line["status"]
        if status == "done":
            self.done += 1
            self.clipped_files += bool(line["clipped"])
        elif status == "skipped":
            self.skipped += 1
        else:
            self.failed += 1
            if len(self.failures) < 100:
                self.failures.append(line)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    @property
    def files(self) -> int:
        return self.done + self.failed + self.skipped

    def rate(self) -> float:
        return (self.done + self.failed) / max(self.seconds, 1e-9)

    def summary(self) -> dict:
        return {"done": self.done, "failed": self.failed, "skipped": self.skipped,
                "clipped_files": self.clipped_files, "seconds": round(self.seconds, 3),
                "files_per_second": round(self.rate(), 1)}


class ReportFile:
    """The JSONL report, opened before any work (a path that cannot be written is refused
    then), one ``write`` of all lines a batch."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.handle: TextIO | None = None
        if path is not None:
            try:
                self.handle = open(path, "w", encoding="utf-8")  # noqa: SIM115 (close())
            except OSError as exc:
                raise OutputError(f"cannot write the report {path}: {exc.strerror or exc}",
                                  "choose another --report path") from None

    def write(self, lines: list[dict]) -> None:
        if self.handle is not None and lines:
            self.handle.write("".join(json.dumps(line, ensure_ascii=False) + "\n"
                                      for line in lines))
            self.handle.flush()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
