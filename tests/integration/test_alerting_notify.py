"""Alerting end to end without the app: alarm -> escalation -> a real SMTP server (aiosmtpd) and a
local HTTP receiver on loopback, restart with active alarms, and a channel that is down.

Time is a FakeClock moved forward (escalation after 10 simulated minutes takes milliseconds);
the sockets, the SMTP dialogue (STARTTLS, login) and the HTTP requests are real.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from gateway.alerting.engine import AlertEngine
from gateway.model import AlarmEvent, AlarmState, FakeClock
from gateway.tasks import cancel_and_wait
from tests.fixtures.disks import fill, small_disk  # noqa: F401 - a fixture
from tests.fixtures.servers import free_port
from tests.integration.receivers import smtp_on_loopback
from tests.unit.test_rules import make_engine, sample, transitions

RULES = """
    rules:
      - id: leak
        kind: limit
        select: {kinds: [leakage]}
        points: ["leak_ch*"]
        on_delay_s: 5
        deadband: 10
        limits:
          hihi: {value: 300, severity: high, latch: true}
"""


# --------------------------------------------------------------------------- receivers


@dataclass
class Mailbox:
    messages: list[tuple[list[str], bytes]] = field(default_factory=list)
    # Set ``hold`` to keep each DATA unanswered until it is set; ``entered`` says one came.
    hold: threading.Event | None = None
    entered: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.hold is not None:
            self.entered.set()
            await asyncio.get_running_loop().run_in_executor(None, self.hold.wait, 30)
        content = envelope.content or b""
        raw = content.encode() if isinstance(content, str) else bytes(content)
        self.messages.append((list(envelope.rcpt_tos), raw))
        return "250 OK"

    def subjects(self) -> list[str]:
        return [str(message_from_bytes(raw)["Subject"]) for _, raw in self.messages]


def _auth(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"gw", b"pw")
    # handled=False: let aiosmtpd answer 535 itself (the default leaves the client waiting)
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    with smtp_on_loopback(box) as port:
        yield box, port


@pytest.fixture
def smtp_tls_server(tmp_path: Path) -> Iterator[tuple[Mailbox, int, Path]]:
    import ssl

    cert, key = tmp_path / "smtp.crt", tmp_path / "smtp.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    box = Mailbox()
    with smtp_on_loopback(
        box, tls_context=ctx, require_starttls=True, authenticator=_auth, auth_required=True
    ) as port:
        yield box, port, cert


@dataclass
class Hook:
    port: int
    bodies: list[dict[str, Any]] = field(default_factory=list)
    hits: int = 0
    status: int = 200
    # Answer this late (after taking the message): longer than the channel's timeout
    # makes a POST that arrived but whose answer the gateway never saw.
    delay_s: float = 0.0
    headers: list[dict[str, str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


@pytest.fixture
async def webhook() -> AsyncIterator[Hook]:
    hook = Hook(port=free_port())

    async def handle(request: web.Request) -> web.Response:
        hook.hits += 1
        if hook.status != 200:
            return web.Response(status=hook.status, text="robot down")
        hook.bodies.append(await request.json())
        hook.headers.append(dict(request.headers))
        if hook.delay_s:
            await asyncio.sleep(hook.delay_s)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", hook.port).start()
    try:
        yield hook
    finally:
        await runner.cleanup()


def alerting(hook: Hook, smtp_port: int, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "group_window_s": 0,
        "channels": [
            {"type": "webhook", "name": "chat", "url": hook.url, "preset": "dingtalk",
             "fail_alarm_after": 2},
            {"type": "email", "name": "mail", "host": "127.0.0.1", "port": smtp_port,
             "security": "none", "sender": "gateway@park.example"},
        ],
        "roster": {
            "people": {
                "wang": {"email": "wang@park.example", "phone": "13800000001"},
                "chief": {"email": "chief@park.example", "phone": "13800000009"},
            },
            "shifts": [{"name": "always", "levels": [["wang"], ["chief"]]}],
        },
        "routes": [
            {"name": "safety", "match": {"min_severity": "medium"}, "channels": ["chat", "mail"],
             "escalation": [{"after_s": 0}, {"after_s": 600}], "repeat_s": 1800},
        ],
        "retry": {"min_s": 5, "max_s": 60},
    }  # fmt: skip
    cfg.update(extra)
    return cfg


def raise_leak(eng: AlertEngine, clock: FakeClock, device: str = "lk-1") -> list[AlarmEvent]:
    eng.on_sample(sample(clock, device, {"leak_ch1": 412}))
    clock.advance(5)
    return eng.on_sample(sample(clock, device, {"leak_ch1": 412}))


def restartable(
    tmp_path: Path, cfg: dict[str, Any], channels: list[str] | None = None
) -> tuple[Callable[[], AlertEngine], FakeClock]:
    """A way to start (and, after ``close``, restart) an engine on one state file and clock."""
    if channels is not None:
        cfg["routes"][0]["channels"] = channels
    clock = FakeClock()
    return lambda: make_engine(tmp_path, RULES, clock, state=None, **cfg), clock


async def deliver(eng: AlertEngine) -> int:
    assert eng.notifier is not None
    return await eng.notifier.deliver_due()


# --------------------------------------------------------------------------- tests


async def test_alarm_reaches_email_and_webhook_then_escalates_until_ack(
    tmp_path: Path, webhook: Hook, smtp_server: tuple[Mailbox, int]
) -> None:
    box, port = smtp_server
    clock = FakeClock()
    eng = make_engine(tmp_path, RULES, clock, **alerting(webhook, port))
    ev = raise_leak(eng, clock)
    assert transitions(ev) == [("leak:lk-1:leak_ch1:hihi", "activate", "unacknowledged")]
    assert await deliver(eng) == 2
    # level 1: the on-call keeper, by the DingTalk robot (@-mention by phone) and by e-mail
    assert len(webhook.bodies) == 1
    body = webhook.bodies[0]
    assert body["msgtype"] == "markdown" and body["at"]["atMobiles"] == ["13800000001"]
    assert (
        "412" in body["markdown"]["text"] and "leak:lk-1:leak_ch1:hihi" in body["markdown"]["text"]
    )
    assert [rcpt for rcpt, _ in box.messages] == [["wang@park.example"]]
    assert "412" in box.subjects()[0]
    # nothing more until the escalation time
    clock.advance(599)
    eng.tick()
    assert await deliver(eng) == 0
    clock.advance(1)
    eng.tick()
    assert await deliver(eng) == 2
    assert webhook.bodies[-1]["at"]["atMobiles"] == ["13800000009"]
    assert box.messages[-1][0] == ["chief@park.example"]
    assert "ESCALATED" in box.subjects()[-1]
    # acknowledgement stops the repeat (due 30 min later)
    events, reply = eng.command(
        {"cmd": "ack", "alarm_id": "leak:lk-1:leak_ch1:hihi", "by": "chief"}, "mqtt"
    )
    assert reply["state"] == "acknowledged" and events[0].actor == "chief via mqtt"
    clock.advance(3600)
    eng.tick()
    assert await deliver(eng) == 0
    assert len(webhook.bodies) == 2 and len(box.messages) == 2
    eng.close()


async def test_ack_before_escalation_time_means_no_second_level(
    tmp_path: Path, webhook: Hook, smtp_server: tuple[Mailbox, int]
) -> None:
    box, port = smtp_server
    clock = FakeClock()
    eng = make_engine(tmp_path, RULES, clock, **alerting(webhook, port))
    raise_leak(eng, clock)
    await deliver(eng)
    clock.advance(300)
    eng.command({"cmd": "ack", "alarm_id": "leak:lk-1:leak_ch1:hihi"}, "cli")
    clock.advance(3600)
    eng.tick()
    assert await deliver(eng) == 0
    assert [r for r, _ in box.messages] == [["wang@park.example"]]
    assert eng.store is not None and eng.store.escalations() == []
    eng.close()


def monitors(tmp_path: Path, n: int, cfg: dict[str, Any]) -> tuple[AlertEngine, FakeClock]:
    """An engine for leakage monitors lk-1 .. lk-n."""
    devices = [
        {"id": f"lk-{i}", "profile": "leakage-monitor", "source": "rtu-1", "unit": i}
        for i in range(1, n + 1)
    ]
    clock = FakeClock()
    return make_engine(tmp_path, RULES, clock, devices=devices, **cfg), clock


async def test_first_page_goes_at_once_and_what_follows_is_grouped(
    tmp_path: Path, webhook: Hook, smtp_server: tuple[Mailbox, int]
) -> None:
    box, port = smtp_server
    eng, clock = monitors(tmp_path, 7, alerting(webhook, port, group_window_s=30))
    # The first alarm is not held for the grouping window: it goes at once.
    raise_leak(eng, clock, "lk-1")
    assert await deliver(eng) == 2  # one webhook message, one e-mail
    assert "lk-1" in webhook.bodies[0]["markdown"]["title"]
    # Those that follow within the window wait for it and go out as one message.
    for i in range(2, 7):
        raise_leak(eng, clock, f"lk-{i}")  # 5 s apart
        assert await deliver(eng) == 0
    clock.advance(30 - 25)
    assert await deliver(eng) == 2
    assert len(webhook.bodies) == 2 and len(box.messages) == 2
    assert "5 alarms" in webhook.bodies[1]["markdown"]["title"]
    assert "5 alarms" in box.subjects()[1]
    # After a quiet window the next one goes at once again.
    clock.advance(30)
    raise_leak(eng, clock, "lk-7")
    assert await deliver(eng) == 2
    eng.close()


async def test_a_burst_at_one_moment_is_one_message_sent_at_once(
    tmp_path: Path, webhook: Hook, smtp_server: tuple[Mailbox, int]
) -> None:
    box, port = smtp_server
    eng, clock = monitors(tmp_path, 6, alerting(webhook, port, group_window_s=30))
    for i in range(1, 7):
        eng.on_sample(sample(clock, f"lk-{i}", {"leak_ch1": 412}))
    clock.advance(5)
    for i in range(1, 7):
        eng.on_sample(sample(clock, f"lk-{i}", {"leak_ch1": 412}))
    assert await deliver(eng) == 2  # one webhook message, one e-mail, at once
    assert len(webhook.bodies) == 1 and len(box.messages) == 1
    assert "6 alarms" in webhook.bodies[0]["markdown"]["title"]
    assert "6 alarms" in box.subjects()[0]
    eng.close()


async def test_restart_keeps_states_and_pending_escalations_and_fires_nothing_twice(
    tmp_path: Path, webhook: Hook, smtp_server: tuple[Mailbox, int]
) -> None:
    box, port = smtp_server
    clock = FakeClock()
    cfg = alerting(webhook, port)
    eng = make_engine(tmp_path, RULES, clock, state=None, **cfg)
    raise_leak(eng, clock, "lk-1")
    raise_leak(eng, clock, "lk-2")
    eng.command({"cmd": "ack", "alarm_id": "leak:lk-2:leak_ch1:hihi", "by": "wang"}, "cli")
    await deliver(eng)
    sent_before = (len(webhook.bodies), len(box.messages))
    eng.close()

    clock.advance(120)  # the gateway was down for two minutes
    eng2 = make_engine(tmp_path, RULES, clock, state=None, **cfg)
    assert eng2.book.get("leak:lk-1:leak_ch1:hihi").state is AlarmState.UNACKED
    assert eng2.book.get("leak:lk-2:leak_ch1:hihi").state is AlarmState.ACKED
    # the same condition after the restart is not a new alarm
    assert eng2.on_sample(sample(clock, "lk-1", {"leak_ch1": 415})) == []
    assert eng2.on_sample(sample(clock, "lk-2", {"leak_ch1": 415})) == []
    clock.advance(5)
    assert eng2.on_sample(sample(clock, "lk-1", {"leak_ch1": 415})) == []
    assert eng2.tick() == []
    assert await deliver(eng2) == 0
    assert (len(webhook.bodies), len(box.messages)) == sent_before
    # the pending escalation survived: at 600 s after raising, the chief is told, once
    clock.advance(600 - 125)
    eng2.tick()
    assert await deliver(eng2) == 2
    assert webhook.bodies[-1]["at"]["atMobiles"] == ["13800000009"]
    assert await deliver(eng2) == 0
    # and the latched alarm still needs its reset after the restart
    eng2.on_sample(sample(clock, "lk-1", {"leak_ch1": 20}))
    assert eng2.book.get("leak:lk-1:leak_ch1:hihi").latched_on
    eng2.close()


async def test_channel_down_is_retried_from_storage_and_raises_its_own_alarm(
    tmp_path: Path, webhook: Hook, smtp_server: tuple[Mailbox, int]
) -> None:
    box, port = smtp_server
    clock = FakeClock()
    cfg = alerting(webhook, port)
    cfg["routes"][0]["channels"] = ["chat"]
    emitted: list[AlarmEvent] = []
    eng = make_engine(tmp_path, RULES, clock, state=None, **cfg)
    eng.emit = emitted.extend
    webhook.status = 500
    raise_leak(eng, clock)
    assert await deliver(eng) == 0
    assert webhook.hits == 1
    # back-off: not retried before min_s
    clock.advance(4)
    await deliver(eng)
    assert webhook.hits == 1
    # a restart does not lose the queued notification
    eng.close()
    eng = make_engine(tmp_path, RULES, clock, state=None, **cfg)
    eng.emit = emitted.extend
    clock.advance(2)
    await deliver(eng)
    assert webhook.hits == 2
    # two failures in a row: the channel raises its own alarm (health)
    assert [(e.alarm_id, e.action, e.state) for e in emitted] == [
        ("gateway:notify:chat", "activate", AlarmState.UNACKED)
    ]
    webhook.status = 200
    clock.advance(11)
    await deliver(eng)
    assert len(webhook.bodies) == 1
    text = webhook.bodies[0]["markdown"]["text"]
    # the leak alarm is delivered late but delivered, grouped with the channel's own alarm
    assert "leak:lk-1:leak_ch1:hihi" in text and "gateway:notify:chat" in text
    assert emitted[-1].alarm_id == "gateway:notify:chat" and emitted[-1].action == "clear"
    assert eng.store is not None and eng.store.counts() == {"sent": 2}
    assert box.messages == []
    eng.close()


async def test_email_over_starttls_with_login(
    tmp_path: Path, webhook: Hook, smtp_tls_server: tuple[Mailbox, int, Path]
) -> None:
    box, port, cert = smtp_tls_server
    cfg = alerting(webhook, port)
    cfg["channels"][1].update(
        {"security": "starttls", "username": "gw", "password": "pw", "ca_file": str(cert)}
    )
    cfg["routes"][0]["channels"] = ["mail"]
    clock = FakeClock()
    eng = make_engine(tmp_path, RULES, clock, **cfg)
    raise_leak(eng, clock)
    assert await deliver(eng) == 1
    assert [r for r, _ in box.messages] == [["wang@park.example"]]
    eng.close()

    # a wrong password is a failure that stays queued, not a crash
    cfg["channels"][1]["password"] = "wrong"
    eng = make_engine(tmp_path, RULES, clock, **cfg)
    raise_leak(eng, clock)
    assert await deliver(eng) == 0
    assert eng.store is not None
    [row] = eng.store.notifications("pending")
    assert "SMTPAuthenticationError" in row["last_error"]
    eng.close()


async def test_run_notifier_task_delivers_and_stops_cleanly(
    tmp_path: Path, webhook: Hook, smtp_server: tuple[Mailbox, int]
) -> None:
    _box, port = smtp_server
    cfg = alerting(webhook, port)
    cfg["routes"][0]["channels"] = ["chat"]
    clock = FakeClock()
    eng = make_engine(tmp_path, RULES, clock, **cfg)
    task = asyncio.create_task(eng.run_notifier(poll_s=0.05))
    raise_leak(eng, clock)
    for _ in range(100):
        if webhook.bodies:
            break
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(webhook.bodies) == 1
    eng.close()


async def test_stop_during_an_email_lets_it_finish_and_records_it_sent(
    tmp_path: Path, webhook: Hook, smtp_server: tuple[Mailbox, int]
) -> None:
    box, port = smtp_server
    box.hold = threading.Event()
    start, clock = restartable(tmp_path, alerting(webhook, port), ["mail"])
    eng = start()
    task = asyncio.create_task(eng.run_notifier(poll_s=0.05))
    raise_leak(eng, clock)
    assert await asyncio.to_thread(box.entered.wait, 10), "the e-mail's SMTP dialogue"
    task.cancel()  # the gateway stops while the server has not answered DATA yet
    await asyncio.sleep(0)
    box.hold.set()
    await cancel_and_wait([task])  # cancels again every 0.5 s, as the gateway's stop does
    assert task.cancelled()
    assert len(box.messages) == 1
    assert eng.store is not None and eng.store.counts() == {"sent": 1}
    eng.close()
    # The restart does not send it again.
    eng = start()
    assert await deliver(eng) == 0
    assert len(box.messages) == 1
    eng.close()


async def test_a_send_cut_by_a_crash_is_resent_marked_possible_duplicate(
    tmp_path: Path, webhook: Hook, smtp_server: tuple[Mailbox, int]
) -> None:
    box, port = smtp_server
    start, clock = restartable(tmp_path, alerting(webhook, port))
    eng = start()
    raise_leak(eng, clock)
    assert eng.store is not None
    # What a kill -9 mid-send leaves (the real crash: tests/integration/test_notify_stop.py).
    eng.store.mark_sending([n["id"] for n in eng.store.notifications()])
    eng.close()
    eng = start()
    assert await deliver(eng) == 2
    [(_, raw)] = box.messages
    mail = message_from_bytes(raw)
    assert mail["X-Gateway-Possible-Duplicate"] == "true"
    assert str(mail["Subject"]).startswith("(possible duplicate)")
    [body] = webhook.bodies
    assert body["markdown"]["title"].startswith("(possible duplicate)")
    assert eng.store is not None and eng.store.counts() == {"sent": 2}
    eng.close()


async def test_a_webhook_whose_answer_timed_out_is_retried_marked_possible_duplicate(
    tmp_path: Path, webhook: Hook, smtp_server: tuple[Mailbox, int]
) -> None:
    cfg = alerting(webhook, smtp_server[1])
    cfg["channels"][0]["timeout_s"] = 1.0  # the schema's lowest
    start, clock = restartable(tmp_path, cfg, ["chat"])
    eng = start()
    webhook.delay_s = 2.5  # the robot took the message, its answer comes too late
    raise_leak(eng, clock)
    assert await deliver(eng) == 0
    webhook.delay_s = 0.0
    clock.advance(5)  # retry.min_s
    assert await deliver(eng) == 1
    first, again = webhook.bodies
    assert "X-Gateway-Possible-Duplicate" not in webhook.headers[0]
    assert webhook.headers[1]["X-Gateway-Possible-Duplicate"] == "true"
    assert again["markdown"]["title"] == f"(possible duplicate) {first['markdown']['title']}"
    eng.close()


async def test_notifier_outlives_a_disk_full_to_the_last_byte(
    small_disk: Path,  # noqa: F811 - the fixture
    webhook: Hook,
    smtp_server: tuple[Mailbox, int],
) -> None:
    """Another program fills the disk under the alarm state: the notifier waits, never dies."""
    cfg = alerting(webhook, smtp_server[1])
    cfg["routes"][0]["channels"] = ["chat"]
    clock = FakeClock()
    eng = make_engine(small_disk, RULES, clock, **cfg)
    raise_leak(eng, clock)  # queued while there is room
    ballast = fill(small_disk)
    task = asyncio.create_task(eng.run_notifier(poll_s=0.05))
    try:
        for _ in range(40):  # the notifier tries (and fails to record) its sends meanwhile
            await asyncio.sleep(0.02)
            assert not task.done(), task.exception()
        ballast.unlink()
        for _ in range(250):
            if webhook.bodies:
                break
            assert not task.done(), task.exception()
            await asyncio.sleep(0.02)
        assert len(webhook.bodies) == 1
    finally:
        await cancel_and_wait([task])
        eng.close()


async def test_a_clock_set_back_while_stopped_does_not_hold_the_next_page(
    tmp_path: Path, webhook: Hook, smtp_server: tuple[Mailbox, int]
) -> None:
    """The grouping window counts from the last page; a stored page time 'in the future'
    (the clock was set back an hour while the gateway was down) must not hold the next one."""
    cfg = alerting(webhook, smtp_server[1], group_window_s=30)
    cfg["routes"][0]["channels"] = ["chat"]
    devices = [
        {"id": f"lk-{i}", "profile": "leakage-monitor", "source": "rtu-1", "unit": i}
        for i in (1, 2)
    ]
    clock = FakeClock()
    eng = make_engine(tmp_path, RULES, clock, state=None, devices=devices, **cfg)
    raise_leak(eng, clock, "lk-1")
    assert await deliver(eng) == 1
    eng.close()
    later = FakeClock(clock.now_ns() + 120 * 10**9 - 3600 * 10**9)  # restarted, clock set back 1 h
    eng = make_engine(tmp_path, RULES, later, state=None, devices=devices, **cfg)
    raise_leak(eng, later, "lk-2")
    assert await deliver(eng) == 1, "the page waits for a window stamped an hour ahead"
    assert "lk-2" in json.dumps(webhook.bodies[-1])
    eng.close()
