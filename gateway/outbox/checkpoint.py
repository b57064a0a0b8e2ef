"""WAL checkpoints of the outbox file, on a thread and a connection of their own.

PASSIVE: a checkpoint copies what it can without waiting for the writer, so
commits (and the alarms in them) never wait for one, as they did when a
commit copied the WAL into the database itself (docs/bench.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# The outbox's one logger, whichever part logs.
log = logging.getLogger("gateway.outbox")

# How often ``run`` checkpoints.
CHECKPOINT_EVERY_S = 1.0


class Checkpointer:
    """``run`` checkpoints every ``CHECKPOINT_EVERY_S`` until cancelled; ``aclose`` ends it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None  # the checkpointer's thread only

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-ckpt")
        failures = 0
        while True:
            await asyncio.sleep(CHECKPOINT_EVERY_S)
            try:
                await loop.run_in_executor(self._executor, self._checkpoint)
            except sqlite3.Error as exc:
                # Once is nothing (e.g. busy); a run of failures means the WAL grows.
                failures += 1
                if failures == 10:
                    log.warning("outbox: checkpoints keep failing (%s); the WAL grows", exc)
            else:
                failures = 0

    async def aclose(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        loop = asyncio.get_running_loop()
        with contextlib.suppress(sqlite3.Error):
            await loop.run_in_executor(executor, self._close)
        executor.shutdown(wait=True)

    def _checkpoint(self) -> None:
        if self._db is None:
            self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
