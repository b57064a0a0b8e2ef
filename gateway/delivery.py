"""Delivery: the outbox plus one worker per sink, as one component the app wires in.

    async with Delivery.from_config(site_config, clock) as delivery:
        tg.create_task(delivery.run())          # until cancelled
        delivery.append_sample(sample)          # never blocks
        delivery.append_alarm(event)
        delivery.append_event(Event(...))
        delivery.stats()                        # backlog, data age, evictions, sink states

``append_*`` is synchronous and cheap: the console sink (a live view, not a
durable sink) prints at once, and the item joins the outbox's in-memory batch,
committed within ``outbox.flush_interval_s``; ``await flush()`` waits for that
commit when a caller must know an item is durable.

Each durable sink (every configured sink plugin that is not a live view, and
any ``extra_sinks``) gets a worker that
reads from its own outbox cursor, sends, and advances the cursor only after
the sink returned (the far side acknowledged). On failure it reconnects with
exponential back-off (``retry_min_s`` doubling up to ``retry_max_s``, with
jitter so a fleet does not reconnect in step) and retries the same batch.
It logs one line when an outage starts (and again only if the cause
changes, e.g. unreachable -> credentials refused) and one when delivery
resumes; retries are logged at debug level. Nothing a sink raises stops the
gateway: wrong credentials, an unreachable server or a bug in a sink are an
outage of that sink, visible in ``stats()``, while the other sinks go on.
``replace_sink`` swaps one sink for a new config (a reload) on its cursor.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pydantic import BaseModel

from gateway.alarm_lane import AlarmLane, lane_outbox_path
from gateway.config import OutboxConfig, Sinks, SiteConfig
from gateway.errors import GatewayError, SinkAuthError
from gateway.model import AlarmEvent, Clock, Sample, SystemClock
from gateway.outbox import Event, Item, Outbox, OutboxStats, Record, RecordKind
from gateway.plugins import registry
from gateway.plugins.base import LiveView, SinkContext
from gateway.redact import redact_text
from gateway.sinks.base import Sink, SinkRejected
from gateway.sqlite_file import FileIncident

log = logging.getLogger(__name__)

# A worker with nothing to do still wakes this often (a missed wake-up costs
# at most this much latency, never a stall).
_IDLE_WAKE_S = 1.0


@dataclass(slots=True)
class SinkState:
    """How one sink is doing; ``stats()`` returns copies."""

    name: str
    connected: bool = False
    delivered: int = 0
    rejected: int = 0
    attempts: int = 0
    last_error: str | None = None
    down_since_ns: int | None = None
    last_ok_ns: int | None = None

    def copy(self) -> SinkState:
        return SinkState(
            self.name,
            self.connected,
            self.delivered,
            self.rejected,
            self.attempts,
            self.last_error,
            self.down_since_ns,
            self.last_ok_ns,
        )


@dataclass(slots=True, frozen=True)
class DeliveryStats:
    """Health of delivery: export it, and alarm on backlog and data age."""

    outbox: OutboxStats | None
    sinks: dict[str, SinkState]

    @property
    def backlog(self) -> int:
        return self.outbox.max_backlog if self.outbox else 0

    @property
    def oldest_undelivered_age_s(self) -> float:
        return self.outbox.oldest_undelivered_age_s if self.outbox else 0.0

    @property
    def evicted(self) -> int:
        return self.outbox.evicted if self.outbox else 0


def _fan_out(views: Sequence[LiveView]) -> Callable[[Item], None]:
    def emit(item: Item) -> None:
        for view in views:
            view.emit(item)

    return emit


class Delivery:
    """Outbox + sink workers + the console view (see the module docstring)."""

    def __init__(
        self,
        site: str,
        sinks: Sinks,
        outbox: OutboxConfig,
        clock: Clock | None = None,
        *,
        extra_sinks: Sequence[Sink] = (),
        units: Mapping[str, Mapping[str, str]] | None = None,
        stdout: TextIO | None = None,
        outbox_path: str | Path | None = None,
        primary: bool = True,
    ) -> None:
        self.site = site
        self._clock = clock or SystemClock()
        # Every configured sink through its plugin (gateway.plugins), built once here.
        ctx = SinkContext(site=site, clock=self._clock, units=units or {}, stdout=stdout)
        self._ctx = ctx
        plugins = registry().sinks
        views: list[LiveView] = []
        durable: list[Sink] = []
        lane_sinks: list[Sink] = []
        lanes: dict[str, tuple[RecordKind, ...]] = {}
        for name, cfg in sinks.configured().items():
            plugin = plugins[name]
            if plugin.live:
                views.append(plugin.make_live(cfg, ctx))
                continue
            durable.append(plugin.make(cfg, ctx))
            lane_sink = plugin.make_lane(cfg, ctx)
            if lane_sink is not None:
                lane_sinks.append(lane_sink)
                # Its alarms ride the lane: the main outbox keeps the rest for it.
                lanes[durable[-1].name] = (RecordKind.SAMPLE, RecordKind.EVENT)
        # A live view is called for every item: one bound method, no loop, when there is one.
        self._live: Callable[[Item], None] | None = (
            views[0].emit if len(views) == 1 else _fan_out(views) if views else None
        )
        main_path = outbox_path if outbox_path is not None else outbox.path
        self._lane: AlarmLane | None = None
        if lane_sinks:
            # Alarms on their own thread, outbox and connection (gateway/alarm_lane.py).
            self._lane = AlarmLane(
                Delivery(
                    site,
                    Sinks(),
                    outbox,
                    clock,
                    extra_sinks=lane_sinks,
                    outbox_path=lane_outbox_path(main_path),
                    primary=False,
                ),
                name="alarm-lane",
            )
        durable.extend(extra_sinks)
        self.sinks: list[Sink] = durable
        self._outbox: Outbox | None = None
        if durable:
            self._outbox = Outbox(
                main_path,
                [s.name for s in durable],
                # Unset: sized against the free space at open (gateway/disk_space.py).
                max_bytes=outbox.max_bytes if "max_bytes" in outbox.model_fields_set else None,
                clock=self._clock,
                synchronous=outbox.synchronous,
                flush_interval_s=outbox.flush_interval_s,
                max_pending=outbox.max_pending,
                lanes=lanes,
                primary=primary,
            )
        self._states = {s.name: SinkState(s.name) for s in durable}
        self._healthy: dict[str, bool] = {s.name: False for s in durable}
        # Running workers by sink name, and the group they run in (replace_sink).
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._tg: asyncio.TaskGroup | None = None
        # Held while a worker moves its cursor: a sink is replaced only between two acks.
        self._acking: dict[str, asyncio.Lock] = {s.name: asyncio.Lock() for s in durable}

    @classmethod
    def from_config(
        cls,
        config: SiteConfig,
        clock: Clock | None = None,
        *,
        extra_sinks: Sequence[Sink] = (),
        units: Mapping[str, Mapping[str, str]] | None = None,
        stdout: TextIO | None = None,
        outbox_path: str | Path | None = None,
    ) -> Delivery:
        return cls(
            config.site,
            config.sinks,
            config.outbox,
            clock,
            extra_sinks=extra_sinks,
            units=units,
            stdout=stdout,
            outbox_path=outbox_path,
        )

    @property
    def outbox(self) -> Outbox | None:
        return self._outbox

    def file_incidents(self) -> list[FileIncident]:
        """Outbox files (main and alarm lane) found damaged or emptied and replaced at open."""
        lane = self._lane.delivery.outbox if self._lane is not None else None
        return [ob.incident for ob in (self._outbox, lane) if ob is not None and ob.incident]

    async def __aenter__(self) -> Delivery:
        if self._outbox is not None:
            await self._outbox.open()
        if self._lane is not None:
            try:
                await asyncio.to_thread(self._lane.start)
            except BaseException:
                if self._outbox is not None:
                    await self._outbox.aclose()
                raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self._lane is not None:
                await asyncio.to_thread(self._lane.stop)
        finally:
            if self._outbox is not None:
                await self._outbox.aclose()

    # ------------------------------------------------------------------ producing

    def _append(self, item: Item) -> None:
        if self._live is not None:
            self._live(item)
        if self._outbox is not None:
            self._outbox.append(item)
        if self._lane is not None and isinstance(item, AlarmEvent):
            self._lane.append(item)

    def append_sample(self, sample: Sample) -> None:
        self._append(sample)

    def append_alarm(self, event: AlarmEvent) -> None:
        self._append(event)

    def append_event(self, event: Event) -> None:
        self._append(event)

    async def flush(self) -> None:
        """Return once everything appended so far is committed to the outbox."""
        if self._outbox is not None:
            await self._outbox.flush()
        if self._lane is not None:
            await self._lane.flush()

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Commit appends and run one worker per sink, until cancelled."""
        if self._outbox is None:
            await asyncio.Event().wait()  # console only: nothing to deliver durably
            return
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._outbox.run_flusher(), name="outbox-flusher")
            tg.create_task(self._outbox.run_checkpointer(), name="outbox-checkpointer")
            self._tg = tg
            try:
                for sink in self.sinks:
                    self._start_worker(sink)
                await asyncio.Event().wait()
            finally:
                self._tg = None

    def _start_worker(self, sink: Sink) -> None:
        assert self._tg is not None and self._outbox is not None
        task = self._tg.create_task(self._worker(self._outbox, sink), name=f"sink-{sink.name}")
        self._workers[sink.name] = task

    async def replace_sink(self, name: str, cfg: BaseModel) -> None:
        """Put a sink built from ``cfg`` (plugin ``name``) in place of the one of the same
        name; it resumes on that sink's outbox cursor.

        The old worker is cancelled between two acks (never while its cursor moves) and
        its connection closed. A batch it was sending is not acknowledged, so the new
        sink sends it again: at-least-once, as after a crash; nothing is skipped.
        """
        new = registry().sinks[name].make(cfg, self._ctx)
        at = next((i for i, s in enumerate(self.sinks) if s.name == new.name), None)
        if at is None:
            raise GatewayError(f"no running sink {new.name!r} to replace")
        task = self._workers.pop(new.name, None)
        if task is not None:
            async with self._acking[new.name]:
                task.cancel()
            await asyncio.wait([task])
        self.sinks[at] = new
        self._states[new.name].connected = False
        log.info("sink %s: restarted with its new config, from its outbox cursor", new.name)
        if self._tg is not None:
            self._start_worker(new)

    def stats(self) -> DeliveryStats:
        main = self._outbox.stats() if self._outbox else None
        sinks = {name: st.copy() for name, st in self._states.items()}
        if self._lane is not None:
            lane = self._lane.outbox_stats()
            if main is not None and lane is not None:
                # One view: the lane's rows and its sink's backlog join the main
                # outbox's, with the alarms still on their way to the lane.
                transit = self._lane.in_transit
                main = dataclasses.replace(
                    main,
                    rows=main.rows + lane.rows,
                    bytes=main.bytes + lane.bytes,
                    file_bytes=main.file_bytes + lane.file_bytes,
                    pending=main.pending + lane.pending + transit,
                    quarantined=main.quarantined + lane.quarantined,
                    quarantined_new=main.quarantined_new + lane.quarantined_new,
                    disk_full=main.disk_full or lane.disk_full,
                    sinks={
                        **main.sinks,
                        **{
                            name: dataclasses.replace(b, backlog=b.backlog + transit)
                            for name, b in lane.sinks.items()
                        },
                    },
                )
            sinks.update(self._lane.sink_states())
        return DeliveryStats(outbox=main, sinks=sinks)

    async def _worker(self, outbox: Outbox, sink: Sink) -> None:
        st = self._states[sink.name]
        delay = sink.retry_min_s
        while True:
            st.attempts += 1
            try:
                async with sink:
                    st.connected = True
                    await self._pump(outbox, sink, st)
            except (GatewayError, OSError) as exc:
                self._went_down(sink, st, exc, delay)
            except Exception as exc:
                # A bug in a sink is an outage of that sink, not of the gateway.
                self._went_down(sink, st, exc, delay, unexpected=True)
            st.connected = False
            if self._healthy[sink.name]:
                delay = sink.retry_min_s
                self._healthy[sink.name] = False
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, sink.retry_max_s)

    def _went_down(
        self, sink: Sink, st: SinkState, exc: BaseException, delay: float, unexpected: bool = False
    ) -> None:
        # Also shown in the gateway's health detail: no credentials in it.
        msg = redact_text(f"{type(exc).__name__}: {exc}" if unexpected else str(exc))
        if st.down_since_ns is None:
            st.down_since_ns = self._clock.now_ns()
            hint = " (check username/password)" if isinstance(exc, SinkAuthError) else ""
            log.error(
                "sink %s: cannot deliver: %s%s; data waits in the outbox,"
                " retrying with back-off up to %.0f s",
                sink.name,
                msg,
                hint,
                sink.retry_max_s,
                exc_info=exc if unexpected else None,
            )
        elif msg != st.last_error:
            log.error("sink %s: still down, now: %s", sink.name, msg)
        else:
            log.debug("sink %s: retry in %.1f s failed: %s", sink.name, delay, msg)
        st.last_error = msg

    def _came_up(self, sink: Sink, st: SinkState) -> None:
        self._healthy[sink.name] = True
        st.last_ok_ns = self._clock.now_ns()
        if st.down_since_ns is not None:
            outage = (st.last_ok_ns - st.down_since_ns) / 1e9
            log.warning(
                "sink %s: delivering again after %.1f s (%d attempts)",
                sink.name,
                outage,
                st.attempts,
            )
            st.down_since_ns = None
            st.last_error = None
            st.attempts = 0

    async def _pump(self, outbox: Outbox, sink: Sink, st: SinkState) -> None:
        name = sink.name
        lingered = False
        while True:
            outbox.clear_new_data(name)
            records, upto = await outbox.read_batch(name, sink.batch_size)
            if upto is None:
                await outbox.wait_for_data(name, _IDLE_WAKE_S)
                continue
            if not records:
                # Only rows of other lanes: move over them (nothing to send).
                async with self._acking[name]:
                    await outbox.ack(name, upto)
                continue
            if len(records) < sink.batch_size and sink.flush_interval_s > 0 and not lingered:
                # Let a partial batch fill for a moment: fewer, larger requests.
                lingered = True
                await asyncio.sleep(sink.flush_interval_s)
                continue
            lingered = False
            rejected = await self._send(sink, records)
            async with self._acking[name]:
                await outbox.ack(name, upto)
            st.delivered += len(records) - rejected
            st.rejected += rejected
            self._came_up(sink, st)

    async def _send(self, sink: Sink, records: Sequence[Record]) -> int:
        """Send; on a permanent rejection, bisect to skip only the bad records."""
        try:
            await sink.send(records)
            return 0
        except SinkRejected as exc:
            if len(records) == 1:
                log.error(
                    "sink %s: record %d (%s) rejected for good, skipped: %s",
                    sink.name,
                    records[0].seq,
                    records[0].kind,
                    exc,
                )
                return 1
        half = len(records) // 2
        return await self._send(sink, records[:half]) + await self._send(sink, records[half:])
