"""A flood of unknown RFID cards: one alarm per reader, a bounded tap path, polls keep going.

The real simulator (`gateway-sim`) serves a boiler over Modbus TCP and an
RFID reader line on a pty; the scenario floods the line with thousands of
taps of distinct unknown cards at two checkpoint readers. The gateway runs
in-process so the test can read its alarm book, its patrol state and the
boiler's samples. Nothing here measures speed: the boiler's sample count
over the flood is compared loosely with what its poll interval promises.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from gateway.loader import load_site
from tests.integration.test_gateway_e2e import Collector
from tests.simproc import free_port, running_sim

FLOOD = 3000  # lines, the two readers in turn
RATE = 400.0  # lines per second from the simulator
READERS = ["gate-north", "lakeside"]
PREFIX = "F100"
POLL_S = 0.2


def write_site(tmp: Path) -> Path:
    route = [*READERS, "playground"]
    site = {
        "site": "flood",
        "sources": [
            {
                "id": "tcp-boiler",
                "type": "modbus_tcp",
                "host": "127.0.0.1",
                "port": free_port(),
                "timeout_s": 0.05,
                "retries": 0,
            },
            {"id": "rfid-gate", "type": "serial_line", "port": str(tmp / "run" / "rfid-gate")},
        ],
        "devices": [
            {
                "id": "boiler-1",
                "profile": "boiler-controller",
                "source": "tcp-boiler",
                "interval_s": POLL_S,
            },
            {"id": "rfid-gate", "profile": "rfid-checkpoint-reader", "source": "rfid-gate"},
        ],
        "outbox": {"path": str(tmp / "outbox.sqlite")},
        "alerting": {"state_db": str(tmp / "alarms.sqlite")},
        "patrol": {
            "timezone": "UTC",
            # Short, so the test sees the final count soon; longer than any lull in the flood.
            "unknown_card_report_s": 5,
            "checkpoints": [{"id": c, "device": "rfid-gate"} for c in route],
            "guards": [{"id": "wang", "card": "04A1B2C3D4"}],
            "routes": [{"id": "r", "checkpoints": route}],
        },
        "simulation": {
            "scenarios": {
                "flood": {
                    "serial": {
                        "rfid-gate": {
                            "floods": [
                                {
                                    "at_s": 2.0,
                                    "readers": READERS,
                                    "count": FLOOD,
                                    "card_prefix": PREFIX,
                                    "rate_per_s": RATE,
                                }
                            ]
                        }
                    }
                }
            }
        },
    }
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(site), encoding="utf-8")
    return path


async def wait_until(what: str, cond: Callable[[], bool], limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while not cond():
        assert time.monotonic() < deadline, f"not within {limit_s} s: {what}"
        await asyncio.sleep(0.05)


def count_in(message: str) -> int:
    m = re.search(r"(\d+) unknown card tap", message)
    assert m is not None, message
    return int(m.group(1))


async def test_unknown_card_flood_one_alarm_per_reader_and_polls_go_on(tmp_path: Path) -> None:
    site_path = write_site(tmp_path)
    with running_sim(site_path, {}, "--scenario", "flood"):
        gw = Collector(load_site(site_path), out=io.StringIO())
        assert gw.alerts is not None and gw.patrol is not None
        (rfid,) = [s for s in gw.sources if s.cfg.id == "rfid-gate"]
        stop = asyncio.Event()
        run = asyncio.create_task(gw.run(stop))
        try:
            patrol = gw.patrol
            alerts = gw.alerts

            def counters() -> dict[str, int]:
                return dict(patrol.state()["counters"])

            def accounted() -> int:
                # Every line the simulator wrote: a tap the engine judged, or counted overflow.
                c = counters()
                return c.get("unknown_cards", 0) + c.get("duplicates", 0) + rfid.counters.overruns

            await wait_until("the flood begins", lambda: accounted() > 0, 30)
            t0 = time.time_ns()
            await wait_until("every flooded line accounted", lambda: accounted() >= FLOOD, 60)
            t1 = time.time_ns()
            assert accounted() == FLOOD
            assert rfid.counters.frame_errors == 0

            def unknown_alarms() -> dict[str, str]:
                return {
                    a.alarm_id: a.message
                    for a in alerts.book.alarms.values()
                    if a.spec.rule == "patrol_unknown_card"
                }

            accepted = counters()["unknown_cards"]
            # The taps the gateway read (the lines within the rate), per reader.
            tap_readers = [s.values.get("reader") for s in gw.samples if s.kind == "patrol_tap"]
            read = {r: tap_readers.count(r) for r in READERS}
            assert sum(read.values()) == accepted

            def reported() -> dict[str, int]:
                return {k.rsplit("/", 1)[1]: count_in(m) for k, m in unknown_alarms().items()}

            # The last report (unknown_card_report_s after the flood) carries each total.
            await wait_until("each reader's alarm counts its taps", lambda: reported() == read, 30)
            got = unknown_alarms()
            # ONE alarm per reader, whose message counts its cards and names the last ones.
            assert sorted(got) == [f"patrol/unknown_card/{r}" for r in sorted(READERS)]
            for reader in READERS:
                msg = got[f"patrol/unknown_card/{reader}"]
                assert PREFIX in msg and reader in msg
            # The tap path is bounded: most of the flood was dropped, and counted as such.
            assert rfid.counters.overruns > 0 and accepted < FLOOD
            flood_alarms = [a for a in alerts.book.alarms.values() if a.spec.rule.endswith("flood")]
            assert flood_alarms, sorted(alerts.book.alarms)
            # The alarm book and its list reply stay small.
            assert len(alerts.book.alarms) <= 10, sorted(alerts.book.alarms)
            assert len(json.dumps(alerts.alarms(include_normal=True))) < 20_000
            # The boiler kept being polled while the line flooded (loosely: half of the promise).
            polls = [
                s
                for s in gw.samples
                if s.device == "boiler-1" and s.kind != "device_health" and t0 <= s.ts_ns <= t1
            ]
            expected = (t1 - t0) / 1e9 / POLL_S
            assert len(polls) >= 0.5 * expected - 1, (len(polls), expected)
        finally:
            stop.set()
            await asyncio.wait_for(run, 30)
