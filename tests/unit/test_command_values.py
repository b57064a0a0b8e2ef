"""Hostile values in commands: every one is a ``bad_command`` with a clear message, no traceback.

Text that is stored (``by``, ``comment``, ``reason``) is length-limited and
refuses control characters and bidirectional overrides; what is printed is
escaped. The property tests feed random JSON and random bytes to the parser
and to the gate in front of it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.alerting.command_config import CommandsConfig
from gateway.alerting.command_gate import Admitted, CommandGate, Refusal
from gateway.alerting.commands import error_reply, parse_command
from gateway.errors import AlarmError, CommandError
from gateway.model import FakeClock
from gateway.printable import printable_json
from tests.unit.test_commands import ALARM, RULES
from tests.unit.test_rules import make_engine, sample

SHELVE = {"cmd": "shelve", "alarm_id": ALARM, "reason": "sensor swap", "duration": "1h"}
DEEP = 5000


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("[" * DEEP + "]" * DEEP, "nested deeper than"),
        ('{"cmd": "ack", "alarm_id": "x", "comment": ' + "[" * DEEP + "]" * DEEP + "}",
         "nested deeper than"),
        ('{"a": ' * 1500 + "1" + "}" * 1500, "nested deeper than"),
        ('{"cmd": "list", "all": [[[[[1]]]]]}', "nested deeper than 4"),
        ('{"cmd": "shelve", "alarm_id": "x", "reason": "r", "duration": NaN}', "not JSON: NaN"),
        ('{"cmd": "shelve", "alarm_id": "x", "reason": "r", "duration": Infinity}', "Infinity"),
        ('{"cmd": "shelve", "alarm_id": "x", "reason": "r", "duration": 1e999}', "finite"),
        ('{"cmd": "shelve", "alarm_id": "x", "reason": "r", "duration": ' + "9" * 5000 + "}",
         "not JSON"),
        ({**SHELVE, "duration": math.nan}, "finite"),
        ({**SHELVE, "duration": "nan"}, "not understood"),
        ({**SHELVE, "duration": "inf"}, "not understood"),
        ({**SHELVE, "duration": 10**400}, "finite"),
        ({"cmd": "list", "issued_at": math.nan}, "issued_at"),
    ],
)  # fmt: skip
def test_malformed_values_are_bad_commands(payload: Any, message: str) -> None:
    with pytest.raises(CommandError) as info:
        parse_command(payload)
    assert message in str(info.value)
    assert error_reply(payload, info.value)["error"] == "bad_command"


@pytest.mark.parametrize("field", ["by", "comment", "reason"])
@pytest.mark.parametrize(
    "text",
    ["evil\u202egnp.exe", "a\u2066b", "a\u2069", "a\u200fb", "line\nbreak", "bell\x07",
     "esc\x1b[31mred", "nul\x00", "lone \ud800 surrogate", "zero\u200bwidth", "del\x7f"],
)  # fmt: skip
def test_text_fields_refuse_control_and_bidi_characters(field: str, text: str) -> None:
    payload = {**SHELVE, field: text}
    with pytest.raises(CommandError, match=f"shelve: {field}: "):
        parse_command(payload)
    with pytest.raises(CommandError, match=f"shelve: {field}: "):
        parse_command(json.dumps(payload))


def test_refusal_names_the_character() -> None:
    with pytest.raises(CommandError) as info:
        parse_command({**SHELVE, "by": "evil\u202egnp.exe"})
    assert "by: character U+202E (RIGHT-TO-LEFT OVERRIDE) is not allowed" in str(info.value)


@pytest.mark.parametrize(("field", "limit"), [("by", 64), ("comment", 500), ("reason", 200)])
def test_text_fields_are_length_limited(field: str, limit: int) -> None:
    parse_command({**SHELVE, field: "w" * limit})
    with pytest.raises(CommandError, match=f"{field}: String should have at most {limit}"):
        parse_command({**SHELVE, field: "w" * (limit + 1)})


def test_ordinary_text_is_kept() -> None:
    c = parse_command({**SHELVE, "by": "王工", "comment": "泵房 2 号, ok — 明天换"})
    assert c.by == "王工" and c.comment == "泵房 2 号, ok — 明天换"


def test_alarm_id_refuses_control_characters() -> None:
    with pytest.raises(CommandError, match="alarm_id"):
        parse_command({"cmd": "ack", "alarm_id": "trip:\u202elk-1"})


def test_nan_shelve_changes_nothing_and_raises_no_internal_error(tmp_path: Path) -> None:
    clock = FakeClock()
    eng = make_engine(tmp_path, RULES, clock)
    eng.on_sample(sample(clock, "lk-1", {"alarm_ch1": True}))
    before = eng.book.snapshot()
    for raw in ('{"cmd":"shelve","alarm_id":"' + ALARM + '","reason":"r","duration":NaN}',
                {**SHELVE, "alarm_id": ALARM, "duration": float("nan")}):  # fmt: skip
        with pytest.raises(CommandError):
            eng.command(raw, "mqtt")
    with pytest.raises(AlarmError, match="positive"):
        eng.book.shelve(ALARM, math.nan, "x", clock.now_ns())
    assert eng.book.snapshot() == before


def test_printed_output_escapes_what_could_deceive_a_reader() -> None:
    text = printable_json({"by": "evil\u202etxt.exe", "comment": "王\x1b[2J", "n": 1})
    assert "\u202e" not in text and "\x1b" not in text
    assert "\\u202e" in text and "王" in text
    assert json.loads(text) == {"by": "evil\u202etxt.exe", "comment": "王\x1b[2J", "n": 1}


# --------------------------------------------------------------------------- properties

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(), kids, max_size=4),
    max_leaves=20,
)
FIELDS = st.sampled_from(
    ["cmd", "alarm_id", "by", "comment", "reason", "duration", "request_id", "issued_at", "all"]
)
COMMANDISH = st.fixed_dictionaries(
    {"cmd": st.sampled_from(["ack", "shelve", "unshelve", "reset", "out_of_service",
                             "in_service", "list", "x"])},
    optional={"alarm_id": st.text() | JSON},
).flatmap(lambda d: st.dictionaries(FIELDS, JSON, max_size=5).map(lambda e: {**e, **d}))
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def only_bad_command(payload: Any) -> None:
    try:
        parse_command(payload)
    except CommandError as exc:
        assert error_reply(payload, exc)["error"] == "bad_command"
        json.dumps(error_reply(payload, exc))


@FAST
@given(JSON)
def test_random_json_raises_only_bad_command(data: Any) -> None:
    only_bad_command(data)
    only_bad_command(json.dumps(data))


@FAST
@given(COMMANDISH)
def test_random_commands_raise_only_bad_command(data: dict[str, Any]) -> None:
    only_bad_command(data)
    only_bad_command(json.dumps(data).encode())


@FAST
@given(st.binary(max_size=512))
def test_random_bytes_raise_only_bad_command(raw: bytes) -> None:
    only_bad_command(raw)


GATE = CommandGate(
    CommandsConfig.model_validate({"allow_unsigned": True, "users": {"li": {"key": "k" * 32}}}),
    FakeClock(),
    None,
    "park",
)


@FAST
@given(COMMANDISH | JSON)
def test_the_gate_answers_random_json_without_raising(data: Any) -> None:
    verdict = GATE.check(json.dumps(data))
    assert isinstance(verdict, Admitted | Refusal)
    if isinstance(verdict, Refusal) and verdict.reply is not None:
        assert verdict.reply["error"] in ("bad_command", "refused")
        printable_json(verdict.reply).encode()


@FAST
@given(st.binary(max_size=512))
def test_the_gate_answers_random_bytes_without_raising(raw: bytes) -> None:
    assert isinstance(GATE.check(raw), Admitted | Refusal)
