"""The running gateway: sources, pipeline, alerting, patrol and delivery in one TaskGroup.

A source hands each Sample to the pipeline, which handles it at once, in the
source's own task (``_emit``): no hand-over to another task, so nothing
waits a turn of the event loop between a poll and its alarm (a queue in
between let alarms wait behind a burst of samples). Handling is
synchronous and cheap (tens of microseconds a sample), and a pipeline too
slow for the site shows as late polls (overruns) and data age, never as
dropped readings. The gateway's own health samples, thousands at a time on a
large site, go through a bounded queue and a pipeline task instead, in runs.
Either way each Sample is handled in order:

1. appends it to the outbox (and the console view) through ``Delivery``,
2. runs the alert rules on it; every alarm transition is appended too,
3. feeds patrol taps to the patrol check; its records and alarms follow.

A once-a-second tick drives everything time-based (on-delays, no-data,
shelve expiry, escalation, overdue rounds) and turns the gateway's own
health (sources down, sinks down, backlog, data age) into alarm signals.
``Gateway.run`` returns when the stop event is set (SIGINT/SIGTERM) or the
duration is over, and closes everything it opened. SIGHUP reloads the config
(gateway/reloader.py), restarting only the sources that changed (``SourceSet``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from gateway.alerting.config import Severity
from gateway.alerting.engine import AlertEngine
from gateway.clockwatch import WallStepWatch
from gateway.command_channels import command_channels
from gateway.config import Site
from gateway.delivery import Delivery
from gateway.errors import GatewayError
from gateway.local_http import serve_local_http
from gateway.model import HEALTH_KINDS, AlarmEvent, Clock, Sample, SystemClock
from gateway.outbox import Event
from gateway.patrol import PatrolEngine, SqlitePatrolStore, alarms_of, resolve_patrol, to_events
from gateway.patrol.findings import PatrolOutput
from gateway.plugins import Source, SourceContext
from gateway.process import (
    SHUTDOWN_LIMIT_S,
    ShutdownWatchdog,
    install_signal_handlers,
    tune_runtime,
)
from gateway.redact import plaintext_secret_warnings
from gateway.reloader import Reloader
from gateway.reports.schedule import ReportScheduler
from gateway.self_health import alarm_values, delivery_values, device_health
from gateway.source_set import SourceSet
from gateway.sources.device_poll import DeviceCounters
from gateway.storage_alarms import StorageAlarms
from gateway.tasks import cancel_and_wait

log = logging.getLogger(__name__)

# A source that crashed (and was restarted) holds its source-lost alarm this long.
CRASH_SIGNAL_S = 60.0

TICK_S = 1.0
# Samples the pipeline handles back to back before it yields to the event loop.
PIPELINE_RUN = 50
# The event-loop lag probe's period: a wake-up this much late or more is a
# stall every poll, alarm and sink waited through (gateway_health loop_lag_max_ms).
LAG_PROBE_S = 0.05

__all__ = ["Gateway", "run_site"]


class Gateway:
    """Builds the sources, alerting, patrol and delivery for a site and runs them."""

    def __init__(
        self,
        site: Site,
        clock: Clock | None = None,
        out: TextIO | None = None,
        *,
        state_dir: Path | None = None,
    ) -> None:
        self.site = site
        self.clock: Clock = clock or SystemClock()
        self.out = out or sys.stdout
        cfg = site.config
        self.queue: asyncio.Queue[Sample] = asyncio.Queue(maxsize=cfg.pipeline.queue_size)
        self.samples_out = 0
        self._max_age_s = 0.0
        self._max_lag_s = 0.0
        self.clock_watch = WallStepWatch(self.clock)
        # source id -> (monotonic time, error) of its last crash: a source-lost alarm.
        self._source_crashes: dict[str, tuple[float, str]] = {}
        self.set_device_tags()
        # Plugins are looked up here, at wiring time; samples never go through the registry.
        ctx = SourceContext(emit=self._emit, clock=self.clock, site_tags={"site": cfg.site})
        self.source_set = SourceSet(ctx, self.clock, on_crash=self._crashed)
        self.source_set.build(site)
        # Live lists, updated in place when a reload restarts sources.
        self.sources: list[Source] = self.source_set.sources
        self._patrol_readers: list[Source] = self.source_set.patrol_readers
        self.polled_sources: list[Source] = self.source_set.polled
        # State files live beside the outbox unless told otherwise.
        self.state_dir = state_dir or Path(cfg.outbox.path).parent
        units = self.source_set.units
        self.delivery = Delivery.from_config(cfg, self.clock, units=units, stdout=self.out)
        self.alerts: AlertEngine | None = None
        if cfg.rules or cfg.alerting is not None:
            self.alerts = AlertEngine(
                site,
                self.clock,
                publish=self._notify_mqtt,
                emit=self._append_alarms,
                on_sent=self._notification_sent,
            )
        self.storage = StorageAlarms(self.alerts)
        self.patrol: PatrolEngine | None = None
        patrol_cfg = resolve_patrol(cfg.patrol, site.path)
        if patrol_cfg is not None:
            store = SqlitePatrolStore(self.state_dir / "patrol-state.sqlite")
            self.patrol = PatrolEngine(patrol_cfg, self.clock, store)
        self.reloader = Reloader(self, patrol_cfg)
        self.reports: ReportScheduler | None = None
        if cfg.reports is not None:
            self.reports = ReportScheduler(site, self.clock, self.delivery.append_event)
        self.commands_handled = 0
        self._alarms_appended = asyncio.Event()
        self._confirm_failing = False
        # Armed by run_site only: in a test process a hard exit would end the test run.
        self.shutdown_watchdog: ShutdownWatchdog | None = None
        # Freeze what start-up built out of the cyclic GC (the daemon sets it; see run()).
        self.freeze_gc = False

    # ------------------------------------------------------------------ pipeline

    def device_counters(self) -> dict[str, DeviceCounters]:
        out: dict[str, DeviceCounters] = {}
        for s in self.sources:
            out.update(s.device_counters())
        return out

    async def _emit(self, sample: Sample) -> None:
        """A source's new sample: handled at once, in the source's task (module docstring)."""
        self._process(sample)

    async def _pipeline(self) -> None:
        run = 0
        while True:
            if self.queue.empty():
                run = 0
            elif run >= PIPELINE_RUN:
                # Queue.get does not yield while items are waiting: after a burst
                # (the per-device health samples) let the pollers and sinks run.
                run = 0
                await asyncio.sleep(0)
            sample = await self.queue.get()
            run += 1
            try:
                self._process(sample)
            finally:
                self.queue.task_done()

    def _process(self, sample: Sample) -> None:
        self.samples_out += 1
        # Data age: how long a reading waited between its read and the
        # outputs. Exported so falling behind is visible, never silent.
        # Real seconds, also when a replay runs the site's clock fast.
        age = (self.clock.now_ns() - sample.ts_ns) / 1e9 / self.clock.speed
        if age > self._max_age_s:
            self._max_age_s = age
        self._output(sample)
        if sample.kind in HEALTH_KINDS:
            return
        if self.alerts is not None:
            self._append_alarms(self.alerts.on_sample(sample))
        if self.patrol is not None and sample.kind == "patrol_tap":
            self._check_clock()  # a step must reach the patrol before a tap in the new time
            self._patrol_outputs(self.patrol.on_tap_sample(sample))

    def _output(self, sample: Sample) -> None:
        self.delivery.append_sample(sample)

    def _append_alarms(self, events: list[AlarmEvent]) -> None:
        for ev in events:
            self.delivery.append_alarm(ev)
        if events:
            self._alarms_appended.set()

    async def _confirm_alarms(self) -> None:
        """Drop alarm transitions from the engine's journal once the outboxes committed them."""
        while True:
            await self._alarms_appended.wait()
            self._alarms_appended.clear()
            if not await self._confirm_published():
                await asyncio.sleep(1.0)
                self._alarms_appended.set()  # try again: the journal keeps them meanwhile

    async def _confirm_published(self) -> bool:
        if self.alerts is None or self.alerts.store is None:
            return True
        # Everything journaled so far was appended already (engine.unpublished).
        try:
            head = self.alerts.journal_head()
            await self.delivery.flush()
            self.alerts.confirm_published(head)
        except GatewayError as exc:
            if not self._confirm_failing:  # once per episode, not every retry
                log.error("alarm transitions not yet committed to the outbox (kept): %s", exc)
            self._confirm_failing = True
            return False
        if self._confirm_failing:
            log.warning("alarm transitions committed to the outbox again")
            self._confirm_failing = False
        return True

    def _patrol_outputs(self, outputs: list[PatrolOutput]) -> None:
        for ev in to_events(outputs):
            self.delivery.append_event(ev)
        if self.alerts is None:
            return
        for f in alarms_of(outputs):
            raise_it = f.alarm_action in ("raise", "pulse")
            clear_it = f.alarm_action in ("clear", "pulse")
            rule, severity = f.alarm_identity()
            for active in [True] * raise_it + [False] * clear_it:
                self._append_alarms(
                    self.alerts.external(
                        f.alarm_key or f"patrol/{f.type}",
                        active,
                        severity=str(severity),
                        device=f.device or "patrol",
                        message=f.message,
                        rule=rule,
                        kind="patrol",
                        point=f.checkpoint,
                        area="patrol",
                        ts_ns=f.ts_ns,
                    )
                )

    async def _notify_mqtt(self, topic: str, payload: dict[str, Any]) -> None:
        """The alerting MQTT channel: a notification rides the outbox like any event."""
        self.delivery.append_event(
            Event(
                kind="notification",
                ts_ns=self.clock.now_ns(),
                data={"topic": topic, **payload},
                measurement="notification",
            )
        )

    def _notification_sent(self, record: dict[str, Any]) -> None:
        """Every message delivered, on any channel, as an event: who was told of which alarms."""
        self.delivery.append_event(
            Event(
                kind="notification.sent",
                ts_ns=self.clock.now_ns(),
                data=record,
                measurement="notification",
            )
        )

    # ------------------------------------------------------------------ health and time

    def health_samples(self) -> list[Sample]:
        """The gateway's own health as samples: one per device, one for the gateway."""
        return list(self.iter_health_samples())

    def iter_health_samples(self) -> Iterator[Sample]:
        """``health_samples`` one at a time (a large site has thousands of devices)."""
        now = self.clock.now_ns()
        tags = {"site": self.site.config.site}
        for dev_id, c in self.device_counters().items():
            yield device_health(dev_id, c, now, {**tags, **self._device_tags.get(dev_id, {})})
        values: dict[str, float | int | bool | str] = {
            "samples": self.samples_out,
            "queue_depth": self.queue.qsize(),
            "data_age_max_s": round(self._max_age_s, 6),
            "loop_lag_max_ms": round(self._max_lag_s * 1000, 3),
            "clock_steps": self.clock_watch.steps,
            "clock_step_last_s": round(self.clock_watch.last_step_s, 3),
        }
        values.update(delivery_values(self.delivery.stats()))
        if self.alerts is not None:
            values.update(alarm_values(self.alerts.counters()))
        self._max_age_s = 0.0
        self._max_lag_s = 0.0
        yield Sample(device="gateway", kind="gateway_health", ts_ns=now, values=values, tags=tags)

    async def _health(self) -> None:
        interval = self.site.config.pipeline.health_interval_s
        while True:
            await asyncio.sleep(interval)
            for i, s in enumerate(self.iter_health_samples(), 1):
                await self.queue.put(s)
                if i % PIPELINE_RUN == 0:
                    await asyncio.sleep(0)  # a large site: thousands, not in one go

    def _crashed(self, source_id: str, exc: BaseException) -> None:
        why = f"{type(exc).__name__}: {exc}"
        self._source_crashes[source_id] = (self.clock.monotonic(), why)

    def set_device_tags(self) -> None:
        """Each device's tags, for its health samples (at start and after a reload)."""
        self._device_tags = {d.id: dict(d.tags) for d in self.site.config.devices}

    def _health_signals(self) -> list[tuple[str, bool, str]]:
        """(signal, ok, detail) for every health alarm the gateway raises on itself."""
        out: list[tuple[str, bool, str]] = []
        for src in self.sources:
            sid = src.cfg.id
            crash = self._source_crashes.get(sid)
            if crash is not None and self.clock.monotonic() - crash[0] < CRASH_SIGNAL_S:
                out.append((f"source:{sid}", False, f"crashed and restarted: {crash[1]}"))
            elif src.link_ok is not None:
                out.append((f"source:{sid}", src.link_ok, src.link_error or "link up"))
        stats = self.delivery.stats()
        for name, st in stats.sinks.items():
            if st.attempts or st.connected:
                out.append((f"sink:{name}", st.connected, st.last_error or "delivering"))
        if stats.outbox is not None:
            age = stats.oldest_undelivered_age_s
            limit = self.site.config.pipeline.max_delivery_age_s
            out.append(("outbox:backlog", age <= limit, f"oldest undelivered {age:.0f} s"))
        out += self.storage.signals(stats, self.patrol)
        if self.reports is not None:
            out.append(self.reports.signal())
        out.append(self.reloader.signal())
        return out

    def _check_clock(self) -> None:
        step_ns = self.clock_watch.check()
        if step_ns is None:
            return
        if self.alerts is not None:
            self.alerts.wall_stepped(step_ns)
        if self.patrol is not None:
            self.patrol.wall_stepped(step_ns)

    def tick(self) -> None:
        """Everything time-based, once a second."""
        self._check_clock()
        if self.alerts is not None:
            self._append_alarms(self.alerts.tick())
            for name, ok, detail in self._health_signals():
                self._append_alarms(self.alerts.health(name, ok, detail))
            # A step is a warning: timestamps shift, no duration does.
            step = self.clock_watch.signal()
            self._append_alarms(self.alerts.health(*step, severity=Severity.MEDIUM))
            self._append_alarms(self.storage.check(self.delivery.stats()))
        if self.patrol is not None:
            self._patrol_outputs(self.patrol.tick())
            for src in self._patrol_readers:
                for dev_id, counters in src.device_counters().items():
                    self._patrol_outputs(
                        self.patrol.reader_frame_errors(dev_id, counters.frame_errors)
                    )
                    self._patrol_outputs(self.patrol.reader_overflow(dev_id, counters.overruns))

    async def _lag_probe(self) -> None:
        """Measure how late the event loop runs a timer (wall time, not the site clock)."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + LAG_PROBE_S
            await asyncio.sleep(LAG_PROBE_S)
            lag = loop.time() - due
            if lag > self._max_lag_s:
                self._max_lag_s = lag

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self.tick()

    # ------------------------------------------------------------------ commands

    def handle_command(self, payload: bytes | str | dict[str, Any], actor: str) -> dict[str, Any]:
        """An operator command (ack, shelve, reset...): apply it and return the reply.

        Bad payloads and illegal transitions give an error reply and change nothing.
        """
        from gateway.alerting.commands import error_reply
        from gateway.errors import AlarmError, CommandError

        if self.alerts is None:
            return {"ok": False, "error": "alerting is not configured on this gateway"}
        if (reload_reply := self.reloader.command(payload, actor)) is not None:
            return reload_reply
        try:
            events, reply = self.alerts.command(payload, actor)
        except (CommandError, AlarmError) as exc:
            log.warning("rejected command from %s: %s", actor, exc)
            return error_reply(payload, exc)
        self._append_alarms(events)
        self.commands_handled += 1
        return reply

    # ------------------------------------------------------------------ running

    async def run(self, stop: asyncio.Event, duration: float | None = None) -> None:
        """Run until ``stop`` is set or ``duration`` seconds passed."""
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.delivery)
            if self.alerts is not None:
                await stack.enter_async_context(self.alerts)
                # Saved before a crash but maybe not in the outbox: publish them now.
                replay, _ = self.alerts.unpublished()
                if replay:
                    log.warning("publishing %d alarm transitions saved before a stop", len(replay))
                self._append_alarms(replay)
            if self.patrol is not None:
                # A clean stop checkpoints its WAL: one self-contained file is left.
                stack.callback(self.patrol.store.close)
            self._append_alarms(self.storage.opened(self.delivery, self.patrol))
            stack.push_async_callback(self.source_set.stop)
            await self.source_set.start()
            self.reloader.write_pid()
            if self.freeze_gc:
                # What start-up built lives as long as the process (profiles,
                # rules, the alarm book): keep it out of the cyclic collector,
                # or every full collection walks it and stalls the event loop
                # (docs/bench.md, "Hot-path changes").
                gc.collect()
                gc.freeze()
            try:
                async with asyncio.TaskGroup() as tg:
                    tasks = [tg.create_task(self._pipeline())]
                    tasks.append(tg.create_task(self._health()))
                    tasks.append(tg.create_task(self._ticker()))
                    tasks.append(tg.create_task(self._lag_probe()))
                    if self.reports is not None:
                        tasks.append(tg.create_task(self.reports.run_forever()))
                    tasks.append(tg.create_task(self.delivery.run()))
                    tasks.append(tg.create_task(serve_local_http(self)))
                    if self.alerts is not None:
                        tasks.append(tg.create_task(self.alerts.run_notifier()))
                        tasks.append(tg.create_task(self._confirm_alarms()))
                    for extra in self._extra_tasks():
                        tasks.append(tg.create_task(extra))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=duration)
                    if self.shutdown_watchdog is not None:
                        self.shutdown_watchdog.start()
                    # No reload from now on; then sources, then let the pipeline drain.
                    await self.reloader.stop()
                    await self.source_set.stop()
                    await self._drain()
                    await cancel_and_wait(tasks)
            except* asyncio.CancelledError:
                pass
            await self.delivery.flush()
            await self._confirm_published()

    async def _drain(self, limit_s: float = 5.0) -> None:
        """Let the pipeline finish what the sources already read (bounded)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.queue.join(), limit_s)

    def _extra_tasks(self) -> list[Any]:
        """The sinks' command channels (MQTT's), when alerting and commands are on."""
        if self.alerts is None:
            return []
        return command_channels(self.site.config, self.state_dir, self.handle_command)


async def run_site(site: Site, duration: float | None = None, clock: Clock | None = None) -> int:
    stop = asyncio.Event()
    gw: Gateway | None = None

    def reload() -> None:
        if gw is not None and not stop.is_set():
            gw.reloader.request()

    remove = install_signal_handlers(stop, reload)
    try:
        tune_runtime()
        gw = Gateway(site, clock)
        gw.freeze_gc = True
        for warning in plaintext_secret_warnings(site.config):
            log.warning("%s", warning)
        log.info(
            "gateway for site %s: %d sources, %d devices",
            site.config.site,
            len(gw.sources),
            sum(1 for d in site.config.devices if d.enabled),
        )
        # Left armed after run() returns: it also covers the event loop's own teardown,
        # and it is a daemon thread, so a normal exit does not wait for it.
        gw.shutdown_watchdog = ShutdownWatchdog(SHUTDOWN_LIMIT_S)
        await gw.run(stop, duration)
    finally:
        remove()
    return 0
