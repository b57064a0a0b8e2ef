"""A source whose task raises is restarted after a pause; the others go on and a stop still works.

On main a source that raised (an M-Bus port that termios refused after a
kill -9 of the previous gateway) ended the gateway's task group: every other
source was cancelled, one of them swallowed the cancel (Python 3.11's
``wait_for``), and the process hung, polling nothing and ignoring SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.tasks import cancel_and_wait, supervise


async def test_a_crashing_run_is_restarted_and_logged_once_per_crash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs = 0
    steady = asyncio.Event()

    async def run() -> None:
        nonlocal runs
        runs += 1
        if runs <= 2:
            raise RuntimeError(f"boom {runs}")
        steady.set()
        await asyncio.Event().wait()

    crashes: list[str] = []
    with caplog.at_level(logging.ERROR):
        task = asyncio.create_task(
            supervise("mbus-1", run, pause_s=0.01, on_crash=lambda e: crashes.append(str(e)))
        )
        await asyncio.wait_for(steady.wait(), 5)
        await cancel_and_wait([task])
    assert runs == 3
    assert crashes == ["boom 1", "boom 2"]
    assert sum("mbus-1" in r.getMessage() for r in caplog.records) == 2
    assert task.cancelled()


async def test_a_run_that_returns_is_not_restarted() -> None:
    runs = 0

    async def run() -> None:
        nonlocal runs
        runs += 1

    await asyncio.wait_for(supervise("idle", run, pause_s=0.01), 5)
    assert runs == 1
