"""Field types shared by the config models (site, alerting, patrol)."""

from __future__ import annotations

import ipaddress
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel


def _known_time_zone(v: str) -> str:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {v!r}") from exc
    return v


def check_order(model: BaseModel, low: str, high: str) -> None:
    """A ``*_min_s`` / ``*_max_s`` pair in the right order (a model validator's check)."""
    if getattr(model, low) > getattr(model, high):
        raise ValueError(f"{low} must not exceed {high}")


# An IANA time zone name (Asia/Shanghai, UTC): rosters and night windows are local time.
TimeZoneName = Annotated[str, AfterValidator(_known_time_zone)]


def is_local_host(host: str | None) -> bool:
    """Traffic to the machine itself never crosses a network."""
    if not host or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
