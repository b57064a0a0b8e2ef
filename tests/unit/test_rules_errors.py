"""Bad rule files give one clear line per problem (file:line: rule: field: message)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gateway.alerting.rules import load_rules
from gateway.errors import ConfigError
from tests.unit.test_rules import site_config


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return p


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            """
            rules:
              - id: leak
                kind: limit
                points: [leak_ch1]
                limits: {hi: {value: 300, delay: 5}}
            """,
            "r.yaml:5: rule 'leak': rules[0].limits.hi.delay: Extra inputs are not permitted",
        ),
        (
            """
            rules:
              - id: leak
                kind: limits
            """,
            "r.yaml:2: rule 'leak': rules[0]: Input tag 'limits' found using 'kind' does not match",
        ),
        (
            """
            rules:
              - id: p
                kind: limit
                points: [pressure]
                limits:
                  hi: {value: 0.1}
                  lo: {value: 0.2}
            """,
            "r.yaml:2: rule 'p': rules[0]: limit hi (0.1) must be above lo (0.2)",
        ),
        (
            """
            rules:
              - id: p
                kind: status
                points: [flame_failure]
                message: "{device} {temperature}"
            """,
            "r.yaml:5: rule 'p': rules[0].message: message template uses unknown field(s)"
            " temperature",
        ),
        (
            """
            rules:
              - id: p
                kind: limit
                points: [x]
                on_delay_s: -1
                limits: {hi: {value: 1}}
            """,
            "r.yaml:5: rule 'p': rules[0].on_delay_s: Input should be greater than or equal to 0",
        ),
        (
            """
            rules:
              - id: dev
                kind: deviation
                a: {point: supply_flow}
                b: {point: return_flow}
                limits: {hi: {value: 5}}
            """,
            "rules[0]: a deviation between points of one device needs a 'select'",
        ),
        ("rules:\n  - id: [unclosed\n", "r.yaml:3: YAML syntax error"),
        ("- just a list\n", "a rule file must be a mapping"),
    ],
)
def test_bad_rule_file(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_rules([path])
    assert any(expected in p for p in info.value.problems), info.value.problems
    assert all(str(path) in p for p in info.value.problems)


def test_duplicate_rule_ids_across_files_name_both(tmp_path: Path) -> None:
    rule = """
        rules:
          - id: leak
            kind: status
            points: [alarm_ch1]
    """
    a = write(tmp_path, rule, "a.yaml")
    b = write(tmp_path, rule, "b.yaml")
    with pytest.raises(ConfigError) as info:
        load_rules([a, b])
    assert info.value.problems == [f"{b}:2: rule 'leak': id: already defined at {a}:2"]


def test_every_problem_of_every_file_is_listed(tmp_path: Path) -> None:
    a = write(tmp_path, "rules:\n  - {id: a, kind: status}\n", "a.yaml")
    b = write(tmp_path, "rules:\n  - {id: b, kind: no_data, timeout_s: 0}\n", "b.yaml")
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError) as info:
        load_rules([a, b, missing])
    text = "\n".join(info.value.problems)
    assert "a.yaml:2: rule 'a': rules[0].points: Field required" in text
    assert "b.yaml:2: rule 'b': rules[0].timeout_s: Input should be greater than or equal to 1" in (
        text
    )
    assert f"{missing}: cannot read" in text


def test_rules_checked_against_site_profiles_and_points(tmp_path: Path) -> None:
    from gateway.loader import load_site

    site_file = tmp_path / "site.yaml"
    site_file.write_text(
        textwrap.dedent(
            """
            site: t
            sources: [{id: rtu-1, type: modbus_rtu, port: /dev/null}]
            devices:
              - {id: lk-1, profile: leakage-monitor, source: rtu-1, unit: 1}
            rules: [r.yaml]
            """
        ),
        encoding="utf-8",
    )
    write(
        tmp_path,
        """
        rules:
          - id: leak
            kind: limit
            select: {profiles: [leakage-monitr]}
            points: [leak_ch1]
            limits: {hi: {value: 300}}
          - id: typo
            kind: limit
            select: {kinds: [leakage]}
            points: ["leak_chan*"]
            limits: {hi: {value: 300}}
        """,
    )
    # `gateway check` (load_site) already refuses the rules, before any engine runs.
    with pytest.raises(ConfigError) as info:
        load_site(site_file)
    text = "\n".join(info.value.problems)
    assert "r.yaml:2: rule 'leak': select.profiles: unknown profile 'leakage-monitr'" in text
    assert "r.yaml:7: rule 'typo': points: 'leak_chan*' matches no point of the selected" in text


def test_bad_alerting_block_names_the_field() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="username and password go together"):
        site_config(
            channels=[{"type": "email", "name": "m", "host": "h", "sender": "s", "username": "u"}]
        )
