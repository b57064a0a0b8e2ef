"""Alert rules: the rule file models and their loader (the checks they compile into: ``checks``).

A rule file (``rules/*.yaml``) holds a default ``area`` and a list of rules.
Each rule picks devices by id, profile, kind or tag, so a new device of a
known kind needs no new rule, and has one ``kind``:

- ``limit``      hi / hihi / lo / lolo with deadband, on-delay, off-delay per limit
- ``rate``       rate of change of a point (per s, min or h), with the same limits
- ``deviation``  a derived value of two points, on one device or two devices
                 (supply - return flow, make-up as percent of circulating flow)
- ``status``     a device status bit (leakage trip, flame failure, low water)
- ``no_data``    a device or point silent for longer than allowed
- ``quality``    a point reported as a sensor fault (or bad)
- ``health``     the gateway's own health signals (sink down, outbox backlog)

Each kind is registered (model and check) in ``kinds.py``; a plugin adds
its own through ``gateway.plugins``. ``checks.py`` turns a rule bound to a
device into detectors; the alarm book (``alarms.py``) owns the ISA-18.2 states;
``suppression.py`` checks suppression by design across the loaded rules.
"""

from __future__ import annotations

import fnmatch
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.alerting.config import Severity
from gateway.errors import ConfigError
from gateway.plugins import validate_rule
from gateway.yamlfile import LinedData, load_yaml

RULE_ID = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]
LimitName = Literal["hihi", "hi", "lo", "lolo"]
QualityName = Literal["fault", "bad", "uncertain"]

# Placeholders a message template may use; anything else is a rule-file error.
TEMPLATE_FIELDS = frozenset(
    {"device", "point", "value", "limit", "limit_value", "rule", "area", "unit", "detail"}
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_template(v: str | None) -> str | None:
    if v is None:
        return v
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(v) if f}
    except ValueError as exc:
        raise ValueError(f"message template is malformed: {exc}") from exc
    unknown = {n.split(".")[0].split("[")[0] for n in names} - TEMPLATE_FIELDS
    if unknown:
        raise ValueError(
            f"message template uses unknown field(s) {', '.join(sorted(unknown))}"
            f" (known: {', '.join(sorted(TEMPLATE_FIELDS))})"
        )
    return v


# --------------------------------------------------------------------------- file models


class Select(Strict):
    """Which devices a rule applies to. Every given criterion must hold; list items are OR."""

    devices: list[str] = Field(default_factory=list)  # glob patterns on device ids
    profiles: list[str] = Field(default_factory=list)
    kinds: list[str] = Field(default_factory=list)
    # tag -> value or list of accepted values
    tags: dict[str, str | list[str]] = Field(default_factory=dict)

    def is_empty(self) -> bool:
        return not (self.devices or self.profiles or self.kinds or self.tags)

    def matches(
        self, device: str, profile: str | None, kind: str | None, tags: dict[str, str]
    ) -> bool:
        if self.devices and not any(fnmatch.fnmatchcase(device, p) for p in self.devices):
            return False
        if self.profiles and profile not in self.profiles:
            return False
        if self.kinds and kind not in self.kinds:
            return False
        for key, want in self.tags.items():
            have = tags.get(key)
            if have is None:
                return False
            if isinstance(want, list):
                if have not in want:
                    return False
            elif have != want:
                return False
        return True


class Limit(Strict):
    value: float
    # Absolute deadband, or percent of |value|; the rule's default applies when neither is set.
    deadband: float | None = Field(default=None, ge=0)
    deadband_pct: float | None = Field(default=None, ge=0, le=100)
    on_delay_s: float | None = Field(default=None, ge=0, le=86400)
    off_delay_s: float | None = Field(default=None, ge=0, le=86400)
    severity: Severity | None = None
    latch: bool | None = None
    message: str | None = None
    # Suppression by design for this limit only: while an alarm of one of these
    # rules is active on the same device, this limit's alarm there starts
    # suppressed (glob on rule ids). Name only causes this limit is a consequence of.
    suppressed_by: list[str] = Field(default_factory=list)

    @field_validator("message")
    @classmethod
    def _tpl(cls, v: str | None) -> str | None:
        return _check_template(v)


class RuleBase(Strict):
    """What every rule kind has; a kind's model adds ``kind: Literal[name]`` (gateway.plugins)."""

    id: RULE_ID
    kind: str
    description: str = ""
    enabled: bool = True
    select: Select = Field(default_factory=Select)
    exclude: Select | None = None
    severity: Severity = Severity.MEDIUM
    # Area of the alarms; default: the device's ``area`` tag, then the file's area.
    area: str | None = None
    on_delay_s: float = Field(default=0.0, ge=0, le=86400)
    off_delay_s: float = Field(default=0.0, ge=0, le=86400)
    latch: bool = False
    message: str | None = None
    # Suppression by design: while an alarm of one of these rules is active on
    # the same device, this rule's alarms there start suppressed (glob on rule
    # ids). Rules with limits say it per limit instead (see _LimitsMixin).
    suppressed_by: list[str] = Field(default_factory=list)

    @field_validator("message")
    @classmethod
    def _tpl(cls, v: str | None) -> str | None:
        return _check_template(v)

    def point_patterns(self) -> list[str]:
        """The point globs the rule reads on its selected devices (checked against profiles)."""
        return list(getattr(self, "points", ()))


class _LimitsMixin(Strict):
    limits: dict[LimitName, Limit] = Field(min_length=1)
    deadband: float = Field(default=0.0, ge=0)
    deadband_pct: float = Field(default=0.0, ge=0, le=100)

    @model_validator(mode="after")
    def _limit_order(self) -> _LimitsMixin:
        lim: dict[str, Limit] = {str(k): v for k, v in self.limits.items()}
        pairs = [("hihi", "hi"), ("hi", "lo"), ("lo", "lolo"), ("hihi", "lo"), ("hi", "lolo")]
        for upper, lower in pairs:
            if upper in lim and lower in lim and lim[upper].value <= lim[lower].value:
                raise ValueError(
                    f"limit {upper} ({lim[upper].value:g}) must be above {lower}"
                    f" ({lim[lower].value:g})"
                )
        return self

    @model_validator(mode="after")
    def _suppression_per_limit(self) -> _LimitsMixin:
        # A cause that makes a value fall does not make it rise: a rule-wide key
        # would hide every limit, the graver ones included (a flame failure hid a
        # 97 °C over-temperature this way). The author must name each consequence.
        wide: list[str] = getattr(self, "suppressed_by", [])
        if wide:
            example = next((n for n in ("lo", "lolo") if n in self.limits), next(iter(self.limits)))
            raise ValueError(
                f"suppressed_by {wide} on a rule with limits would hide every limit"
                f" ({', '.join(self.limits)}), also those that are no consequence of it;"
                f" move it into each limit that is, e.g. limits.{example}.suppressed_by"
            )
        return self


class LimitRule(RuleBase, _LimitsMixin):
    kind: Literal["limit"]
    points: list[str] = Field(min_length=1)


class RateRule(RuleBase, _LimitsMixin):
    """Rate of change over ``window_s``, in units per ``per``; hi = rising, lo = falling."""

    kind: Literal["rate"]
    points: list[str] = Field(min_length=1)
    window_s: float = Field(default=60.0, ge=1, le=86400)
    per: Literal["s", "min", "h"] = "min"


class Operand(Strict):
    point: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    # None: the selected device itself. A device id: that device's latest value.
    device: str | None = None


class DeviationRule(RuleBase, _LimitsMixin):
    """A derived value of two operands, checked against limits.

    ``difference`` a-b, ``abs_difference`` |a-b|, ``percent_of_b`` a/b*100,
    ``percent_difference`` (a-b)/b*100. ``min_b`` skips the check while b is
    too small to divide by (a boiler house at standstill); ``max_age_s``
    bounds how stale another device's value may be.
    """

    kind: Literal["deviation"]
    name: str = Field(default="deviation", pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    a: Operand
    b: Operand
    op: Literal["difference", "abs_difference", "percent_of_b", "percent_difference"] = "difference"
    min_b: float | None = None
    max_age_s: float = Field(default=120.0, ge=1, le=86400)

    def point_patterns(self) -> list[str]:
        return [op.point for op in (self.a, self.b) if op.device is None]

    @model_validator(mode="after")
    def _device_or_select(self) -> DeviationRule:
        if self.a.device is None and self.b.device is None and self.select.is_empty():
            raise ValueError("a deviation between points of one device needs a 'select'")
        return self


class StatusRule(RuleBase):
    kind: Literal["status"]
    points: list[str] = Field(min_length=1)
    active_value: bool | float | str = True


class NoDataRule(RuleBase):
    """No good value from a device (or from given points) for longer than allowed.

    ``timeout_s`` or, when unset, ``missed_polls`` x the device's poll interval.
    ``source_alarm``: when every selected device on one source is silent, one
    alarm for the source (the RS-485 line or TCP endpoint) suppresses the
    per-device alarms behind it.
    """

    kind: Literal["no_data"]
    points: list[str] = Field(default_factory=list)
    timeout_s: float | None = Field(default=None, ge=1, le=7 * 86400)
    missed_polls: int = Field(default=5, ge=1)
    source_alarm: bool = True
    source_min_devices: int = Field(default=2, ge=1)


def _fault_only() -> list[QualityName]:
    return ["fault"]


class QualityRule(RuleBase):
    kind: Literal["quality"]
    points: list[str] = Field(default_factory=lambda: ["*"])
    qualities: list[QualityName] = Field(default_factory=_fault_only, min_length=1)


class HealthRule(RuleBase):
    """Severity and delays of the gateway's own health alarms whose signal matches ``signals``."""

    kind: Literal["health"]
    signals: list[str] = Field(min_length=1)

    def point_patterns(self) -> list[str]:
        return []


AnyRule = LimitRule | RateRule | DeviationRule | StatusRule | NoDataRule | QualityRule | HealthRule


# A rule's model is the one registered for its ``kind`` (gateway.plugins).
RuleModel = Annotated[RuleBase, BeforeValidator(lambda d: validate_rule(d, RuleBase))]


class RuleFile(Strict):
    area: str | None = None
    description: str = ""
    rules: list[RuleModel] = Field(default_factory=list)


@dataclass(frozen=True)
class LoadedRule:
    rule: RuleBase
    area: str | None  # the file's default area
    path: Path
    line: int | None
    # Appended to every message of this rule's alarms (the gas-shortfall shedding order).
    advice: str = ""

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}" if self.line else str(self.path)


@dataclass
class RuleSet:
    rules: list[LoadedRule] = field(default_factory=list)

    def by_id(self, rule_id: str) -> LoadedRule:
        for r in self.rules:
            if r.rule.id == rule_id:
                return r
        raise KeyError(rule_id)

    def of_kind(self, kind: str) -> list[LoadedRule]:
        return [r for r in self.rules if r.rule.kind == kind and r.rule.enabled]


def _describe(data: Any) -> Any:
    def describe(loc: tuple[Any, ...]) -> str | None:
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
            items = data.get("rules") if isinstance(data, dict) else None
            if isinstance(items, list) and loc[1] < len(items) and isinstance(items[loc[1]], dict):
                return f"rule {items[loc[1]].get('id', '?')!r}"
        return None

    return describe


def _explain_rules(exc: ValidationError, doc: LinedData, data: Any) -> list[str]:
    """Like ``yamlfile.explain``, with the rule's id named (``_describe``)."""
    describe = _describe(data)
    problems: list[str] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        line = doc.line_of(loc)
        where = f"{doc.path}:{line}" if line else str(doc.path)
        what = describe(loc)
        label = f"{what}: " if what else ""
        text = ""
        for part in loc:
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
        msg = err["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {label}{text or '(top level)'}: {msg}")
    return problems


def parse_rule_doc(doc: LinedData) -> tuple[list[LoadedRule], list[str]]:
    """Validate one parsed rule file; returns the rules and the problems (file:line: field: msg)."""
    data = doc.data
    if data is None:
        return [], []
    if not isinstance(data, dict):
        return [], [f"{doc.path}: a rule file must be a mapping with 'rules:'"]
    try:
        parsed = RuleFile.model_validate(data)
    except ValidationError as exc:
        return [], _explain_rules(exc, doc, data)
    out = [
        LoadedRule(rule=r, area=parsed.area, path=doc.path, line=doc.line_of(("rules", i)))
        for i, r in enumerate(parsed.rules)
    ]
    return out, []


def load_rules(paths: Iterable[str | Path]) -> RuleSet:
    """Load every rule file; raise one ConfigError listing every problem in every file."""
    rules: list[LoadedRule] = []
    problems: list[str] = []
    for p in paths:
        path = Path(p)
        try:
            doc = load_yaml(path)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        got, bad = parse_rule_doc(doc)
        rules.extend(got)
        problems.extend(bad)
    seen: dict[str, LoadedRule] = {}
    for r in rules:
        first = seen.get(r.rule.id)
        if first is not None:
            problems.append(f"{r.where}: rule {r.rule.id!r}: id: already defined at {first.where}")
        else:
            seen[r.rule.id] = r
    if problems:
        raise ConfigError(problems[0], problems)
    return RuleSet(rules)


def check_against_devices(
    ruleset: RuleSet,
    devices: dict[str, tuple[str | None, str | None, dict[str, str]]],
    profile_points: dict[str, set[str]],
) -> list[str]:
    """Cross-check rules against the site: unknown profiles, points no selected device has.

    ``devices`` maps device id -> (profile, kind, tags); ``profile_points``
    maps profile name -> its point names. Returns problems (file:line: ...).
    """
    problems: list[str] = []
    for lr in ruleset.rules:
        rule = lr.rule
        head = f"{lr.where}: rule {rule.id!r}"
        for prof in rule.select.profiles:
            if profile_points and prof not in profile_points:
                problems.append(
                    f"{head}: select.profiles: unknown profile {prof!r}"
                    f" (known: {', '.join(sorted(profile_points))})"
                )
        patterns = rule.point_patterns()
        if isinstance(rule, DeviationRule):
            for op in (rule.a, rule.b):
                if op.device is not None and devices and op.device not in devices:
                    problems.append(f"{head}: device: unknown device {op.device!r}")
        if not patterns:
            continue
        selected = [
            p
            for dev, (p, kind, tags) in devices.items()
            if rule.select.matches(dev, p, kind, tags)
            and not (rule.exclude and rule.exclude.matches(dev, p, kind, tags))
        ]
        names: set[str] = set()
        for sel in selected:
            names |= profile_points.get(sel or "", set())
        if not selected or not names:
            continue
        for pat in patterns:
            if not any(fnmatch.fnmatchcase(n, pat) for n in names):
                problems.append(
                    f"{head}: points: {pat!r} matches no point of the selected devices"
                    f" (they have: {', '.join(sorted(names))})"
                )
    return problems
