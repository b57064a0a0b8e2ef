"""Operator commands (ack, shelve, unshelve, reset, out/in service, list) as validated JSON.

The same models serve the MQTT command topic and the CLI, so both accept and
refuse exactly the same things. A malformed payload raises ``CommandError``
with one clear line per problem and changes nothing; ``error_reply`` turns
any failure into the JSON the app publishes on the response topic.

    {"cmd": "ack", "alarm_id": "leakage:lk-1:leak_ch1:hihi", "by": "wang", "comment": "on my way"}
    {"cmd": "shelve", "alarm_id": "...", "duration": "2h", "reason": "sensor replaced tomorrow"}
    {"cmd": "reset", "alarm_id": "..."}

Over MQTT every command also carries ``request_id`` and ``issued_at`` (Unix
seconds) so the gateway can refuse stale and replayed ones, and, when
signed, ``site``, ``user`` and ``sig`` (``gateway.alerting.command_gate``).
Shelving and taking out of service need a ``reason`` and a ``duration``:
nothing is switched off for ever by accident. Stored text (``by``,
``comment``, ``reason``) is length-limited and refuses control characters,
bidirectional overrides and other invisible formatting; ``printable_json``
(gateway/printable.py) escapes such characters wherever a reply or a record is printed.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from gateway.errors import AlarmError, CommandError, CommandRefused
from gateway.printable import unsafe_char

MAX_PAYLOAD = 16 * 1024
# A command is a flat object; anything deeper is refused before it is looked at.
MAX_DEPTH = 4
REASON_MAX = 200
def _safe_text(value: str | None) -> str | None:
    for ch in value or "":
        if unsafe_char(ch):
            name = unicodedata.name(ch, "") if unicodedata.category(ch) != "Cs" else ""
            label = f"U+{ord(ch):04X}" + (f" ({name})" if name else "")
            raise ValueError(
                f"character {label} is not allowed: control characters, bidirectional"
                " overrides and invisible formatting are refused"
            )
    return value


SafeText = AfterValidator(_safe_text)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
ALARM_ID = Annotated[
    str, Field(min_length=1, max_length=256, pattern=r"^[^\s]+$"), SafeText
]
_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*d)?\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*"
                       r"(?:(\d+(?:\.\d+)?)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s)?\s*$")  # fmt: skip


def parse_duration(value: str | float | int) -> float:
    """``90``, ``"90s"``, ``"30m"``, ``"2h"``, ``"1h30m"``, ``"1d"`` -> seconds."""
    if isinstance(value, bool):
        raise ValueError("duration must be a number of seconds or a text like 2h, 30m, 1h30m")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
        if not math.isfinite(seconds):
            raise ValueError("duration must be a finite number of seconds")
    else:
        text = value.strip()
        m = _DURATION.match(text)
        if not text or not m or not any(m.groups()):
            try:
                seconds = float(text)
            except ValueError:
                seconds = math.nan
            if not math.isfinite(seconds):
                raise ValueError(
                    f"duration {value!r} is not understood; use seconds or e.g. 2h, 30m, 1h30m"
                ) from None
        else:
            d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
            seconds = d * 86400 + h * 3600 + mi * 60 + s
            if not math.isfinite(seconds):
                raise ValueError("duration must be a finite number of seconds")
    if not seconds > 0:
        raise ValueError("duration must be positive")
    return seconds


class _Cmd(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str | None = Field(default=None, pattern=_REQUEST_ID.pattern)
    # When the sender issued it (Unix seconds, wall clock): stale commands are refused.
    issued_at: float | None = Field(default=None, allow_inf_nan=False)
    # Signed commands (gateway.alerting.command_gate): the site they are meant for, the
    # signing user and the hex HMAC-SHA256 of the canonical payload without "sig".
    site: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    user: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    sig: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    # The operator's name, recorded with the transition next to the channel it came by.
    by: Annotated[
        str | None, Field(default=None, min_length=1, max_length=64, pattern=r"^[^\s/#+]+$"),
        SafeText,
    ] = None
    comment: Annotated[str | None, Field(default=None, max_length=500), SafeText] = None


class AckCmd(_Cmd):
    cmd: Literal["ack"]
    alarm_id: ALARM_ID


class _TimedCmd(_Cmd):
    """Shelve and out of service: why, and for how long (the alarm book ends it then)."""

    alarm_id: ALARM_ID
    reason: Annotated[str, Field(min_length=1, max_length=REASON_MAX), SafeText]
    duration: float

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        if not isinstance(v, str | int | float):
            raise ValueError("duration must be seconds or a text like 2h, 30m")
        return parse_duration(v)

    @property
    def note(self) -> str:
        """What the alarm book records as the comment: the reason, then any comment."""
        return f"{self.reason}: {self.comment}" if self.comment else self.reason


class ShelveCmd(_TimedCmd):
    cmd: Literal["shelve"]


class UnshelveCmd(_Cmd):
    cmd: Literal["unshelve"]
    alarm_id: ALARM_ID


class ResetCmd(_Cmd):
    cmd: Literal["reset"]
    alarm_id: ALARM_ID


class OutOfServiceCmd(_TimedCmd):
    cmd: Literal["out_of_service"]


class InServiceCmd(_Cmd):
    cmd: Literal["in_service"]
    alarm_id: ALARM_ID


class ListCmd(_Cmd):
    cmd: Literal["list"]
    # Default: every alarm that is not normal.
    all: bool = False


class ReloadCmd(_Cmd):
    """Read the site again and apply what changed (gateway/reloader.py): a gateway command,
    signed only, by a user whose ``allow`` names it (command_gate)."""

    cmd: Literal["reload"]


Command = Annotated[
    AckCmd | ShelveCmd | UnshelveCmd | ResetCmd | OutOfServiceCmd | InServiceCmd | ListCmd
    | ReloadCmd,
    Field(discriminator="cmd"),
]  # fmt: skip
AnyCommand = (
    AckCmd | ShelveCmd | UnshelveCmd | ResetCmd | OutOfServiceCmd | InServiceCmd | ListCmd
    | ReloadCmd
)  # fmt: skip
COMMANDS = ("ack", "shelve", "unshelve", "reset", "out_of_service", "in_service", "list", "reload")
_ADAPTER: TypeAdapter[AnyCommand] = TypeAdapter(Command)


def _loc(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p not in COMMANDS]
    return ".".join(parts) or "payload"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _loads(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise CommandError(
            f"payload is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise CommandError(f"payload is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # NaN / Infinity, an integer with thousands of digits
        raise CommandError(f"payload is not JSON: {exc}") from None


def _depth(data: Any) -> int:
    """How deeply lists and objects nest (iterative: a hostile dict cannot overflow the stack)."""
    deepest, todo = 0, [(data, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if deepest > MAX_DEPTH:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            todo.extend((child, level + 1) for child in children)
    return deepest


def load_payload(raw: dict[str, Any] | str | bytes) -> dict[str, Any]:
    """The payload as a JSON object within the size and depth limits, or CommandError."""
    data: Any = raw
    if isinstance(raw, bytes | bytearray):
        if len(raw) > MAX_PAYLOAD:
            raise CommandError(f"payload is {len(raw)} bytes; the limit is {MAX_PAYLOAD}")
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CommandError(f"payload is not UTF-8: {exc.reason} at byte {exc.start}") from None
    if isinstance(raw, str):
        if len(raw) > MAX_PAYLOAD:
            raise CommandError(f"payload is {len(raw)} characters; the limit is {MAX_PAYLOAD}")
        data = _loads(raw)
    if _depth(data) > MAX_DEPTH:
        raise CommandError(f"payload is nested deeper than {MAX_DEPTH} levels")
    if not isinstance(data, dict):
        raise CommandError(
            f'payload must be a JSON object like {{"cmd": "ack", "alarm_id": "..."}},'
            f" not {type(data).__name__}"
        )
    return data


def parse_command(raw: dict[str, Any] | str | bytes) -> AnyCommand:
    """Validate a command payload; raise CommandError naming every bad field."""
    data = load_payload(raw)
    cmd = data.get("cmd")
    if cmd is None:
        raise CommandError(f"cmd: missing; one of {', '.join(COMMANDS)}")
    if cmd not in COMMANDS:
        raise CommandError(f"cmd: unknown command {cmd!r}; one of {', '.join(COMMANDS)}")
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        problems = [
            f"{_loc(e['loc'])}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()
        ]
        raise CommandError(f"{cmd}: " + "; ".join(problems)) from None


def actor_of(cmd: AnyCommand, channel: str) -> str:
    """Who did it: the named operator and the channel, e.g. ``wang via mqtt``."""
    return f"{cmd.by} via {channel}" if cmd.by else channel


def request_id_of(raw: Any) -> str | None:
    """Best-effort request id from a payload that may not even be valid JSON."""
    data = raw
    if isinstance(raw, bytes | bytearray):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if isinstance(raw, str):
        if len(raw) > MAX_PAYLOAD:
            return None
        try:  # leniently: a NaN elsewhere should not hide the id from the sender
            data = json.loads(raw)
        except (ValueError, RecursionError):
            return None
    if isinstance(data, dict):
        rid = data.get("request_id")
        # Echoed in the reply only when it is the plain token a request id must be.
        if isinstance(rid, str) and _REQUEST_ID.fullmatch(rid):
            return rid
    return None


def error_reply(raw: Any, exc: Exception) -> dict[str, Any]:
    """The response-topic payload for a refused command."""
    kind = (
        "refused"
        if isinstance(exc, AlarmError | CommandRefused)
        else ("bad_command" if isinstance(exc, CommandError) else "error")
    )
    return {"ok": False, "error": kind, "message": str(exc), "request_id": request_id_of(raw)}


def build_command(
    cmd: str,
    alarm_id: str | None = None,
    *,
    duration: str | float | None = None,
    reason: str | None = None,
    by: str | None = None,
    comment: str | None = None,
    request_id: str | None = None,
    issued_at: float | None = None,
) -> dict[str, Any]:
    """The payload the CLI publishes (validated here so the CLI fails before sending)."""
    data: dict[str, Any] = {"cmd": cmd}
    fields = (
        ("alarm_id", alarm_id), ("duration", duration), ("reason", reason), ("by", by),
        ("comment", comment), ("request_id", request_id), ("issued_at", issued_at),
    )  # fmt: skip
    for key, val in fields:
        if val is not None:
            data[key] = val
    parse_command(data)
    return data
