"""What a command from the MQTT channel must pass before it reaches the alarm book.

In order: it parses (``parse_command``); it is signed by a user of the
site's ``commands.users`` who may give this command (or the site allows
unsigned commands, recorded as unverified); it names this site when signed;
it is fresh (``issued_at`` within
``max_age_s`` in the past and ``max_future_s`` in the future, on the
gateway's wall clock); its ``request_id`` was not seen before. Request ids
are kept in a small SQLite file until the command they belong to would be
stale anyway, so a restart does not reopen the replay window, and the file
never holds more than ``replay_capacity`` ids: when full, new commands are
refused until old ids expire (forgetting one would let it be replayed).

A signature is the lowercase hex HMAC-SHA256, keyed with the user's key
(UTF-8), of the canonical payload: the JSON object without ``sig``, keys
sorted, no spaces, non-ASCII as ``\\uXXXX`` (Python:
``json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=True)``).
It is compared in constant time; the verified user is the actor, and a
``by`` that names someone else is refused, except from a user marked
``on_behalf`` (a console that signs for the people logged into it): then
``by`` is the actor and the console is the channel (``wang via console``).

Rate limits (``commands.rates``, token buckets in
``gateway.alerting.command_limits``): messages refused before a sender is
known share one bucket, each verified user has one, and each user's commands
to one alarm have one (so one sender cannot lock others out of an alarm).
Past a bucket the gate answers once and then drops silently, logging the
flood once and a summary per interval, so a flood costs neither a log line
nor a reply nor an alarm transition per message.

The gate does no MQTT; ``gateway.plugins.mqtt.commands`` calls ``check`` for
each message and hands what it admits to the engine.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.alerting.command_config import CommandsConfig
from gateway.alerting.command_limits import Buckets, FloodLog
from gateway.alerting.commands import AnyCommand, error_reply, load_payload, parse_command
from gateway.errors import CommandError, CommandRefused
from gateway.model import Clock

log = logging.getLogger(__name__)


def canonical(data: dict[str, Any]) -> bytes:
    """The bytes a signature covers: the payload without ``sig``, in one fixed spelling."""
    body = {k: v for k, v in data.items() if k != "sig"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def signature(data: dict[str, Any], key: str) -> str:
    return hmac.new(key.encode(), canonical(data), hashlib.sha256).hexdigest()


def sign_command(data: dict[str, Any], user: str, key: str, site: str) -> dict[str, Any]:
    """``data`` with ``user``, ``site``, ``by`` and ``sig`` set: what a signing sender publishes."""
    signed = {k: v for k, v in data.items() if k != "sig"}
    signed.update(user=user, site=site, by=user)
    signed["sig"] = signature(signed, key)
    return signed


@dataclass(frozen=True)
class Refusal:
    """A command the gate turned away: the reply to publish, or None to stay silent (flood)."""

    reply: dict[str, Any] | None


@dataclass(frozen=True)
class Admitted:
    """A command that passed the gate: the payload for the engine and the channel it came by."""

    command: AnyCommand
    payload: dict[str, Any]
    channel: str


class ReplayWindow:
    """Request ids seen recently, each kept until ``expires_ns``; survives restarts when on disk."""

    def __init__(self, path: Path | str | None, capacity: int) -> None:
        self.capacity = capacity
        self.db = sqlite3.connect(":memory:" if path is None else str(path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS seen (request_id TEXT PRIMARY KEY, expires_ns INTEGER)"
        )
        self.db.execute("CREATE INDEX IF NOT EXISTS seen_expiry ON seen (expires_ns)")

    def add(self, request_id: str, expires_ns: int, now_ns: int) -> None:
        """Remember ``request_id``; CommandRefused if it was seen or the window is full."""
        self.db.execute("DELETE FROM seen WHERE expires_ns <= ?", (now_ns,))
        if self.db.execute("SELECT 1 FROM seen WHERE request_id = ?", (request_id,)).fetchone():
            raise CommandRefused(f"request_id {request_id!r} was already used (replay)")
        (count,) = self.db.execute("SELECT count(*) FROM seen").fetchone()
        if count >= self.capacity:
            raise CommandRefused(
                f"{count} commands in the replay window (the limit); try again later"
            )
        self.db.execute("INSERT INTO seen VALUES (?, ?)", (request_id, expires_ns))

    def close(self) -> None:
        self.db.close()


class CommandGate:
    """Parses, checks freshness and replay; ``admit`` raises CommandError / CommandRefused."""

    def __init__(
        self, cfg: CommandsConfig, clock: Clock, replay_path: Path | str | None, site: str = ""
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.site = site
        self.replay = ReplayWindow(replay_path, cfg.replay_capacity)
        r = cfg.rates
        self._invalid = Buckets(r.invalid_per_s, r.invalid_burst)
        self._users = Buckets(r.user_per_s, r.user_burst)
        self._alarms = Buckets(r.alarm_per_s, r.alarm_burst)
        # Refusal lines in the log: a few, then only the flood summaries count them.
        self._log_lines = Buckets(0.1, 10)
        self._invalid_log = FloodLog("invalid commands dropped", r.summary_every_s)
        self._limited_log = FloodLog("commands over a rate limit", r.summary_every_s)

    def _verify(self, data: dict[str, Any], c: AnyCommand) -> tuple[str | None, str]:
        """The verified user (None when unsigned and allowed) and the channel to record."""
        if c.sig is None:
            if c.cmd == "reload":
                raise CommandRefused("reload must be signed by a user whose allow names it")
            if not self.cfg.allow_unsigned:
                raise CommandRefused(
                    "unsigned commands are not accepted on this site: sign with your key"
                    " (user, site, sig; see the Trust model in the README)"
                )
            return None, "mqtt (unverified)"
        user = self.cfg.users.get(c.user or "")
        # One message for an unknown user and a wrong key: no hint which names exist.
        key = user.key.get_secret_value() if user is not None else ""
        if user is None or not hmac.compare_digest(signature(data, key), c.sig):
            raise CommandRefused("signature does not verify (unknown user or wrong key)")
        assert c.user is not None
        if c.site != self.site:
            raise CommandRefused(f"signed for site {c.site!r}, this is {self.site!r}")
        if c.cmd not in user.allow:
            raise CommandRefused(f"user {c.user!r} may not {c.cmd}")
        if c.by is not None and c.by != c.user:
            if not user.on_behalf:
                raise CommandRefused(f"by {c.by!r} does not match the signing user {c.user!r}")
            # A console vouches for its logged-in operator: the actor is "<by> via <console>".
            return c.by, c.user
        return c.user, "mqtt"

    def _fresh(self, c: AnyCommand, now_ns: int) -> int:
        """The command's issue time in ns, or CommandRefused when stale or from the future."""
        if c.request_id is None or c.issued_at is None:
            raise CommandError(
                "request_id and issued_at (Unix seconds) are required on the MQTT channel"
            )
        issued_ns = int(c.issued_at * 1e9)
        age_s = (now_ns - issued_ns) / 1e9
        if age_s > self.cfg.max_age_s:
            raise CommandRefused(
                f"command is stale: issued {age_s:.0f} s ago, the limit is {self.cfg.max_age_s:g} s"
            )
        if -age_s > self.cfg.max_future_s:
            raise CommandRefused(
                f"command is issued {-age_s:.0f} s in the future (clock skew limit"
                f" {self.cfg.max_future_s:g} s); check the sender's clock"
            )
        return issued_ns

    def _identify(self, raw: bytes | str) -> tuple[dict[str, Any], AnyCommand, str | None, str]:
        data = load_payload(raw)
        c = parse_command(data)
        user, channel = self._verify(data, c)
        return data, c, user, channel

    def _accept(self, c: AnyCommand, user: str | None, channel: str) -> Admitted:
        now_ns = self.clock.now_ns()
        issued_ns = self._fresh(c, now_ns)
        assert c.request_id is not None
        self.replay.add(c.request_id, issued_ns + int(self.cfg.max_age_s * 1e9), now_ns)
        payload = c.model_dump(exclude_none=True)
        if user is not None:
            payload["by"] = user
        return Admitted(c, payload, channel)

    def admit(self, raw: bytes | str) -> Admitted:
        """Every check but the rate limits; CommandError / CommandRefused when it fails."""
        _data, c, user, channel = self._identify(raw)
        return self._accept(c, user, channel)

    def check(self, raw: bytes | str) -> Admitted | Refusal:
        """``admit`` under the rate limits: what the listener calls for each message.

        Refusals before the sender is known share one bucket; past it they are
        dropped without a reply and counted. A verified user (or all unsigned
        senders together) past their bucket, or past their bucket for one alarm,
        is refused; only the first of a run gets a reply.
        """
        now = self.clock.monotonic()
        self._invalid_log.maybe_summary(now)
        self._limited_log.maybe_summary(now)
        try:
            _data, c, user, channel = self._identify(raw)
        except CommandError as exc:
            if not self._invalid.take("all", now):
                self._invalid_log.dropped(now, f"more than {self.cfg.rates.invalid_per_s:g}/s")
                return Refusal(None)
            return self._refuse(raw, exc, now)
        who = user or "(unsigned)"
        if not self._users.take(who, now):
            return self._limit(raw, f"{who} sends more than {self.cfg.rates.user_per_s:g}/s", now)
        try:
            admitted = self._accept(c, user, channel)
        except CommandError as exc:
            return self._refuse(raw, exc, now)
        alarm_id = getattr(c, "alarm_id", None)
        # Per user and alarm: one sender cannot churn an alarm, nor lock others out of it.
        if alarm_id is not None and not self._alarms.take(f"{who}\n{alarm_id}", now):
            return self._limit(
                raw, f"alarm {alarm_id!r} changes more than {self.cfg.rates.alarm_per_s:g}/s", now
            )
        self._limited_log.since_reply = False
        return admitted

    def _refuse(self, raw: bytes | str, exc: CommandError, now: float) -> Refusal:
        if self._log_lines.take("all", now):
            log.warning("rejected command: %s", exc)
        return Refusal(error_reply(raw, exc))

    def _limit(self, raw: bytes | str, why: str, now: float) -> Refusal:
        """Refused for a rate limit: the first of a run is answered, the rest only counted."""
        first = not self._limited_log.since_reply
        self._limited_log.since_reply = True
        self._limited_log.dropped(now, why)
        if not first:
            return Refusal(None)
        return Refusal(error_reply(raw, CommandRefused(f"rate limited: {why}; try again later")))

    def answer(
        self, raw: bytes | str, handle: Callable[[Any, str], dict[str, Any]]
    ) -> dict[str, Any] | None:
        """The reply to one message: the refusal's, or ``handle``'s for an admitted
        command (None: stay silent). What a command channel calls for each message."""
        verdict = self.check(raw)
        if isinstance(verdict, Refusal):
            return verdict.reply
        return handle(verdict.payload, verdict.channel)

    def close(self) -> None:
        self.replay.close()
