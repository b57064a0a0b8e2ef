"""The site file's ``reports:`` block: when and where the daily reports go, and the gas plan.

``at`` is a local time in the site's ``timezone``; at that time the reports
for the day before are written to ``dir``, published on MQTT and handed to
the alerting route ``route``. ``gas_plan`` holds the day's planned gas use
(the shortfall is measured against it) and the shedding order when gas runs
short: non-residential load first, residential last. The gateway only
advises the order; it never switches a boiler.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Format = Literal["text", "csv", "html", "pdf"]
ReportKind = Literal["heating", "safety"]
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")

DEFAULT_LEAK_RULES = [
    "pipe-makeup-share", "pipe-flow-imbalance", "pipe-return-pressure", "pipe-pressure-drop",
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ShedStep(Strict):
    """One step of the shedding order: a boiler (device id) or an area."""

    boiler: str | None = None
    area: str | None = None
    residential: bool = False
    note: str = ""

    @model_validator(mode="after")
    def _one_target(self) -> ShedStep:
        if (self.boiler is None) == (self.area is None):
            raise ValueError("a shedding step names exactly one of boiler or area")
        return self

    @property
    def label(self) -> str:
        what = f"boiler {self.boiler}" if self.boiler else f"area {self.area}"
        return what + (" (residential)" if self.residential else "")


class GasPlan(Strict):
    daily_m3: float | None = Field(default=None, ge=0)
    # Shed in this order when gas runs short; residential steps must come last.
    shedding: list[ShedStep] = Field(default_factory=list)
    # The alarm rules whose alarms mean "gas is short" (their message gets the shedding order).
    alarm_rules: list[str] = Field(default_factory=lambda: ["boiler-gas-pressure"])

    @model_validator(mode="after")
    def _residential_last(self) -> GasPlan:
        seen_residential = False
        for step in self.shedding:
            if seen_residential and not step.residential:
                raise ValueError(
                    f"shedding: {step.label} comes after a residential step;"
                    " residential heat is shed last"
                )
            seen_residential = seen_residential or step.residential
        return self


def _default_kinds() -> list[ReportKind]:
    return ["heating", "safety"]


def _default_formats() -> list[Format]:
    return ["pdf", "csv"]


class ReportsConfig(Strict):
    at: str = "07:30"
    dir: str = "reports"
    kinds: list[ReportKind] = Field(default_factory=_default_kinds)
    formats: list[Format] = Field(default_factory=_default_formats, min_length=1)
    # An alerting route (alerting.routes[].name) whose channels get the reports.
    route: str | None = None
    # Where ``dir`` is served (a file share or web server): webhook messages link the files.
    link: str | None = Field(default=None, pattern=r"^(https?|file|smb)://")
    # A gap is longer than this many poll intervals without data.
    gap_polls: int = Field(default=3, ge=1, le=1000)
    # The most gas a boiler can burn: a totaliser rising faster is a meter swap.
    max_gas_m3_h: float = Field(default=2000.0, gt=0)
    max_heat_kwh_h: float = Field(default=100_000.0, gt=0)
    # Late acknowledgement when no escalation level says when; None = not judged.
    ack_late_s: float | None = Field(default=None, ge=1, le=7 * 86400)
    leak_rules: list[str] = Field(default_factory=lambda: list(DEFAULT_LEAK_RULES))
    # Cold-room excursions: a cold_room device's temperature outside this range.
    cold_room_max_c: float = 8.0
    cold_room_min_c: float = -30.0
    gas_plan: GasPlan = Field(default_factory=GasPlan)

    @field_validator("at")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not _HHMM.match(v):
            raise ValueError(f"{v!r} is not a time of day HH:MM")
        return v

    def problems(self, device_ids: set[str], route_names: set[str], where: str) -> list[str]:
        """What the block names that the site does not have (one line each, naming the file)."""
        out: list[str] = []
        if self.route is not None and self.route not in route_names:
            out.append(f"{where}: reports.route: unknown alerting route {self.route!r}"
                       f" (known: {', '.join(sorted(route_names)) or 'none'})")
        for step in self.gas_plan.shedding:
            if step.boiler is not None and step.boiler not in device_ids:
                out.append(f"{where}: reports.gas_plan.shedding: unknown boiler {step.boiler!r}")
        return out


__all__ = ["DEFAULT_LEAK_RULES", "Format", "GasPlan", "ReportKind", "ReportsConfig", "ShedStep"]
