"""A known heating day written into the real InfluxDB, with the figures expected of its reports.

The day (2026-01-01, Asia/Shanghai) is built from simple rules, and the
expected figures are computed here from those rules, never taken from the
report code:

- ``boiler-1`` (every 60 s): fires 06:00-09:00 and 13:00-20:00, burning
  1 m³ a minute while firing; a two-hour outage 10:00-12:00 (no polls); its
  gas totaliser is reset to 0 at 15:00.
- ``boiler-2`` (every 60 s): fires all day at 1 m³ a minute; its 32-bit
  totaliser rolls over at 07:50; its controller counts three starts at
  12:00 that no poll saw, and its firing hours in 0.01 h steps.
- ``net-1`` (pipe-heat-meter, every 60 s): circulating 200 m³/h, make-up
  1 m³/h, 4 m³/h from 02:00 to 03:00; heat meter +100 kWh a minute. A
  make-up alarm 02:30, acknowledged by li at 02:40, cleared 03:30.
- the gateway's health every 10 s, except a gateway outage 03:00-03:20.
- ``boiler-1`` flame failure 07:00, never acknowledged; ``boiler-2`` gas
  pressure low 09:00, acknowledged by zhang at 09:50 (the route escalates
  after 900 s, so that acknowledgement is late).
- ``hm-1`` (M-Bus heat meter, every 60 s): +50 kWh and +0.5 m³ a minute;
  replaced at 16:00 by a meter starting at 500000 kWh / 3000 m³.
- ``leak-1`` (leakage monitor, every 60 s, circuit ``north``): a leakage
  alarm 21:00, acknowledged by wang 21:05; ``cold-1`` (cold room, every
  60 s): 9.5 °C from 14:00 to 14:30, otherwise 3 °C.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from gateway.config import InfluxSinkConfig
from gateway.model import AlarmEvent, AlarmState, Sample
from gateway.outbox import Record, RecordKind
from gateway.plugins.influx.sink import InfluxSink
from tests.fixtures.servers import InfluxDB1

S = 1_000_000_000
TZ = "Asia/Shanghai"
DAY = date(2026, 1, 1)  # the evening the patrol test's simulated night starts
SITE = "heat-co"
WRAP = 2**32
GAS_PLAN = 2400.0
ESCALATE_S = 900


def at(hh: int, mm: int = 0, ss: int = 0) -> int:
    return int(datetime.combine(DAY, time(hh, mm, ss), ZoneInfo(TZ)).timestamp()) * S


START = at(0)
END = START + 86_400 * S


def minutes() -> list[int]:
    return list(range(START, END, 60 * S))


def firing_1(t: int) -> bool:
    return at(6) <= t < at(9) or at(13) <= t < at(20)


def supply_1(t: int) -> float:
    return 78.0 if firing_1(t) else 55.0 + (t - START) // (3600 * S) * 0.5


@dataclass
class Expected:
    boiler_1_times: list[int] = field(default_factory=list)
    supply_1: list[float] = field(default_factory=list)
    return_1: list[float] = field(default_factory=list)
    pressure_1: list[float] = field(default_factory=list)
    gateway_times: list[int] = field(default_factory=list)
    makeup: list[float] = field(default_factory=list)
    supply_flow: list[float] = field(default_factory=list)
    heat_readings: int = 0
    heat_meter_readings: int = 0
    boiler_2_readings: int = 0

    # From the rules above, by hand.
    running_h_1 = 3.0 + 7.0
    starts_1 = 2
    gas_1 = 60 * 10.0  # ten firing hours at 1 m³/min
    outage_1 = (at(10), at(12))
    gateway_outage = (at(3), at(3, 20))

    @property
    def gas_2(self) -> float:  # 1 m³ per minute between the first and the last reading
        return float(self.boiler_2_readings - 1)

    starts_2 = 3

    @property
    def running_h_2(self) -> float:  # fired between the first and the last reading
        return (self.boiler_2_readings - 1) / 60

    @property
    def meter_kwh(self) -> float:  # every minute but the one across the swap
        return 50.0 * (self.heat_meter_readings - 2)

    @property
    def meter_m3(self) -> float:
        return 0.5 * (self.heat_meter_readings - 2)

    @property
    def heat_kwh(self) -> float:
        return 100.0 * (self.heat_readings - 1)


def _sample(device: str, kind: str, t: int, values: dict[str, Any], area: str) -> Sample:
    return Sample(device=device, kind=kind, ts_ns=t, values=values, tags={"area": area})


def _alarm(aid: str, t: int, action: str, state: AlarmState, prev: AlarmState, *, device: str,
           rule: str, severity: str, area: str, actor: str = "system", msg: str = "",
           point: str | None = None) -> AlarmEvent:
    return AlarmEvent(alarm_id=aid, ts_ns=t, state=state, previous=prev, action=action,
                      severity=severity, device=device, point=point, rule=rule,
                      message=msg or f"{device}: {rule}", actor=actor,
                      active=state in (AlarmState.UNACKED, AlarmState.ACKED), area=area)


def build_day() -> tuple[list[Sample | AlarmEvent], Expected]:
    exp = Expected()
    items: list[Sample | AlarmEvent] = []
    gas1 = 5000
    for t in minutes():
        if exp.outage_1[0] <= t < exp.outage_1[1]:
            if firing_1(t):
                gas1 += 1
            continue
        if t == at(15):
            gas1 = 1  # reset to 0 during the firing minute before, which then counted 1
        firing = firing_1(t)
        sup, ret, pres = supply_1(t), supply_1(t) - 20.0, 0.40 + (t - START) // (3600 * S) * 0.01
        items.append(_sample("boiler-1", "boiler", t, {
            "supply_temp": sup, "return_temp": ret, "pressure": pres,
            "gas_total": gas1, "burner_state": 3 if firing else 0, "flame": firing,
        }, "boiler_room"))
        exp.boiler_1_times.append(t)
        exp.supply_1.append(sup)
        exp.return_1.append(ret)
        exp.pressure_1.append(pres)
        # The reading at t is the counter after the minute [t, t+1m) only from the next poll on.
        if firing:
            gas1 += 1
    gas2 = WRAP - 470  # reads 0 at 07:50
    for i, t in enumerate(minutes()):
        items.append(_sample("boiler-2", "boiler", t, {
            "supply_temp": 80.0, "return_temp": 60.0, "pressure": 0.5,
            "gas_total": gas2 % WRAP, "burner_state": 3, "flame": True,
            # The controller's counters (uint32, hours x0.01): three short restarts
            # at 12:00 that no poll saw, and a firing-hour counter read in 0.01 h steps.
            "burner_starts": 1200 + (3 if t >= at(12) else 0),
            "burner_hours": round(3400 + i / 60, 2),
        }, "boiler_room"))
        exp.boiler_2_readings += 1
        gas2 += 1
    heat = 48_000_000
    for t in minutes():
        makeup = 4.0 if at(2) <= t < at(3) else 1.0
        items.append(_sample("net-1", "pipe_network", t, {
            "supply_flow": 200.0, "return_flow": 199.0, "makeup_flow": makeup,
            "supply_pressure": 0.85, "return_pressure": 0.30, "heat_energy": heat,
        }, "pipe_network"))
        exp.makeup.append(makeup)
        exp.supply_flow.append(200.0)
        exp.heat_readings += 1
        heat += 100
    energy, volume = 1_250_000, 8_200.0
    for t in minutes():
        if t == at(16):
            energy, volume = 500_000, 3_000.0  # a new meter, its own start values
        items.append(_sample("hm-1", "heat_meter", t, {"energy": energy, "volume": volume},
                             "substation"))
        exp.heat_meter_readings += 1
        energy += 50
        volume += 0.5
    for t in minutes():
        items.append(_sample("leak-1", "leakage", t, {"leak_ch1": 120, "leak_ch2": 150}, "north"))
        temp = 9.5 if at(14) <= t < at(14, 30) else 3.0
        items.append(_sample("cold-1", "cold_room", t, {"temperature": temp}, "cold_store"))
    for t in range(START, END, 10 * S):
        if exp.gateway_outage[0] <= t < exp.gateway_outage[1]:
            continue
        items.append(Sample(device="gateway", kind="gateway_health", ts_ns=t,
                            values={"samples": 5, "queue_depth": 0}))
        exp.gateway_times.append(t)
    U, A, N, R = (AlarmState.UNACKED, AlarmState.ACKED, AlarmState.NORMAL,
                  AlarmState.RTN_UNACKED)
    net = {"device": "net-1", "rule": "pipe-makeup-share", "severity": "high",
           "area": "pipe_network"}
    b1 = {"device": "boiler-1", "rule": "boiler-flame-failure", "severity": "critical",
          "area": "boiler_room"}
    b2 = {"device": "boiler-2", "rule": "boiler-gas-pressure", "severity": "medium",
          "area": "boiler_room"}
    lk = {"device": "leak-1", "rule": "leakage", "severity": "high", "area": "north",
          "point": "leak_ch2"}
    items += [
        _alarm("net-1/makeup", at(2, 30), "activate", U, N, **net),
        _alarm("net-1/makeup", at(2, 40), "ack", A, U, actor="li", **net),
        _alarm("net-1/makeup", at(3, 30), "clear", N, A, **net),
        _alarm("boiler-1/flame", at(7), "activate", U, N, **b1),
        _alarm("boiler-2/gas", at(9), "activate", U, N, **b2),
        _alarm("boiler-2/gas", at(9, 50), "ack", A, U, actor="zhang", **b2),
        _alarm("boiler-2/gas", at(11), "clear", N, A, **b2),
        _alarm("leak-1/alarm", at(21), "activate", U, N, **lk),
        _alarm("leak-1/alarm", at(21, 5), "ack", A, U, actor="wang", **lk),
        _alarm("leak-1/alarm", at(22), "clear", R, A, **lk),
    ]
    return items, exp


async def write_day(db: InfluxDB1, site: str = SITE) -> Expected:
    items, exp = build_day()
    kinds = {Sample: RecordKind.SAMPLE, AlarmEvent: RecordKind.ALARM}
    records = [Record(seq=i + 1, kind=kinds[type(it)], ts_ns=it.ts_ns, item=it)
               for i, it in enumerate(items)]
    async with InfluxSink(InfluxSinkConfig(**db.sink_config()), site) as sink:
        for i in range(0, len(records), 5000):
            await sink.send(records[i : i + 5000])
    return exp


def site_file(tmp: Path, db: InfluxDB1, *, patrol: Path | None = None, **extra: Any) -> Path:
    devices = [
        ("boiler-1", "boiler-controller", 1, "boiler_room"),
        ("boiler-2", "boiler-controller", 2, "boiler_room"),
        ("net-1", "pipe-heat-meter", 3, "pipe_network"),
        ("leak-1", "leakage-monitor", 4, "north"),
        ("cold-1", "cold-room-thermometer", 5, "cold_store"),
        ("hm-1", "heat-meter-mbus", 6, "substation"),
    ]
    doc: dict[str, Any] = {
        "site": SITE,
        "timezone": TZ,
        "sources": [{"id": "plc", "type": "modbus_tcp", "host": "127.0.0.1", "port": 1502},
                    {"id": "mbus", "type": "mbus", "port": "/dev/null"}],
        "devices": [{"id": d, "profile": p, "source": "mbus" if "mbus" in p else "plc",
                     "unit": u, "interval_s": 60, "tags": {"area": a}}
                    for d, p, u, a in devices],
        "sinks": {"influx": db.sink_config()},
        "alerting": {
            "channels": [{"name": "duty", "type": "webhook", "url": "http://127.0.0.1:9/hook"}],
            "routes": [{"name": "all", "channels": ["duty"],
                        "escalation": [{"after_s": 0}, {"after_s": ESCALATE_S}]}],
        },
        "reports": {"gas_plan": {"daily_m3": GAS_PLAN}, **extra},
    }
    if patrol is not None:
        doc["patrol"] = str(patrol)
        doc["sources"].append({"id": "rfid-gate", "type": "serial_line", "port": "/dev/null"})
        doc["devices"].append({"id": "rfid-gate", "profile": "rfid-checkpoint-reader",
                               "source": "rfid-gate"})
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def pdftotext(pdf: bytes) -> str:
    """The text poppler's pdftotext reads from a PDF (layout kept)."""
    return subprocess.run(["pdftotext", "-layout", "-", "-"], input=pdf, capture_output=True,
                          check=True, timeout=60).stdout.decode()
