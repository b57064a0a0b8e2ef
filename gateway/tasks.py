"""Task helpers shared by the gateway's long-running parts."""

from __future__ import annotations

import asyncio
from typing import Any


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
