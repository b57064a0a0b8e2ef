"""Notifications: escalation, grouping and durable retry of the pages an alarm makes.

Who is told is ``roster.py`` (on-call shifts, routes), what they are told
``messages.py``, how it is sent ``channels.py`` (webhook, e-mail, MQTT).

``Notifier.on_events`` (synchronous, called by the engine inside its state
transaction) decides who must hear about an alarm: routes match severity,
area and rule; the first escalation level is due at once, later levels when
the alarm is still unacknowledged ``after_s`` after it was raised, then the
last level again every ``repeat_s``. Acknowledge, reset, shelve or out of
service stops the escalation. Each step only *queues* rows in SQLite.

``Notifier.deliver_due`` (async) sends what is queued: rows for one channel
and one set of recipients go out as one message, so a burst is one message,
not forty. The first notification goes at once (a first page never waits);
what follows within ``group_window_s`` of the last message to the same
people on the same channel waits for that window to end and goes out in one
message with everything else that came meanwhile. A failed send stays queued
and is retried with exponential back-off; a channel that fails
``fail_alarm_after`` times in a row raises its own health alarm.

A send is recorded (``sending``) before it starts and marked sent after the
far side answered. A stop lets a send in flight finish (within the channel's
timeout, at most ``STOP_GRACE_S``). A send that may have arrived without the
gateway knowing (killed or stopped mid-send, a webhook whose answer was lost
after the request went out) is sent again, marked as a possible duplicate:
the ``X-Gateway-Possible-Duplicate: true`` header (webhook, e-mail), the
``possible_duplicate`` field (generic webhook, MQTT) and the title.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable
from typing import Any

import httpx

from gateway.alerting import ack_link
from gateway.alerting.channels import Publish, send_through_stop
from gateway.alerting.config import AlertingConfig, Route, Severity
from gateway.alerting.messages import LinkFor, Message, compose, sent_record
from gateway.alerting.roster import Roster, routes_for
from gateway.alerting.store import AlertStore, Escalation, QueuedNotification
from gateway.crashpoints import crash_point
from gateway.disk_space import is_disk_full
from gateway.errors import GatewayError
from gateway.model import AlarmEvent, AlarmState, Clock

log = logging.getLogger(__name__)

NEVER = 2**62
HealthHook = Callable[[str, bool, str], None]
# Told of every message delivered on any channel (a sent_record), e.g. to put it on ``events``.
SentHook = Callable[[dict[str, Any]], None]


# --------------------------------------------------------------------------- notifier


class Notifier:
    """Plans notifications into the store and delivers them from it."""

    def __init__(
        self,
        cfg: AlertingConfig,
        store: AlertStore,
        clock: Clock,
        *,
        site: str = "site",
        publish: Publish | None = None,
        health: HealthHook | None = None,
        facts: Callable[[str], AlarmEvent | None] | None = None,
        in_flood: Callable[[], bool] | None = None,
        on_sent: SentHook | None = None,
    ) -> None:
        self.cfg = cfg
        self.on_sent = on_sent
        self.store = store
        self.clock = clock
        self.site = site
        self.publish = publish
        self.health = health
        # The alarm's current facts (state, message, ...) as an event-shaped snapshot.
        self.facts = facts or (lambda _id: None)
        self.in_flood = in_flood or (lambda: False)
        self.roster = Roster(cfg)
        self.routes = {r.name: r for r in cfg.routes}
        self.failures: dict[str, int] = {}
        self.alarmed: set[str] = set()
        self.wake = asyncio.Event()
        self.sent_messages = 0
        self.link_for: LinkFor | None = None
        if cfg.console_url is not None and cfg.link_key is not None:
            self.link_for = self._link(cfg.console_url, cfg.link_key.get_secret_value())
        # Per channel, this run (the /metrics counters).
        self.sent_by_channel: dict[str, int] = {}
        self.failed_by_channel: dict[str, int] = {}
        # Timers (grouping window, escalation, repeat, retry back-off, give-up) run on
        # timer time: the wall clock at start plus monotonic time since, so a wall-clock
        # step moves none of them. Stored in SQLite, they read as wall-clock times after
        # a restart: monotonic time does not survive a reboot.
        self._epoch_ns = clock.now_ns() - clock.mono_ns()
        # Escalations started in this run: (alarm id, raised_ns) -> start in timer time.
        self._starts: dict[tuple[str, int], int] = {}
        # Last message sent in this run per (channel, recipients), in timer time (the
        # stored sent_ns is a wall-clock timestamp): the grouping window counts from it.
        self._last_sent: dict[tuple[str, tuple[str, ...]], int] = {}

    def _link(self, base: str, key: str) -> LinkFor:
        ttl = self.cfg.link_ttl_s

        def link_for(item: dict[str, Any], people: list[str]) -> str:
            raised = item.get("raised_ns")
            token = ack_link.sign(
                key,
                self.site,
                str(item["alarm_id"]),
                raised_ns=raised if isinstance(raised, int) else None,
                to=people,
                now_s=self.clock.now_ns() / 1e9,
                ttl_s=ttl,
            )
            return ack_link.link(base, token)

        return link_for

    def _timer_ns(self) -> int:
        return self._epoch_ns + self.clock.mono_ns()

    def wall_stepped(self, step_ns: int) -> None:
        """The wall clock jumped: timer time and the stored timers follow it, elapsed time kept."""
        self._epoch_ns += step_ns
        self._starts = {k: t + step_ns for k, t in self._starts.items()}
        self._last_sent = {k: t + step_ns for k, t in self._last_sent.items()}
        self.store.shift_timers(step_ns, NEVER)

    # ------------------------------------------------------------------ planning (sync)

    def on_events(self, events: list[AlarmEvent]) -> None:
        """Start, stop or keep escalations for these transitions (inside a store transaction)."""
        now = self._timer_ns()
        for ev in events:
            if ev.state is AlarmState.UNACKED and ev.previous is not AlarmState.UNACKED:
                self._start(ev, now)
            elif ev.action == "chatter_start":
                self._chatter_note(ev, now)
            elif ev.state not in (AlarmState.UNACKED, AlarmState.RTN_UNACKED):
                # Acknowledged, reset, shelved, suppressed, out of service, or normal: stop.
                self.store.drop_escalations(ev.alarm_id)
            if ev.action in ("clear", "condition_clear", "flood_end") and not ev.active:
                self._rtn(ev, now)
        self.fire_due(now)

    def _start(self, ev: AlarmEvent, now: int) -> None:
        if ev.extra.get("chattering") and ev.action not in ("realarm", "flood_start"):
            return  # the chatter note already told them; do not page on every bounce
        if (
            self.in_flood()
            and ev.action != "flood_start"
            and Severity(ev.severity).rank < Severity.HIGH.rank
        ):
            return  # during a flood only high and critical alarms page; all are still recorded
        existing = {e.route for e in self.store.escalations() if e.alarm_id == ev.alarm_id}
        for route in routes_for(self.cfg, ev.severity, ev.area, ev.rule):
            if route.name in existing and ev.action != "realarm":
                continue  # an unacknowledged episode is already being escalated
            if len(self._starts) > 1000:
                live = {(e.alarm_id, e.raised_ns) for e in self.store.escalations()}
                self._starts = {k: v for k, v in self._starts.items() if k in live}
            self._starts[(ev.alarm_id, ev.ts_ns)] = now
            self.store.put_escalation(Escalation(ev.alarm_id, route.name, 0, now, ev.ts_ns, 0))

    def _chatter_note(self, ev: AlarmEvent, now: int) -> None:
        for route in routes_for(self.cfg, ev.severity, ev.area, ev.rule):
            self._queue(ev, route, 0, "chatter", now, f"chatter|{ev.ts_ns}")

    def _rtn(self, ev: AlarmEvent, now: int) -> None:
        for route in routes_for(self.cfg, ev.severity, ev.area, ev.rule):
            if route.notify_rtn:
                self._queue(ev, route, 0, "rtn", now, f"rtn|{ev.ts_ns}")

    def _queue(
        self,
        ev: AlarmEvent,
        route: Route,
        level: int,
        what: str,
        now: int,
        key: str,
        raised_ns: int | None = None,
        escalates: tuple[int, int | None] | None = None,
    ) -> int:
        """Queue one item per channel; ``escalates``: (when, next level or None for a repeat)."""
        lvl = route.escalation[min(level, len(route.escalation) - 1)]
        roster_level = lvl.roster_level if lvl.roster_level is not None else level
        people = self.roster.on_call(self.clock.now_ns(), roster_level)  # wall: shifts
        people += [p for p in lvl.people if p not in people]
        raised = raised_ns if raised_ns is not None else ev.ts_ns
        item = {
            "what": what,
            "alarm_id": ev.alarm_id,
            "severity": ev.severity,
            "area": ev.area,
            "device": ev.device,
            "point": ev.point,
            "rule": ev.rule,
            "message": ev.message,
            "value": ev.value,
            "state": str(ev.state),
            "raised_ns": raised,
            "created_ns": now,
            "route": route.name,
            "level": level,
        }
        if escalates is not None:
            item["escalates_ns"], item["escalates_level"] = escalates
        window = int(self.cfg.group_window_s * 1e9)
        n = 0
        for ch in lvl.channels or route.channels:
            last = self._last_sent.get((ch, tuple(people)))
            if last is None:
                last = self.store.last_sent_ns(ch, tuple(people))
            if last is not None and last > now:
                # Stamped before the clock was set back (while stopped): how long ago it
                # really was is unknown, and a page is never held on a guess.
                last = None
            due = now if last is None else max(now, last + window)
            dedupe = f"{ev.alarm_id}|{route.name}|{key}|{ch}"
            if self.store.enqueue(dedupe, ch, tuple(people), item, now, due):
                n += 1
        if n:
            self.wake.set()
        return n

    def fire_due(self, now: int | None = None) -> int:
        """Run the escalation steps that are due; returns how many fired."""
        now = self._timer_ns() if now is None else now
        fired = 0
        with self.store.transaction():
            for esc in self.store.escalations(due_before_ns=now):
                route = self.routes.get(esc.route)
                ev = self.facts(esc.alarm_id)
                if (
                    route is None
                    or ev is None
                    or ev.state not in (AlarmState.UNACKED, AlarmState.RTN_UNACKED)
                ):
                    self.store.drop_escalations(esc.alarm_id, esc.route)
                    continue
                levels = route.escalation
                if esc.level >= len(levels):
                    what = "repeat"
                    level = len(levels) - 1
                else:
                    what = "alarm" if esc.level == 0 else "escalation"
                    level = esc.level
                key = f"{esc.raised_ns}|{esc.level}|{esc.repeats}"
                nxt = esc.level + 1
                # The next step is known now, so the message can say when it comes.
                escalates: tuple[int, int | None] | None = None
                if nxt < len(levels):
                    start = self._starts.get((esc.alarm_id, esc.raised_ns), esc.raised_ns)
                    escalates = (max(start + int(levels[nxt].after_s * 1e9), now), nxt + 1)
                elif route.repeat_s is not None:
                    escalates = (now + int(route.repeat_s * 1e9), None)
                self._queue(
                    ev, route, level, what, now, key, raised_ns=esc.raised_ns, escalates=escalates
                )
                fired += 1
                if nxt < len(levels):
                    assert escalates is not None
                    self.store.put_escalation(
                        Escalation(
                            esc.alarm_id, esc.route, nxt, escalates[0], esc.raised_ns, esc.repeats
                        )
                    )
                elif escalates is not None:
                    self.store.put_escalation(
                        Escalation(
                            esc.alarm_id, esc.route, len(levels), escalates[0],
                            esc.raised_ns, esc.repeats + 1,
                        )
                    )  # fmt: skip
                else:
                    # Exhausted: keep the row so a bounce of the same unacknowledged alarm
                    # does not start paging from level 0 again; ack removes it.
                    self.store.put_escalation(
                        Escalation(
                            esc.alarm_id, esc.route, len(levels), NEVER, esc.raised_ns, esc.repeats
                        )
                    )
        return fired

    # ------------------------------------------------------------------ delivery (async)

    def _backoff_ns(self, attempts: int) -> int:
        r = self.cfg.retry
        return int(min(r.max_s, r.min_s * 2 ** max(0, attempts - 1)) * 1e9)

    def ready_groups(self, now: int) -> list[list[QueuedNotification]]:
        groups: dict[tuple[str, tuple[str, ...]], list[QueuedNotification]] = {}
        for q in self.store.pending():
            groups.setdefault((q.channel, q.recipients), []).append(q)
        retry_at = self.store.next_attempt()
        out = []
        for key, items in groups.items():
            first_due = min(q.due_ns for q in items)
            if first_due <= now and retry_at.get(key, 0) <= now:
                out.append(items)
        return out

    async def deliver_due(self, client: httpx.AsyncClient | None = None) -> int:
        """Send every group that is due; returns messages sent. Failures stay queued."""
        own = client is None
        if client is None:
            client = httpx.AsyncClient()
        sent = 0
        try:
            self.fire_due()
            now = self._timer_ns()
            for items in self.ready_groups(now):
                if await self._deliver(client, items, now):
                    sent += 1
        finally:
            if own:
                await client.aclose()
        return sent

    async def _deliver(
        self, client: httpx.AsyncClient, items: list[QueuedNotification], now: int
    ) -> bool:
        name = items[0].channel
        ids = [q.id for q in items]
        try:
            ch = self.cfg.channel(name)
        except KeyError:
            self.store.mark_dead(ids, f"channel {name!r} is no longer configured")
            return False
        msg = compose(
            self.site,
            [q.item for q in items],
            self.roster,
            list(items[0].recipients),
            possible_duplicate=any(q.possible_duplicate for q in items),
            link_for=self.link_for,
        )
        self.store.mark_sending(ids)
        stopping, error = await send_through_stop(client, ch, msg, self.clock, self.publish)
        if error is not None:
            self._failed(name, ch.fail_alarm_after, items, now, str(error), error.maybe_sent)
        else:
            crash_point("notification-sent")
            self._last_sent[(name, items[0].recipients)] = self._timer_ns()
            self._sent(name, ids)
            self._report_sent(name, items, msg)
        if stopping:
            raise asyncio.CancelledError
        return error is None

    def _sent(self, name: str, ids: list[int]) -> None:
        self.store.mark_sent(ids, self.clock.now_ns())
        self.sent_messages += 1
        self.sent_by_channel[name] = self.sent_by_channel.get(name, 0) + 1
        if self.failures.get(name):
            self.failures[name] = 0
        if name in self.alarmed:
            self.alarmed.discard(name)
            if self.health:
                self.health(f"notify:{name}", True, "delivering again")

    def _report_sent(self, name: str, items: list[QueuedNotification], msg: Message) -> None:
        if self.on_sent is None:
            return
        try:
            self.on_sent(sent_record(name, items, msg))
        except Exception:  # the message is out and recorded; a report must not stop paging
            log.exception("notifier: could not report a sent notification on %s", name)

    def _failed(
        self,
        name: str,
        threshold: int,
        items: list[QueuedNotification],
        now: int,
        err: str,
        maybe_sent: bool = False,
    ) -> None:
        attempts = max(q.attempts for q in items) + 1
        self.failed_by_channel[name] = self.failed_by_channel.get(name, 0) + 1
        give_up = int(self.cfg.retry.give_up_s * 1e9)
        dead = [q.id for q in items if now - q.created_ns >= give_up]
        live = [q.id for q in items if q.id not in dead]
        if dead:
            self.store.mark_dead(dead, err)
        if live:
            self.store.mark_failed(live, now + self._backoff_ns(attempts), err, maybe_sent)
        # Attempts are stored, so a restart does not forget how long a channel has been failing.
        n = max(self.failures.get(name, 0) + 1, attempts)
        self.failures[name] = n
        log.warning("notification channel %s failed (%d in a row): %s", name, n, err)
        if n >= threshold and name not in self.alarmed:
            self.alarmed.add(name)
            if self.health:
                self.health(f"notify:{name}", False, f"{n} failures in a row: {err}")

    def next_wake_s(self, poll_s: float) -> float:
        """Seconds until something may be due (bounded by ``poll_s``)."""
        now = self._timer_ns()
        cands = [poll_s]
        nxt = self.store.next_escalation_ns()
        if nxt is not None and nxt < NEVER:
            cands.append(max(0.0, (nxt - now) / 1e9))
        return max(0.05, min(cands))

    async def run(self, poll_s: float = 1.0) -> None:
        """The long-lived delivery loop; never raises for a channel failure."""
        async with httpx.AsyncClient() as client:
            while True:
                try:
                    await self.deliver_due(client)
                except GatewayError as exc:
                    log.error("notifier: %s", exc)
                except sqlite3.OperationalError as exc:
                    # A disk filled by another program: what is queued stays queued and
                    # the next round tries again; only a full disk is survivable here.
                    if not is_disk_full(exc):
                        raise
                    log.error("notifier: cannot record a send, the disk is full: %s", exc)
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=self.next_wake_s(poll_s))
