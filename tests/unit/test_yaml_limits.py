"""Hostile and odd YAML: every site, profile, rule and patrol file is loaded within limits.

Each bad file is checked through ``gateway check`` in a subprocess (with a
timeout, so a bomb that still expands fails the test instead of hanging it):
exit 2, exactly one ``error:`` line naming the file, no traceback.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.yamlfile import MAX_ALIAS_NODES, MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES, load_yaml
from tests.unit.test_config_errors import GOOD_SITE as SITE


def _laughs() -> bytes:
    """The classic "billion laughs": nine levels of nine aliases, under 1 KB."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return ("\n".join(lines) + "\n").encode()


BAD_FILES: dict[str, tuple[bytes, str]] = {
    "billion-laughs": (_laughs(), "aliases expand"),
    "recursive-alias": (b"a: &x\n  b: *x\n", "refers to itself"),
    "recursive-alias-list": (b"a: &x [1, *x]\n", "refers to itself"),
    "deep-flow": (b"a: " + b"[" * 20_000 + b"]" * 20_000 + b"\n", "nested deeper than"),
    "deep-block": (
        "".join(f"{' ' * i}k:\n" for i in range(2_000)).encode() + b" " * 2_000 + b"v\n",
        "nested deeper than",
    ),
    "list-as-key": (b"? [a, b]\n: 1\n", "key must be a scalar"),
    "map-as-key-flow": (b"{{a: 1}: 2}\n", "key must be a scalar"),
    "not-utf8": (b"site: test\ndescription: caf\xe9\n", "not UTF-8"),
    "nul-character": (b"site: a\x00b\n", "not allowed in YAML"),
    "python-tag": (
        b"site: !!python/object/apply:os.system [echo hi]\n",
        "tag !!python/object/apply:os.system is not allowed",
    ),
    "bad-int-tag": (b"site: !!int abc\n", "!!int"),
    "huge-int": (b"site: " + b"9" * 5_000 + b"\n", "digits"),
    "binary-tag": (b"site: !!binary aGk=\n", "tag !!binary is not allowed"),
    "two-documents": (b"site: a\n---\nsite: b\n", "single document"),
    "merge-key": (b"x: &d {a: 1}\ny:\n  <<: *d\n", "merge keys"),
    "too-big": (b"# " + b"x" * MAX_FILE_BYTES + b"\nsite: a\n", "larger than"),
    "too-many-values": (b"a:\n" + b"- 1\n" * (MAX_NODES + 1), f"more than {MAX_NODES} values"),
}


def run_cli(*args: str, module: str = "gateway.cli") -> subprocess.CompletedProcess[str]:
    """``python -m <module> ARGS`` with a timeout: a hang fails the test instead of blocking it."""
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=60
    )


def _check(site: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("check", str(site))


def _assert_one_clean_error(res: subprocess.CompletedProcess[str], bad: Path, expect: str) -> None:
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
    assert res.returncode == 2, res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, lines[:5]
    assert lines[0].startswith(f"error: {bad}"), lines[0][:300]
    assert expect in lines[0], lines[0][:300]
    assert len(lines[0]) < 400


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_site_file_gives_one_error_line(tmp_path: Path, name: str) -> None:
    content, expect = BAD_FILES[name]
    site = tmp_path / "site.yaml"
    site.write_bytes(content)
    _assert_one_clean_error(_check(site), site, expect)


def _site_with(tmp_path: Path, where: str, content: bytes) -> tuple[Path, Path]:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "rules").mkdir()
    text = SITE
    if where == "profile":
        bad = tmp_path / "profiles" / "extra.yaml"
    elif where == "rule":
        bad = tmp_path / "rules" / "bad.yaml"
        text += "rules: [rules/bad.yaml]\n"
    else:
        bad = tmp_path / "rules" / "patrol.yaml"
        text += "patrol: rules/patrol.yaml\n"
    bad.write_bytes(content)
    site = tmp_path / "site.yaml"
    site.write_text(text)
    return site, bad


@pytest.mark.parametrize(
    ("where", "name"),
    [
        ("profile", "billion-laughs"),
        ("profile", "not-utf8"),
        ("rule", "billion-laughs"),
        ("rule", "deep-flow"),
        ("patrol", "billion-laughs"),
        ("patrol", "list-as-key"),
    ],
)
def test_every_yaml_entry_point_is_bounded(tmp_path: Path, where: str, name: str) -> None:
    content, expect = BAD_FILES[name]
    site, bad = _site_with(tmp_path, where, content)
    _assert_one_clean_error(_check(site), bad, expect)


def test_simulator_loads_through_the_same_limits(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_bytes(BAD_FILES["billion-laughs"][0])
    res = run_cli("--list-scenarios", str(site), module="firmware_sim.cli")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "aliases expand" in res.stderr


def _load_text(tmp_path: Path, text: str) -> object:
    path = tmp_path / "f.yaml"
    path.write_text(text)
    return load_yaml(path).data


def test_non_utf8_error_names_line_and_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_bytes(b"a: 1\nb: caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    assert str(info.value) == f"{path}:2: not UTF-8 text: byte 0xe9 at offset 11"


def test_small_aliases_still_work(tmp_path: Path) -> None:
    data = _load_text(tmp_path, "base: &t {area: park}\ndevs:\n  - tags: *t\n  - tags: *t\n")
    assert data == {"base": {"area": "park"}, "devs": [{"tags": {"area": "park"}}] * 2}


def test_alias_budget_is_a_total(tmp_path: Path) -> None:
    # Each alias alone is small; together they expand past the budget.
    items = ",".join(["1"] * 100)
    refs = "\n".join(f"r{i}: *l" for i in range(MAX_ALIAS_NODES // 100 + 1))
    with pytest.raises(ConfigError, match="aliases expand"):
        _load_text(tmp_path, f"l: &l [{items}]\n{refs}\n")


def test_depth_limit_is_exact(tmp_path: Path) -> None:
    # MAX_DEPTH levels of collections hold the scalar: allowed; one more is not.
    ok = "a: " + "[" * (MAX_DEPTH - 1) + "1" + "]" * (MAX_DEPTH - 1)
    assert _load_text(tmp_path, ok) is not None
    deep = "a: " + "[" * MAX_DEPTH + "1" + "]" * MAX_DEPTH
    with pytest.raises(ConfigError, match="nested deeper than"):
        _load_text(tmp_path, deep)


def test_a_large_real_site_is_within_the_limits(tmp_path: Path) -> None:
    devices = "".join(
        f"  - {{id: dev-{i}, profile: leakage-monitor, source: rtu-{i % 50}, unit: {i % 247 + 1},"
        f" interval_s: 5, tags: {{area: zone-{i % 40}, building: b{i % 7}}}}}\n"
        for i in range(10_000)
    )
    path = tmp_path / "site.yaml"
    path.write_text(f"site: big\ndevices:\n{devices}")
    data = load_yaml(path).data
    assert isinstance(data, dict) and len(data["devices"]) == 10_000
