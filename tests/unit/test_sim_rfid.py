"""RFID reader simulator: line framing against the profile, patrol scripts and their events."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from firmware_sim.rfid import LineBuilder, RfidScript, Rounds, events, xor8
from gateway.profiles.registry import ProfileRegistry
from gateway.profiles.schema import SerialLineProfile

ROUTE = ["north-gate", "lakeside", "boiler-house", "playground"]


def _profile() -> SerialLineProfile:
    reg, _ = ProfileRegistry.load()
    prof = reg.get("rfid-checkpoint-reader")
    assert isinstance(prof, SerialLineProfile)
    return prof


def _parse(prof: SerialLineProfile, line: bytes) -> dict[str, str] | None:
    """The gateway's view of a line: terminator, xor8 checksum, then the pattern."""
    text = line.decode(prof.line.encoding)
    assert text.endswith(prof.line.terminator)
    body, _, cs = text[: -len(prof.line.terminator)].rpartition("*")
    if int(cs, 16) != xor8(body.encode()):
        return None
    m = re.match(prof.line.pattern, body)
    assert m is not None, body
    return m.groupdict()


def test_tap_line_matches_profile_pattern_and_checksum() -> None:
    prof = _profile()
    line = LineBuilder(prof).tap_line("lakeside", "04A3B2C1D0", 17)
    assert (
        line
        == b"lakeside,04A3B2C1D0,17*" + f"{xor8(b'lakeside,04A3B2C1D0,17'):02X}".encode() + b"\r\n"
    )
    assert _parse(prof, line) == {"reader": "lakeside", "card": "04A3B2C1D0", "seq": "17"}


def test_garbage_line_fails_the_checksum() -> None:
    prof = _profile()
    assert _parse(prof, LineBuilder(prof).garbage_line("gate", 3)) is None


def test_line_the_profile_would_reject_is_refused() -> None:
    builder = LineBuilder(_profile())
    with pytest.raises(ValueError, match="does not match"):
        builder.tap_line("lakeside", "not-hex", 1)
    script = RfidScript(taps=[{"at_s": 5, "reader": "lake side", "card": "04A3B2C1D0"}])  # type: ignore[list-item]
    assert builder.check(script) and "5 s" in builder.check(script)[0]


def test_normal_rounds_expand_to_taps_in_route_order() -> None:
    r = Rounds(route=ROUTE, card="04A3B2C1D0", start_s=[0, 9000], walk_s=240)
    taps = r.taps()
    assert [(t.at_s, t.reader) for t in taps[:4]] == [
        (0, ROUTE[0]),
        (240, ROUTE[1]),
        (480, ROUTE[2]),
        (720, ROUTE[3]),
    ]
    assert taps[4].at_s == 9000 and len(taps) == 8


def test_faked_round_is_ten_seconds_apart_and_skipped_checkpoints_are_missing() -> None:
    r = Rounds(
        route=ROUTE,
        card="04A3B2C1D0",
        start_s=[0, 9000],
        faked=[1],
        skip_checkpoints={0: ["lakeside"]},
    )
    taps = r.taps()
    first = [t.reader for t in taps if t.at_s < 9000]
    assert first == ["north-gate", "boiler-house", "playground"]
    faked = [t.at_s for t in taps if t.at_s >= 9000]
    assert faked == [9000, 9010, 9020, 9030]


def test_script_validation_is_strict() -> None:
    with pytest.raises(ValidationError):
        RfidScript.model_validate({"rounds": [], "bogus": 1})
    with pytest.raises(ValidationError, match="outside start_s"):
        Rounds(route=ROUTE, card="04A3B2C1D0", start_s=[0], faked=[1])
    with pytest.raises(ValidationError, match="not in route"):
        Rounds(route=ROUTE, card="04A3B2C1D0", skip_checkpoints={0: ["moon"]})
    with pytest.raises(ValidationError, match="loop_s"):
        RfidScript.model_validate(
            {"taps": [{"at_s": 200, "reader": "a", "card": "04A3B2C1D0"}], "loop_s": 100}
        )


def test_events_order_unplug_and_loop() -> None:
    script = RfidScript.model_validate(
        {
            "taps": [
                {"at_s": 10, "reader": "a", "card": "04A3B2C1D0"},
                {"at_s": 30, "reader": "b", "card": "04A3B2C1D0"},
            ],
            "unplug": [{"after_s": 10, "duration_s": 15}],
            "garbage_at_s": [20],
        }
    )
    got = [(e.at_s, e.kind) for e in events(script)]
    assert got == [(10, "unplug"), (10, "tap"), (20, "garbage"), (25, "plug"), (30, "tap")]
    looped = RfidScript.model_validate(
        {"taps": [{"at_s": 1, "reader": "a", "card": "04A3B2C1D0"}], "loop_s": 5}
    )
    it = events(looped)
    assert [next(it).at_s for _ in range(3)] == [1, 6, 11]
