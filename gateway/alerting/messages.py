"""What a notification says: one message for a group of queued alarms, and its record.

``compose`` turns the queued items for one channel and one set of people
into one ``Message`` (highest severity first, at most ``MAX_LINES`` alarms
listed, each with its acknowledgement link and when it escalates);
``sent_record`` is what a delivered message is reported as (``notification.sent``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.alerting.config import Person, Severity
from gateway.alerting.roster import Roster
from gateway.alerting.store import QueuedNotification

MAX_LINES = 25  # a grouped message lists this many alarms, then says how many more


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
