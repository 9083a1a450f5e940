"""The on-disk spool: batches the inference store could not write, kept until the database is back.

One batch is one JSON-lines file (a row per line) named ``<utc time>-<kind>-<pid>-<random>.jsonl``,
so a plain sort replays the oldest first. A file is written atomically (temporary file, fsync,
``os.replace``, fsync of the folder): it is either complete or absent, never half-written. It is
deleted only after the rows it holds have been committed to the database; replaying it twice is
harmless because the store ignores rows whose ``record_id`` is already there.

Several processes (service workers) may share one spool folder: `Spool.exclusive()` takes an
advisory lock (``flock``) so only one of them replays at a time. A file that cannot be parsed is
moved to ``bad/`` (kept for a person to look at, never deleted) so it does not block the rest.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Iterator

try:  # POSIX only; without it the spool still works within one process
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

log = logging.getLogger("tpas.serving.spool")

KINDS = ("scores", "outcomes")
SUFFIX = ".jsonl"


def _default(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return value.hex
    raise TypeError(f"cannot spool a value of type {type(value).__name__}")


def dumps(row: dict) -> str:
    """One row as one JSON line (dates and times as ISO strings; NaN refused)."""
    return json.dumps(row, default=_default, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


@dataclass(frozen=True)
class Batch:
    """A spooled batch: its file, what it holds and the rows."""

    path: Path
    kind: str
    rows: list[dict]


class Spool:
    """A folder of spooled batches (created when the first batch is written)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    # -- writing -------------------------------------------------------------------------------------------
    def append(self, kind: str, rows: list[dict]) -> Path:
        """Write one batch atomically and return its path. Raises OSError if the disk refuses it."""
        if kind not in KINDS:
            raise ValueError(f"unknown spool kind {kind!r}")
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        name = f"{stamp}-{kind}-{os.getpid()}-{secrets.token_hex(4)}{SUFFIX}"
        final = self.directory / name
        tmp = self.directory / f".{name}.tmp"
        data = "".join(dumps(r) + "\n" for r in rows).encode("utf-8")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        os.replace(tmp, final)
        self._fsync_dir()
        return final

    def _fsync_dir(self) -> None:
        try:
            fd = os.open(self.directory, os.O_RDONLY)
        except OSError:  # pragma: no cover - platforms without directory fds
            return
        try:
            os.fsync(fd)
        except OSError:  # pragma: no cover
            pass
        finally:
            os.close(fd)

    # -- reading -------------------------------------------------------------------------------------------
    def files(self) -> list[Path]:
        """Complete batch files, oldest first."""
        try:
            names = [e.name for e in os.scandir(self.directory) if e.is_file() and e.name.endswith(SUFFIX)
                     and not e.name.startswith(".")]
        except FileNotFoundError:
            return []
        return [self.directory / n for n in sorted(names)]

    def has_batches(self) -> bool:
        try:
            with os.scandir(self.directory) as it:
                return any(e.name.endswith(SUFFIX) and not e.name.startswith(".") for e in it)
        except FileNotFoundError:
            return False

    def read(self, path: Path) -> Batch:
        """Parse one batch file; ValueError if it is not a spool batch."""
        parts = path.name.split("-")
        kind = parts[1] if len(parts) > 2 else ""
        if kind not in KINDS:
            raise ValueError(f"{path.name}: not a spool batch name")
        rows = []
        with path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path.name}: line {n}: {exc.msg}") from None
                if not isinstance(row, dict):
                    raise ValueError(f"{path.name}: line {n}: not an object")
                rows.append(row)
        return Batch(path, kind, rows)

    def count(self) -> int:
        """Rows waiting in complete batch files."""
        total = 0
        for path in self.files():
            try:
                with path.open("rb") as fh:
                    total += sum(1 for line in fh if line.strip())
            except FileNotFoundError:  # replayed by another process meanwhile
                continue
        return total

    # -- after a replay ------------------------------------------------------------------------------------
    def remove(self, path: Path) -> None:
        """Delete a batch whose rows are committed (another process may have done it already)."""
        path.unlink(missing_ok=True)
        self._fsync_dir()

    def quarantine(self, path: Path, reason: str) -> Path | None:
        """Move an unreadable batch to ``bad/`` (kept, never deleted) so it stops blocking the rest."""
        bad = self.directory / "bad"
        bad.mkdir(exist_ok=True)
        target = bad / path.name
        try:
            os.replace(path, target)
        except FileNotFoundError:
            return None
        log.error("spool batch %s moved to %s: %s", path.name, bad, reason)
        return target

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[bool]:
        """Try to become the one process replaying this spool; yields False if another one is."""
        if fcntl is None:  # pragma: no cover
            yield True
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / ".replay.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
