"""Opening the gateway's SQLite files: a damaged one is moved aside, a fresh one started, reported.

The outbox, the alarm state and the patrol state each live in one SQLite
file. A damaged file ("file is not a database", "database disk image is
malformed", a failed ``quick_check``) used to stop every start: under
``Restart=always`` a crash loop with no polling and no alarms. Instead
``open_sqlite``:

- renames the file and its ``-wal``/``-shm`` to ``<file>.damaged-<UTC time>``
  (a rename needs no disk space and keeps whatever can still be read),
- starts a fresh file,
- logs an error with the saved copy's path and returns a ``FileIncident``,
  which the gateway raises as an alarm saying what was lost
  (gateway/storage_alarms.py).

A file found empty (0 bytes) or gone although it held data is reported the
same way: every file gets a sidecar marker ``<file>-created`` once it has
been created, so an empty file beside its marker was truncated or replaced,
not new. Other errors (permissions, a locked file) are not damage: they are raised
as they are and the file is left alone. A disk so full that the file cannot
even be opened (SQLite needs room for its -shm and -wal) gets the outbox's
reserve file released (gateway/disk_space.py) and one more try, so a full
disk is not a crash loop either.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gateway.disk_space import release_reserves

log = logging.getLogger(__name__)

T = TypeVar("T")

# Less free space than this and a failed open is blamed on the full disk.
NO_ROOM = 64 * 1024
# Primary result codes of a damaged file (https://sqlite.org/rescode.html).
SQLITE_CORRUPT = 11
SQLITE_NOTADB = 26
SIDECARS = ("-wal", "-shm")


class Damaged(Exception):
    """Raised by a ``prepare`` function: the file opens but its content is unusable."""


@dataclass(frozen=True, slots=True)
class FileIncident:
    """A state file that was damaged or lost, and what was done about it."""

    what: str  # "outbox", "alarm state", "patrol state"
    path: Path
    problem: str  # "damaged (file is not a database)", "empty (0 bytes)", "missing"
    lost: str
    saved_as: Path | None

    @property
    def message(self) -> str:
        saved = f"saved as {self.saved_as}" if self.saved_as else "nothing left to save"
        return (
            f"{self.what} {self.path} was {self.problem}: {saved}; started a fresh one."
            f" Lost: {self.lost}"
        )


def small_wal(db: sqlite3.Connection) -> None:
    """For a small state file written often (alarm state, patrol state): checkpoint
    every 64 pages and truncate the WAL back to 256 kB, so it never takes more
    than that of a small disk (SQLite's default lets it reach 4 MB)."""
    db.execute("PRAGMA wal_autocheckpoint=64")
    db.execute("PRAGMA journal_size_limit=262144")


def marker_path(path: Path) -> Path:
    return Path(f"{path}-created")


def is_damage(exc: BaseException) -> bool:
    if isinstance(exc, Damaged):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    return (
        isinstance(exc, sqlite3.DatabaseError)
        and code is not None
        and code & 0xFF
        in (
            SQLITE_CORRUPT,
            SQLITE_NOTADB,
        )
    )


def open_sqlite(
    path: Path,
    what: str,
    lost: str,
    prepare: Callable[[sqlite3.Connection], T],
    *,
    now_ns: Callable[[], int] = time.time_ns,
    **connect: Any,
) -> tuple[sqlite3.Connection, T, FileIncident | None]:
    """Connect to ``path`` and run ``prepare`` (pragmas, schema, reads) on it.

    On damage the file is moved aside and ``prepare`` runs on a fresh one;
    the incident says what happened. ``connect`` goes to ``sqlite3.connect``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    marker = marker_path(path)
    problem: str | None = None
    if marker.exists() and not path.exists():
        problem = "missing"
    elif marker.exists() and path.stat().st_size == 0:
        problem = "empty (0 bytes)"
    else:
        try:
            db, result = _open(path, prepare, connect)
        except (sqlite3.DatabaseError, Damaged) as exc:
            if not is_damage(exc):
                raise
            problem = f"damaged ({exc})"
        else:
            _mark(marker, now_ns)
            return db, result, None
    saved = move_aside(path, now_ns()) if path.exists() else None
    incident = FileIncident(what, path, problem, lost, saved)
    log.error("%s", incident.message)
    db, result = _open(path, prepare, connect)
    _mark(marker, now_ns)
    return db, result, incident


def _open(
    path: Path, prepare: Callable[[sqlite3.Connection], T], connect: dict[str, Any]
) -> tuple[sqlite3.Connection, T]:
    try:
        return _try_open(path, prepare, connect)
    except sqlite3.OperationalError as exc:
        if shutil.disk_usage(path.parent).free >= NO_ROOM:
            raise
        released = release_reserves(path.parent)
        if not released:
            raise
        log.error(
            "%s: cannot open on the full disk (%s): released %s to make room",
            path,
            exc,
            ", ".join(map(str, released)),
        )
        return _try_open(path, prepare, connect)


def _try_open(
    path: Path, prepare: Callable[[sqlite3.Connection], T], connect: dict[str, Any]
) -> tuple[sqlite3.Connection, T]:
    db = sqlite3.connect(path, **connect)
    try:
        bad = [r[0] for r in db.execute("PRAGMA quick_check").fetchall() if r[0] != "ok"]
        if bad:
            raise Damaged(f"quick_check: {'; '.join(bad[:3])}")
        return db, prepare(db)
    except BaseException:
        db.close()
        raise


def _mark(marker: Path, now_ns: Callable[[], int]) -> None:
    if marker.exists():
        return
    try:
        marker.write_text(f"created {_stamp(now_ns())}\n")
    except OSError as exc:  # e.g. a full disk: the next start tries again
        log.warning("cannot write %s (%s): an emptied file would go unnoticed", marker, exc)


def _stamp(ts_ns: int) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(ts_ns / 1e9))


def move_aside(path: Path, ts_ns: int) -> Path:
    """Rename ``path`` and its sidecars to ``<path>.damaged-<UTC time>``; return the new path."""
    stamp = _stamp(ts_ns)
    saved = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while saved.exists():
        n += 1
        saved = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    path.rename(saved)
    for side in SIDECARS:
        src = Path(f"{path}{side}")
        if src.exists():
            src.rename(Path(f"{saved}{side}"))
    return saved
