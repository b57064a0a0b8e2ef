"""Suppression by design, checked across a rule set: what may hide what, and what to warn of.

A rule (or one limit of it) may name, in ``suppressed_by``, the rules whose
alarms make its own a consequence. ``suppressions`` lists every alarm class
that names a suppressor with the classes it names; ``suppression_warnings``
is what ``gateway check`` says about them: a milder alarm that can hide a
graver one, and a pattern that matches no enabled rule. The alarm book
(``alarms.py``) applies suppression at run time.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from gateway.alerting.config import Severity
from gateway.alerting.rules import LoadedRule, RuleSet, _LimitsMixin


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
