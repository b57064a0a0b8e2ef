"""One-tap acknowledgement from a notification, end to end: a real gateway polls a
simulator, raises the leakage alarm and sends its notification (with the signed link, who
is on duty and when it escalates) to a webhook receiver; the console runs over a real
socket on real Mosquitto. A valid link acknowledges once; a tampered, expired or replayed
link changes nothing. Once with a login (the default) and once with the site's
``console.link_ack_without_login``."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from gateway.alerting import ack_link
from tests.fixtures.servers import Mosquitto, MqttCollector
from tests.integration.console_support import (
    ALARM,
    add_user,
    console_alarm,
    login,
    running_console,
    running_gateway,
    site_yaml,
    wait,
)
from tests.integration.receivers import WebhookReceiver
from tests.simproc import free_port, running_sim

SITE = "link-park"
LINK_KEY = "link-" + "q" * 40


def link_site(
    tmp: Path, mq: Mosquitto, hook: WebhookReceiver, console_port: int, without_login: bool
) -> Path:
    """The console tests' site, with a chat robot, a roster and links to the console."""
    site = site_yaml(tmp, SITE, mq)
    with site.open("a") as f:  # the file ends inside its alerting: block
        f.write(
            f"""  console_url: "http://127.0.0.1:{console_port}"
  link_key: "{LINK_KEY}"
  group_window_s: 0
  channels:
    - {{type: webhook, name: chat, url: "http://127.0.0.1:{hook.port}/robot", preset: wecom}}
  roster:
    people: {{wang: {{phone: "13800000001"}}, chief: {{}}}}
    shifts: [{{name: always, levels: [[wang], [chief]]}}]
  routes:
    - {{name: safety, match: {{min_severity: medium}}, channels: [chat],
       escalation: [{{after_s: 0}}, {{after_s: 600}}]}}
console: {{link_ack_without_login: {str(without_login).lower()}}}
"""
        )
    return site


def notified_link(hook: WebhookReceiver) -> tuple[str, str] | None:
    """(message text, link) of the first notification with a link to the latched ALARM."""
    for post in list(hook.posts):
        text = str(post.get("text", {}).get("content", ""))
        for url in re.findall(r"acknowledge: (\S+)", text):
            token = parse_qs(urlparse(url).query)["t"][0]
            if ack_link.verify(LINK_KEY, token, time.time()).alarm_id == ALARM:
                return text, url
    return None


def commands_sent(col: MqttCollector) -> int:
    return len(col.snapshot(f"fsg/{SITE}/commands"))


@pytest.mark.timeout(240)
@pytest.mark.parametrize("without_login", [False, True], ids=["login", "without-login"])
def test_a_signed_link_acknowledges_once_and_a_bad_one_changes_nothing(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_collector: Any, without_login: bool
) -> None:
    hook = WebhookReceiver()
    port = free_port()
    site = link_site(tmp_path, mosquitto, hook, port, without_login)
    db = tmp_path / "console.sqlite"
    add_user(db, "wang", "operator")
    add_user(db, "chief", "supervisor")
    col: MqttCollector = mqtt_collector(mosquitto, f"fsg/{SITE}/#")
    try:
        with (
            running_sim(site, {}),
            running_gateway(site),
            running_console(site, db, port=port) as base,
        ):
            text, url = wait(lambda: notified_link(hook), 60, "a notification with a link")
            # The message says who is on duty and when it escalates next.
            assert "On duty: wang" in text, text
            assert re.search(r"escalates to level 2 at \d\d:\d\d unless acknowledged", text), text
            assert url.startswith(f"{base}/ack?t=")
            token = parse_qs(urlparse(url).query)["t"][0]
            alarm = ALARM  # latched: it stays unacknowledged until someone acts
            wang, chief = login(base, "wang"), login(base, "chief")
            anon = httpx.Client(base_url=base, timeout=30)
            wait(lambda: console_alarm(wang, SITE, alarm), 60, "the alarm in the console")

            # Tampered (a claim byte, the signature), expired (genuinely signed an hour too
            # late) and truncated links: refused, by anyone, and nothing is sent.
            body, sig = token.split(".")
            flip = {"A": "B"}.get(body[5], "A")
            expired = ack_link.sign(
                LINK_KEY, SITE, alarm, raised_ns=None, to=["wang"],
                now_s=time.time() - 7200, ttl_s=3600,
            )  # fmt: skip
            before = commands_sent(col)
            for bad in (
                f"{body[:5]}{flip}{body[6:]}.{sig}",
                f"{body}.{sig[:-3]}xyz",
                expired,
                body,
            ):
                for who in (anon, wang):
                    r = who.post("/ack", data={"t": bad, "csrf": wang.headers["X-CSRF-Token"]})
                    assert r.status_code == 403, (bad, r.status_code, r.text)
                assert anon.get("/ack", params={"t": bad}).status_code == 403
            assert "expired" in wang.post("/ack", data={"t": expired}).text
            assert console_alarm(wang, SITE, alarm)["state"] == "unacknowledged"  # type: ignore[index]
            assert commands_sent(col) == before

            if without_login:
                # Opening the link shows the button and changes nothing (chat apps preview
                # links); the tap acknowledges, recorded as the link, not as a person.
                page = anon.get(url.removeprefix(base))
                assert page.status_code == 200 and 'id="btn-link-ack"' in page.text
                ok = anon.post("/ack", data={"t": token})
                actor = "signed-link via console"
            else:
                # Without a session: one same-site hop (a SameSite=Strict cookie is not
                # sent on the tap from the chat app), then the login page; a bare POST is
                # refused.
                hop = anon.get(url.removeprefix(base))
                assert hop.status_code == 200 and 'http-equiv="refresh"' in hop.text
                assert "hop=1" in hop.text
                page = anon.get(url.removeprefix(base) + "&hop=1")
                assert page.status_code == 303 and page.headers["location"].startswith("/login")
                assert anon.post("/ack", data={"t": token}).status_code == 401
                assert commands_sent(col) == before
                page = wang.get(url.removeprefix(base))
                assert page.status_code == 200 and "Acknowledge as wang" in page.text
                # CSRF still applies to a logged-in tap.
                assert wang.post("/ack", data={"t": token, "csrf": "x"}).status_code == 403
                ok = wang.post("/ack", data={"t": token, "csrf": wang.headers["X-CSRF-Token"]})
                actor = "wang via console"
            assert ok.status_code == 200 and f"acknowledged by {actor}" in ok.text, ok.text
            states = col.wait_for(
                lambda ms: any(m.topic == f"fsg/{SITE}/alarms/{alarm}"
                               and m.json().get("state") == "acknowledged" for m in ms),
                15, "acknowledged state on MQTT",
            )  # fmt: skip
            acked = [m.json() for m in states if m.topic.endswith(alarm)][-1]
            assert acked["actor"] == actor
            assert commands_sent(col) == before + 1

            # Replayed: refused by the console before anything is sent, by anyone.
            again = wang.post("/ack", data={"t": token, "csrf": wang.headers["X-CSRF-Token"]})
            assert again.status_code == 409 and "used already" in again.text
            again = anon.post("/ack", data={"t": token})
            assert again.status_code == (409 if without_login else 401), again.text
            assert "used already" in wang.get(url.removeprefix(base)).text
            audit = [a for a in chief.get("/api/audit").json() if a["action"] == "ack"]
            assert [(a["user"], a["ok"]) for a in audit] == [(actor.split()[0], True)]
            assert commands_sent(col) == before + 1
    finally:
        hook.close()
