"""The morning run: yesterday's reports written, published on MQTT and sent, or a late-report alarm.

``ReportScheduler.tick`` is called often (the gateway's once-a-second tick
is plenty; it does nothing until due). Once the site's local time has passed
``reports.at``, the reports for the local day before are generated (every
``kinds`` x ``formats``) into ``reports.dir/<day>/``, announced on
``<prefix>/<site>/reports`` (an outbox event, so it is durable and survives
a broker outage), and sent through the channels of ``reports.route``: an
e-mail channel gets the PDFs as attachments, a webhook channel a short
summary with a link to each file (``reports.link``, where ``dir`` is
served). A ``<day>.done`` marker beside them makes the run happen once per
day, also across restarts; a gateway started after ``at`` catches up at once
(late, but not missed).

Anything that fails (InfluxDB unreachable, a format that cannot render, a
channel refusing) keeps the day not done, is retried every ``RETRY_S``
seconds (monotonic), and holds the health signal ``report:late`` bad, which
the gateway turns into an alarm: a report that could not be made or sent is
never silent.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

from gateway.alerting.channels import send_email_sync, send_webhook
from gateway.alerting.config import EmailChannel, MqttChannel, WebhookChannel
from gateway.alerting.messages import Message
from gateway.config import Site
from gateway.errors import GatewayError
from gateway.model import Clock
from gateway.outbox import Event
from gateway.patrol.influxql import Query
from gateway.reports.build import build_document, render, site_query
from gateway.reports.config import ReportsConfig
from gateway.reports.day import site_timezone

log = logging.getLogger(__name__)
NS = 1_000_000_000
RETRY_S = 600.0
SIGNAL = "report:late"
REPORTS_TOPIC = "reports"
_MIME = {"pdf": "application/pdf", "csv": "text/csv", "html": "text/html", "text": "text/plain"}
_EXT = {"text": "txt"}


@dataclass
class Outcome:
    day: date
    files: list[Path] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


class ReportScheduler:
    """Yesterday's reports at ``reports.at`` local time; ``signal()`` says whether one is late."""

    def __init__(
        self,
        site: Site,
        clock: Clock,
        publish: Callable[[Event], None],
        *,
        query: Query | None = None,
    ) -> None:
        self.site = site
        self.cfg = site.config.reports or ReportsConfig()
        self.clock = clock
        self.publish = publish
        self.query = query
        self.tz = ZoneInfo(site_timezone(site))
        folder = Path(self.cfg.dir)
        self.dir = folder if folder.is_absolute() else site.path.parent / folder
        self.error: str | None = None
        self._next_try_ns: int | None = None

    def due_day(self) -> date | None:
        """The day whose reports are due now and not yet done, else None."""
        local = datetime.fromtimestamp(self.clock.now_ns() / NS, self.tz)
        hh, mm = (int(x) for x in self.cfg.at.split(":"))
        if (local.hour, local.minute) < (hh, mm):
            return None
        day = local.date() - timedelta(days=1)
        return None if self._marker(day).exists() else day

    def _marker(self, day: date) -> Path:
        return self.dir / f"{day.isoformat()}.done"

    def signal(self) -> tuple[str, bool, str]:
        """(name, ok, detail) for the gateway's health alarms."""
        if self.error is None:
            return SIGNAL, True, "daily reports on time"
        return SIGNAL, False, f"late report: {self.error}"

    async def run_forever(self, poll_s: float = 30.0) -> None:
        """The gateway's task: look every ``poll_s`` real seconds whether a run is due."""
        while True:
            await asyncio.sleep(poll_s)
            await self.tick()

    async def tick(self) -> Outcome | None:
        day = self.due_day()
        if day is None:
            return None
        if self._next_try_ns is not None and self.clock.mono_ns() < self._next_try_ns:
            return None
        out = await self.run(day)
        if out.ok:
            self.error, self._next_try_ns = None, None
            self._marker(day).write_text(json.dumps([str(f) for f in out.files]) + "\n")
        else:
            self.error = f"{day.isoformat()}: " + "; ".join(out.errors)
            self._next_try_ns = self.clock.mono_ns() + int(RETRY_S * NS)
            log.error("daily reports for %s: %s", day, "; ".join(out.errors))
        return out

    async def run(self, day: date) -> Outcome:
        """Generate, write, publish and send the reports of ``day`` (errors collected)."""
        out = Outcome(day)
        folder = self.dir / day.isoformat()
        name = self.site.config.site
        try:
            query = self.query or site_query(self.site)
            folder.mkdir(parents=True, exist_ok=True)
            for kind in self.cfg.kinds:
                doc = await asyncio.to_thread(build_document, kind, query, self.site, day)
                out.summary.append(f"{doc.title}: {doc.lines[0]}")
                for fmt in self.cfg.formats:
                    data = await asyncio.to_thread(render, doc, fmt)
                    path = folder / f"{name}-{kind}-{day.isoformat()}.{_EXT.get(fmt, fmt)}"
                    path.write_bytes(data)
                    out.files.append(path)
        except Exception as exc:  # any failure is a late report, never a crash of the gateway
            out.errors.append(f"could not generate: {exc}")
            return out
        self.publish(Event(
            kind="notification",
            ts_ns=self.clock.now_ns(),
            data={"topic": REPORTS_TOPIC, "day": day.isoformat(), "site": name,
                  "summary": out.summary, "files": [str(f) for f in out.files]},
            measurement="notification",
        ))
        await self._send(out)
        return out

    async def _send(self, out: Outcome) -> None:
        alerting = self.site.config.alerting
        if self.cfg.route is None or alerting is None:
            return
        route = next((r for r in alerting.routes if r.name == self.cfg.route), None)
        if route is None:
            out.errors.append(f"route {self.cfg.route!r} is not in alerting.routes")
            return
        title = f"{self.site.config.site}: daily reports for {out.day.isoformat()}"
        base = f"{self.cfg.link.rstrip('/')}/{out.day.isoformat()}/" if self.cfg.link else ""
        text = "\n".join([*out.summary, "", "files:", *(base + f.name for f in out.files)])
        pdfs = [(f.name, f.read_bytes(), _MIME["pdf"]) for f in out.files if f.suffix == ".pdf"]
        async with httpx.AsyncClient() as client:
            for name in route.channels:
                ch = alerting.channel(name)
                try:
                    if isinstance(ch, EmailChannel):
                        msg = Message(title, text, [], attachments=pdfs)
                        await asyncio.to_thread(send_email_sync, ch, msg)
                    elif isinstance(ch, WebhookChannel):
                        await send_webhook(client, ch, Message(title, text, []),
                                           self.clock.now_ns() / NS)
                    elif isinstance(ch, MqttChannel):
                        self.publish(Event(kind="notification", ts_ns=self.clock.now_ns(),
                                           data={"topic": ch.topic, "title": title, "text": text},
                                           measurement="notification"))
                except GatewayError as exc:
                    out.errors.append(f"could not send through {name}: {exc}")


__all__ = ["REPORTS_TOPIC", "RETRY_S", "SIGNAL", "Outcome", "ReportScheduler"]
