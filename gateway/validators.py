"""Field types shared by the config models (site, alerting, patrol)."""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator


def _known_time_zone(v: str) -> str:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {v!r}") from exc
    return v


# An IANA time zone name (Asia/Shanghai, UTC): rosters and night windows are local time.
TimeZoneName = Annotated[str, AfterValidator(_known_time_zone)]
