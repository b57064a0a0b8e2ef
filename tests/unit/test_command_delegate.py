"""A console signs for the people logged into it: ``on_behalf`` users may name the operator.

The gate records ``<operator> via <console user>``; a user without
``on_behalf`` still cannot name anyone else, and a console cannot give a
command its own ``allow`` list does not hold, whoever it names.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.alerting.command_config import CommandsConfig
from gateway.alerting.command_gate import CommandGate, signature
from gateway.errors import CommandRefused
from gateway.model import FakeClock

SITE = "park"
CONSOLE_KEY = "c" * 40
LI_KEY = "l" * 40


def gate(clock: FakeClock) -> CommandGate:
    users = {
        "console": {"key": CONSOLE_KEY, "on_behalf": True, "allow": ["ack", "shelve"]},
        "li": {"key": LI_KEY},
    }
    return CommandGate(CommandsConfig.model_validate({"users": users}), clock, None, SITE)


def signed(clock: FakeClock, user: str, key: str, **extra: Any) -> str:
    data = {"cmd": "ack", "alarm_id": "r:dev:p", "request_id": extra.pop("rid", "d-1"),
            "issued_at": clock.now_ns() / 1e9, "user": user, "site": SITE, **extra}  # fmt: skip
    return json.dumps({**data, "sig": signature(data, key)})


def test_console_names_the_operator_and_is_recorded_as_the_channel() -> None:
    clock = FakeClock()
    admitted = gate(clock).admit(signed(clock, "console", CONSOLE_KEY, by="wang"))
    assert admitted.payload["by"] == "wang"
    assert admitted.channel == "console"


def test_console_without_a_name_acts_as_itself() -> None:
    clock = FakeClock()
    admitted = gate(clock).admit(signed(clock, "console", CONSOLE_KEY))
    assert admitted.payload["by"] == "console" and admitted.channel == "mqtt"


def test_a_user_without_on_behalf_still_cannot_name_another() -> None:
    clock = FakeClock()
    with pytest.raises(CommandRefused, match="by 'wang' does not match the signing user 'li'"):
        gate(clock).admit(signed(clock, "li", LI_KEY, by="wang"))


def test_the_console_allow_list_binds_whoever_it_names() -> None:
    clock = FakeClock()
    with pytest.raises(CommandRefused, match="user 'console' may not reset"):
        gate(clock).admit(signed(clock, "console", CONSOLE_KEY, by="wang", cmd="reset"))


def test_a_forged_operator_name_breaks_the_signature() -> None:
    clock = FakeClock()
    data = json.loads(signed(clock, "console", CONSOLE_KEY, by="wang"))
    data["by"] = "chief"
    with pytest.raises(CommandRefused, match="does not verify"):
        gate(clock).admit(json.dumps(data))
