"""Simulated device register images: every built-in profile decodes to what its behaviours say."""

from __future__ import annotations

import math
import random

import pytest

from firmware_sim.behaviours import make_behaviour
from firmware_sim.clock import ManualClock
from firmware_sim.modbus_devices import DeviceModel, effective_behaviours
from gateway.codecs import decode
from gateway.profiles.registry import ProfileRegistry
from gateway.profiles.schema import DataType, ModbusProfile, SimBehaviour, Table


def _profiles() -> dict[str, ModbusProfile]:
    reg, problems = ProfileRegistry.load()
    assert problems == []
    out = {}
    for name in reg.names():
        prof = reg.get(name)
        if isinstance(prof, ModbusProfile):
            out[name] = prof
    return out


PROFILES = _profiles()


def _model(name: str, clock: ManualClock, **over: SimBehaviour) -> DeviceModel:
    prof = PROFILES[name]
    return DeviceModel("dev", prof, effective_behaviours(prof, over), clock, random.Random(3))


def _read(model: DeviceModel, point_name: str) -> object:
    p = model.points[point_name]
    if p.table.is_bit:
        return model.bits(p.table)[p.address]
    image = model.registers(p.table)
    return decode(p, [image[p.address + i] for i in range(p.count)])


@pytest.mark.parametrize("name", sorted(PROFILES))
@pytest.mark.parametrize("t", [0.0, 37.5, 901.0])
def test_every_point_decodes_to_the_model_value(name: str, t: float) -> None:
    clock = ManualClock(t)
    model = _model(name, clock)
    for p in model.profile.points:
        got = _read(model, p.name)
        want = model.values[p.name]
        if p.type is DataType.STRING:
            assert got == str(want)[: 2 * (p.length or 1)]
        elif p.type in (DataType.BOOL, DataType.BIT):
            assert got is bool(want), p.name
        else:
            # Integer registers quantise to the point's scale.
            tol = (
                abs(p.scale) / 2 + 1e-6
                if p.type is not DataType.FLOAT32
                else abs(float(want)) * 1e-6
            )
            assert math.isclose(float(got), float(want), abs_tol=tol + 1e-9), (p.name, got, want)


def test_values_follow_the_profile_behaviours() -> None:
    clock = ManualClock(75.0)
    model = _model("ultrasonic-flow-meter", clock)
    # flow_rate: sine 120 ± 10 over 300 s, float32 ABCD; velocity CDAB; totaliser int32 CDAB.
    assert _read(model, "flow_rate") == pytest.approx(130.0)
    assert _read(model, "velocity") == pytest.approx(1.3, rel=1e-6)
    assert _read(model, "totaliser") == round(1_250_000 + 0.033 * 75)
    clock.advance(150)
    model.update()
    assert _read(model, "flow_rate") == pytest.approx(110.0)
    spec = PROFILES["pipe-heat-meter"].points[2].sim
    assert spec is not None
    pipe = _model("pipe-heat-meter", ManualClock(225.0))
    assert _read(pipe, "supply_temp") == pytest.approx(
        make_behaviour(spec, random.Random()).value(225)
    )


def test_site_and_scenario_overrides_win() -> None:
    prof = PROFILES["leakage-monitor"]
    beh = effective_behaviours(
        prof,
        {"leak_ch1": SimBehaviour(kind="constant", value=200)},
        {"leak_ch1": SimBehaviour(kind="constant", value=400), "fault_ch3": SimBehaviour(value=1)},
    )
    clock = ManualClock(0)
    model = DeviceModel("leak", prof, beh, clock)
    assert _read(model, "leak_ch1") == 400
    assert _read(model, "prealarm_ch1") is True
    assert _read(model, "alarm_ch1") is False
    clock.advance(5)
    model.update()
    assert _read(model, "alarm_ch1") is True  # 5 s above 300 mA
    assert _read(model, "fault_ch3") is True and _read(model, "leak_ch3") == 0
    assert _read(model, "alarm_threshold") == 300 and _read(model, "alarm_delay") == 5.0


def test_bit_points_share_one_register() -> None:
    clock = ManualClock(0)
    model = _model("boiler-controller", clock)
    # Run until the burner fires: the flame bit (bit 0 of register 111) comes on.
    while model.values["burner_state"] != 3:
        clock.advance(1)
        model.update()
    assert _read(model, "flame") is True
    model.values["over_temp"] = 1.0  # bit 4 of the same word
    assert model.registers(Table.HOLDING_REGISTER)[111] == 0b10001
    assert _read(model, "flame") is True and _read(model, "over_temp") is True
    assert _read(model, "low_water") is False


def test_boiler_points_come_from_the_heat_model() -> None:
    clock = ManualClock(0)
    model = _model("boiler-controller", clock)
    total0 = _read(model, "gas_total")
    for _ in range(1800):
        clock.advance(1)
        model.update()
    assert 60 < float(_read(model, "supply_temp")) < 80  # type: ignore[arg-type]
    assert float(_read(model, "return_temp")) < float(_read(model, "supply_temp"))  # type: ignore[arg-type]
    assert int(_read(model, "gas_total")) > int(total0)  # type: ignore[call-overload]
    assert _read(model, "supply_setpoint") == 75.0
    hot = _model("boiler-controller", ManualClock(0), supply_setpoint=SimBehaviour(value=98))
    for _ in range(900):
        hot.clock.advance(1)  # type: ignore[attr-defined]
        hot.update()
    assert _read(hot, "over_temp") is True and _read(hot, "burner_state") == 4


def test_readable_ranges_leave_out_unreadable_gaps() -> None:
    leak = _model("leakage-monitor", ManualClock())
    assert leak.readable_ranges(Table.INPUT_REGISTER) == [(0x0FA0, 0x0FA3), (0x0FA8, 0x0FAB)]
    assert leak.readable_ranges(Table.DISCRETE_INPUT) == [(0, 19)]
    assert leak.readable_ranges(Table.COIL) == []
    boiler = _model("boiler-controller", ManualClock())
    assert boiler.readable_ranges(Table.HOLDING_REGISTER) == [(100, 111), (120, 125)]


def test_a_write_holds_the_written_value() -> None:
    model = _model("leakage-monitor", ManualClock())
    model.write(Table.HOLDING_REGISTER, 501, [30])
    model.update()
    assert _read(model, "alarm_threshold") == 30
    # The device logic uses the written threshold: ch3 starts at 60 mA >= 80 % of 30 mA.
    assert _read(model, "prealarm_ch3") is True
    assert _read(model, "prealarm_ch4") is False  # 15 mA
