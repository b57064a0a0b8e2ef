"""Alert rules: the rule file models, their loader, and the per-device checks they compile into.

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

Rules only decide whether a condition holds; the ``Detector`` debounces it
(on-delay, off-delay, deadband) and the alarm book (``alarms.py``) owns the
ISA-18.2 states. Detectors are created lazily, the first time a condition
holds, so a healthy site carries almost no per-point state on the hot path.
Every duration here (delays, rate windows, staleness) is measured on the
monotonic clock (``Sample.mono_ns``), so a wall-clock step neither fires nor
holds back an alarm; only the events carry wall-clock timestamps.
"""

from __future__ import annotations

import fnmatch
import string
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.alerting.config import Severity
from gateway.errors import ConfigError
from gateway.model import Quality, Sample, Value
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


class _RuleBase(Strict):
    id: RULE_ID
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


class LimitRule(_RuleBase, _LimitsMixin):
    kind: Literal["limit"]
    points: list[str] = Field(min_length=1)


class RateRule(_RuleBase, _LimitsMixin):
    """Rate of change over ``window_s``, in units per ``per``; hi = rising, lo = falling."""

    kind: Literal["rate"]
    points: list[str] = Field(min_length=1)
    window_s: float = Field(default=60.0, ge=1, le=86400)
    per: Literal["s", "min", "h"] = "min"


class Operand(Strict):
    point: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    # None: the selected device itself. A device id: that device's latest value.
    device: str | None = None


class DeviationRule(_RuleBase, _LimitsMixin):
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

    @model_validator(mode="after")
    def _device_or_select(self) -> DeviationRule:
        if self.a.device is None and self.b.device is None and self.select.is_empty():
            raise ValueError("a deviation between points of one device needs a 'select'")
        return self


class StatusRule(_RuleBase):
    kind: Literal["status"]
    points: list[str] = Field(min_length=1)
    active_value: bool | float | str = True


class NoDataRule(_RuleBase):
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


class QualityRule(_RuleBase):
    kind: Literal["quality"]
    points: list[str] = Field(default_factory=lambda: ["*"])
    qualities: list[QualityName] = Field(default_factory=_fault_only, min_length=1)


class HealthRule(_RuleBase):
    """Severity and delays of the gateway's own health alarms whose signal matches ``signals``."""

    kind: Literal["health"]
    signals: list[str] = Field(min_length=1)


AnyRule = LimitRule | RateRule | DeviationRule | StatusRule | NoDataRule | QualityRule | HealthRule
RuleModel = Annotated[AnyRule, Field(discriminator="kind")]


class RuleFile(Strict):
    area: str | None = None
    description: str = ""
    rules: list[RuleModel] = Field(default_factory=list)


@dataclass(frozen=True)
class LoadedRule:
    rule: AnyRule
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


_KINDS = ("limit", "rate", "deviation", "status", "no_data", "quality", "health")


def _explain_rules(exc: ValidationError, doc: LinedData, data: Any) -> list[str]:
    """Like ``yamlfile.explain``, minus the rule kind the discriminated union adds to locations."""
    describe = _describe(data)
    problems: list[str] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if len(loc) >= 3 and loc[0] == "rules" and loc[2] in _KINDS:
            loc = loc[:2] + loc[3:]
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
        patterns: list[str] = []
        if isinstance(rule, LimitRule | RateRule | StatusRule | NoDataRule | QualityRule):
            patterns = list(rule.points)
        elif isinstance(rule, DeviationRule):
            patterns = [op.point for op in (rule.a, rule.b) if op.device is None]
            for op in (rule.a, rule.b):
                if op.device is not None and devices and op.device not in devices:
                    problems.append(f"{head}: device: unknown device {op.device!r}")
        if isinstance(rule, HealthRule) or not patterns:
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


@dataclass(frozen=True)
class AlarmClass:
    """The alarms one rule raises at one severity: one per limit, or the rule's own."""

    rule: LoadedRule
    limit: str | None
    severity: Severity
    suppressed_by: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"rule {self.rule.rule.id!r}" + (f" limit {self.limit}" if self.limit else "")


@dataclass(frozen=True)
class Suppression:
    """An alarm class that suppression by design may hide, and what may hide it."""

    alarm: AlarmClass
    patterns: tuple[str, ...]
    # Every enabled alarm class whose rule id a pattern matches.
    causes: tuple[AlarmClass, ...]

    @property
    def rule(self) -> LoadedRule:
        return self.alarm.rule

    @property
    def limit(self) -> str | None:
        return self.alarm.limit

    @property
    def severity(self) -> Severity:
        return self.alarm.severity


def alarm_classes(lr: LoadedRule) -> list[AlarmClass]:
    rule = lr.rule
    if isinstance(rule, _LimitsMixin):
        return [
            AlarmClass(lr, name, lim.severity or rule.severity, tuple(lim.suppressed_by))
            for name, lim in rule.limits.items()
        ]
    return [AlarmClass(lr, None, rule.severity, tuple(rule.suppressed_by))]


def suppressions(ruleset: RuleSet) -> list[Suppression]:
    """Every alarm class of an enabled rule that names a suppressor, with the causes it names."""
    enabled = [lr for lr in ruleset.rules if lr.rule.enabled]
    out: list[Suppression] = []
    for lr in enabled:
        for cls in alarm_classes(lr):
            pats = cls.suppressed_by
            if not pats:
                continue
            causes = tuple(
                c
                for other in enabled
                if any(fnmatch.fnmatchcase(other.rule.id, p) for p in pats)
                for c in alarm_classes(other)
                if c != cls
            )
            out.append(Suppression(cls, pats, causes))
    return out


def suppression_warnings(ruleset: RuleSet) -> list[str]:
    """What ``gateway check`` warns about: a milder alarm that can hide a graver one, and
    suppressor patterns that match no rule (a typo that leaves the intent undone)."""
    warnings: list[str] = []
    for s in suppressions(ruleset):
        head = f"{s.rule.where}: {s.alarm.name} ({s.severity})"
        for pat in s.patterns:
            if not any(fnmatch.fnmatchcase(c.rule.rule.id, pat) for c in s.causes):
                warnings.append(f"{head}: suppressed_by {pat!r} matches no rule that is enabled")
        mildest: dict[str, AlarmClass] = {}
        for c in s.causes:
            known = mildest.get(c.rule.rule.id)
            if c.severity.rank < s.severity.rank and (
                known is None or c.severity.rank < known.severity.rank
            ):
                mildest[c.rule.rule.id] = c
        for c in mildest.values():
            warnings.append(
                f"{head} can be suppressed by {c.name} ({c.severity}): a suppressor must be at"
                " least as severe as the alarm it hides; suppress only the limits that are its"
                " consequence, or raise the suppressor's severity"
            )
    return warnings


# --------------------------------------------------------------------------- runtime


@dataclass(slots=True)
class AlarmSpec:
    """The static identity of one alarm: which rule, device, point and limit raise it."""

    alarm_id: str
    rule: str
    kind: str
    device: str
    point: str | None
    limit: str | None
    limit_value: float | None
    severity: Severity
    latch: bool
    area: str | None
    template: str | None
    # Alarm-id glob patterns whose activity suppresses this alarm (suppression by design).
    inhibited_by: tuple[str, ...] = ()
    unit: str = ""
    advice: str = ""

    def render(self, value: Value | None, detail: str = "") -> str:
        text = self._render(value, detail)
        return f"{text}; {self.advice}" if self.advice else text

    def _render(self, value: Value | None, detail: str) -> str:
        fields = {
            "device": self.device,
            "point": self.point or "",
            "value": _fmt(value),
            "limit": self.limit or "",
            "limit_value": _fmt(self.limit_value),
            "rule": self.rule,
            "area": self.area or "",
            "unit": self.unit,
            "detail": detail,
        }
        if self.template:
            try:
                return self.template.format_map(fields)
            except (KeyError, ValueError, IndexError, AttributeError):
                pass
        return _default_message(self, fields)


def _fmt(v: Value | float | None) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _default_message(spec: AlarmSpec, f: dict[str, str]) -> str:
    where = f"{spec.device} {spec.point}" if spec.point else spec.device
    unit = f" {spec.unit}" if spec.unit else ""
    if spec.kind in ("limit", "rate", "deviation"):
        sign = ">=" if spec.limit in ("hi", "hihi") else "<="
        what = {"rate": " rate", "deviation": ""}.get(spec.kind, "")
        return f"{where}{what} {f['value']}{unit} {sign} {spec.limit} {f['limit_value']}{unit}"
    if spec.kind == "status":
        return f"{where} status {f['value']}"
    if spec.kind == "no_data":
        return f"{where}: no data for {f['value']} s"
    if spec.kind == "quality":
        return f"{where}: sensor {f['value']}"
    return f"{where}: {f['detail'] or f['value']}"


class Detector:
    """Debounces one alarm condition: on-delay before activating, off-delay before clearing.

    ``raw`` is what the latest evidence says; ``active`` the debounced verdict.
    ``since_ns`` is when ``raw`` started to differ from ``active`` (None when
    they agree), so ``due`` can fire the change later without a new sample.
    Its times are monotonic (``Clock.mono_ns``), never wall clock.
    """

    __slots__ = ("active", "last_value", "off_ns", "on_ns", "since_ns", "spec")

    def __init__(self, spec: AlarmSpec, on_delay_s: float, off_delay_s: float) -> None:
        self.spec = spec
        self.on_ns = int(on_delay_s * 1e9)
        self.off_ns = int(off_delay_s * 1e9)
        self.active = False
        self.since_ns: int | None = None
        self.last_value: Value | None = None

    def feed(self, raw: bool, mono_ns: int, value: Value | None) -> bool | None:
        """Take new evidence; return the new debounced state when it changes, else None."""
        self.last_value = value
        if raw == self.active:
            self.since_ns = None
            return None
        if self.since_ns is None:
            self.since_ns = mono_ns
        delay = self.on_ns if raw else self.off_ns
        if mono_ns - self.since_ns >= delay:
            self.active = raw
            self.since_ns = None
            return raw
        return None

    def due(self, mono_ns: int) -> bool | None:
        """Fire a pending change whose delay has run out (the condition was not contradicted)."""
        if self.since_ns is None:
            return None
        delay = self.off_ns if self.active else self.on_ns
        if mono_ns - self.since_ns >= delay:
            self.active = not self.active
            self.since_ns = None
            return self.active
        return None


Change = tuple[Detector, bool]


@dataclass(frozen=True)
class DeviceInfo:
    device: str
    profile: str | None
    kind: str | None
    tags: dict[str, str]
    source: str | None = None
    interval_s: float | None = None
    units: dict[str, str] = field(default_factory=dict)

    @property
    def area(self) -> str | None:
        return self.tags.get("area")


def _area(lr: LoadedRule, info: DeviceInfo) -> str | None:
    return lr.rule.area or info.area or lr.area


def _inhibitors(patterns: list[str], device: str) -> tuple[str, ...]:
    return tuple(f"{pat}:{device}:*" for pat in patterns) + tuple(
        f"{pat}:{device}" for pat in patterns
    )


class Check:
    """One rule bound to one device: turns samples into detector changes."""

    def __init__(self, lr: LoadedRule, info: DeviceInfo, pending: set[Detector]) -> None:
        self.lr = lr
        self.info = info
        self.detectors: dict[str, Detector] = {}
        self.pending = pending
        self._match: dict[str, bool] = {}

    def emit(
        self, det: Detector, raw: bool, mono_ns: int, value: Value | None, out: list[Change]
    ) -> None:
        new = det.feed(raw, mono_ns, value)
        if new is not None:
            out.append((det, new))
        # Pending changes are fired by the engine's tick if no sample contradicts them.
        if det.since_ns is None:
            self.pending.discard(det)
        else:
            self.pending.add(det)

    def wants(self, point: str) -> bool:
        hit = self._match.get(point)
        if hit is None:
            pats: list[str] = getattr(self.lr.rule, "points", [])
            hit = any(fnmatch.fnmatchcase(point, p) for p in pats)
            self._match[point] = hit
        return hit

    def detector(
        self,
        key: str,
        point: str | None,
        limit: str | None = None,
        lim: Limit | None = None,
    ) -> Detector:
        det = self.detectors.get(key)
        if det is None:
            rule = self.lr.rule
            on = lim.on_delay_s if lim and lim.on_delay_s is not None else rule.on_delay_s
            off = lim.off_delay_s if lim and lim.off_delay_s is not None else rule.off_delay_s
            spec = AlarmSpec(
                alarm_id=key,
                rule=rule.id,
                kind=rule.kind,
                device=self.info.device,
                point=point,
                limit=limit,
                limit_value=lim.value if lim else None,
                severity=(lim.severity if lim and lim.severity else rule.severity),
                latch=(lim.latch if lim and lim.latch is not None else rule.latch),
                area=_area(self.lr, self.info),
                template=(lim.message if lim and lim.message else rule.message),
                inhibited_by=_inhibitors(
                    lim.suppressed_by if lim else rule.suppressed_by, self.info.device
                ),
                unit=self.info.units.get(point or "", ""),
                advice=self.lr.advice,
            )
            det = Detector(spec, on, off)
            self.detectors[key] = det
        return det

    def feed(self, sample: Sample, out: list[Change]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


def _deadband(rule: _LimitsMixin, lim: Limit) -> float:
    if lim.deadband is not None:
        return lim.deadband
    if lim.deadband_pct is not None:
        return abs(lim.value) * lim.deadband_pct / 100.0
    if rule.deadband:
        return rule.deadband
    return abs(lim.value) * rule.deadband_pct / 100.0


# One limit of one series, ready to compare: (detector key, limit name, limit,
# upper?, threshold, deadband).
_Plan = tuple[str, str, Limit, bool, float, float]


class _LimitEval:
    """Limit comparison with deadband; the deadband applies on the way back only."""

    def __init__(self, rule: _LimitsMixin) -> None:
        self.items: list[tuple[str, Limit, bool, float]] = [
            (name, lim, name in ("hi", "hihi"), _deadband(rule, lim))
            for name, lim in rule.limits.items()
        ]

    def plan(self, base: str) -> list[_Plan]:
        """The limits of the series ``base`` with their detector keys."""
        return [
            (f"{base}:{name}", name, lim, upper, lim.value, db)
            for name, lim, upper, db in self.items
        ]

    def run(
        self, check: Check, base: str, point: str | None, x: float, ts: int, out: list[Change]
    ) -> None:
        self.apply(check, self.plan(base), point, x, ts, out)

    @staticmethod
    def apply(
        check: Check, plan: list[_Plan], point: str | None, x: float, ts: int, out: list[Change]
    ) -> None:
        detectors = check.detectors
        for key, name, lim, upper, value, db in plan:
            det = detectors.get(key)
            if det is None:
                # The usual case: never crossed, nothing to track.
                if x >= value if upper else x <= value:
                    check.emit(check.detector(key, point, name, lim), True, ts, round(x, 6), out)
                continue
            if det.active:
                # Back only beyond the deadband: a reading at the limit (or at the
                # deadband's edge) keeps the alarm, it does not chatter.
                raw = x >= value - db if upper else x <= value + db
            else:
                raw = x >= value if upper else x <= value
            check.emit(det, raw, ts, round(x, 6), out)


def _num(v: Value | None) -> float | None:
    if v is None or isinstance(v, str):
        return None
    return float(v)


class LimitCheck(Check):
    def __init__(self, lr: LoadedRule, info: DeviceInfo, pending: set[Detector]) -> None:
        super().__init__(lr, info, pending)
        assert isinstance(lr.rule, LimitRule)
        self.limits = _LimitEval(lr.rule)
        self.prefix = f"{lr.rule.id}:{info.device}"
        # Per point: its limits with their detector keys built once ([] if the
        # rule does not watch the point). Every point of every poll passes
        # here (bench: 50,000 a second), so no string is built per reading.
        self._plans: dict[str, list[_Plan]] = {}

    def _plan(self, point: str) -> list[_Plan]:
        plan = self.limits.plan(f"{self.prefix}:{point}") if self.wants(point) else []
        self._plans[point] = plan
        return plan

    def feed(self, sample: Sample, out: list[Change]) -> None:
        q = sample.quality
        ts = sample.mono_ns
        plans = self._plans
        for point, v in sample.values.items():
            plan = plans.get(point)
            if plan is None:
                plan = self._plan(point)
            if not plan or v is None or isinstance(v, str):
                continue
            # An uncertain value is still evidence; a bad one never reaches values.
            if q and point in q and q[point] is not Quality.UNCERTAIN:
                continue
            self.limits.apply(self, plan, point, float(v), ts, out)


_PER = {"s": 1.0, "min": 60.0, "h": 3600.0}


class RateCheck(Check):
    def __init__(self, lr: LoadedRule, info: DeviceInfo, pending: set[Detector]) -> None:
        super().__init__(lr, info, pending)
        assert isinstance(lr.rule, RateRule)
        self.rule: RateRule = lr.rule
        self.limits = _LimitEval(lr.rule)
        self.prefix = f"{lr.rule.id}:{info.device}"
        self.window_ns = int(lr.rule.window_s * 1e9)
        self.per = _PER[lr.rule.per]
        # Bounded: samples older than the window are dropped, and at most 4096 kept.
        self.history: dict[str, deque[tuple[int, float]]] = {}

    def feed(self, sample: Sample, out: list[Change]) -> None:
        ts = sample.mono_ns
        for point, v in sample.values.items():
            if not self.wants(point) or not sample.is_good(point):
                continue
            x = _num(v)
            if x is None:
                continue
            hist = self.history.get(point)
            if hist is None:
                hist = self.history[point] = deque(maxlen=4096)
            hist.append((ts, x))
            # Keep one sample at or before the window start as the reference.
            while len(hist) >= 2 and hist[1][0] <= ts - self.window_ns:
                hist.popleft()
            t0, x0 = hist[0]
            dt = (ts - t0) / 1e9
            # Less than half a window of history is too little to call a rate.
            if dt < self.rule.window_s / 2:
                continue
            rate = (x - x0) / dt * self.per
            self.limits.run(self, f"{self.prefix}:{point}", point, rate, ts, out)


class DeviationCheck(Check):
    """Same-device operands come from the sample; other devices' from ``latest``."""

    def __init__(
        self,
        lr: LoadedRule,
        info: DeviceInfo,
        pending: set[Detector],
        latest: dict[tuple[str, str], tuple[int, float]],
    ) -> None:
        super().__init__(lr, info, pending)
        assert isinstance(lr.rule, DeviationRule)
        self.rule: DeviationRule = lr.rule
        self.limits = _LimitEval(lr.rule)
        self.latest = latest
        self.base = f"{lr.rule.id}:{info.device}:{lr.rule.name}"
        self.max_age_ns = int(lr.rule.max_age_s * 1e9)

    def _operand(self, op: Operand, sample: Sample) -> float | None:
        if op.device is None or op.device == sample.device:
            if not sample.is_good(op.point):
                return None
            return _num(sample.values[op.point])
        got = self.latest.get((op.device, op.point))
        if got is None or sample.mono_ns - got[0] > self.max_age_ns:
            return None
        return got[1]

    def feed(self, sample: Sample, out: list[Change]) -> None:
        a = self._operand(self.rule.a, sample)
        b = self._operand(self.rule.b, sample)
        if a is None or b is None:
            return
        if self.rule.min_b is not None and abs(b) < self.rule.min_b:
            return
        op = self.rule.op
        if op == "difference":
            x = a - b
        elif op == "abs_difference":
            x = abs(a - b)
        elif b == 0:
            return
        elif op == "percent_of_b":
            x = a / b * 100.0
        else:
            x = (a - b) / b * 100.0
        self.limits.run(self, self.base, self.rule.name, x, sample.mono_ns, out)


class StatusCheck(Check):
    def __init__(self, lr: LoadedRule, info: DeviceInfo, pending: set[Detector]) -> None:
        super().__init__(lr, info, pending)
        assert isinstance(lr.rule, StatusRule)
        self.want = lr.rule.active_value
        self.prefix = f"{lr.rule.id}:{info.device}"

    def _on(self, v: Value) -> bool:
        w = self.want
        if isinstance(w, bool):
            return bool(v) is w if not isinstance(v, str) else v.lower() in ("1", "true", "on")
        return v == w

    def feed(self, sample: Sample, out: list[Change]) -> None:
        for point, v in sample.values.items():
            if not self.wants(point) or not sample.is_good(point):
                continue
            raw = self._on(v)
            key = f"{self.prefix}:{point}"
            det = self.detectors.get(key)
            if det is None:
                if not raw:
                    continue
                det = self.detector(key, point)
            self.emit(det, raw, sample.mono_ns, v, out)


class QualityCheck(Check):
    def __init__(self, lr: LoadedRule, info: DeviceInfo, pending: set[Detector]) -> None:
        super().__init__(lr, info, pending)
        assert isinstance(lr.rule, QualityRule)
        self.bad = frozenset(Quality(q) for q in lr.rule.qualities)
        self.prefix = f"{lr.rule.id}:{info.device}"

    def feed(self, sample: Sample, out: list[Change]) -> None:
        for point, q in sample.quality.items():
            if not self.wants(point):
                continue
            raw = q in self.bad
            # An unread point (bad, no value) says nothing about the sensor itself.
            if not raw and q is Quality.BAD:
                continue
            key = f"{self.prefix}:{point}"
            det = self.detectors.get(key)
            if det is None:
                if not raw:
                    continue
                det = self.detector(key, point)
            self.emit(det, raw, sample.mono_ns, str(q), out)
        # A point back to good is absent from ``quality``: clear its detector.
        for det in self.detectors.values():
            pt = det.spec.point
            if (
                pt is not None
                and (det.active or det.since_ns is not None)
                and pt in sample.values
                and pt not in sample.quality
            ):
                self.emit(det, False, sample.mono_ns, "good", out)


def build_check(
    lr: LoadedRule,
    info: DeviceInfo,
    pending: set[Detector],
    latest: dict[tuple[str, str], tuple[int, float]],
) -> Check | None:
    """The sample-driven check for a rule on a device (None for time-driven kinds)."""
    rule = lr.rule
    if isinstance(rule, LimitRule):
        return LimitCheck(lr, info, pending)
    if isinstance(rule, RateRule):
        return RateCheck(lr, info, pending)
    if isinstance(rule, DeviationRule):
        return DeviationCheck(lr, info, pending, latest)
    if isinstance(rule, StatusRule):
        return StatusCheck(lr, info, pending)
    if isinstance(rule, QualityRule):
        return QualityCheck(lr, info, pending)
    return None


def selects(lr: LoadedRule, info: DeviceInfo) -> bool:
    rule = lr.rule
    if not rule.enabled or isinstance(rule, HealthRule):
        return False
    if isinstance(rule, DeviationRule) and rule.select.is_empty():
        # A cross-device deviation with no select belongs to operand a's device.
        return rule.a.device == info.device
    if not rule.select.matches(info.device, info.profile, info.kind, info.tags):
        return False
    return not (
        rule.exclude and rule.exclude.matches(info.device, info.profile, info.kind, info.tags)
    )
