"""Computed points (profile ``computed:``): the whitelist parser and the quality rule, as tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.errors import ConfigError
from gateway.loader import load_site
from gateway.model import Quality, Sample
from gateway.profiles import computed
from gateway.profiles.computed import Expression, ExpressionError
from gateway.profiles.schema import ModbusProfile

KNOWN = frozenset({"in_count", "out_count", "capacity", "a", "b"})

G, U, B, F = Quality.GOOD, Quality.UNCERTAIN, Quality.BAD, Quality.FAULT

# expression, values, qualities (non-good only), expected value, expected quality
EVALUATE: list[tuple[str, dict[str, Any], dict[str, Quality], float | None, Quality]] = [
    ("in_count - out_count", {"in_count": 900, "out_count": 120}, {}, 780.0, G),
    (
        "(in_count - out_count) * 100 / capacity",
        {"in_count": 900, "out_count": 100, "capacity": 1000},
        {},
        80.0,
        G,
    ),
    ("-a + 2.5", {"a": 1}, {}, 1.5, G),
    ("a * (b + 1)", {"a": 2, "b": 3}, {}, 8.0, G),
    ("+a", {"a": 7}, {}, 7.0, G),
    ("a - b", {"a": True, "b": False}, {}, 1.0, G),  # bits count as 0/1
    # Quality is the worst of the inputs; bad or fault inputs leave no value.
    ("a - b", {"a": 5, "b": 2}, {"b": U}, 3.0, U),
    ("a - b", {"a": 5}, {"b": B}, None, B),
    ("a - b", {"a": 5}, {"b": F}, None, F),
    ("a - b", {}, {"a": F, "b": B}, None, B),
    ("a - b", {"b": 1}, {"a": F}, None, F),
    ("a - b", {"a": 5}, {}, None, B),  # an input missing without a quality is bad
    # Arithmetic that has no finite answer is bad, never an exception.
    ("a / b", {"a": 5, "b": 0}, {}, None, B),
    ("a * b", {"a": 1e308, "b": 1e308}, {}, None, B),
]


@pytest.mark.parametrize(("text", "values", "quality", "want", "want_q"), EVALUATE)
def test_evaluate(
    text: str,
    values: dict[str, Any],
    quality: dict[str, Quality],
    want: float | None,
    want_q: Quality,
) -> None:
    got, q = Expression.parse(text, KNOWN).evaluate(values, quality)
    assert q is want_q
    assert got == (pytest.approx(want) if want is not None else None)


REFUSED = [
    ("__import__('os').system('true')", "Call"),
    ("a.real", "Attribute"),
    ("a[0]", "Subscript"),
    ("a ** 2", "Pow"),
    ("a // 2", "FloorDiv"),
    ("a % 2", "Mod"),
    ("a if b else 1", "IfExp"),
    ("a < b", "Compare"),
    ("lambda: 1", "Lambda"),
    ("'text'", "only numbers"),
    ("True", "only numbers"),
    ("nobody + 1", "unknown point 'nobody'"),
    ("1 + 2", "names no point"),
    ("a +", "does not parse"),
    ("a; b", "does not parse"),
    ("a" + " + a" * 40, "more than 64 terms"),
    ("a" * 300, "longer than 256"),
]


@pytest.mark.parametrize(("text", "why"), REFUSED)
def test_refused(text: str, why: str) -> None:
    with pytest.raises(ExpressionError, match=why.replace("(", r"\(").replace("*", r"\*")):
        Expression.parse(text, KNOWN)


def _profile(**computed_point: str) -> dict[str, Any]:
    return {
        "name": "counter",
        "kind": "people",
        "points": [
            {"name": "in_count", "table": "holding_register", "address": 0, "type": "uint32"},
            {"name": "out_count", "table": "holding_register", "address": 2, "type": "uint32"},
            {
                "name": "label",
                "table": "holding_register",
                "address": 4,
                "type": "string",
                "length": 2,
            },
        ],
        "computed": [computed_point],
    }


def test_profile_validation_names_the_point_and_the_reason() -> None:
    prof = ModbusProfile.model_validate(
        _profile(name="occupancy", compute="in_count - out_count", unit="people")
    )
    assert prof.point_names()[-1] == "occupancy" and prof.point_units() == {"occupancy": "people"}
    for bad, why in (
        ({"name": "occupancy", "compute": "in_count - label"}, "unknown point 'label'"),
        ({"name": "in_count", "compute": "out_count + 1"}, "already a point"),
        (
            {"name": "occ", "compute": "open('x')"},
            "computed point 'occ': compute \"open\\('x'\\)\": Call",
        ),
    ):
        with pytest.raises(ValidationError, match=why):
            ModbusProfile.model_validate(_profile(**bad))


def test_apply_adds_values_and_qualities_to_a_sample() -> None:
    prof = ModbusProfile.model_validate(_profile(name="occupancy", compute="in_count - out_count"))
    good = Sample("c1", "people", 1, {"in_count": 10, "out_count": 4})
    assert computed.apply(good, prof.expressions).values["occupancy"] == 6
    assert "occupancy" not in good.quality
    bad = Sample("c1", "people", 1, {"in_count": 10}, {"out_count": Quality.BAD})
    computed.apply(bad, prof.expressions)
    assert "occupancy" not in bad.values and bad.quality["occupancy"] is Quality.BAD


def test_a_site_cannot_simulate_a_computed_point(tmp_path: Path) -> None:
    # The simulator serves registers; a computed point has none. Caught by the
    # check, not by the simulator refusing to start.
    site = tmp_path / "site.yaml"
    site.write_text(
        """
site: s
sources: [{id: t, type: modbus_tcp, host: 127.0.0.1, port: 1502}]
devices:
  - id: shop
    profile: people-counter
    source: t
    interval_s: 5
    sim: {occupancy: {kind: constant, value: 900}}
outbox: {path: OUTBOX}
""".replace("OUTBOX", str(tmp_path / "o.sqlite"))
    )
    with pytest.raises(ConfigError, match="sim: point 'occupancy' is computed"):
        load_site(site)
