"""InfluxDB line protocol: pure encoders for samples, alarm events and generic events.

Schema (documented for operators in docs/delivery.md):

- A ``Sample`` is one line: measurement = the device kind, tags ``site``,
  ``device`` and the device's tags (``area``...), one field per good or
  uncertain point, the poll's nanosecond timestamp. Bad and fault points are
  not written as values; ``_bad_points`` (integer) counts them when there are
  any, and ``_error`` (string) carries the poll error, so a dead device shows
  as a line with no values rather than as a gap or a zero.
- An ``AlarmEvent`` is one line in measurement ``alarm`` (Grafana
  annotations): tags site, device, area, severity, rule, alarm_id, state,
  point; fields message, action, actor, previous, active, latched, and the
  value under a name that fixes its type (``value`` float, ``value_bool``,
  ``value_str``) so no field type conflict can reject a write.
- An ``Event`` goes to its own measurement, tags site, kind, device and its
  tags, one field per scalar in ``data`` (others as JSON strings).

Replays are idempotent: the same item always encodes to the same series key
(sorted tags) and timestamp, and InfluxDB overwrites such a point.

Escaping (InfluxDB line protocol reference): measurement: comma and space;
tag keys, tag values and field keys: comma, equals sign and space; string
field values: double quote and backslash. Newlines are not allowed anywhere
in a line, so a newline in a string is written as the two characters ``\\n``
and dropped from names. Empty tag values are left out (InfluxDB rejects them).
NaN and infinities cannot be written: such a point counts as bad.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from gateway.model import AlarmEvent, Quality, Sample
from gateway.outbox import Event, Item

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

_MEAS_ESC = str.maketrans({",": r"\,", " ": r"\ ", "\n": "", "\r": ""})
_KEY_ESC = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": "", "\r": ""})
_STR_ESC = str.maketrans({'"': r"\"", "\\": "\\\\", "\n": r"\n", "\r": r"\r"})


def escape_measurement(name: str) -> str:
    return name.translate(_MEAS_ESC)


def escape_key(name: str) -> str:
    """Escape a tag key, tag value or field key."""
    return name.translate(_KEY_ESC)


def format_field(value: Any) -> str | None:
    """One field value in line protocol, or None if it cannot be written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            return f"{value}i"
        return format_field(float(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return repr(value)
    if isinstance(value, str):
        return '"' + value.translate(_STR_ESC) + '"'
    return None


def encode_line(
    measurement: str, tags: Mapping[str, str], fields: Mapping[str, Any], ts_ns: int
) -> str | None:
    """One line of line protocol; None if no field can be written (a line needs one)."""
    parts = []
    for k, v in fields.items():
        f = format_field(v)
        if f is not None:
            parts.append(f"{escape_key(k)}={f}")
    if not parts:
        return None
    head = escape_measurement(measurement)
    for k in sorted(tags):
        v = tags[k]
        if v == "" or k == "":
            continue
        head += f",{escape_key(k)}={escape_key(v)}"
    return f"{head} {','.join(parts)} {ts_ns}"


# Samples are the hot path (one line per device poll): the series key of a
# device and the escaped point names repeat on every poll, so they are cached.
# Both caches are bounded by what a site has (devices, point names); the
# clear() only guards against a caller feeding endless distinct names.
_CACHE_MAX = 100_000
_head_cache: dict[tuple[str, str, str, tuple[tuple[str, str], ...]], str] = {}
_key_cache: dict[str, str] = {}
_NOT_GOOD = (Quality.BAD, Quality.FAULT)


def _sample_head(sample: Sample, site: str) -> str:
    key = (sample.kind, site, sample.device, tuple(sample.tags.items()))
    head = _head_cache.get(key)
    if head is None:
        if len(_head_cache) >= _CACHE_MAX:
            _head_cache.clear()
        tags = {**sample.tags, "site": site, "device": sample.device}
        head = escape_measurement(sample.kind)
        for k in sorted(tags):
            v = tags[k]
            if v == "" or k == "":
                continue
            head += f",{escape_key(k)}={escape_key(v)}"
        _head_cache[key] = head
    return head


def _field_key(name: str) -> str:
    key = _key_cache.get(name)
    if key is None:
        if len(_key_cache) >= _CACHE_MAX:
            _key_cache.clear()
        key = _key_cache[name] = escape_key(name) + "="
    return key


def sample_line(sample: Sample, site: str) -> str | None:
    quality = sample.quality
    values = sample.values
    bad = 0
    for point, q in quality.items():
        if q in _NOT_GOOD or point not in values:
            bad += 1
    parts: list[str] = []
    for point, value in values.items():
        if quality and quality.get(point) in _NOT_GOOD:
            continue  # counted above; a bad point is never written as a value
        # Fast path for the usual finite float; format_field covers the rest.
        if type(value) is float and math.isfinite(value):
            parts.append(_field_key(point) + repr(value))
            continue
        f = format_field(value)
        if f is None:
            bad += 1
            continue
        parts.append(_field_key(point) + f)
    if bad:
        parts.append(f"_bad_points={bad}i")
    if sample.error is not None:
        parts.append("_error=" + '"' + sample.error.translate(_STR_ESC) + '"')
    if not parts:
        return None
    return f"{_sample_head(sample, site)} {','.join(parts)} {sample.ts_ns}"


def alarm_line(event: AlarmEvent, site: str) -> str | None:
    tags = {
        "site": site,
        "device": event.device,
        "area": event.area or "",
        "severity": event.severity,
        "rule": event.rule,
        "alarm_id": event.alarm_id,
        "state": str(event.state),
        "point": event.point or "",
    }
    fields: dict[str, Any] = {
        "message": event.message,
        "action": event.action,
        "actor": event.actor,
        "previous": str(event.previous),
        "active": event.active,
        "latched": event.latched,
    }
    v = event.value
    if isinstance(v, bool):
        fields["value_bool"] = v
    elif isinstance(v, int | float):
        fields["value"] = float(v)
    elif isinstance(v, str):
        fields["value_str"] = v
    return encode_line("alarm", tags, fields, event.ts_ns)


def event_line(event: Event, site: str) -> str | None:
    tags = {**event.tags, "site": site, "kind": event.kind, "device": event.device or ""}
    fields: dict[str, Any] = {}
    for k, v in event.data.items():
        if isinstance(v, bool | int | float | str):
            fields[k] = v
        elif v is not None:
            fields[k] = json.dumps(v, separators=(",", ":"), ensure_ascii=False)
    if not fields:
        fields["event"] = event.kind
    return encode_line(event.measurement, tags, fields, event.ts_ns)


def item_line(item: Item, site: str) -> str | None:
    if isinstance(item, Sample):
        return sample_line(item, site)
    if isinstance(item, AlarmEvent):
        return alarm_line(item, site)
    return event_line(item, site)
