"""The shipped rules/ files on a real site file (built-in profiles): the leakage defaults hold."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

from gateway.alerting.engine import AlertEngine
from gateway.loader import load_site
from gateway.model import AlarmEvent, AlarmState, FakeClock, Quality, Sample, Value

ROOT = Path(__file__).resolve().parents[2]
RULE_FILES = ("park_lighting.yaml", "boilers.yaml", "pipe_network.yaml", "cold_storage.yaml")


def site(tmp_path: Path) -> Path:
    (tmp_path / "rules").mkdir()
    for name in RULE_FILES:
        shutil.copy(ROOT / "rules" / name, tmp_path / "rules" / name)
    path = tmp_path / "site.yaml"
    path.write_text(
        textwrap.dedent(
            """
            site: park-test
            sources:
              - {id: rtu-1, type: modbus_rtu, port: /dev/null}
              - {id: tcp-1, type: modbus_tcp, host: 127.0.0.1}
            devices:
              - {id: lk-fire, profile: leakage-monitor, source: rtu-1, unit: 1, tags: {area: park}}
              - {id: lk-play, profile: leakage-monitor, source: rtu-1, unit: 2,
                 tags: {area: playground, protection: personal}}
              - {id: blr-1, profile: boiler-controller, source: tcp-1, interval_s: 5,
                 tags: {area: boiler_room}}
            rules: [rules/park_lighting.yaml, rules/boilers.yaml, rules/pipe_network.yaml,
                    rules/cold_storage.yaml]
            alerting:
              state_db: state/alarms.sqlite
            """
        ),
        encoding="utf-8",
    )
    return path


async def test_leakage_tiers_latch_and_fault_on_the_shipped_rules(tmp_path: Path) -> None:
    clock = FakeClock()
    async with AlertEngine(load_site(site(tmp_path)), clock) as eng:
        assert (tmp_path / "state" / "alarms.sqlite").exists()

        def poll(
            dev: str, values: dict[str, Value], quality: dict[str, Quality] | None = None
        ) -> list[AlarmEvent]:
            return eng.on_sample(Sample(dev, "leakage", clock.now_ns(), values, quality or {}))

        # 150 mA is normal leakage on a fire-protection circuit, a serious one on personal
        assert poll("lk-fire", {"leak_ch1": 150}) == []
        poll("lk-play", {"leak_ch1": 35})
        clock.advance(1)
        ev = poll("lk-play", {"leak_ch1": 35})
        assert {(e.alarm_id, e.severity) for e in ev} == {
            ("leakage-personal:lk-play:leak_ch1:hi", "medium"),
            ("leakage-personal:lk-play:leak_ch1:hihi", "critical"),
        }
        assert all(e.area == "playground" for e in ev)
        hihi = next(e for e in ev if e.alarm_id.endswith("hihi"))
        assert hihi.latched and "35 mA" in hihi.message
        # fire tier: 300 mA for 5 s, message with the unit from the profile
        poll("lk-fire", {"leak_ch2": 320})
        clock.advance(5)
        ev = poll("lk-fire", {"leak_ch2": 320})
        assert {e.alarm_id for e in ev} == {
            "leakage:lk-fire:leak_ch2:hi",
            "leakage:lk-fire:leak_ch2:hihi",
        }
        assert all(e.area == "park" for e in ev)
        # a broken CT loop is a fault alarm after 5 s, not a zero reading
        poll("lk-fire", {}, {"leak_ch3": Quality.FAULT})
        clock.advance(5)
        ev = poll("lk-fire", {}, {"leak_ch3": Quality.FAULT})
        assert [(e.alarm_id, e.state) for e in ev] == [
            ("leakage-sensor-fault:lk-fire:leak_ch3", AlarmState.UNACKED)
        ]
        # boiler flame failure suppresses the low-temperature alarm it causes
        ev = eng.on_sample(Sample("blr-1", "boiler", clock.now_ns(),
                                  {"flame_failure": True, "supply_temp": 30.0}))  # fmt: skip
        assert [e.alarm_id for e in ev] == ["boiler-flame-failure:blr-1:flame_failure"]
        clock.advance(300)
        ev = eng.on_sample(Sample("blr-1", "boiler", clock.now_ns(),
                                  {"flame_failure": True, "supply_temp": 30.0}))  # fmt: skip
        assert [(e.alarm_id, e.state) for e in ev if e.device == "blr-1"] == [
            ("boiler-supply-temp:blr-1:supply_temp:lo", AlarmState.SUPPRESSED)
        ]
        # meanwhile both leakage monitors on the RS-485 line fell silent (5 missed polls):
        # one alarm for the line, the per-device ones suppressed behind it
        ev = eng.tick()
        states = {e.alarm_id: e.state for e in ev}
        assert states["leakage-no-data:lk-fire"] is AlarmState.SUPPRESSED
        assert states["leakage-no-data:lk-play"] is AlarmState.SUPPRESSED
        assert eng.book.get("leakage-no-data:source:rtu-1").state is AlarmState.UNACKED
