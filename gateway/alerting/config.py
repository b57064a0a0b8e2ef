"""The ``alerting:`` block of a site file: channels, routes, roster, escalation, alarm tuning.

Pydantic models with ``extra="forbid"``. Routes pick alarms by severity and
area and send them to named channels; escalation levels say when the next
roster level is told about an alarm nobody acknowledged. Every number has a
default taken from domain.md (flood > 10 in 10 min ending below 5, chatter
>= 3 activations in 1 min) and can be changed per site.
"""

from __future__ import annotations

import re
from datetime import time
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from gateway.alerting.ack_link import check_key
from gateway.validators import TimeZoneName, check_order

NAME = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Severity(StrEnum):
    """Alarm priority, lowest first (ISA-18.2 recommends few priority levels)."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {s: i for i, s in enumerate(Severity)}


# --------------------------------------------------------------------------- channels


class _ChannelBase(Strict):
    name: NAME
    # A channel that failed this many deliveries in a row raises its own alarm.
    fail_alarm_after: int = Field(default=3, ge=1, le=1000)


class MqttChannel(_ChannelBase):
    """Notification records handed to the app, which publishes them through the outbox."""

    type: Literal["mqtt"]
    # Under ``<prefix>/<site>/``, e.g. ``notifications`` or ``pager/night``.
    topic: str = Field(default="notifications", pattern=r"^[^/+#\s]([^+#\s]*[^/+#\s])?$")


class WebhookChannel(_ChannelBase):
    """An HTTP POST of JSON: generic, or a group-robot preset."""

    type: Literal["webhook"]
    url: str = Field(pattern=r"^https?://")
    preset: Literal["generic", "dingtalk", "wecom", "feishu", "slack"] = "generic"
    # DingTalk and Feishu robots may require a signature made with this secret.
    secret: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=10.0, ge=1, le=120)


class EmailChannel(_ChannelBase):
    """E-mail over SMTP, optionally with STARTTLS or implicit TLS and login."""

    type: Literal["email"]
    host: str
    port: int = Field(default=25, ge=1, le=65535)
    security: Literal["none", "starttls", "ssl"] = "starttls"
    username: str | None = None
    password: str | None = None
    sender: str
    # Used when the roster gives no addresses (e.g. a shared duty mailbox).
    to: list[str] = Field(default_factory=list)
    # Only for a private CA or a lab server; never turn verification off on a real site.
    ca_file: str | None = None
    verify_tls: bool = True
    timeout_s: float = Field(default=20.0, ge=1, le=300)

    @model_validator(mode="after")
    def _login_pair(self) -> EmailChannel:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self


Channel = Annotated[MqttChannel | WebhookChannel | EmailChannel, Field(discriminator="type")]


# --------------------------------------------------------------------------- roster

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")


def parse_hhmm(text: str) -> time | None:
    """``HH:MM`` as a time; ``24:00`` is returned as None meaning end of day."""
    m = _HHMM.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a time of day HH:MM")
    if text == "24:00":
        return None
    return time(int(m.group(1)), int(m.group(2)))


class Person(Strict):
    email: str | None = None
    # Mobile number: DingTalk and WeCom robots @-mention people by it.
    phone: str | None = None
    # Slack member id, or Feishu open_id / user_id, for @-mentions in those robots' messages.
    chat_id: str | None = None


def _all_days() -> list[Weekday]:
    return ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class Shift(Strict):
    """Who is on call on these weekdays between start and end (end before start wraps midnight).

    ``levels[0]`` are told first, ``levels[1]`` on the first escalation, and so on.
    """

    name: NAME
    days: list[Weekday] = Field(default_factory=_all_days, min_length=1)
    start: str = "00:00"
    end: str = "24:00"
    levels: list[list[str]] = Field(min_length=1)

    @field_validator("start", "end")
    @classmethod
    def _time(cls, v: str) -> str:
        parse_hhmm(v)
        return v


class RosterConfig(Strict):
    timezone: TimeZoneName = "Asia/Shanghai"
    people: dict[str, Person] = Field(default_factory=dict)
    shifts: list[Shift] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known_people(self) -> RosterConfig:
        for shift in self.shifts:
            for level in shift.levels:
                for who in level:
                    if who not in self.people:
                        raise ValueError(
                            f"shift {shift.name!r} names {who!r} who is not in roster.people"
                        )
        return self


# --------------------------------------------------------------------------- routes


class EscalationLevel(Strict):
    """``after_s`` after the alarm was raised and still unacknowledged, tell this roster level."""

    after_s: float = Field(ge=0, le=7 * 86400)
    # Index into the shift's levels; default: this level's position in the list.
    roster_level: int | None = Field(default=None, ge=0)
    # Channels for this level; default: the route's channels.
    channels: list[str] | None = None
    # Extra named people told at this level whatever the shift.
    people: list[str] = Field(default_factory=list)


class RouteMatch(Strict):
    min_severity: Severity = Severity.LOW
    # Empty means every area.
    areas: list[str] = Field(default_factory=list)
    # Glob patterns on rule ids; empty means every rule.
    rules: list[str] = Field(default_factory=list)


class Route(Strict):
    name: NAME
    match: RouteMatch = Field(default_factory=RouteMatch)
    channels: list[str] = Field(min_length=1)
    escalation: list[EscalationLevel] = Field(default_factory=lambda: [EscalationLevel(after_s=0)])
    # Re-notify the last level this often while nobody acknowledges; None = never.
    repeat_s: float | None = Field(default=None, ge=60, le=7 * 86400)
    # Also tell this route when the alarm returns to normal.
    notify_rtn: bool = False
    # Keep trying later routes after this one matched.
    continue_matching: bool = False

    @model_validator(mode="after")
    def _ordered_levels(self) -> Route:
        if not self.escalation:
            raise ValueError("escalation needs at least one level")
        times = [lvl.after_s for lvl in self.escalation]
        if times != sorted(times):
            raise ValueError("escalation levels must be in order of after_s")
        return self


# --------------------------------------------------------------------------- alarm book


class FloodConfig(Strict):
    count: int = Field(default=10, ge=1)
    window_s: float = Field(default=600.0, ge=10, le=86400)
    end_below: int = Field(default=5, ge=1)

    @model_validator(mode="after")
    def _hysteresis(self) -> FloodConfig:
        if self.end_below > self.count:
            raise ValueError("end_below must not exceed count")
        return self


class ChatterConfig(Strict):
    count: int = Field(default=3, ge=2)
    window_s: float = Field(default=60.0, ge=1, le=3600)


class RetryConfig(Strict):
    min_s: float = Field(default=5.0, ge=1, le=3600)
    max_s: float = Field(default=600.0, ge=1, le=86400)
    # A notification older than this is given up and recorded as dead (and alarmed).
    give_up_s: float = Field(default=7 * 86400.0, ge=60, le=30 * 86400)

    @model_validator(mode="after")
    def _order(self) -> RetryConfig:
        check_order(self, "min_s", "max_s")
        return self


class AlertingConfig(Strict):
    """The site's ``alerting:`` block."""

    state_db: str = "gateway-alarms.sqlite"
    channels: list[Channel] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    roster: RosterConfig = Field(default_factory=RosterConfig)
    # The first notification to a channel and recipient set goes at once; those that
    # follow within this window of the last message wait for it and go out as one.
    group_window_s: float = Field(default=30.0, ge=0, le=3600)
    # An acknowledged alarm still active this long returns to unacknowledged; None = never.
    realarm_s: float | None = Field(default=None, ge=60, le=7 * 86400)
    max_shelve_s: float = Field(default=24 * 3600.0, ge=60, le=30 * 86400)
    # Out of service by command always has an end; this is the longest one allowed.
    max_out_of_service_s: float = Field(default=7 * 24 * 3600.0, ge=60, le=365 * 86400)
    flood: FloodConfig = Field(default_factory=FloodConfig)
    chatter: ChatterConfig = Field(default_factory=ChatterConfig)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    # Severity of the gateway's own health alarms when no health rule says otherwise.
    health_severity: Severity = Severity.HIGH
    # One-tap acknowledgement: each notification links to the alarm in this console,
    # signed with link_key (the console's site file has the same key) and valid link_ttl_s.
    console_url: str | None = Field(default=None, max_length=300, pattern=r"^https?://[^\s]+$")
    link_key: SecretStr | None = None
    link_ttl_s: float = Field(default=3600.0, ge=60, le=7 * 86400)

    @field_validator("link_key")
    @classmethod
    def _link_key(cls, v: SecretStr | None) -> SecretStr | None:
        check_key(None if v is None else v.get_secret_value())
        return v

    @model_validator(mode="after")
    def _references(self) -> AlertingConfig:
        if self.console_url is not None and self.link_key is None:
            raise ValueError("console_url needs link_key (the key the console verifies links with)")
        names = [c.name for c in self.channels]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"channel name(s) used twice: {', '.join(sorted(dup))}")
        known = set(names)
        for route in self.routes:
            wanted = list(route.channels)
            for lvl in route.escalation:
                wanted += lvl.channels or []
                for who in lvl.people:
                    if who not in self.roster.people:
                        raise ValueError(
                            f"route {route.name!r}: escalation names {who!r}"
                            " who is not in roster.people"
                        )
            for ch in wanted:
                if ch not in known:
                    raise ValueError(
                        f"route {route.name!r}: unknown channel {ch!r}"
                        f" (known: {', '.join(names) or 'none'})"
                    )
        return self

    def channel(self, name: str) -> MqttChannel | WebhookChannel | EmailChannel:
        for c in self.channels:
            if c.name == name:
                return c
        raise KeyError(name)
