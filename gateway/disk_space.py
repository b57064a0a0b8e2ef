"""Free space on the outbox's disk: the telemetry budget, a floor kept free, a reserve file.

The outbox shares its disk with the alarm lane's outbox, the alarm state and
the patrol state. Filled to the last byte, every SQLite commit on it fails:
the alarm state cannot be saved, the patrol state neither, and pruning (in
the failing transaction) cannot free anything. So the outbox (the only file
that grows with telemetry) keeps out of the way:

- at open, the telemetry budget (``max_bytes``) is sized against the free
  space: the default is cut to half of what is free (less the floor and the
  reserve), and a configured value that cannot fit is cut likewise, with a
  warning either way;
- a floor of free space (10 % of the disk, 128 kB to 64 MB) is kept for the
  other files: below it the disk counts as full, the budget is cut and the
  oldest telemetry evicted (alarms never);
- a reserve file ``<outbox>.reserve`` (5 % of the disk, 64 kB to 8 MB) is
  allocated at open. When the disk fills anyway (a write failed, or less than
  half the floor is left: another process, logs) it is deleted, so the alarm
  about the full disk can still be written;
- the disk stops counting as full only after twice the floor has been free
  for ``RECOVER_S`` (and the reserve is allocated again): no alarm flapping
  while the outbox settles into its cut budget.

``SpaceGuard`` runs on the outbox's worker thread; ``full`` (why the disk
counts as full, or None) is read by the event loop for the disk-full alarm.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
RESERVE_SUFFIX = ".reserve"
KB = 1024
# How often (monotonic seconds) a commit looks at the free space.
CHECK_EVERY_S = 0.5
# How long the room must last before the disk stops counting as full.
RECOVER_S = 30.0
SQLITE_FULL = 13


def is_disk_full(exc: BaseException) -> bool:
    """SQLite's 'database or disk is full', or ENOSPC from the OS."""
    if isinstance(exc, OSError):
        return exc.errno == errno.ENOSPC
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.Error) and code is not None and code & 0xFF == SQLITE_FULL


def release_reserves(folder: Path) -> list[Path]:
    """Delete the reserve files in ``folder`` (a state file cannot even be opened: the disk
    is full at start). The outbox allocates its reserve again once there is room."""
    released = []
    for p in folder.glob(f"*{RESERVE_SUFFIX}"):
        p.unlink(missing_ok=True)
        released.append(p)
    return released


def _clamp(value: float, low: int, high: int) -> int:
    return int(min(max(value, low), high))


class SpaceGuard:
    """Free-space policy for one outbox file (see the module docstring).

    ``primary`` is the main outbox: it sizes the budget and holds the
    reserve file. The alarm lane's outbox only watches the floor.
    """

    def __init__(
        self,
        db_path: Path,
        *,
        primary: bool,
        statvfs: Callable[[str], os.statvfs_result] = os.statvfs,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db_path = db_path
        self.primary = primary
        self.reserve_path = Path(f"{db_path}{RESERVE_SUFFIX}")
        self._statvfs = statvfs
        self._monotonic = monotonic
        self.floor = 0
        self.reserve_bytes = 0
        self.full: str | None = None
        self._next_check = 0.0
        self._room_since: float | None = None

    def free(self) -> int:
        st = self._statvfs(str(self.db_path.parent))
        return st.f_bavail * st.f_frsize

    def open(self, max_bytes: int | None, in_use: int) -> int:
        """Set the floor and reserve from the disk's size; return the telemetry budget.

        ``max_bytes`` None is the default; ``in_use`` is what the outbox's
        files take already (it can be reused).
        """
        st = self._statvfs(str(self.db_path.parent))
        total = st.f_blocks * st.f_frsize
        self.floor = _clamp(total * 0.10, 128 * KB, 64 * KB * KB)
        self.reserve_bytes = _clamp(total * 0.05, 64 * KB, 8 * KB * KB) if self.primary else 0
        if self.reserve_bytes and not self.reserve_path.exists():
            self._allocate_reserve()
        want = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
        if not self.primary:
            return want
        room = self.free() + in_use - self.floor
        fits = max(64 * KB, room // 2)
        if want <= fits:
            return want
        log.warning(
            "outbox %s: max_bytes %d kB%s cannot fit: %d kB free on its disk (keeping %d kB"
            " free and a %d kB reserve); telemetry past %d kB is evicted, oldest first",
            self.db_path,
            want // KB,
            " (the default)" if max_bytes is None else "",
            self.free() // KB,
            self.floor // KB,
            self.reserve_bytes // KB,
            fits // KB,
        )
        return fits

    def due(self) -> bool:
        """Time to look at the free space again (throttled: statvfs per commit is waste)."""
        now = self._monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + CHECK_EVERY_S
        return True

    def low(self) -> str | None:
        """Why the disk counts as full now, or None."""
        free = self.free()
        if free < self.floor:
            where = self.db_path.parent
            return f"only {free // KB} kB free under {where} (keeping {self.floor // KB} kB)"
        return None

    def went_full(self, why: str, *, failed: bool) -> None:
        """The disk is full (``failed``: a write failed): say so once; release the reserve
        when it is needed (a failed write, or under half the floor left)."""
        if self.full is None:
            log.error("outbox %s: disk full: %s; evicting the oldest telemetry", self.db_path, why)
        self.full = why
        self._room_since = None
        urgent = failed or self.free() < self.floor // 2
        if urgent and self.reserve_path.exists():
            self.reserve_path.unlink()
            log.warning(
                "outbox %s: released the %d kB reserve file so alarms can still be written",
                self.db_path,
                self.reserve_bytes // KB,
            )

    def recovered(self) -> bool:
        """Room again (the floor and the reserve): allocate the reserve, clear ``full``."""
        if self.full is None:
            return False
        missing = 0 if self.reserve_path.exists() else self.reserve_bytes
        if self.free() < 2 * self.floor + missing:
            self._room_since = None
            return False
        now = self._monotonic()
        if self._room_since is None:
            self._room_since = now
        if now - self._room_since < RECOVER_S:
            return False
        if self.reserve_bytes and not self.reserve_path.exists() and not self._allocate_reserve():
            return False
        log.warning(
            "outbox %s: the disk has room again (%d kB free)", self.db_path, self.free() // KB
        )
        self.full = None
        return True

    def _allocate_reserve(self) -> bool:
        try:
            fd = os.open(self.reserve_path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.reserve_bytes)
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("outbox %s: cannot allocate the reserve file: %s", self.db_path, exc)
            self.reserve_path.unlink(missing_ok=True)
            return False
        return True
