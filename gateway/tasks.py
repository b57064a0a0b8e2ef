"""Task helpers shared by the gateway's long-running parts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)


async def cancel_and_wait(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until every one has ended, cancelling again if needed.

    Python 3.11's ``asyncio.wait_for`` can swallow a cancellation that arrives
    just as the awaited future completes (fixed in 3.12); a library using it
    (pymodbus does, per request) then keeps running and the stop hangs.
    Cancelling again until the task is done makes the stop reliable.
    """
    for t in tasks:
        t.cancel()
    pending = [t for t in tasks if not t.done()]
    while pending:
        await asyncio.wait(pending, timeout=0.5)
        pending = [t for t in pending if not t.done()]
        for t in pending:
            t.cancel()


async def supervise(
    name: str,
    run: Callable[[], Awaitable[None]],
    *,
    pause_s: float = 5.0,
    on_crash: Callable[[BaseException], None] | None = None,
) -> None:
    """Run ``run()`` until it returns or is cancelled; restart it after ``pause_s`` if it raises.

    A source is one physical connection: a bug or an unexpected library error in
    one must not end the gateway's task group, which would stop every other
    source and the alarm path with it. Each crash is logged with its traceback
    and reported through ``on_crash`` (a health signal), then the source starts
    again, as a device that came back would.
    """
    while True:
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("%s crashed, restarting in %g s", name, pause_s, exc_info=exc)
            if on_crash is not None:
                on_crash(exc)
        await asyncio.sleep(pause_s)
