"""The site's ``commands:`` block: whether the MQTT command channel is open, and on what terms.

Schema only (pydantic, ``extra="forbid"``); ``gateway.alerting.command_gate``
enforces it. ``commands: false`` closes the channel (a console on the
gateway's own machine is then the only way to act on alarms). Keys for
signed commands come from the environment like every other secret of the
site (``key: ${FSG_CMD_KEY_WANG}``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

CommandName = Literal[
    "ack", "shelve", "unshelve", "reset", "out_of_service", "in_service", "list", "reload"
]  # fmt: skip
# What a user may do unless ``allow`` says otherwise: every alarm command. ``reload``
# (re-read the site's config) must be named in ``allow``.
ALL_COMMANDS: tuple[CommandName, ...] = (
    "ack", "shelve", "unshelve", "reset", "out_of_service", "in_service", "list",
)  # fmt: skip
USER = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]
# HMAC-SHA256 keys shorter than this are guessable offline from one signed command.
MIN_KEY_CHARS = 32


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CommandUser(Strict):
    """One person (or console) allowed to sign commands."""

    # SecretStr: printed as ********** wherever the config is shown or logged.
    key: SecretStr
    allow: list[CommandName] = Field(default_factory=lambda: list(ALL_COMMANDS), min_length=1)
    # A console that signs for the people logged into it: its commands may name the
    # operator in ``by`` (recorded as "<by> via <this user>"); ``allow`` still binds them.
    on_behalf: bool = False

    @field_validator("key")
    @classmethod
    def _expanded(cls, v: SecretStr) -> SecretStr:
        text = v.get_secret_value()
        if "${" in text:
            raise ValueError("key still holds an unexpanded ${...}; set the variable")
        if len(text) < MIN_KEY_CHARS:
            raise ValueError(
                f"key must be at least {MIN_KEY_CHARS} characters; make one with"
                " python3 -c 'import secrets; print(secrets.token_hex(32))'"
            )
        return v


class CommandRates(Strict):
    """Token buckets: ``per_s`` tokens a second, up to ``burst`` saved up."""

    # Each verified user (or all unsigned senders together, when allowed).
    user_per_s: float = Field(default=2.0, gt=0, le=1000)
    user_burst: int = Field(default=20, ge=1, le=10_000)
    # One user's commands to one alarm (shelve/unshelve churn writes a transition each).
    alarm_per_s: float = Field(default=0.2, gt=0, le=100)
    alarm_burst: int = Field(default=5, ge=1, le=1000)
    # Everything that fails before a sender is known (malformed, bad signature):
    # past this the gateway drops without replying, and counts.
    invalid_per_s: float = Field(default=5.0, gt=0, le=1000)
    invalid_burst: int = Field(default=20, ge=1, le=10_000)
    # How often a flood summary is logged while drops go on.
    summary_every_s: float = Field(default=60.0, ge=1, le=86400)


class CommandsConfig(Strict):
    """The site's ``commands:`` block (``commands: false`` turns the channel off)."""

    enabled: bool = True
    # A command issued longer ago than this, or further in the future (clock skew), is refused.
    max_age_s: float = Field(default=60.0, ge=1, le=3600)
    max_future_s: float = Field(default=10.0, ge=0, le=600)
    # Request ids remembered against replay (the window spans max_age_s + max_future_s);
    # past this many the oldest unexpired id blocks new commands rather than being forgotten.
    replay_capacity: int = Field(default=10_000, ge=100, le=1_000_000)
    # Unsigned commands are accepted only when this is true; their actor is recorded
    # as "<by> (unverified)". New sites sign: a broker password is shared, a key is not.
    allow_unsigned: bool = False
    users: dict[USER, CommandUser] = Field(default_factory=dict)
    rates: CommandRates = Field(default_factory=CommandRates)

    @model_validator(mode="before")
    @classmethod
    def _bool(cls, data: Any) -> Any:
        if data is False:
            return {"enabled": False}
        if data is True or data is None:
            return {}
        return data
