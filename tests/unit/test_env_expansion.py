"""``${VAR}`` in config files: nested defaults work, nothing unexpanded slips through."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.yamlfile import MAX_ENV_NESTING, expand_env, load_yaml
from tests.unit.test_yaml_limits import run_cli


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FSG_T_A", "FSG_T_B", "FSG_T_C"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FSG_T_SET", "set")
    monkeypatch.setenv("FSG_T_EMPTY", "")
    monkeypatch.setenv("FSG_T_DOLLAR", "p${w}d")


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("${FSG_T_SET}", "set"),
        ("x-${FSG_T_SET}-y", "x-set-y"),
        ("${FSG_T_A:-d}", "d"),
        ("${FSG_T_A:-}", ""),
        ("${FSG_T_EMPTY}", ""),
        # As in sh and docker compose, ":-" also replaces an empty value.
        ("${FSG_T_EMPTY:-d}", "d"),
        ("${FSG_T_A:-${FSG_T_SET}}", "set"),
        ("${FSG_T_A:-${FSG_T_SET}}/run", "set/run"),
        ("${FSG_T_A:-${FSG_T_B:-/var/lib}/x}/y", "/var/lib/x/y"),
        ("${FSG_T_SET:-${FSG_T_B}}", "set"),  # the default is only read when used
        ("${FSG_T_A:-http://h:8086/a?b=c}", "http://h:8086/a?b=c"),
        ("$HOME and $5 stay", "$HOME and $5 stay"),
        # A value from the environment is used as is, never expanded again.
        ("${FSG_T_DOLLAR}", "p${w}d"),
    ],
)
def test_expansion(text: str, expect: str) -> None:
    assert expand_env(text, "f.yaml:3") == expect


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("${FSG_T_A}", "environment variable FSG_T_A is not set"),
        ("${FSG_T_A:-${FSG_T_B}}", "environment variable FSG_T_B is not set"),
        ("${FSG_T_A:-${FSG_T_B}", "has no closing '}'"),
        ("${FSG_T_A", "has no closing '}'"),
        ("${FSG_T_A:-x", "has no closing '}'"),
        ("${}", "write ${NAME} or ${NAME:-default}"),
        ("${1X}", "write ${NAME} or ${NAME:-default}"),
        ("${FSG_T_A:?msg}", "write ${NAME} or ${NAME:-default}"),
        ("${FSG_T_A-x}", "write ${NAME} or ${NAME:-default}"),
        ("${A B}", "write ${NAME} or ${NAME:-default}"),
        (
            "${A:-" * (MAX_ENV_NESTING + 1) + "x" + "}" * (MAX_ENV_NESTING + 1),
            f"nested more than {MAX_ENV_NESTING} deep",
        ),
    ],
)
def test_bad_references_are_errors(text: str, expect: str) -> None:
    with pytest.raises(ConfigError) as info:
        expand_env(text, "f.yaml:3")
    msg = str(info.value)
    assert msg.startswith("f.yaml:3: ") and expect in msg, msg


def test_no_unexpanded_reference_reaches_the_data(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text("outbox:\n  path: ${FSG_T_A:-${FSG_T_B:-/tmp/run}}/outbox.sqlite\n")
    data = load_yaml(path).data
    assert data == {"outbox": {"path": "/tmp/run/outbox.sqlite"}}


def test_deep_nesting_in_a_file_is_an_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text("a: " + "${A:-" * 100_000 + "}" * 100_000 + "\n")
    with pytest.raises(ConfigError, match=f"{path}:1: .*nested more than"):
        load_yaml(path)


@pytest.mark.parametrize(
    ("text", "write"),
    [
        ("sinks: {influx: {url: ${FSG_T_SET}}}\n", '"${FSG_T_SET}"'),
        ("profile_dirs: [${FSG_T_SET}]\n", '"${FSG_T_SET}"'),
        ("x: {a: 1, url: ${FSG_T_A:-${FSG_T_SET}}}\n", '"${FSG_T_A:-${FSG_T_SET}}"'),
    ],
)
def test_reference_in_flow_collection_says_to_quote_it(
    tmp_path: Path, text: str, write: str
) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}:1: ") and f"write {write}" in msg, msg


def test_gateway_check_explains_flow_reference(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text("site: s\nsinks: {influx: {url: ${INFLUX_URL}}}\n")
    res = run_cli("check", str(path))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [
        f'error: {path}:2: ${{...}} inside {{...}} or [...] must be quoted: write "${{INFLUX_URL}}"'
    ]
