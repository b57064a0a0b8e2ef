"""Notification building blocks: roster by weekday and time, routes, grouping, robot payloads."""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from gateway.alerting.channels import webhook_body
from gateway.alerting.config import AlertingConfig, MqttChannel, Person, Route, WebhookChannel
from gateway.alerting.messages import Message, compose, sent_record
from gateway.alerting.roster import Roster, route_matches, routes_for
from gateway.alerting.store import QueuedNotification

TZ = ZoneInfo("Asia/Shanghai")


def ns(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=TZ).timestamp() * 1e9)


CFG = AlertingConfig.model_validate(
    {
        "channels": [
            {"type": "webhook", "name": "chat", "url": "http://127.0.0.1:1/hook"},
            {"type": "email", "name": "mail", "host": "127.0.0.1", "sender": "gw@park.example"},
        ],
        "roster": {
            "timezone": "Asia/Shanghai",
            "people": {
                "wang": {"email": "wang@park.example", "phone": "13800000001"},
                "li": {"email": "li@park.example", "phone": "13800000002"},
                "zhang": {"email": "zhang@park.example"},
                "chief": {"email": "chief@park.example", "chat_id": "U42"},
            },
            "shifts": [
                {"name": "night", "start": "18:00", "end": "08:00",
                 "days": ["mon", "tue", "wed", "thu", "fri"], "levels": [["wang"], ["chief"]]},
                {"name": "weekend", "days": ["sat", "sun"], "levels": [["li"], ["chief"]]},
                {"name": "day", "start": "08:00", "end": "18:00",
                 "days": ["mon", "tue", "wed", "thu", "fri"], "levels": [["zhang"]]},
            ],
        },
        "routes": [
            {"name": "boiler-critical",
             "match": {"min_severity": "critical", "areas": ["boiler_room"]},
             "channels": ["chat", "mail"]},
            {"name": "everything", "match": {"min_severity": "medium"}, "channels": ["chat"]},
        ],
    }
)  # fmt: skip


@pytest.mark.parametrize(
    ("when", "level", "who"),
    [
        ("2026-01-06 03:00", 0, ["wang"]),  # Tuesday 03:00 belongs to Monday's night shift
        ("2026-01-05 19:00", 0, ["wang"]),
        ("2026-01-05 19:00", 1, ["chief"]),
        ("2026-01-05 10:00", 0, ["zhang"]),
        ("2026-01-05 10:00", 3, ["zhang"]),  # past the last level: the last level again
        ("2026-01-10 10:00", 0, ["li"]),  # Saturday
        # Saturday 03:00 is still Friday's night shift, and also the weekend shift
        ("2026-01-10 03:00", 0, ["wang", "li"]),
        # Monday 03:00: Sunday has no night shift and the weekend shift ended at midnight
        ("2026-01-05 03:00", 0, []),
    ],
)
def test_roster(when: str, level: int, who: list[str]) -> None:
    assert Roster(CFG).on_call(ns(when), level) == who


def test_routes_by_severity_and_area() -> None:
    r = {route.name: route for route in CFG.routes}
    assert route_matches(r["boiler-critical"], "critical", "boiler_room", "x")
    assert not route_matches(r["boiler-critical"], "high", "boiler_room", "x")
    assert not route_matches(r["boiler-critical"], "critical", "park", "x")
    assert [x.name for x in routes_for(CFG, "critical", "boiler_room", "x")] == ["boiler-critical"]
    assert [x.name for x in routes_for(CFG, "high", "park", "x")] == ["everything"]
    assert routes_for(CFG, "low", "park", "x") == []


def test_config_refuses_unknown_channel_and_person() -> None:
    with pytest.raises(ValidationError, match="unknown channel 'pager'"):
        AlertingConfig.model_validate({"routes": [{"name": "r", "channels": ["pager"]}]})
    with pytest.raises(ValidationError, match=r"'nobody' who is not in roster\.people"):
        AlertingConfig.model_validate(
            {"roster": {"shifts": [{"name": "s", "levels": [["nobody"]]}]}}
        )
    with pytest.raises(ValidationError, match="must be in order of after_s"):
        Route.model_validate(
            {"name": "r", "channels": ["c"], "escalation": [{"after_s": 600}, {"after_s": 0}]}
        )


def _items(n: int) -> list[dict[str, object]]:
    return [
        {"what": "alarm", "alarm_id": f"leak:lk-{i}:leak_ch1:hihi",
         "severity": "high" if i else "critical",
         "area": "park", "message": f"lk-{i} leak_ch1 412 mA", "state": "unacknowledged",
         "raised_ns": ns("2026-01-05 03:00"), "created_ns": ns("2026-01-05 03:00"), "level": 0}
        for i in range(n)
    ]  # fmt: skip


def test_compose_groups_a_burst_into_one_message() -> None:
    roster = Roster(CFG)
    one = compose("park", _items(1), roster, ["wang"])
    assert one.title.startswith("[CRITICAL] ALARM park: lk-0 leak_ch1 412 mA")
    many = compose("park", _items(30), roster, ["wang"])
    assert many.title == "[CRITICAL] 30 alarms at park (park)"
    assert many.text.count("id=leak:") == 25 and "and 5 more" in many.text
    assert many.phones == ["13800000001"] and many.emails == ["wang@park.example"]


def test_a_message_says_who_is_on_duty_when_it_escalates_and_links_each_alarm() -> None:
    items = _items(2)
    items[0].update(escalates_ns=ns("2026-01-05 03:10"), escalates_level=2)
    items[1].update(escalates_ns=ns("2026-01-05 03:30"), escalates_level=None)
    rtn = {**_items(1)[0], "what": "rtn", "alarm_id": "back:normal"}

    def link(i: dict[str, Any], people: list[str]) -> str:
        return f"https://c.example/ack?t={i['alarm_id']}|{people}"

    msg = compose("park", [*items, rtn], Roster(CFG), ["wang", "chief"], link_for=link)
    lines = msg.text.splitlines()
    assert "On duty: wang, chief" in lines
    first = lines.index(next(ln for ln in lines if "id=leak:lk-0" in ln))
    assert (
        lines[first + 1]
        == "  acknowledge: https://c.example/ack?t=leak:lk-0:leak_ch1:hihi|['wang', 'chief']"
    )
    assert lines[first + 2].startswith("  escalates to level 2 at ")
    assert any(ln.startswith("  escalates again (repeat) at ") for ln in lines)
    assert "ack?t=back:normal" not in msg.text  # nothing to acknowledge in a return to normal
    assert "acknowledge:" not in compose("park", _items(1), Roster(CFG), ["wang"]).text


@pytest.mark.parametrize("preset", ["generic", "dingtalk", "wecom", "feishu", "slack"])
def test_webhook_presets(preset: str) -> None:
    ch = WebhookChannel(type="webhook", name="c", url="https://robot.example/send?access_token=t",
                        preset=preset, secret="SEC")  # type: ignore[arg-type]  # fmt: skip
    msg = compose("park", _items(2), Roster(CFG), ["wang", "chief"])
    url, body = webhook_body(ch, msg, 1_767_225_600.0)
    if preset == "generic":
        assert body["recipients"] == ["wang", "chief"] and len(body["alarms"]) == 2
    elif preset == "dingtalk":
        assert body["msgtype"] == "markdown" and body["at"]["atMobiles"] == ["13800000001"]
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        ts = q["timestamp"][0]
        want = base64.b64encode(
            hmac.new(b"SEC", f"{ts}\nSEC".encode(), hashlib.sha256).digest()
        ).decode()
        assert q["sign"] == [want] and q["access_token"] == ["t"]
    elif preset == "wecom":
        assert body["msgtype"] == "text"
        assert body["text"]["mentioned_mobile_list"] == ["13800000001"]
        assert "2 alarms" in body["text"]["content"]
    elif preset == "feishu":
        assert body["msg_type"] == "text" and body["timestamp"] == "1767225600"
        key = f"{body['timestamp']}\nSEC".encode()
        assert (
            body["sign"] == base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
        )
        # The custom bot's text mention of the on-call person, by their Feishu user id.
        assert body["content"]["text"].endswith('<at user_id="U42">chief</at>')
    else:
        assert "<@U42>" in body["text"] and body["text"].startswith("*[CRITICAL]")


@pytest.mark.parametrize("topic", ["/notes", "notes/", "notes/#", "+", "", "on call"])
def test_mqtt_channel_topic_must_be_one_plain_topic_under_the_site(topic: str) -> None:
    with pytest.raises(ValidationError, match="topic"):
        MqttChannel(type="mqtt", name="pager", topic=topic)
    assert MqttChannel(type="mqtt", name="pager", topic="pager/night").topic == "pager/night"


def test_sent_record_names_each_alarm_once_the_people_and_the_highest_level() -> None:
    def queued(alarm_id: str, level: int) -> QueuedNotification:
        item = {"alarm_id": alarm_id, "level": level, "what": "escalation"}
        return QueuedNotification(1, "chat", ("li",), item, 0, 0, 0)

    msg = Message(title="t", text="x", people=[("li", Person())], items=[])
    rec = sent_record("chat", [queued("a", 0), queued("a", 1), queued("b", 0)], msg)
    assert rec["alarm_ids"] == ["a", "b"] and rec["recipients"] == ["li"]
    assert rec["level"] == 2 and rec["what"] == ["escalation"] and rec["channel"] == "chat"
