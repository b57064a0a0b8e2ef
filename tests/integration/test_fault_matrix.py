"""Fault matrix (issue 11): the demo site through every fault, then one account of what was told.

The demo site (deploy/demo/site.yaml, its simulators started by
``gateway-sim`` with the ``leak-fault`` scenario) runs against a real
Mosquitto and a local webhook receiver (tests/integration/receivers.py);
InfluxDB is down the whole time (nothing listens at its URL), so the outbox
keeps a growing backlog for it, as a long database outage would. Its
outbox, alarm state and patrol state live on a small tmpfs of their own
(mounted by the test: it must run as root). The gateway is the real
``gateway run`` process, and in turn it is

(a) killed with SIGKILL right after an alarm: the test-only crash point
    ``GATEWAY_CRASH_AT=alarm-state-saved`` (gateway/crashpoints.py) makes it
    kill itself the moment the first alarm is saved, before the outbox
    commits it; the restart must publish every alarm the book holds; that
    run is killed again (SIGKILL) while the receiver holds the alarm's page
    open, so the page may or may not have arrived;
(b) stopped with SIGTERM while a webhook POST is open (the receiver holds
    its answer): that POST is the resend of the cut page and must be marked
    as a possible duplicate; the gateway must let it finish, exit 0, and
    never send it again;
(c) left with a full disk (a filler file takes every free byte of the
    tmpfs): it must keep running, raise a disk-full alarm, and deliver
    again once the filler is deleted;
(d) started on a damaged outbox, then alarm state, then patrol state file:
    it must start, poll, and raise an alarm naming the saved copy;
(e) run in-process (``Gateway(site, clock)``) with its wall clock stepped
    +1 h and -1 h; the clock's durations move only when the test says, its
    ``monotonic`` stays real so the devices are still polled: the 5 s
    on-delay of a fresh alarm is neither shortened nor stretched, no
    escalation fires early, and the alarm's first page goes out at once.

At the end (a last run delivers what waits) every alarm in the alarm book
must have been published on MQTT exactly as often as the book counts its
activations, over the whole sequence (the counts of the alarm-state file
damaged in (d) are kept before it is damaged), and every notification the
gateway recorded as sent must have reached the webhook receiver exactly
once, a second copy only marked as a possible duplicate.

A failed cell of the matrix does not stop the others: each is run, and the
test fails at the end listing every cell that failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import errno
import json
import os
import re
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from gateway.alerting.channels import DUPLICATE_HEADER
from gateway.app import Gateway
from gateway.crashpoints import ENV as CRASH_ENV
from gateway.loader import load_site
from gateway.model import AlarmEvent, FakeClock, Sample
from tests.fixtures.servers import Mosquitto, MqttCollector
from tests.integration.delivery_support import wait_until
from tests.integration.gateway_proc import GatewayProcess, demo_env, demo_site
from tests.integration.receivers import WebhookReceiver
from tests.integration.test_alarm_crash import book
from tests.simproc import free_port, running_sim
from tests.unit.test_damaged_files import empty, garbage, half

pytestmark = pytest.mark.slow

T = TypeVar("T")

SITE = "demo-park"
GROUP_WINDOW_S = 1.0
TMPFS_MB = 8
# How long the receiver holds the POST open after SIGTERM while the gateway has not exited.
HOLD_AFTER_TERM_S = 2.0
# Phase (e): a fresh alarm (leakage hihi, 300 mA, high, on-delay 5 s) on a steady 350 mA;
# high, so it pages also during an alarm flood.
CLOCK_SCENARIO = "fault-matrix-clock"
PROBE = "leakage:leak-north:leak_ch2:hihi"
ON_DELAY_S = 5.0
STEP_S = 3600.0
# Alarm actions that count as an activation in the book (AlarmBook.set_active, flood alarm).
ACTIVATIONS = ("activate", "flood_start")
# What a disk-full alarm says, in its id or message (gateway:file:* alarms are about damage).
DISK_FULL = re.compile(r"disk.?full|\bfull\b|no space|space left|free space", re.IGNORECASE)


# --------------------------------------------------------------------------- the site


def fault_site(tmp: Path, state: Path, mqtt_port: int, hook_port: int) -> Path:
    """The demo site with a webhook channel, 1 s leakage polls, 1 s grouping, InfluxDB down.

    Outbox, alarm state and patrol state go to ``state``; a second scenario
    (``CLOCK_SCENARIO``) adds a steady alarm condition for phase (e).
    """
    path = demo_site(tmp, state, mqtt_port)
    data = yaml.safe_load(path.read_text())
    dead = free_port()  # nothing listens here: InfluxDB is down
    data["sinks"]["influx"].update(
        enabled=True, url=f"http://127.0.0.1:{dead}", retry_min_s=0.5, retry_max_s=2.0
    )
    for dev in data["devices"]:
        if dev["source"] == "rs485-park":  # the leakage monitors: alarms come sooner
            dev["interval_s"] = 1.0
    alerting = data["alerting"]
    alerting["group_window_s"] = GROUP_WINDOW_S
    alerting["channels"].append(
        {"type": "webhook", "name": "chat", "url": f"http://127.0.0.1:{hook_port}/hook",
         "timeout_s": 5.0}
    )  # fmt: skip
    for route in alerting["routes"]:
        route["channels"] = [*route["channels"], "chat"]
    leak = data["simulation"]["scenarios"]["leak-fault"]
    clock_devices = copy.deepcopy(leak["devices"])
    clock_devices["leak-north"]["points"]["leak_ch2"] = {"kind": "constant", "value": 350}
    data["simulation"]["scenarios"][CLOCK_SCENARIO] = {
        "description": "leak-fault, and leak-north channel 2 steady at 350 mA (alarm)",
        "devices": clock_devices,
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def state_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs for the gateway's state files, so the test can fill that disk."""
    if os.geteuid() != 0:
        pytest.fail(
            "the fault matrix mounts a tmpfs for the gateway's state files"
            " (mount -t tmpfs) to fill that disk: run it as root"
        )
    mnt = tmp_path / "state"
    mnt.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m", "fsg-fault-matrix", str(mnt)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    try:
        yield mnt
    finally:
        done = subprocess.run(["umount", str(mnt)], capture_output=True, timeout=30)
        if done.returncode != 0:  # something still holds a file there: detach it anyway
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)


def fill(path: Path) -> int:
    """Write ``path`` until the disk is full; the bytes written."""
    written = 0
    with path.open("wb", buffering=0) as f:
        for chunk in (1 << 20, 4096, 512):
            block = b"\0" * chunk
            while True:
                try:
                    written += f.write(block) or 0
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    return written


# --------------------------------------------------------------------------- what was published


def alarm_events(col: MqttCollector) -> dict[tuple[str, int, str], dict[str, Any]]:
    """Every alarm transition seen on the events topic or an ``alarms/<id>`` topic.

    Delivery is at least once: a transition committed to the outbox but not
    yet confirmed when the gateway died is published again after the restart,
    and the retained ``alarms/<id>`` copy repeats the events topic. The same
    transition has the same identity (alarm id, ts_ns, action), so it is kept
    once: what is counted is distinct transitions, never deliveries.
    """
    out: dict[tuple[str, int, str], dict[str, Any]] = {}
    for m in col.snapshot():
        if not m.payload or not (m.topic.endswith("/events") or "/alarms/" in m.topic):
            continue
        d = m.json()
        if m.topic.endswith("/events") and d.get("type") != "alarm":
            continue
        out[(d["alarm_id"], int(d["ts_ns"]), d["action"])] = d
    return out


def published(col: MqttCollector) -> Counter[str]:
    """Distinct activations per alarm id (see ``alarm_events``)."""
    return Counter(a for (a, _, action) in alarm_events(col) if action in ACTIVATIONS)


def counted(*books: dict[str, dict[str, Any]]) -> Counter[str]:
    """Activations per alarm id over one or more alarm books (a replaced book starts at 0)."""
    total: Counter[str] = Counter()
    for b in books:
        for alarm_id, doc in b.items():
            total[alarm_id] += int(doc["activation_count"])
    return +total


def fresh_telemetry(col: MqttCollector, after_ns: int, first: int) -> int:
    """Samples read after ``after_ns`` and received from message ``first`` on.

    Both: a sample stamped while phase (e) had the wall clock an hour ahead
    looks fresh by its time stamp for an hour.
    """
    now = time.time_ns()
    return sum(
        1
        for m in col.snapshot()[first:]
        if m.topic.endswith("/telemetry") and m.payload and after_ns < m.json()["ts_ns"] <= now
    )


def latest(col: MqttCollector, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    """The newest transition (by timestamp) of the alarms ``match`` selects."""
    found = [d for d in alarm_events(col).values() if match(d)]
    return max(found, key=lambda d: int(d["ts_ns"])) if found else None


def is_disk_full(d: dict[str, Any]) -> bool:
    alarm_id = str(d["alarm_id"])
    return (
        d.get("device") == "gateway"
        and not alarm_id.startswith("gateway:file:")
        and bool(DISK_FULL.search(f"{alarm_id} {d.get('message', '')}"))
    )


# --------------------------------------------------------------------------- notifications


def notification_id(item: dict[str, Any]) -> tuple[Any, ...]:
    """A queued notification's identity: it is stored once and sent with these fields as is."""
    return tuple(item[k] for k in ("alarm_id", "route", "what", "level", "raised_ns", "created_ns"))


def chat_queue(state: Path) -> dict[tuple[Any, ...], str]:
    """The alarm state's webhook notifications: identity -> state (read-only, gateway may run)."""
    db = sqlite3.connect(f"file:{state / 'alarms.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT item, state FROM notifications WHERE channel = 'chat'")
        return {notification_id(json.loads(item)): st for item, st in rows.fetchall()}
    finally:
        db.close()


def settled(state: Path) -> bool:
    queue = chat_queue(state)
    return bool(queue) and set(queue.values()) == {"sent"}


def unsent(state: Path, now_ns: int | None = None) -> list[tuple[Any, ...]]:
    """The webhook notifications not (yet) sent, for a failure message.

    (state, due and next attempt in seconds from ``now_ns``, attempts, last error, alarm, what).
    """
    now = time.time_ns() if now_ns is None else now_ns
    db = sqlite3.connect(f"file:{state / 'alarms.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT state, due_ns, next_ns, attempts, last_error, item FROM notifications"
            " WHERE channel = 'chat' AND state != 'sent'"
        ).fetchall()
    finally:
        db.close()
    return [
        (st, round((due - now) / 1e9, 1), round((nxt - now) / 1e9, 1), n, err,
         json.loads(item)["alarm_id"], json.loads(item)["what"])
        for st, due, nxt, n, err, item in rows
    ]  # fmt: skip


def wait_sent(gw: GatewayProcess, state: Path, what: str) -> None:
    try:
        gw.wait_for(lambda: settled(state), 60, f"every notification sent ({what})")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nnot sent: {unsent(state)}") from None


def received(hook: WebhookReceiver, first: int = 0) -> list[tuple[tuple[Any, ...], bool]]:
    """The notifications the receiver got from POST ``first`` on, in order.

    (identity, marked possible duplicate) each.
    """
    out: list[tuple[tuple[Any, ...], bool]] = []
    for body, headers in zip(hook.posts[first:], hook.headers[first:], strict=False):
        marked = headers.get(DUPLICATE_HEADER) == "true"
        assert marked == bool(body.get("possible_duplicate")), (headers, body)
        out.extend((notification_id(item), marked) for item in body["alarms"])
    return out


# --------------------------------------------------------------------------- phases


def start(site: Path, env: dict[str, str] | None = None) -> tuple[GatewayProcess, int]:
    return GatewayProcess(site, env or {}), time.time_ns()


def polls(gw: GatewayProcess, col: MqttCollector, since_ns: int, what: str) -> None:
    """Wait for samples this run polled after ``since_ns`` (it polls, delivery works)."""
    first = len(col.snapshot())
    gw.wait_for(lambda: fresh_telemetry(col, since_ns, first) >= 5, 60, f"telemetry {what}")


def stop_cleanly(gw: GatewayProcess) -> None:
    rc = gw.stop()
    assert rc == 0, gw.log[-3000:]
    assert "Traceback" not in gw.log, gw.log[-3000:]


@contextlib.contextmanager
def running(site: Path, env: dict[str, str] | None = None) -> Iterator[tuple[GatewayProcess, int]]:
    """A gateway run (and its start time); stopped at the end if the phase did not stop it."""
    gw, started = start(site, env)
    try:
        yield gw, started
    except AssertionError as exc:
        if gw.alive():
            try:
                gw.stop()
            except AssertionError as also:
                raise AssertionError(f"{exc}\n... and then: {also}") from exc
        raise
    finally:
        if gw.alive():
            gw.stop()


def settle(gw: GatewayProcess, col: MqttCollector, state: Path, what: str) -> None:
    """Wait until every activation in the alarm book is on MQTT and every notification sent.

    Before a state file is damaged nothing is then left only in it.
    """

    def caught_up() -> bool:
        return not counted(book(state)) - published(col)

    gw.wait_for(caught_up, 60, f"every saved activation published ({what})")
    wait_sent(gw, state, what)


def phase_kill9(site: Path, state: Path) -> set[str]:
    """(a) SIGKILL at the moment the first alarm is saved; returns the alarms the book had."""
    with running(site, {CRASH_ENV: "alarm-state-saved"}) as (gw, _):
        gw.proc.wait(60)
    assert gw.proc.returncode == -signal.SIGKILL, gw.log[-3000:]
    saved = {a for a, n in counted(book(state)).items() if n}
    assert saved, "the crash point fires after an alarm was saved"
    return saved


def hold_next_post(hook: WebhookReceiver) -> None:
    """The receiver holds the next POST open until ``hook.release`` is set."""
    hook.entered.clear()
    hook.release.clear()


def phase_kill9_mid_post(
    site: Path, col: MqttCollector, hook: WebhookReceiver, saved: set[str]
) -> set[tuple[Any, ...]]:
    """(a) the restart publishes the alarms saved at the crash; SIGKILL while their page is open.

    Returns the identities of the notifications in the POST that was cut.
    """
    hold_next_post(hook)
    try:
        with running(site) as (gw, _):
            gw.wait_for(lambda: saved <= set(published(col)), 60, f"{saved} published")
            gw.wait_for(hook.entered.is_set, 60, "a webhook POST")
            cut = {ident for ident, _ in received(hook, len(hook.posts) - 1)}
            gw.proc.kill()
            gw.proc.wait(30)
    finally:
        hook.release.set()
    assert cut
    return cut


def phase_sigterm_mid_post(
    site: Path, hook: WebhookReceiver, cut: set[tuple[Any, ...]]
) -> tuple[int, set[tuple[Any, ...]]]:
    """(b) SIGTERM while a POST is open: finished, exit 0.

    The POST is the resend of the one cut by SIGKILL, marked as a possible
    duplicate. Returns its index at the receiver and its identities.
    """
    hold_next_post(hook)
    try:
        with running(site) as (gw, _):
            gw.wait_for(hook.entered.is_set, 60, "a webhook POST")
            at = len(hook.posts) - 1
            got = received(hook, at)
            assert cut <= {i for i, _ in got}, "the page cut by SIGKILL is sent again first"
            assert all(marked for _, marked in got), "...marked as a possible duplicate"
            gw.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + HOLD_AFTER_TERM_S
            while gw.alive() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert gw.alive(), "SIGTERM cut the POST in flight instead of letting it finish"
            hook.release.set()
            stop_cleanly(gw)
    finally:
        hook.release.set()
    return at, {i for i, _ in got}


def phase_disk_full(site: Path, state: Path, col: MqttCollector) -> None:
    """(c) a full disk: the gateway keeps running, alarms, and delivers again once freed."""
    with running(site) as (gw, started):
        polls(gw, col, started, "after the restart")
        filler = state / "filler"
        full_ns = time.time_ns()
        assert fill(filler) > 0
        try:
            gw.wait_for(
                lambda: (latest(col, is_disk_full) or {}).get("active") is True,
                60,
                "a disk-full alarm on MQTT while the disk is full",
            )
            raised = latest(col, is_disk_full)
            assert raised is not None and int(raised["ts_ns"]) >= full_ns - int(5e9), raised
        finally:
            filler.unlink()
        freed_ns = time.time_ns()
        polls(gw, col, freed_ns, "delivered after the disk was freed")
        gw.wait_for(
            lambda: (latest(col, is_disk_full) or {}).get("active") is False,
            60,
            "the disk-full alarm back to normal",
        )
        settle(gw, col, state, "after the full disk")
        stop_cleanly(gw)


def saved_copy(col: MqttCollector, name: str, after_ns: int) -> Path | None:
    """The saved copy named by the damaged-file alarm for ``name`` raised after ``after_ns``."""
    d = latest(
        col,
        lambda d: (
            d["alarm_id"] == f"gateway:file:{name}"
            and d["action"] in ACTIVATIONS
            and int(d["ts_ns"]) > after_ns
        ),
    )
    if d is None:
        return None
    m = re.search(r"saved as (\S+?);", d["message"])
    assert m, d["message"]
    return Path(m[1])


DAMAGES = (("outbox.sqlite", half), ("alarms.sqlite", garbage), ("patrol-state.sqlite", empty))


def phase_damaged_file(
    site: Path, state: Path, col: MqttCollector, name: str, damage: Callable[[Path], None]
) -> None:
    """(d) one state file damaged between runs: the gateway starts, polls, and says so."""
    damage(state / name)
    with running(site) as (gw, started):
        polls(gw, col, started, f"after damaging {name}")
        since = started - int(5e9)  # the alarm is stamped at start, maybe before `started`

        def named() -> bool:
            return saved_copy(col, name, since) is not None

        gw.wait_for(named, 60, f"an alarm naming the saved copy of {name}")
        copy = saved_copy(col, name, since)
        assert copy is not None and copy.parent == state, copy
        assert copy.name.startswith(f"{name}.damaged-") and copy.exists(), copy
        assert str(copy) in gw.log
        settle(gw, col, state, f"after damaging {name}")
        stop_cleanly(gw)


class PolledFakeClock(FakeClock):
    """A FakeClock whose ``monotonic`` is real.

    Polls, I/O timeouts and the gateway's own health run on ``monotonic``, so
    the demo devices are polled in real time; the site's durations (on-delays
    run on ``mono_ns``) and the wall clock (``now_ns``) move only when the
    test calls ``advance`` or ``step_wall``.
    """

    def __init__(self) -> None:
        super().__init__(time.time_ns())

    def monotonic(self) -> float:
        return time.monotonic()


class StepRecorder(Gateway):
    """The real gateway, noting the probe channel's readings and every alarm transition."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.probe_polls = 0
        self.events: list[AlarmEvent] = []

    def _process(self, sample: Sample) -> None:
        super()._process(sample)  # the rules have seen it once this returns
        if sample.device == "leak-north" and float(sample.values.get("leak_ch2", 0)) > 310:
            self.probe_polls += 1

    def _append_alarms(self, events: list[AlarmEvent]) -> None:
        self.events.extend(events)
        super()._append_alarms(events)

    def activated(self, alarm_id: str) -> list[AlarmEvent]:
        return [e for e in self.events if e.alarm_id == alarm_id and e.action in ACTIVATIONS]


async def phase_clock_steps(site: Path, state: Path, hook: WebhookReceiver) -> None:
    """(e) a 5 s on-delay across a +1 h and a -1 h wall-clock step: 5 s, no more, no less.

    Then the alarm's first page must go out at once, with the wall clock an
    hour behind the time of the last page, and no escalation may fire early.
    """
    clock = PolledFakeClock()
    gw = StepRecorder(load_site(site), clock)
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))

    async def more_polls(n: int = 3) -> None:
        seen = gw.probe_polls
        await wait_until(lambda: gw.probe_polls >= seen + n or task.done(), 30, f"{n} probe polls")
        assert not task.done(), task

    try:
        # The first reading over the limit starts the on-delay (fake monotonic time t0).
        await more_polls(1)
        clock.step_wall(+STEP_S)
        await more_polls()
        assert gw.activated(PROBE) == [], "a +1 h wall step shortened the on-delay"
        clock.step_wall(-2 * STEP_S)
        clock.advance(ON_DELAY_S - 0.5)
        await more_polls()
        assert gw.activated(PROBE) == [], "fired before 5 s had passed"
        clock.advance(1.0)
        # Wall time since t0 is now 5.5 s - 1 h: on the wall clock it would never fire.
        await wait_until(lambda: bool(gw.activated(PROBE)) or task.done(), 30, "the alarm")
        assert len(gw.activated(PROBE)) == 1, "a -1 h wall step stretched the on-delay"
        # The steps are visible: counted in health, and a (medium) alarm.
        await wait_until(lambda: bool(gw.activated("gateway:clock:wall_step")), 30, "step alarm")
        assert gw.clock_watch.steps >= 2
        # The demo route escalates after 600 s and repeats after 1800 s; this run
        # is far shorter, so an escalation now means the +1 h step fired it.
        early = [i for i in chat_queue(state) if i[2] in ("escalation", "repeat")]
        assert not early, f"escalations fired early by the +1 h wall step: {early}"
        # A high alarm's page goes at once, or at the latest one grouping window
        # after the last page; the wall clock an hour behind changes nothing.
        clock.advance(GROUP_WINDOW_S + 0.5)
        try:
            await wait_until(lambda: any(i[0] == PROBE for i, _ in received(hook)), 20, "its page")
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}: the page of {PROBE} waits with the wall clock 1 h back;"
                f" not sent (due, next attempt in s of the gateway's clock): "
                f"{unsent(state, clock.now_ns())}"
            ) from None
    finally:
        # Back to the real time, noticed (the stored timers follow) before the stop.
        clock.step_wall(+STEP_S)
        with contextlib.suppress(AssertionError):
            await wait_until(lambda: gw.clock_watch.steps >= 3 or task.done(), 10, "step")
        stop.set()
        await asyncio.wait_for(task, 40)


def final_accounting(
    site: Path,
    state: Path,
    col: MqttCollector,
    hook: WebhookReceiver,
    old_book: dict[str, dict[str, Any]],
    old_queue: dict[tuple[Any, ...], str],
    held: tuple[int, set[tuple[Any, ...]]],
) -> None:
    """A last run delivers what waits; then every count must agree (all problems listed)."""
    problems: list[str] = []
    with running(site) as (gw, started):
        polls(gw, col, started, "in the last run")

        def books_agree() -> bool:
            return counted(old_book, book(state)) == published(col)

        # Both sides only grow, the book first: wait for a moment they agree.
        # A transition published twice under different identities, or one
        # never published, keeps them apart for good.
        with contextlib.suppress(AssertionError):
            gw.wait_for(books_agree, 60, "the alarm book and MQTT to agree")
        expected, seen = counted(old_book, book(state)), published(col)
        if seen != expected:
            problems.append(
                f"published more often than the book says: {dict(seen - expected)};"
                f" in the book, never published: {dict(expected - seen)}"
            )
        with contextlib.suppress(AssertionError):
            gw.wait_for(lambda: settled(state), 60, "every notification sent")
        if not settled(state):
            problems.append(f"notifications never sent: {unsent(state)}")
        queue = chat_queue(state)
        got = received(hook)
        stop_cleanly(gw)

    sent = {i for q in (old_queue, queue) for i, st in q.items() if st == "sent"}
    # Queued, not sent, in the alarm state damaged in (d): lost with it, as its alarm says.
    lost = {i for i, st in old_queue.items() if st != "sent"}
    idents = Counter(i for i, _ in got)
    if sent - set(idents):
        problems.append(f"recorded as sent, never received: {sent - set(idents)}")
    if set(idents) - sent - lost - set(queue):
        problems.append(f"received, never queued: {set(idents) - sent - lost - set(queue)}")
    # Once each; a second copy only after a crash, and then marked possible duplicate.
    for ident, n in idents.items():
        marks = [marked for i, marked in got if i == ident]
        if not all(marks[1:]):
            problems.append(f"sent {n} times, not marked possible duplicate: {ident}")
    # The POST that was open at SIGTERM was finished, not sent again.
    at, open_at_stop = held
    again = {i for i, _ in received(hook, at + 1)} & open_at_stop
    if again:
        problems.append(f"the POST open at SIGTERM was sent again: {again}")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- the test


@pytest.mark.timeout(900)
def test_fault_matrix(
    tmp_path: Path,
    state_tmpfs: Path,
    mosquitto: Mosquitto,
    mqtt_collector: Callable[..., MqttCollector],
    webhook: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = demo_env(tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # the gateway processes and phase (e) in-process
    state = state_tmpfs
    site = fault_site(tmp_path, state, mosquitto.port, webhook.port)
    # Subscribed before the first start and for the whole run (persistent session).
    col = mqtt_collector(mosquitto, f"fsg/{SITE}/#")

    failures: list[str] = []

    def attempt(cell: str, fn: Callable[..., T], *args: Any) -> T | None:
        """Run one cell of the matrix; a failed cell is reported at the end, the others go on."""
        try:
            return fn(*args)
        except AssertionError as exc:
            failures.append(f"({cell}) {exc}")
            return None

    with running_sim(site, env, "--scenario", "leak-fault"):
        saved = attempt("a: kill -9 after an alarm", phase_kill9, site, state) or set()
        cut = attempt(
            "a: restart publishes the book; kill -9 mid-POST",
            phase_kill9_mid_post,
            site,
            col,
            webhook,
            saved,
        )
        held = attempt("b: SIGTERM mid-POST", phase_sigterm_mid_post, site, webhook, cut or set())
        attempt("c: full disk", phase_disk_full, site, state, col)
        old_book: dict[str, dict[str, Any]] = {}
        old_queue: dict[tuple[Any, ...], str] = {}
        for name, damage in DAMAGES:
            if name == "alarms.sqlite":  # its counts go with it: keep them
                old_book, old_queue = book(state), chat_queue(state)
            attempt(f"d: damaged {name}", phase_damaged_file, site, state, col, name, damage)
    with running_sim(site, env, "--scenario", CLOCK_SCENARIO):
        attempt("e: wall-clock steps", lambda: asyncio.run(phase_clock_steps(site, state, webhook)))
        attempt(
            "every alarm and notification accounted for",
            final_accounting,
            site,
            state,
            col,
            webhook,
            old_book,
            old_queue,
            held or (len(webhook.posts), set()),
        )
    assert not failures, "\n\n".join(failures)
