"""The running gateway: sources, pipeline, alerting, patrol and delivery in one TaskGroup.

A source hands each Sample to the pipeline, which handles it at once, in the
source's own task (``_emit``): no hand-over to another task, so nothing
waits a turn of the event loop between a poll and its alarm (bench: a queue
in between let alarms wait behind a hundred samples in a burst). Handling is
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
duration is over, and closes everything it opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from gateway.alerting.config import Severity
from gateway.alerting.engine import AlertEngine
from gateway.clockwatch import WallStepWatch
from gateway.config import Site
from gateway.delivery import Delivery
from gateway.errors import GatewayError
from gateway.local_http import serve_local_http
from gateway.model import HEALTH_KINDS, AlarmEvent, Clock, Sample, SystemClock
from gateway.outbox import Event
from gateway.patrol import PatrolEngine, SqlitePatrolStore, alarms_of, resolve_patrol, to_events
from gateway.patrol.findings import PatrolOutput
from gateway.plugins import BoundDevice, Source, SourceContext, registry
from gateway.plugins.base import CommandContext
from gateway.redact import plaintext_secret_warnings
from gateway.reports.schedule import ReportScheduler
from gateway.sources.device_poll import DeviceCounters
from gateway.storage_alarms import StorageAlarms
from gateway.tasks import cancel_and_wait, supervise

log = logging.getLogger(__name__)

# A clean stop flushes the outbox and closes every connection in well under
# this; past it something is stuck and systemd/an operator would wait forever.
SHUTDOWN_LIMIT_S = 20.0
# A source that crashed (and was restarted) holds its source-lost alarm this long.
CRASH_SIGNAL_S = 60.0


class ShutdownWatchdog:
    """A thread that ends the process if shutdown hangs, after dumping every stack.

    A thread, not a task: it must work even if the event loop itself is blocked.
    Nothing is lost by the hard exit: what was not delivered is in the outbox.
    """

    def __init__(self, limit_s: float) -> None:
        self._timer = threading.Timer(limit_s, self._fire)
        self._timer.daemon = True
        self.limit_s = limit_s
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        if not self._timer.is_alive():
            self._loop = asyncio.get_running_loop()
            self._timer.start()

    def _dump_tasks(self, done: threading.Event) -> None:
        for task in asyncio.all_tasks():
            print(f"task {task.get_name()}: {task!r}", file=sys.stderr)
            task.print_stack(file=sys.stderr)
        done.set()

    def _fire(self) -> None:
        log.error("shutdown did not finish in %g s; stacks follow, exiting", self.limit_s)
        if self._loop is not None and not self._loop.is_closed():
            # The loop is usually idle in a hang: ask it for its tasks' stacks.
            done = threading.Event()
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._dump_tasks, done)
                done.wait(2.0)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.flush()
        os._exit(3)


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
        self.sources: list[Source] = []
        # Sources whose devices are patrol readers (their garbage and floods are findings).
        self._patrol_readers: list[Source] = []
        # Sources that poll devices by unit on an interval (the /healthz poll-stall check).
        self.polled_sources: list[Source] = []
        self.samples_out = 0
        self._max_age_s = 0.0
        self._max_lag_s = 0.0
        self.clock_watch = WallStepWatch(self.clock)
        # source id -> (monotonic time, error) of its last crash: a source-lost alarm.
        self._source_crashes: dict[str, tuple[float, str]] = {}
        self._device_tags = {d.id: dict(d.tags) for d in cfg.devices}
        # Plugins are looked up here, at wiring time; samples never go through the registry.
        plugins = registry()
        ctx = SourceContext(emit=self._emit, clock=self.clock, site_tags={"site": cfg.site})
        units: dict[str, dict[str, str]] = {}
        for src in cfg.sources:
            devs = site.devices_of(src.id)
            if not devs:
                continue
            bound = [BoundDevice(d, site.device_profiles[d.id]) for d in devs]
            units.update({d.id: site.device_profiles[d.id].point_units() for d in devs})
            plugin = plugins.source(src.type)
            source = plugin.make(src, bound, ctx)
            self.sources.append(source)
            if plugin.patrol_reader:
                self._patrol_readers.append(source)
            if plugin.unit_addressed:
                self.polled_sources.append(source)
        # State files live beside the outbox unless told otherwise.
        self.state_dir = state_dir or Path(cfg.outbox.path).parent
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
            yield (
                Sample(
                    device=dev_id,
                    kind="device_health",
                    ts_ns=now,
                    values={
                        "polls": c.polls,
                        "good_polls": c.good_polls,
                        "timeouts": c.timeouts,
                        "exceptions": c.exceptions,
                        "frame_errors": c.frame_errors,
                        "connect_errors": c.connect_errors,
                        "decode_errors": c.decode_errors,
                        "overruns": c.overruns,
                        "consecutive_failures": c.consecutive_failures,
                        "latency_ms": round(c.last_latency_s * 1000, 3),
                        "online": c.consecutive_failures == 0 and c.polls > 0,
                    },
                    tags={**tags, **self._device_tags.get(dev_id, {})},
                )
            )
        values: dict[str, float | int | bool | str] = {
            "samples": self.samples_out,
            "queue_depth": self.queue.qsize(),
            "data_age_max_s": round(self._max_age_s, 6),
            "loop_lag_max_ms": round(self._max_lag_s * 1000, 3),
            "clock_steps": self.clock_watch.steps,
            "clock_step_last_s": round(self.clock_watch.last_step_s, 3),
        }
        stats = self.delivery.stats()
        if stats.outbox is not None:
            values["outbox_rows"] = stats.outbox.rows
            values["outbox_bytes"] = stats.outbox.bytes
            values["evictions"] = stats.outbox.evicted
            values["outbox_quarantined"] = stats.outbox.quarantined
            values["outbox_disk_full"] = stats.outbox.disk_full is not None
            for name, b in stats.outbox.sinks.items():
                values[f"backlog_{name}"] = b.backlog
                values[f"oldest_age_s_{name}"] = round(b.oldest_age_s, 3)
        for name, st in stats.sinks.items():
            values[f"connected_{name}"] = st.connected
        if self.alerts is not None:
            for k, v in self.alerts.counters().items():
                if isinstance(v, int | float | bool):
                    values[f"alarm_{k}"] = v
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

    def _crashed(self, source_id: str) -> Callable[[BaseException], None]:
        def note(exc: BaseException) -> None:
            why = f"{type(exc).__name__}: {exc}"
            self._source_crashes[source_id] = (self.clock.monotonic(), why)

        return note

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
            for s in self.sources:
                await stack.enter_async_context(s)
            if self.freeze_gc:
                # What start-up built lives as long as the process (profiles,
                # rules, the alarm book): keep it out of the cyclic collector,
                # or every full collection walks it (bench at 50,000 points/s:
                # 30-70 ms event-loop stalls every few seconds).
                gc.collect()
                gc.freeze()
            try:
                async with asyncio.TaskGroup() as tg:
                    tasks = [
                        tg.create_task(
                            supervise(f"source {s.cfg.id}", s.run, on_crash=self._crashed(s.cfg.id))
                        )
                        for s in self.sources
                    ]
                    tasks.append(tg.create_task(self._pipeline()))
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
                    # Sources first, then let the pipeline drain what they read.
                    await cancel_and_wait(tasks[: len(self.sources)])
                    await self._drain()
                    await cancel_and_wait(tasks[len(self.sources) :])
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
        commands = self.site.config.commands
        if self.alerts is None or not commands.enabled:
            return []
        sinks = registry().sinks
        channels = [
            (sinks[name], cfg)
            for name, cfg in self.site.config.sinks.configured().items()
            if sinks[name].commands is not None
        ]
        if not channels:
            return []
        from gateway.alerting.command_gate import CommandGate

        # Senders stamp commands with real time: freshness is judged on the real clock,
        # also when the gateway runs on simulated time (--sim-clock-start).
        gate = CommandGate(
            commands, SystemClock(), self.state_dir / "command-replay.sqlite", self.site.config.site
        )
        ctx = CommandContext(self.site.config.site, self.handle_command, gate)
        return [p.make_command_channel(cfg, ctx) for p, cfg in channels]


def install_signal_handlers(stop: asyncio.Event) -> Callable[[], None]:
    """SIGINT/SIGTERM set ``stop``; returns a function that removes the handlers."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def remove() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    return remove


# The interpreter settings of the gateway process (see tune_runtime).
SWITCH_INTERVAL_S = 0.001
GC_GEN0_THRESHOLD = 10_000


def tune_runtime() -> None:
    """Process-wide interpreter settings for the daemon (not for a library user).

    - GIL switch interval 1 ms (default 5 ms): the outbox thread releases the
      GIL around every SQLite call and waits up to the interval to get it back
      while the event loop is busy, so a commit of 6 statements could take
      30 ms and an alarm waited for it (bench: 100 ms commits at 50,000
      points/s).
    - Young-generation GC threshold 10,000 (default 700): samples, records and
      futures are allocated by the thousand a second and freed by reference
      counting; collecting every 700 allocations mostly walks live objects.
    """
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


async def run_site(site: Site, duration: float | None = None, clock: Clock | None = None) -> int:
    stop = asyncio.Event()
    remove = install_signal_handlers(stop)
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
