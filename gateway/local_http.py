"""The gateway's own local HTTP endpoint: ``/healthz`` for watchdogs, ``/metrics`` for Prometheus.

Owns the ``local_http`` settings, the health verdict and the Prometheus
collector. The server is a few dozen lines of asyncio (GET only, one request
per connection, a bounded request head, a bounded number of connections) on
127.0.0.1 by default. Nothing here touches the sample path: the figures are
the gateway's existing counters and health figures (the ones
``Gateway.iter_health_samples`` exports), read when a scraper asks, and the
health watch compares two numbers once a second.

Healthy means the gateway still does its job, not that every device answers:
its Modbus pollers keep polling (a poll that times out still counts: a dead
device is an alarm, not a reason to restart the gateway) and its outbox keeps
committing what was appended. Either stalled for ``stall_s`` is a 503 that
names the reason, so ``systemd``'s watchdog or a container health check
restarts a gateway that is stuck, not one whose devices are down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gateway.local_http_config import LocalHttpConfig
from gateway.model import AlarmState

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger(__name__)

# A request head larger than this is not a scraper's or a health check's.
MAX_HEAD_BYTES = 8192
READ_TIMEOUT_S = 5.0
MAX_CONNECTIONS = 8
WATCH_PERIOD_S = 1.0
# After a failed bind, try again this often (the port may be freed).
REBIND_S = 30.0


class HealthWatch:
    """Whether the gateway polls and commits: the time each last moved, on a monotonic clock."""

    def __init__(
        self, gw: Gateway, stall_s: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.gw = gw
        self._mono = monotonic
        # Sources that poll their devices on an interval (Modbus, M-Bus): a stall shows.
        # The gateway's live list: a reload updates it in place.
        self._polled = gw.polled_sources
        self._stall_s = stall_s
        self._stall_for: tuple[object, float] | None = None
        self.commit_stall_s = stall_s
        now = monotonic()
        self._polls = -1
        self._polls_moved = now
        self._seq = -1
        self._committed = now

    @property
    def poll_stall_s(self) -> float:
        """``stall_s``, or three of the slowest polled device's intervals in the config
        in force (a reload replaces ``gw.site``: worked out again for the new one)."""
        site = self.gw.site
        if self._stall_for is None or self._stall_for[0] is not site:
            slowest = max(
                (d.interval_s for s in self._polled for d in site.devices_of(s.cfg.id)),
                default=0.0,
            )
            self._stall_for = (site, max(self._stall_s, 3 * slowest))
        return self._stall_for[1]

    def observe(self) -> None:
        now = self._mono()
        polls = sum(c.polls for s in self._polled for c in s.device_counters().values())
        if polls != self._polls:
            self._polls, self._polls_moved = polls, now
        out = self.gw.delivery.stats().outbox
        if out is None:
            self._committed = now  # no outbox (no sink needs one): nothing can stall
        elif out.last_seq != self._seq or out.pending == 0:
            # Nothing waiting is as good as a commit: an idle outbox is not stuck.
            self._seq, self._committed = out.last_seq, now

    def problems(self) -> list[str]:
        """Why the gateway is unhealthy; empty when it is healthy."""
        self.observe()
        now = self._mono()
        out: list[str] = []
        if self._polled and now - self._polls_moved > self.poll_stall_s:
            out.append(f"polling stalled: no poll for {now - self._polls_moved:.0f} s")
        if now - self._committed > self.commit_stall_s:
            pending = self.gw.delivery.stats().outbox
            n = pending.pending if pending is not None else 0
            out.append(
                f"outbox not committing: nothing committed for {now - self._committed:.0f} s,"
                f" {n} records waiting"
            )
        return out


class GatewayCollector:
    """Prometheus families read from the gateway's counters at scrape time."""

    def __init__(self, gw: Gateway, watch: HealthWatch) -> None:
        self.gw = gw
        self.watch = watch

    def collect(self) -> Iterator[Metric]:
        yield from self._polling()
        yield from self._delivery()
        yield from self._alarms()
        gw = self.gw
        yield _counter("fsg_samples", "Samples the pipeline handled", gw.samples_out)
        yield _gauge("fsg_pipeline_queue_depth", "Health samples waiting", gw.queue.qsize())
        yield _gauge(
            "fsg_loop_lag_max_seconds",
            "Largest event-loop lag since the last health record",
            gw._max_lag_s,
        )
        yield _counter("fsg_clock_steps", "Wall-clock steps seen", gw.clock_watch.steps)
        yield _gauge(
            "fsg_clock_step_last_seconds", "Size of the last wall-clock step",
            gw.clock_watch.last_step_s,
        )  # fmt: skip
        yield _counter("fsg_commands_handled", "Operator commands applied", gw.commands_handled)
        yield _gauge(
            "fsg_healthy", "1 when /healthz answers 200", 0 if self.watch.problems() else 1
        )

    def _polling(self) -> Iterator[Metric]:
        polls = _counters("fsg_polls", "Polls per device", "device")
        good = _counters("fsg_polls_good", "Polls that read every point", "device")
        errors = _counters("fsg_poll_errors", "Poll errors per device and kind", "device", "kind")
        overruns = _counters("fsg_poll_overruns", "Late polls", "device")
        splits = _counters(
            "fsg_poll_learned_splits", "Merged reads split after exception 2", "device"
        )
        latency = SummaryMetricFamily(
            "fsg_poll_latency_seconds", "Time a poll took", labels=["device"]
        )
        last = _gauges("fsg_poll_last_latency_seconds", "Time the last poll took", "device")
        online = _gauges("fsg_device_online", "1 when the last poll read", "device")
        for dev, c in self.gw.device_counters().items():
            polls.add_metric([dev], c.polls)
            good.add_metric([dev], c.good_polls)
            for kind in (
                "timeouts",
                "exceptions",
                "frame_errors",
                "connect_errors",
                "decode_errors",
            ):
                errors.add_metric([dev, kind], getattr(c, kind))
            overruns.add_metric([dev], c.overruns)
            splits.add_metric([dev], c.learned_splits)
            latency.add_metric([dev], count_value=c.polls, sum_value=c.latency_sum_s)
            last.add_metric([dev], c.last_latency_s)
            online.add_metric([dev], int(c.consecutive_failures == 0 and c.polls > 0))
        yield from (polls, good, errors, overruns, splits, latency, last, online)

    def _delivery(self) -> Iterator[Metric]:
        stats = self.gw.delivery.stats()
        connected = _gauges("fsg_sink_connected", "1 when connected", "sink")
        for name, st in stats.sinks.items():
            connected.add_metric([name], int(st.connected))
        yield connected
        out = stats.outbox
        if out is None:
            return
        backlog = _gauges("fsg_outbox_backlog", "Records not yet delivered", "sink")
        age = _gauges(
            "fsg_outbox_oldest_age_seconds", "Age of the oldest undelivered record", "sink"
        )
        for name, b in out.sinks.items():
            backlog.add_metric([name], b.backlog)
            age.add_metric([name], b.oldest_age_s)
        evictions = _counters(
            "fsg_outbox_evictions", "Telemetry evicted to keep the outbox bounded", "kind"
        )
        for kind, n in sorted(out.evicted_by_kind.items()):
            evictions.add_metric([kind], n)
        yield from (backlog, age, evictions)
        yield _gauge("fsg_outbox_rows", "Records in the outbox", out.rows)
        yield _gauge("fsg_outbox_bytes", "Bytes of live records", out.bytes)
        yield _gauge("fsg_outbox_pending", "Appended, not yet committed", out.pending)

    def _alarms(self) -> Iterator[Metric]:
        alerts = self.gw.alerts
        if alerts is None:
            return
        by_state = Counter(a.state for a in alerts.book.alarms.values())
        alarms = _gauges("fsg_alarms", "Alarms by ISA-18.2 state", "state")
        for state in AlarmState:
            alarms.add_metric([state.value], by_state.get(state, 0))
        yield alarms
        for name, n in alerts.book.counters.items():
            yield _counter(f"fsg_alarm_{name}", f"Alarm book counter {name}", n)
        notifier = alerts.notifier
        if notifier is None:
            return
        sent = _counters("fsg_notifications_sent", "Messages sent per channel", "channel")
        failed = _counters("fsg_notifications_failed", "Failed sends per channel", "channel")
        for ch in sorted(set(notifier.sent_by_channel) | set(notifier.failed_by_channel)):
            sent.add_metric([ch], notifier.sent_by_channel.get(ch, 0))
            failed.add_metric([ch], notifier.failed_by_channel.get(ch, 0))
        queue = _gauges("fsg_notification_queue", "Stored notifications by state", "state")
        for stored, n in sorted(notifier.store.counts().items()):
            queue.add_metric([stored], n)
        yield from (sent, failed, queue)


def _counters(name: str, doc: str, *labels: str) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=labels)


def _gauges(name: str, doc: str, *labels: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


class LocalHttp:
    """The endpoint's server; ``run`` serves until cancelled and never raises into the gateway."""

    def __init__(self, gw: Gateway, cfg: LocalHttpConfig) -> None:
        self.cfg = cfg
        self.watch = HealthWatch(gw, cfg.stall_s)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(GatewayCollector(gw, self.watch))
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)

    async def run(self) -> None:
        host, port = self.cfg.host_port()
        while True:
            try:
                server = await asyncio.start_server(self._serve, host, port, limit=MAX_HEAD_BYTES)
            except OSError as exc:
                log.warning(
                    "local endpoint: cannot listen on %s (%s); retrying", self.cfg.listen, exc
                )
                await asyncio.sleep(REBIND_S)
                continue
            break
        log.info("local endpoint on http://%s (/healthz, /metrics)", self.cfg.listen)
        async with server:
            while True:
                self.watch.observe()
                await asyncio.sleep(WATCH_PERIOD_S)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self._slots.locked():
                await self._reply(writer, 503, b"busy\n", "text/plain")
                return
            async with self._slots:
                await self._answer(reader, writer)
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass  # a caller that went away or sent too much: nothing to answer
        except Exception:
            # A bug here must not reach the gateway's TaskGroup.
            log.exception("local endpoint: request failed")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:  # the reader's limit is MAX_HEAD_BYTES
            await self._reply(writer, 431, b"request head too large\n", "text/plain")
            return
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) != 3:
            await self._reply(writer, 400, b"bad request\n", "text/plain")
            return
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            await self._reply(writer, 405, b"GET only\n", "text/plain")
            return
        body_only = method == b"GET"
        if target == b"/healthz":
            problems = self.watch.problems()
            text = "\n".join(problems) + "\n" if problems else "ok\n"
            await self._reply(
                writer, 503 if problems else 200, text.encode(), "text/plain", body_only
            )
        elif target == b"/metrics":
            await self._reply(
                writer, 200, generate_latest(self.registry), CONTENT_TYPE_LATEST, body_only
            )
        else:
            await self._reply(
                writer, 404, b"not found: /healthz, /metrics\n", "text/plain", body_only
            )

    async def _reply(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        ctype: str,
        with_body: bool = True,
    ) -> None:
        reason = _REASONS.get(status, "")
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode() + (body if with_body else b""))
        await writer.drain()


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


async def serve_local_http(gw: Gateway) -> None:
    """The gateway's task for the endpoint (a no-op when ``local_http.enabled`` is false)."""
    cfg = gw.site.config.local_http
    if not cfg.enabled:
        return
    await LocalHttp(gw, cfg).run()
