"""The MQTT alarm lane: alarm transitions on their own thread, event loop, outbox and connection.

Telemetry keeps the main event loop busy (on a large site, polls, rules and
batches take more than half a core), and an alarm handed along that loop
waits its turn at every step: the outbox flusher, the commit, the sink
worker, the publish (docs/bench.md gives the latencies measured with and
without the lane). On the lane it does not:

    main loop:  rules -> Delivery.append_alarm -> AlarmLane.append ─┐ (thread-safe hand-over)
    lane loop:  outbox (own file) -> commit -> MQTT publish (own connection) <─┘

The lane is a complete ``Delivery`` with one sink (the alarms-only MQTT sink)
and its own outbox file (``<outbox>-alarms.sqlite``), run by ``asyncio.run``
in a daemon thread. Durability is unchanged: the alarm is committed to that
outbox before it is published, the cursor moves only on PUBACK, and after a
restart the lane delivers what it had not. The alarm also goes to the main
outbox, for InfluxDB and the events topic. An alarm the lane refused (it was
not running) makes ``flush`` raise, so the alarm engine's journal keeps it
and the next start publishes it (gateway/alerting/store.py).

Thread safety: ``append`` hands the event to the lane's loop with
``call_soon_threadsafe``; ``flush`` runs on the lane's loop and is awaited
from the caller's; ``stats`` reads the lane's mirrors, which are plain
values updated by the lane's loop (a reading may be a moment old).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError
from gateway.model import AlarmEvent
from gateway.outbox import OutboxStats
from gateway.tasks import cancel_and_wait

log = logging.getLogger(__name__)

# How long start() waits for the lane's outbox to open, and stop() for it to close.
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0


def lane_outbox_path(main: str | Path) -> Path:
    """``gateway-outbox.sqlite`` -> ``gateway-outbox-alarms.sqlite`` (same folder)."""
    p = Path(main)
    return p.with_name(f"{p.stem}-alarms{p.suffix or '.sqlite'}")


class AlarmLane:
    """Run ``delivery`` (a ``gateway.delivery.Delivery``) on a thread of its own.

    ``delivery`` must not be entered yet: the lane opens, runs and closes it on
    its own loop. Call ``start`` (blocking: use ``asyncio.to_thread``) and
    ``stop`` likewise.
    """

    def __init__(self, delivery: Any, name: str = "alarm-lane") -> None:
        self.delivery = delivery
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        # Alarms handed over but not yet in the lane's outbox; each counter is
        # written by one thread only (append: the caller's; _receive: the lane's).
        self._handed = 0
        self._received = 0
        # Alarms refused because the lane was not running: flush() reports them,
        # so the caller keeps them in the alarm journal for the next start.
        self._refused = 0
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    # ------------------------------------------------------------------ caller's side

    def start(self) -> None:
        """Start the thread and wait until the lane's outbox is open (raises if it failed)."""
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise GatewayError(f"{self.name}: not ready within {START_TIMEOUT_S:g} s")
        if self._failed is not None:
            raise self._failed

    def stop(self) -> None:
        """Stop the lane's worker, commit and close its outbox, join the thread."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # its loop already ended
                loop.call_soon_threadsafe(stop.set)
        self._thread.join(STOP_TIMEOUT_S)
        if self._thread.is_alive():
            log.error("%s: did not stop within %g s", self.name, STOP_TIMEOUT_S)

    def append(self, event: AlarmEvent) -> bool:
        """Hand an alarm transition to the lane (never blocks); False if the lane is not running.

        Only possible around start and stop: the caller's main outbox still
        has the alarm (InfluxDB, the events topic).
        """
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._receive, event)
                self._handed += 1
                return True
            except RuntimeError:
                pass  # its loop has just ended
        log.error("%s is not running: alarm %s not published on it", self.name, event.alarm_id)
        self._refused += 1
        return False

    def _receive(self, event: AlarmEvent) -> None:
        self.delivery.append_alarm(event)
        self._received += 1

    @property
    def in_transit(self) -> int:
        """Alarms handed over that the lane's loop has not taken yet (stats count them)."""
        return max(0, self._handed - self._received)

    async def flush(self) -> None:
        """Return once everything handed over so far is committed to the lane's outbox.

        Raises GatewayError if an alarm was refused (the lane was not running).
        """
        if self._refused:
            raise GatewayError(f"{self.name}: {self._refused} alarms refused (not running)")
        loop = self._loop
        if loop is None or not self._thread.is_alive():
            return
        fut: concurrent.futures.Future[None] = asyncio.run_coroutine_threadsafe(
            self._flush_after_handover(), loop
        )
        await asyncio.wrap_future(fut)

    async def _flush_after_handover(self) -> None:
        # Runs after every append() handed over before it (call_soon_threadsafe
        # callbacks run in order), so those are in the batch.
        await self.delivery.flush()

    def outbox_stats(self) -> OutboxStats | None:
        ob = self.delivery.outbox
        return ob.stats() if ob is not None else None

    def sink_states(self) -> dict[str, Any]:
        return dict(self.delivery.stats().sinks)

    # ------------------------------------------------------------------ lane's thread

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported to start(), or logged
            if not self._ready.is_set():
                self._failed = exc
                self._ready.set()
            else:
                log.exception("%s stopped on an error", self.name)

    async def _run(self) -> None:
        self._stop = asyncio.Event()
        async with self.delivery:
            self._loop = asyncio.get_running_loop()
            task = asyncio.create_task(self.delivery.run(), name=f"{self.name}-delivery")
            self._ready.set()
            stop = asyncio.create_task(self._stop.wait())
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("%s: delivery ended: %s", self.name, task.exception())
            await cancel_and_wait([task, stop])
        self._loop = None
