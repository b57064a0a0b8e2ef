"""The morning run on a fake clock: due at 07:30 local, written, on MQTT, e-mailed; or alarmed.

Real parts: influxd with the known day, Mosquitto (the announcement goes
through the real MQTT sink), an aiosmtpd server receiving the e-mail. The
clock is a ``FakeClock`` moved by the test; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import email
import email.message
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.config import MqttSinkConfig
from gateway.loader import load_site
from gateway.model import FakeClock
from gateway.outbox import Event, Record, RecordKind
from gateway.plugins.mqtt.sink import MqttSink
from gateway.reports.schedule import RETRY_S, ReportScheduler
from tests.fixtures.servers import InfluxDB1, Mosquitto, MqttCollector, free_port
from tests.integration.receivers import WebhookReceiver, smtp_on_loopback
from tests.integration.report_day import DAY, SITE, at, pdftotext, site_file, write_day

pytestmark = pytest.mark.timeout(120)
S = 1_000_000_000
NEXT_MORNING_0729 = at(7, 29) + 86_400 * S


@dataclass
class RawMailbox:
    messages: list[email.message.Message] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.content or b""
        data = raw.encode() if isinstance(raw, str) else bytes(raw)
        with self.lock:
            self.messages.append(email.message_from_bytes(data))
        return "250 OK"


def scheduled_site(tmp: Path, db: InfluxDB1, broker: Mosquitto, smtp_port: int,
                   influx_url: str | None = None, webhook_port: int | None = None) -> Path:
    path = site_file(tmp, db)
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    doc["sinks"]["mqtt"] = broker.sink_config()
    if influx_url:
        doc["sinks"]["influx"]["url"] = influx_url
    doc["alerting"] = {
        "channels": [{"name": "office", "type": "email", "host": "127.0.0.1", "port": smtp_port,
                      "security": "none", "sender": "gateway@heat.example",
                      "to": ["duty@heat.example"]}],
        "routes": [{"name": "daily-reports", "channels": ["office"]}],
    }
    if webhook_port is not None:
        doc["alerting"]["channels"].append(
            {"name": "duty-chat", "type": "webhook", "url": f"http://127.0.0.1:{webhook_port}/"})
        doc["alerting"]["routes"][0]["channels"].append("duty-chat")
    doc["reports"].update(at="07:30", dir=str(tmp / "reports"), formats=["pdf", "csv"],
                          route="daily-reports", link="https://reports.heat.example/fsg")
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


async def announce(broker: Mosquitto, events: list[Event]) -> None:
    """What the gateway's outbox does with the scheduler's events: the real MQTT sink."""
    async with MqttSink(MqttSinkConfig(**broker.sink_config()), SITE) as sink:
        await sink.send([Record(seq=i + 1, kind=RecordKind.EVENT, ts_ns=e.ts_ns, item=e)
                         for i, e in enumerate(events)])


async def test_reports_are_written_published_and_mailed_at_the_configured_time(
    influxdb1: InfluxDB1, mosquitto: Mosquitto, mqtt_collector: Any, tmp_path: Path,
    webhook: WebhookReceiver,
) -> None:
    exp = await write_day(influxdb1)
    box = RawMailbox()
    collector: MqttCollector = mqtt_collector(mosquitto, f"fsg/{SITE}/#")
    with smtp_on_loopback(box) as port:
        site = load_site(scheduled_site(tmp_path, influxdb1, mosquitto, port,
                                        webhook_port=webhook.port))
        clock = FakeClock(NEXT_MORNING_0729)
        events: list[Event] = []
        sched = ReportScheduler(site, clock, events.append)

        assert await sched.tick() is None  # 07:29: not yet
        assert not (tmp_path / "reports").exists()
        clock.advance(60)
        out = await sched.tick()
        assert out is not None and out.ok, out and out.errors
        assert out.day == DAY
        names = sorted(f.name for f in out.files)
        assert names == sorted(f"{SITE}-{k}-{DAY.isoformat()}.{x}"
                               for k in ("heating", "safety") for x in ("pdf", "csv"))
        heating_pdf = next(f for f in out.files if f.name.endswith("heating-2026-01-01.pdf"))
        gas = exp.gas_1 + exp.gas_2
        assert f"gas used {gas:.1f} m³" in pdftotext(heating_pdf.read_bytes())
        assert sched.signal()[1] is True
        assert await sched.tick() is None  # done once; the marker says so
        assert (tmp_path / "reports" / f"{DAY.isoformat()}.done").exists()

        (mail,) = box.messages
        assert mail["To"] == "duty@heat.example" and DAY.isoformat() in mail["Subject"]
        attached = {p.get_filename(): p.get_payload(decode=True) for p in mail.walk()
                    if p.get_filename()}
        assert sorted(attached) == sorted(n for n in names if n.endswith(".pdf"))
        assert attached[heating_pdf.name] == heating_pdf.read_bytes()
        (post,) = webhook.posts  # the chat robot gets a short summary, no attachment
        assert post["title"] == f"{SITE}: daily reports for {DAY.isoformat()}"
        assert "INCOMPLETE: data missing for 2 of 7 sources" in post["text"]
        assert f"https://reports.heat.example/fsg/{DAY.isoformat()}/{heating_pdf.name}" in post[
            "text"]

    await announce(mosquitto, events)
    msgs = await asyncio.to_thread(
        collector.wait_for, lambda m: any(x.topic == f"fsg/{SITE}/reports" for x in m), 20,
        "the reports announcement")
    (ann,) = [m for m in msgs if m.topic == f"fsg/{SITE}/reports"]
    body = ann.json()
    assert body["day"] == DAY.isoformat() and len(body["files"]) == 4
    assert body["summary"][0].endswith("INCOMPLETE: data missing for 2 of 7 sources"
                                       " (boiler-1 91.6 %, gateway 98.6 %)")


async def test_a_report_that_cannot_be_generated_raises_the_late_report_alarm(
    influxdb1: InfluxDB1, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    site = load_site(scheduled_site(tmp_path, influxdb1, mosquitto, free_port(), dead))
    clock = FakeClock(NEXT_MORNING_0729 + 60 * S)
    events: list[Event] = []
    sched = ReportScheduler(site, clock, events.append)
    out = await sched.tick()
    assert out is not None and not out.ok
    name, ok, detail = sched.signal()
    assert (name, ok) == ("report:late", False)
    assert detail.startswith(f"late report: {DAY.isoformat()}: could not generate")
    assert events == [] and not (tmp_path / "reports" / f"{DAY.isoformat()}.done").exists()
    assert await sched.tick() is None  # waits before retrying
    clock.advance(RETRY_S)
    again = await sched.tick()
    assert again is not None and not again.ok


async def test_the_gateway_turns_a_late_report_into_an_alarm(
    influxdb1: InfluxDB1, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """The app wiring: the scheduler's signal is one of the gateway's health signals."""
    from gateway.app import Gateway

    dead = f"http://127.0.0.1:{free_port()}"
    path = scheduled_site(tmp_path, influxdb1, mosquitto, free_port(), dead)
    doc = yaml.safe_load(path.read_text())
    doc["outbox"] = {"path": str(tmp_path / "outbox.sqlite")}
    doc["alerting"]["state_db"] = str(tmp_path / "alarms.sqlite")
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    clock = FakeClock(NEXT_MORNING_0729 + 60 * S)
    gw = Gateway(load_site(path), clock, state_dir=tmp_path)
    assert gw.reports is not None and gw.alerts is not None
    gw.alerts.open()
    try:
        assert ("report:late", True, "daily reports on time") in gw._health_signals()
        out = await gw.reports.tick()
        assert out is not None and not out.ok
        (late,) = [s for s in gw._health_signals() if s[0] == "report:late"]
        (event,) = gw.alerts.health(*late)
        assert (event.alarm_id, event.action) == ("gateway:report:late", "activate")
        assert event.message.startswith(f"gateway report:late: late report: {DAY.isoformat()}")
    finally:
        gw.alerts.close()
