"""The pure parts of the OPC UA plugin, as tables: status codes, values, timestamps, models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from gateway.errors import CodecError
from gateway.model import Quality, Sample
from gateway.plugins.opcua.config import OpcUaSourceConfig
from gateway.plugins.opcua.profile import OpcUaPoint, OpcUaProfile
from gateway.plugins.opcua.quality import convert, status_quality, to_ns


@pytest.mark.parametrize(
    ("code", "quality"),
    [
        (0x00000000, Quality.GOOD),  # Good
        (0x00A20000, Quality.GOOD),  # GoodLocalOverride
        (0x40000000, Quality.UNCERTAIN),  # Uncertain
        (0x40900000, Quality.UNCERTAIN),  # UncertainLastUsableValue
        (0x80000000, Quality.BAD),  # Bad
        (0x808C0000, Quality.BAD),  # BadSensorFailure
        (0x80310000, Quality.BAD),  # BadNoCommunication
        (0xC0000000, Quality.BAD),  # reserved severity 11: treated as bad
    ],
)
def test_status_code_severity_maps_to_quality(code: int, quality: Quality) -> None:
    assert status_quality(code) is quality


def pt(type_: str, scale: float = 1.0, offset: float = 0.0) -> OpcUaPoint:
    return OpcUaPoint(name="p", node="ns=2;s=P", type=type_, scale=scale, offset=offset)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("point", "raw", "value"),
    [
        (pt("float"), 12.5, 12.5),
        (pt("float", scale=0.001), 450, 0.45),
        (pt("float", scale=2, offset=-1), 3, 5.0),
        (pt("int"), 7, 7),
        (pt("int", scale=0.5), 7, 4),
        (pt("bool"), True, True),
        (pt("bool"), 0, False),
        (pt("string"), "lockout", "lockout"),
    ],
)
def test_convert(point: OpcUaPoint, raw: object, value: object) -> None:
    got = convert(point, raw)
    assert got == pytest.approx(value) and type(got) is type(value)


@pytest.mark.parametrize(
    ("point", "raw"),
    [
        (pt("float"), None),
        (pt("float"), "12"),
        (pt("float"), True),  # a boolean is not a measurement
        (pt("float"), float("nan")),
        (pt("int"), float("inf")),
        (pt("bool"), 1.5),
        (pt("string"), 3),
    ],
)
def test_unfitting_values_are_codec_errors(point: OpcUaPoint, raw: object) -> None:
    with pytest.raises(CodecError):
        convert(point, raw)


def test_source_timestamps_to_ns() -> None:
    assert to_ns(None) is None
    assert to_ns(datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=UTC)) == 1_000_005_000
    naive = datetime(2026, 1, 1, 12, 0, 0)
    aware = datetime(2026, 1, 1, 13, 0, 0, tzinfo=timezone(timedelta(hours=1)))
    assert to_ns(naive) == to_ns(aware) == int(naive.replace(tzinfo=UTC).timestamp()) * 10**9


def test_source_timestamps_survive_the_outbox_json() -> None:
    s = Sample("d", "boiler", 5, {"t": 1.0}, source_ts_ns={"t": 3})
    assert Sample.from_json_dict(s.to_json_dict()).source_ts_ns == {"t": 3}
    # Sources without device timestamps keep their payloads as they were.
    assert "source_ts_ns" not in Sample("d", "boiler", 5, {"t": 1.0}).to_json_dict()


@pytest.mark.parametrize(
    ("node", "ok"),
    [
        ("ns=2;s=BoilerPLC.Flame", True),
        ("i=2258", True),
        ("ns=3;g=09087e75-8e5e-499b-954f-f2a9603db28a", True),
        ("/2:BoilerPLC/2:SupplyTemperature", True),
        ("ns=2;x=Flame", False),
        ("BoilerPLC.Flame", False),
        ("/BoilerPLC/SupplyTemperature", False),  # steps need a namespace index
        ("/2:BoilerPLC//2:Supply", False),
    ],
)
def test_node_forms(node: str, ok: bool) -> None:
    if ok:
        OpcUaPoint(name="p", node=node)
    else:
        with pytest.raises(ValidationError, match=r"node|browse path"):
            OpcUaPoint(name="p", node=node)


def test_profile_rejects_duplicates_and_the_modbus_heat_model() -> None:
    p = {"name": "a", "node": "ns=2;s=A"}
    with pytest.raises(ValidationError, match="defined twice"):
        OpcUaProfile(name="x", protocol="opcua", kind="k", points=[p, p])  # type: ignore[list-item]
    with pytest.raises(ValidationError, match="reads the node"):
        OpcUaProfile(name="x", protocol="opcua", kind="k", points=[p, {**p, "name": "b"}])  # type: ignore[list-item]
    with pytest.raises(ValidationError, match="heat model"):
        OpcUaPoint(name="p", node="i=1", sim={"kind": "boiler", "field": "flame"})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"security": {"policy": "Basic256Sha256"}}, "needs certificate and private_key"),
        ({"username": "op"}, "go together"),
        ({"publishing_interval_s": 0.001}, "greater than or equal"),
        ({"timeout_s": 0}, "greater than or equal"),
        ({"reconnect_min_s": 5, "reconnect_max_s": 1}, "must not exceed"),
        ({"endpoint": "http://plc:4840"}, "pattern"),
        ({"security": {"policy": "Basic128Rsa15"}}, "Basic256Sha256"),
        ({"polling": True}, "Extra inputs"),
    ],
)
def test_source_config_rejects(extra: dict[str, object], match: str) -> None:
    base: dict[str, object] = {"type": "opcua", "id": "plc", "endpoint": "opc.tcp://plc:4840"}
    with pytest.raises(ValidationError, match=match):
        OpcUaSourceConfig.model_validate({**base, **extra})
