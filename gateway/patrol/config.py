"""Patrol configuration: checkpoints, guards, routes, the night window and the tolerances.

The models are pydantic with ``extra="forbid"``; cross-field checks (a route
naming an unknown checkpoint, a card used twice, a walking time between
checkpoints that are not on any route) name the offending item. The config
lives either inline under ``patrol:`` in the site file or in its own YAML file
(``patrol: rules/patrol.yaml``, relative to the site file); ``load_patrol``
reads the latter with ``file:line`` errors.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.errors import ConfigError
from gateway.validators import TimeZoneName
from gateway.yamlfile import LinedData, explain, load_yaml

ID = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]
# Card UIDs as the reader profile sends them: 8-20 upper-case hex characters.
CARD = Annotated[str, Field(pattern=r"^[0-9A-F]{8,20}$")]
HHMM = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Checkpoint(_Strict):
    """One place a guard must visit: the reader id its taps carry names it."""

    id: ID
    # The reader id in the tap line; defaults to the checkpoint id.
    reader: ID | None = None
    place: str = ""
    # The gateway device (site file) the reader is wired to, so an offline
    # port can be blamed on this checkpoint before it ever sent a tap.
    device: ID | None = None

    @property
    def reader_id(self) -> str:
        return self.reader or self.id


class Guard(_Strict):
    id: ID
    card: CARD
    name: str = ""


class Walk(_Strict):
    """The shortest believable walking time between two checkpoints (either direction)."""

    between: tuple[ID, ID]
    min_s: float = Field(ge=0, le=86400)


class RouteConfig(_Strict):
    id: ID
    checkpoints: list[ID] = Field(min_length=1)
    # Ordered routes must be walked in the listed order; out-of-order taps are findings.
    ordered: bool = True
    # A round still open this long after its first tap is closed as abandoned
    # and every checkpoint it did not reach is a missed-checkpoint finding.
    max_duration_s: float = Field(default=5400.0, ge=60, le=86400)
    # Minimum walking time for pairs without an explicit ``walks`` entry (0: not checked).
    default_min_walk_s: float = Field(default=0.0, ge=0, le=86400)

    @field_validator("checkpoints")
    @classmethod
    def _no_repeat(cls, v: list[str]) -> list[str]:
        seen: set[str] = set()
        for cp in v:
            if cp in seen:
                raise ValueError(f"checkpoint {cp!r} is listed twice")
            seen.add(cp)
        return v


class NightWindow(_Strict):
    """When rounds are required, in local time; end <= start means the window spans midnight."""

    start: HHMM = "22:00"
    end: HHMM = "06:00"

    @model_validator(mode="after")
    def _not_empty(self) -> NightWindow:
        if self.start == self.end:
            raise ValueError("night start and end must differ")
        return self

    @property
    def start_time(self) -> time:
        h, m = self.start.split(":")
        return time(int(h), int(m))

    @property
    def end_time(self) -> time:
        h, m = self.end.split(":")
        return time(int(h), int(m))


class PatrolConfig(_Strict):
    timezone: TimeZoneName = "UTC"
    night: NightWindow = Field(default_factory=NightWindow)
    # Longest allowed time without a complete round during the night window.
    # At least a minute: the engine enumerates the due times of each night.
    max_gap_s: float = Field(default=3 * 3600.0, ge=60, le=86400)
    # A second tap of the same card at the same reader within this window is ignored (and counted).
    duplicate_window_s: float = Field(default=60.0, ge=0, le=3600)
    # How many too-fast legs make a round a suspected fake (alarm).
    faked_min_legs: int = Field(default=1, ge=1)
    # Whether a suspected faked round still resets the overdue clock. Off: a
    # record nobody walked must not hide a missed gap.
    faked_rounds_count: bool = False
    # A reader sending garbage is reported at most once per this interval.
    garbage_report_s: float = Field(default=300.0, ge=1, le=86400)
    # Unknown cards are one alarm per reader: the first card of a burst is reported at
    # once, the cards after it (their count and the last few ids) at most this often.
    unknown_card_report_s: float = Field(default=60.0, ge=1, le=86400)
    checkpoints: list[Checkpoint] = Field(min_length=1)
    guards: list[Guard] = Field(default_factory=list)
    routes: list[RouteConfig] = Field(min_length=1)
    walks: list[Walk] = Field(default_factory=list)

    @model_validator(mode="after")
    def _cross(self) -> PatrolConfig:
        ids: set[str] = set()
        readers: set[str] = set()
        for cp in self.checkpoints:
            if cp.id in ids:
                raise ValueError(f"checkpoint id {cp.id!r} is used twice")
            if cp.reader_id in readers:
                raise ValueError(f"checkpoint {cp.id!r}: reader {cp.reader_id!r} is used twice")
            ids.add(cp.id)
            readers.add(cp.reader_id)
        seen: dict[str, str] = {}
        gids: set[str] = set()
        for g in self.guards:
            if g.id in gids:
                raise ValueError(f"guard id {g.id!r} is used twice")
            gids.add(g.id)
            if g.card in seen:
                raise ValueError(
                    f"guard {g.id!r}: card {g.card} already belongs to {seen[g.card]!r}"
                )
            seen[g.card] = g.id
        rids: set[str] = set()
        for r in self.routes:
            if r.id in rids:
                raise ValueError(f"route id {r.id!r} is used twice")
            rids.add(r.id)
            for cp_id in r.checkpoints:
                if cp_id not in ids:
                    raise ValueError(f"route {r.id!r}: unknown checkpoint {cp_id!r}")
        pairs: set[frozenset[str]] = set()
        for w in self.walks:
            a, b = w.between
            for cp_id in (a, b):
                if cp_id not in ids:
                    raise ValueError(f"walks: unknown checkpoint {cp_id!r}")
            if a == b:
                raise ValueError(f"walks: {a!r} to itself")
            key = frozenset((a, b))
            if key in pairs:
                raise ValueError(f"walks: {a!r}-{b!r} is listed twice")
            pairs.add(key)
        return self

    # ------------------------------------------------------------------ lookups

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def checkpoint_by_reader(self) -> dict[str, Checkpoint]:
        return {cp.reader_id: cp for cp in self.checkpoints}

    def guard_by_card(self) -> dict[str, Guard]:
        return {g.card: g for g in self.guards}

    def min_walk_s(self, route: RouteConfig, a: str, b: str) -> float:
        key = frozenset((a, b))
        for w in self.walks:
            if frozenset(w.between) == key:
                return w.min_s
        return route.default_min_walk_s

    # ------------------------------------------------------------------ the night window

    def window_of_evening(self, evening: date) -> tuple[int, int]:
        """The night window that starts on ``evening`` (local date), as epoch ns [start, end)."""
        return night_bounds(evening, self.night, self.tz)

    def window_at(self, ts_ns: int) -> tuple[int, int] | None:
        """The night window containing ``ts_ns``, or None outside the night."""
        for s, e in self.windows_around(ts_ns):
            if s <= ts_ns < e:
                return s, e
        return None

    def windows_around(self, ts_ns: int) -> list[tuple[int, int]]:
        """The windows starting the local day before, on, and after ``ts_ns``'s day."""
        day = datetime.fromtimestamp(ts_ns / 1e9, self.tz).date()
        return [self.window_of_evening(day + timedelta(d)) for d in (-1, 0, 1)]


def night_bounds(evening: date, night: NightWindow, tz: ZoneInfo) -> tuple[int, int]:
    """[start, end) in epoch ns of the window that starts on the local date ``evening``."""
    start = datetime.combine(evening, night.start_time, tz)
    end_day = evening if night.end_time > night.start_time else evening + timedelta(1)
    end = datetime.combine(end_day, night.end_time, tz)
    return _ns(start), _ns(end)


def _ns(dt: datetime) -> int:
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000


def _describe(data: Any) -> Any:
    def describe(loc: tuple[Any, ...]) -> str | None:
        if len(loc) >= 2 and isinstance(loc[1], int) and isinstance(data, dict):
            items = data.get(loc[0])
            if isinstance(items, list) and loc[1] < len(items) and isinstance(items[loc[1]], dict):
                what = {"checkpoints": "checkpoint", "guards": "guard", "routes": "route"}
                if loc[0] in what:
                    return f"{what[loc[0]]} {items[loc[1]].get('id', '?')!r}"
        return None

    return describe


def parse_patrol(doc: LinedData, base: tuple[str | int, ...] = ()) -> PatrolConfig:
    """Validate patrol data (``doc.data`` at ``base``) with file:line errors."""
    data: Any = doc.data
    for key in base:
        data = data[key]
    if not isinstance(data, dict):
        raise ConfigError(f"{doc.path}: the patrol config must be a mapping (checkpoints, routes)")
    try:
        return PatrolConfig.model_validate(data)
    except ValidationError as exc:
        problems = explain(exc, doc, base, describe=_describe(data))
        raise ConfigError(problems[0], problems) from None


def load_patrol(path: str | Path) -> PatrolConfig:
    """Read and validate a patrol YAML file (``rules/patrol.yaml``)."""
    return parse_patrol(load_yaml(Path(path)))


def resolve_patrol(value: str | PatrolConfig | None, site_path: str | Path) -> PatrolConfig | None:
    """The site's ``patrol:`` field as a config: inline as is, a path relative to the site file."""
    if value is None or isinstance(value, PatrolConfig):
        return value
    p = Path(value)
    if not p.is_absolute():
        p = Path(site_path).parent / p
    return load_patrol(p)


def check_against_devices(cfg: PatrolConfig, device_ids: set[str], where: str) -> list[str]:
    """Checkpoints naming a ``device`` the site does not have (one problem line each)."""
    return [
        f"{where}: checkpoint {cp.id!r}: device: unknown device {cp.device!r}"
        for cp in cfg.checkpoints
        if cp.device is not None and cp.device not in device_ids
    ]
