"""Notifications: routes, the on-call roster, escalation, grouping, channels and durable retry.

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
import base64
import contextlib
import fnmatch
import hashlib
import hmac
import html
import logging
import smtplib
import sqlite3
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from gateway.alerting import ack_link
from gateway.alerting.config import (
    WEEKDAYS,
    AlertingConfig,
    EmailChannel,
    MqttChannel,
    Person,
    Route,
    Severity,
    WebhookChannel,
    parse_hhmm,
)
from gateway.alerting.store import AlertStore, Escalation, QueuedNotification
from gateway.crashpoints import crash_point
from gateway.disk_space import is_disk_full
from gateway.errors import GatewayError
from gateway.model import AlarmEvent, AlarmState, Clock

log = logging.getLogger(__name__)

NEVER = 2**62
Publish = Callable[[str, dict[str, Any]], Awaitable[None]]
HealthHook = Callable[[str, bool, str], None]
# Told of every message delivered on any channel (a sent_record), e.g. to put it on ``events``.
SentHook = Callable[[dict[str, Any]], None]
MAX_LINES = 25  # a grouped message lists this many alarms, then says how many more
# How long a stop waits for a send in flight (the gateway's shutdown limit is 20 s).
STOP_GRACE_S = 10.0
DUPLICATE_HEADER = "X-Gateway-Possible-Duplicate"


class NotifyError(GatewayError):
    """A channel could not deliver a notification (it stays queued and is retried).

    ``maybe_sent``: the request went out and its answer was lost, so the far
    side may have it; the retry is marked as a possible duplicate.
    """

    def __init__(self, message: str, *, maybe_sent: bool = False) -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent


# --------------------------------------------------------------------------- roster


class Roster:
    """Who is on call now, per escalation level, from weekday and time-of-day shifts."""

    def __init__(self, cfg: AlertingConfig) -> None:
        self.cfg = cfg.roster
        self.tz = ZoneInfo(self.cfg.timezone)

    def _on(self, shift_days: list[str], start: str, end: str, local: datetime) -> bool:
        day = WEEKDAYS[local.weekday()]
        prev_day = WEEKDAYS[(local.weekday() - 1) % 7]
        t = local.time()
        st = parse_hhmm(start)
        en = parse_hhmm(end)
        assert st is not None  # start is never 24:00 in practice; 24:00 would mean never
        if en is None or st < en:
            return day in shift_days and t >= st and (en is None or t < en)
        # A shift that wraps midnight belongs to the weekday it started on.
        return (day in shift_days and t >= st) or (prev_day in shift_days and t < en)

    def on_call(self, now_ns: int, level: int) -> list[str]:
        local = datetime.fromtimestamp(now_ns / 1e9, self.tz)
        names: list[str] = []
        for shift in self.cfg.shifts:
            if not self._on(list(shift.days), shift.start, shift.end, local):
                continue
            # Past the last level of a shift, keep telling its last level.
            for who in shift.levels[min(level, len(shift.levels) - 1)]:
                if who not in names:
                    names.append(who)
        return names

    def person(self, name: str) -> Person:
        return self.cfg.people.get(name, Person())

    def local(self, ts_ns: int) -> datetime:
        return datetime.fromtimestamp(ts_ns / 1e9, self.tz)


def route_matches(route: Route, severity: str, area: str | None, rule: str) -> bool:
    try:
        sev = Severity(severity)
    except ValueError:
        sev = Severity.HIGH
    m = route.match
    if sev.rank < m.min_severity.rank:
        return False
    if m.areas and (area or "") not in m.areas:
        return False
    return not (m.rules and not any(fnmatch.fnmatchcase(rule, p) for p in m.rules))


def routes_for(cfg: AlertingConfig, severity: str, area: str | None, rule: str) -> list[Route]:
    out: list[Route] = []
    for route in cfg.routes:
        if route_matches(route, severity, area, rule):
            out.append(route)
            if not route.continue_matching:
                break
    return out


# --------------------------------------------------------------------------- messages


@dataclass
class Message:
    title: str
    text: str
    items: list[dict[str, Any]]
    people: list[tuple[str, Person]] = field(default_factory=list)
    possible_duplicate: bool = False
    # (file name, content, MIME type "maintype/subtype"): e-mail only (the daily reports' PDF).
    attachments: list[tuple[str, bytes, str]] = field(default_factory=list)

    @property
    def phones(self) -> list[str]:
        return [p.phone for _, p in self.people if p.phone]

    @property
    def emails(self) -> list[str]:
        return [p.email for _, p in self.people if p.email]


_WHAT = {
    "alarm": "ALARM",
    "repeat": "STILL UNACKNOWLEDGED",
    "escalation": "ESCALATED",
    "rtn": "back to normal",
    "chatter": "CHATTERING",
}


LinkFor = Callable[[dict[str, Any], list[str]], str | None]


def compose(
    site: str,
    items: list[dict[str, Any]],
    roster: Roster,
    people: list[str],
    possible_duplicate: bool = False,
    link_for: LinkFor | None = None,
) -> Message:
    """One message for a group of queued items (highest severity first).

    ``link_for(item, people)``: the item's signed acknowledgement link, if the site has a console.
    """
    order = {s.value: s.rank for s in Severity}
    items = sorted(
        items, key=lambda i: (-order.get(i.get("severity", ""), 0), i.get("raised_ns", 0))
    )
    top = items[0]
    sev = str(top.get("severity", "")).upper()
    if len(items) == 1:
        where = f"{top.get('area')}: " if top.get("area") else ""
        title = f"[{sev}] {_WHAT.get(top['what'], top['what'])} {where}{top['message']}"
    else:
        areas = sorted({str(i.get("area")) for i in items if i.get("area")})
        title = f"[{sev}] {len(items)} alarms at {site}" + (
            f" ({', '.join(areas)})" if areas else ""
        )
    lines = []
    for i in items[:MAX_LINES]:
        when = roster.local(int(i.get("raised_ns") or i["created_ns"])).strftime("%m-%d %H:%M:%S")
        lvl = f", level {i['level'] + 1}" if i.get("level") else ""
        lines.append(
            f"- {str(i.get('severity', '')).upper()} {_WHAT.get(i['what'], i['what'])} {when}"
            f" [{i.get('area') or '-'}] {i['message']} ({i['state']}{lvl}) id={i['alarm_id']}"
        )
        url = link_for(i, people) if link_for is not None and i["what"] != "rtn" else None
        if url:
            lines.append(f"  acknowledge: {url}")
        if i.get("escalates_ns"):
            at = roster.local(int(i["escalates_ns"])).strftime("%H:%M")
            nxt = i.get("escalates_level")
            to = f"to level {nxt}" if nxt else "again (repeat)"
            lines.append(f"  escalates {to} at {at} unless acknowledged")
    if len(items) > MAX_LINES:
        lines.append(f"... and {len(items) - MAX_LINES} more; see `gateway alarms list`")
    lines.append("")
    if people:
        lines.append(f"On duty: {', '.join(people)}")
    lines.append("Acknowledge: gateway alarms ack <id>  (or the MQTT command topic)")
    if possible_duplicate:
        title = f"(possible duplicate) {title}"
        lines.append("Possible duplicate: the gateway may have sent this once already.")
    return Message(
        title=title,
        text="\n".join(lines),
        items=items,
        people=[(n, roster.person(n)) for n in people],
        possible_duplicate=possible_duplicate,
    )


def webhook_body(ch: WebhookChannel, msg: Message, now_s: float) -> tuple[str, dict[str, Any]]:
    """URL and JSON body for a channel preset (the robots' documented payload shapes)."""
    url = ch.url
    text = f"{msg.title}\n{msg.text}"
    if ch.preset == "dingtalk":
        if ch.secret:
            ts = str(int(now_s * 1000))
            digest = hmac.new(ch.secret.encode(), f"{ts}\n{ch.secret}".encode(), hashlib.sha256)
            sign = urllib.parse.quote_plus(base64.b64encode(digest.digest()).decode())
            url += ("&" if "?" in url else "?") + f"timestamp={ts}&sign={sign}"
        at = " ".join(f"@{p}" for p in msg.phones)
        md = f"### {msg.title}\n\n" + msg.text.replace("\n", "\n\n") + (f"\n\n{at}" if at else "")
        return url, {
            "msgtype": "markdown",
            "markdown": {"title": msg.title[:64], "text": md},
            "at": {"atMobiles": msg.phones, "isAtAll": False},
        }
    if ch.preset == "wecom":
        return url, {
            "msgtype": "text",
            "text": {"content": text, "mentioned_mobile_list": msg.phones},
        }
    if ch.preset == "feishu":
        # A custom bot mentions people in a text message by their user id (open_id or user_id).
        mentions = " ".join(
            f'<at user_id="{html.escape(p.chat_id)}">{html.escape(n)}</at>'
            for n, p in msg.people
            if p.chat_id
        )
        content = text + (f"\n{mentions}" if mentions else "")
        body: dict[str, Any] = {"msg_type": "text", "content": {"text": content}}
        if ch.secret:
            ts = str(int(now_s))
            key = f"{ts}\n{ch.secret}".encode()
            body["timestamp"] = ts
            body["sign"] = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
        return url, body
    if ch.preset == "slack":
        mentions = " ".join(f"<@{p.chat_id}>" for _, p in msg.people if p.chat_id)
        return url, {"text": f"*{msg.title}*\n{msg.text}" + (f"\n{mentions}" if mentions else "")}
    return url, {
        "title": msg.title,
        "text": msg.text,
        "recipients": [n for n, _ in msg.people],
        "alarms": msg.items,
        "possible_duplicate": msg.possible_duplicate,
    }


async def send_webhook(
    client: httpx.AsyncClient, ch: WebhookChannel, msg: Message, now_s: float
) -> None:
    url, body = webhook_body(ch, msg, now_s)
    headers = dict(ch.headers)
    if msg.possible_duplicate:
        headers[DUPLICATE_HEADER] = "true"
    try:
        resp = await client.post(url, json=body, headers=headers, timeout=ch.timeout_s)
    except httpx.HTTPError as exc:
        # Not connected: nothing went out. Anything later: the robot may have it.
        unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        raise NotifyError(
            f"webhook {ch.name}: {type(exc).__name__}: {exc}", maybe_sent=not unsent
        ) from exc
    if resp.status_code >= 300:
        raise NotifyError(f"webhook {ch.name}: HTTP {resp.status_code}: {resp.text[:200]}")
    # Group robots answer 200 with an error code in the body when they refuse a message.
    try:
        answer = resp.json()
    except ValueError:
        return
    if isinstance(answer, dict):
        code = answer.get("errcode", answer.get("code", answer.get("StatusCode", 0)))
        if code not in (0, None, "0"):
            detail = answer.get("errmsg") or answer.get("msg") or answer
            raise NotifyError(f"webhook {ch.name}: refused: code {code}: {detail}")


def _ssl_context(ch: EmailChannel) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ch.ca_file)
    if not ch.verify_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def send_email_sync(ch: EmailChannel, msg: Message) -> None:
    """Blocking SMTP send (run it in a worker thread)."""
    to = msg.emails or ch.to
    if not to:
        raise NotifyError(f"email {ch.name}: nobody to send to (no roster e-mail, no 'to')")
    em = EmailMessage()
    em["From"] = ch.sender
    em["To"] = ", ".join(to)
    em["Subject"] = msg.title[:200]
    em["X-Gateway-Alarms"] = ",".join(i["alarm_id"] for i in msg.items[:MAX_LINES])
    if msg.possible_duplicate:
        em[DUPLICATE_HEADER] = "true"
    em.set_content(msg.text)
    for name, data, mime in msg.attachments:
        main, _, sub = mime.partition("/")
        em.add_attachment(data, maintype=main, subtype=sub, filename=name)
    try:
        smtp: smtplib.SMTP
        if ch.security == "ssl":
            smtp = smtplib.SMTP_SSL(
                ch.host, ch.port, timeout=ch.timeout_s, context=_ssl_context(ch)
            )
        else:
            smtp = smtplib.SMTP(ch.host, ch.port, timeout=ch.timeout_s)
        with smtp:
            if ch.security == "starttls":
                smtp.starttls(context=_ssl_context(ch))
            if ch.username is not None and ch.password is not None:
                smtp.login(ch.username, ch.password)
            smtp.send_message(em, to_addrs=to)
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        raise NotifyError(f"email {ch.name}: {type(exc).__name__}: {exc}") from exc


def sent_record(channel: str, items: list[QueuedNotification], msg: Message) -> dict[str, Any]:
    """What one delivered message was: its alarms, channel, recipients and (1-based) level."""
    return {
        "alarm_ids": list(dict.fromkeys(str(q.item.get("alarm_id")) for q in items)),
        "channel": channel,
        "recipients": [n for n, _ in msg.people],
        "level": max(int(q.item.get("level") or 0) for q in items) + 1,
        "what": sorted({str(q.item.get("what")) for q in items}),
        "title": msg.title,
        "possible_duplicate": msg.possible_duplicate,
    }


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
        stopping, error = await self._send_through_stop(client, ch, msg)
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

    async def _send_through_stop(
        self,
        client: httpx.AsyncClient,
        ch: MqttChannel | WebhookChannel | EmailChannel,
        msg: Message,
    ) -> tuple[bool, NotifyError | None]:
        """``_send``, which a stop (cancellation) lets finish: (stopping, the failure or None).

        Cut short, a POST or an SMTP dialogue may have reached the far side
        without the gateway knowing, and the restart would send it again. The
        stop cancels again and again (gateway/tasks.py): the wait goes on until
        the send ends or the grace period is over. The caller records the
        outcome, then stops. A send still running then is abandoned, left
        ``sending``: the next start resends it as a possible duplicate.
        """
        send = asyncio.ensure_future(self._send(client, ch, msg))
        stopping = False
        try:
            await asyncio.shield(send)
        except asyncio.CancelledError:
            stopping = True
            loop = asyncio.get_running_loop()
            deadline = loop.time() + min(getattr(ch, "timeout_s", STOP_GRACE_S), STOP_GRACE_S)
            while not send.done() and loop.time() < deadline:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait({send}, timeout=deadline - loop.time())
            if not send.done():
                send.cancel()
                log.warning("notification channel %s: send not finished at stop", ch.name)
                raise
        except NotifyError as exc:
            return False, exc
        if send.cancelled():
            return stopping, NotifyError(f"{ch.name}: send cancelled", maybe_sent=True)
        failure = send.exception()
        if failure is not None and not isinstance(failure, NotifyError):
            raise failure
        return stopping, failure

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

    async def _send(
        self,
        client: httpx.AsyncClient,
        ch: MqttChannel | WebhookChannel | EmailChannel,
        msg: Message,
    ) -> None:
        if isinstance(ch, WebhookChannel):
            await send_webhook(client, ch, msg, self.clock.now_ns() / 1e9)
        elif isinstance(ch, EmailChannel):
            await asyncio.to_thread(send_email_sync, ch, msg)
        else:
            if self.publish is None:
                raise NotifyError(f"mqtt {ch.name}: no MQTT publisher is wired")
            payload = {
                "title": msg.title,
                "text": msg.text,
                "recipients": [n for n, _ in msg.people],
                "alarms": msg.items,
                "ts_ns": self.clock.now_ns(),
                "possible_duplicate": msg.possible_duplicate,
            }
            try:
                await self.publish(ch.topic, payload)
            except GatewayError as exc:
                raise NotifyError(f"mqtt {ch.name}: {exc}") from exc

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
